// The explicit network's token operations on the CPU (the `Ops` of
// explicit_common.hpp): Eigen tokens (row-major m x n, float or double), every
// weight product X W / sqrt(n) through gaussian_gemm, which generates W tile by tile
// and never stores it.  With `law`, the law-exact activation sampler of docs/model.md
// section 4: X W / sqrt(n) replaced by L G, L L^T = X X^T / n, G an m x cols standard
// Gaussian matrix (given X, the columns of X W / sqrt(n) are i.i.d. N(0, V)).
#pragma once

#include <array>
#include <cmath>
#include <cstdint>

#include "../explicit_common.hpp"
#include "../linalg.hpp"
#include "../normal_kernels.hpp"
#include "../parallel.hpp"
#include "../rng.hpp"
#include "../types.hpp"

namespace shaped_transformer::detail {

template <class S>
class CpuTokenOps {
 public:
  /// Where a block draws its numbers: Stream{seed, sample, block, id} (law: kLawBase + id).
  CpuTokenOps(Mat<S>& X, std::uint64_t seed, std::uint32_t sample, std::uint32_t block, bool law, int threads,
              const CancelToken* cancel)
      : X_(X), seed_(seed), sample_(sample), block_(block), law_(law), threads_(threads), cancel_(cancel) {}

  int m() const { return int(X_.rows()); }
  std::int64_t n() const { return X_.cols(); }

  Slot input(Norm norm) {
    if (!is_pre_norm(norm)) return Slot::X;
    buf(Slot::In) = X_;
    normalize_tokens(buf(Slot::In), is_layer_norm(norm));
    return Slot::In;
  }
  void source(Slot in) {
    if (!law_) return;
    // A matrix L with L L^T = X X^T / n: psd_root with the law sampler's rule
    // (law_root_rule), factored in column-major storage and stored row-major.
    const Eigen::MatrixXd Xd = buf(in).template cast<double>();
    const Mat<double> V = (Xd * Xd.transpose()) / double(buf(in).cols());
    Mat<double> L;
    psd_root(Eigen::MatrixXd(V), L, law_root_rule());
    root_ = L.template cast<S>();
  }
  void project(std::uint32_t id, Slot in, std::int64_t cols, Slot out) {
    const Mat<S>& Xin = buf(in);
    Mat<S> Y(Xin.rows(), cols);
    const Stream s{seed_, sample_, block_, law_ ? matrix_id::kLawBase + id : id};
    if (!law_) {
      gaussian_gemm(s, int(Xin.rows()), Xin.cols(), cols, Xin.data(), Xin.cols(), Y.data(), cols,
                    S(1.0 / std::sqrt(double(Xin.cols()))), threads_, cancel_);
    } else {
      Mat<S> G(Xin.rows(), cols);
      fill_normal(s, 0, std::size_t(G.size()), G.data());
      Y.noalias() = root_ * G;
    }
    buf(out) = std::move(Y);
  }
  void scores(Slot q, Slot k, double* A) const {
    const Eigen::MatrixXd Y = (cbuf(q) * cbuf(k).transpose()).template cast<double>();
    for (int i = 0; i < m(); ++i)
      for (int j = 0; j < m(); ++j) A[i * m() + j] = Y(i, j);
  }
  void mix(const double* A, Slot v, Slot out, std::int64_t col0, bool accumulate) {
    Mat<S> As(m(), m());
    for (int i = 0; i < m(); ++i)
      for (int j = 0; j < m(); ++j) As(i, j) = S(A[i * m() + j]);
    const Mat<S>& XV = buf(v);
    Mat<S>& B = buf(out);
    if (B.rows() != m() || B.cols() != n()) B.setZero(m(), n());
    if (accumulate) B.middleCols(col0, XV.cols()).noalias() += As * XV;
    else B.middleCols(col0, XV.cols()).noalias() = As * XV;
  }
  void zero(Slot s) { buf(s).setZero(m(), n()); }
  void leaky(Slot s, double s_plus, double s_minus) {
    const S sp = S(s_plus), sm = S(s_minus);
    buf(s) = buf(s).unaryExpr([sp, sm](S x) { return x > S(0) ? sp * x : sm * x; });
  }
  void residual(double lambda, double g, Slot s) { X_ = S(lambda) * X_ + S(g) * buf(s); }
  void scale(double f) { X_ *= S(f); }
  void normalize(bool layer) { normalize_tokens(X_, layer); }

  /// Per-token normalisation over the features (no gain or bias: their values at
  /// initialization are 1 and 0).  A token that is all zeros stays zero.
  static void normalize_tokens(Mat<S>& X, bool layer) {
    const double n = double(X.cols());
    for (Eigen::Index a = 0; a < X.rows(); ++a) {
      auto row = X.row(a);
      double mean = 0.0;
      if (layer) {
        for (Eigen::Index j = 0; j < X.cols(); ++j) mean += double(row(j));
        mean /= n;
      }
      double ss = 0.0;
      for (Eigen::Index j = 0; j < X.cols(); ++j) {
        const double d = double(row(j)) - mean;
        ss += d * d;
      }
      const double scale = ss > 0.0 ? 1.0 / std::sqrt(ss / n) : 0.0;
      for (Eigen::Index j = 0; j < X.cols(); ++j) row(j) = S((double(row(j)) - mean) * scale);
    }
  }

 private:
  Mat<S>& buf(Slot s) { return s == Slot::X ? X_ : slots_[std::size_t(s)]; }
  const Mat<S>& cbuf(Slot s) const { return s == Slot::X ? X_ : slots_[std::size_t(s)]; }

  Mat<S>& X_;
  std::uint64_t seed_;
  std::uint32_t sample_, block_;
  bool law_;
  int threads_;
  const CancelToken* cancel_;
  std::array<Mat<S>, std::size_t(Slot::kCount)> slots_;
  Mat<S> root_;
};

}  // namespace shaped_transformer::detail
