// Matrix types shared by the core.
#pragma once

#include <Eigen/Dense>

#include "norm.hpp"

namespace shaped_transformer {

/// Row-major dynamic matrix: X is m x n with one token per row, so a token's
/// features are contiguous and X W streams W by rows.
template <class S>
using Mat = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatD = Mat<double>;
using Cov = Eigen::MatrixXd;  ///< an m x m covariance (Gram) matrix, always float64

}  // namespace shaped_transformer
