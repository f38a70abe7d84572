// Matrix types shared by the core.
#pragma once

#include <stdexcept>
#include <string>

#include <Eigen/Dense>

namespace shaped_transformer {

/// Row-major dynamic matrix: X is m x n with one token per row, so a token's
/// features are contiguous and X W streams W by rows.
template <class S>
using Mat = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatD = Mat<double>;
using Cov = Eigen::MatrixXd;  ///< an m x m covariance (Gram) matrix, always float64

/// Per-token normalisation of the standard blocks (docs/model.md section 2).
enum class Norm { None, PreRMS, PreLayer, PostRMS, PostLayer };

/// The Python spelling of each Norm ("none", "pre_rms", ...), in enum order.
inline constexpr const char* kNormNames[] = {"none", "pre_rms", "pre_layer", "post_rms", "post_layer"};

inline const char* norm_name(Norm k) { return kNormNames[int(k)]; }

inline Norm norm_from_string(const std::string& s) {
  for (int i = 0; i < 5; ++i)
    if (s == kNormNames[i]) return Norm(i);
  throw std::invalid_argument("norm: unknown normalisation '" + s + "'");
}

inline bool is_layer_norm(Norm k) { return k == Norm::PreLayer || k == Norm::PostLayer; }

}  // namespace shaped_transformer
