// The body of the scalar lanes' large products (math/matrix.hpp's gemm_rowmajor),
// compiled three times: portably (gemm.cpp) and for AVX2 + FMA / AVX-512
// (gemm_avx2.cpp, gemm_avx512.cpp), where Eigen's GEMM kernels run 2.5 to 2.8 times
// faster (docs/performance.md).  The SIMD units rename Eigen's namespace before they
// include this file, so that the Eigen templates they instantiate are their own
// symbols and never the portable build's (the linker keeps one copy of a weak symbol:
// an AVX copy picked for portable code would crash CPUs without AVX).
#pragma once

#include <Eigen/Core>

namespace shaped_transformer::detail {
namespace {

/// C (n x p) = op(A) op(B), row-major doubles, op = transpose when ta / tb.
inline void gemm_rowmajor_impl(bool ta, bool tb, int n, int p, int q, const double* A, int lda, const double* B,
                               int ldb, double* C, int ldc) {
  using RM = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Map = Eigen::Map<const RM, 0, Eigen::OuterStride<>>;
  const Map a(A, ta ? q : n, ta ? n : q, Eigen::OuterStride<>(lda));
  const Map b(B, tb ? p : q, tb ? q : p, Eigen::OuterStride<>(ldb));
  Eigen::Map<RM, 0, Eigen::OuterStride<>> c(C, n, p, Eigen::OuterStride<>(ldc));
  if (ta && tb) c.noalias() = a.transpose() * b.transpose();
  else if (ta) c.noalias() = a.transpose() * b;
  else if (tb) c.noalias() = a * b.transpose();
  else c.noalias() = a * b;
}

}  // namespace
}  // namespace shaped_transformer::detail
