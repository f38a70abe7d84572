// The body of the scalar lanes' large products (math/matrix.hpp's gemm_rowmajor),
// Cholesky roots (large_root.hpp) and the exact MLP step's Gram tiles beyond 32 tokens
// (detail/exact_impl.hpp), compiled three times: portably (gemm.cpp) and for AVX2 + FMA / AVX-512
// (gemm_avx2.cpp, gemm_avx512.cpp), where Eigen's GEMM kernels run 2.5 to 2.8 times
// faster (docs/performance.md).  The SIMD units rename Eigen's namespace before they
// include this file, so that the Eigen templates they instantiate are their own
// symbols and never the portable build's (the linker keeps one copy of a weak symbol:
// an AVX copy picked for portable code would crash CPUs without AVX).
#pragma once

#include <cstddef>

#include <Eigen/Cholesky>
#include <Eigen/Core>

namespace shaped_transformer::detail {
namespace {

/// Whether the square k x k matrix at A (leading dimension lda) has a zero upper
/// triangle: a root, whose product then skips it.  O(k^2) reads at most, one for a
/// full matrix; exact zeros only, so skipping them changes no term of any sum.
inline bool lower_triangular(const double* A, int k, int lda) {
  for (int i = 0; i < k; ++i)
    for (int j = i + 1; j < k; ++j)
      if (!(A[std::size_t(i) * std::size_t(lda) + std::size_t(j)] == 0.0)) return false;
  return true;
}

/// C (n x p) = op(A) op(B), row-major doubles, op = transpose when ta / tb.  Uses the
/// structure the exact step's products have (math/matrix.hpp's loops skip it too): a
/// product A A^T is a symmetric rank-k update (its lower triangle, mirrored), and a
/// lower-triangular square factor (a Cholesky root) a triangular product: about 1.7
/// times faster each at m = 128 (docs/performance.md).
inline void gemm_rowmajor_impl(bool ta, bool tb, int n, int p, int q, const double* A, int lda, const double* B,
                               int ldb, double* C, int ldc) {
  using RM = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Map = Eigen::Map<const RM, 0, Eigen::OuterStride<>>;
  const Map a(A, ta ? q : n, ta ? n : q, Eigen::OuterStride<>(lda));
  const Map b(B, tb ? p : q, tb ? q : p, Eigen::OuterStride<>(ldb));
  Eigen::Map<RM, 0, Eigen::OuterStride<>> c(C, n, p, Eigen::OuterStride<>(ldc));
  if (!ta && tb && A == B && lda == ldb && n == p) {  // A A^T
    c.setZero();
    c.selfadjointView<Eigen::Lower>().rankUpdate(a);
    for (int i = 0; i < n; ++i)
      for (int j = i + 1; j < n; ++j) c(i, j) = c(j, i);
    return;
  }
  if (!ta && n == q && lower_triangular(A, n, lda)) {
    if (tb) c.noalias() = a.triangularView<Eigen::Lower>() * b.transpose();
    else c.noalias() = a.triangularView<Eigen::Lower>() * b;
    return;
  }
  if (!tb && q == p && lower_triangular(B, p, ldb)) {
    if (ta) c.noalias() = a.transpose() * b.triangularView<Eigen::Lower>();
    else c.noalias() = a * b.triangularView<Eigen::Lower>();
    return;
  }
  if (ta && tb) c.noalias() = a.transpose() * b.transpose();
  else if (ta) c.noalias() = a.transpose() * b;
  else if (tb) c.noalias() = a * b.transpose();
  else c.noalias() = a * b;
}

/// One tile of the exact MLP step's Gram (gemm.hpp, mlp_gram_tile_at): K = L Gt^T,
/// phi in place, Gram's lower triangle += K K^T.  The structure is the caller's to
/// state (`lower`: a Cholesky root) rather than looked up per tile, and the symmetric
/// rank-w update goes straight into the running sum (no m x m temporary to zero,
/// mirror and add per tile).  phi is written as a select of the slope times x: the
/// same product, bit for bit, as exact_mlp::PiecewiseLinear's `x > 0 ? sp x : sm x`,
/// but a form every build vectorizes (the branch on a Gaussian's sign mispredicts
/// half the time: it took a quarter of the Gram at m = 128 in the portable unit).
inline void mlp_gram_tile_impl(int m, int w, const double* L, int ldl, bool lower, const double* Gt, double sp,
                               double sm, double* K, double* Gram, int ldg) {
  using RM = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const Eigen::Map<const RM, 0, Eigen::OuterStride<>> l(L, m, m, Eigen::OuterStride<>(ldl));
  const Eigen::Map<const RM> gt(Gt, w, m);
  Eigen::Map<RM> k(K, m, w);
  if (lower) k.noalias() = l.triangularView<Eigen::Lower>() * gt.transpose();
  else k.noalias() = l * gt.transpose();
  const std::size_t count = std::size_t(m) * std::size_t(w);
  for (std::size_t i = 0; i < count; ++i) {
    const double x = K[i];
    K[i] = (x > 0 ? sp : sm) * x;
  }
  Eigen::Map<RM, 0, Eigen::OuterStride<>> g(Gram, m, m, Eigen::OuterStride<>(ldg));
  g.selfadjointView<Eigen::Lower>().rankUpdate(k);
}

/// L (m x m, row-major, zero upper triangle) with L L^T = V (row-major, its lower
/// triangle read): Eigen's blocked Cholesky on a column-major copy, the algorithm of
/// psd_root's (linalg.hpp), whose inner products are the GEMM kernels above, so that
/// the SIMD builds run it about twice as fast at m = 128.  False (L unspecified) when
/// a pivot is not positive.
inline bool llt_rowmajor_impl(int m, const double* V, double* L) {
  using CM = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic>;
  using RM = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const Eigen::LLT<CM> llt(CM(Eigen::Map<const RM>(V, m, m)));
  if (llt.info() != Eigen::Success) return false;
  Eigen::Map<RM>(L, m, m) = llt.matrixL();
  return true;
}

}  // namespace
}  // namespace shaped_transformer::detail
