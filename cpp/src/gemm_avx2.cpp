// gemm_impl.hpp compiled for AVX2 + FMA; called after a CPUID check (gemm.cpp).
// Eigen's namespace is renamed for this unit (see gemm_impl.hpp): its templates
// become shaped_transformer::simd::avx2::eigen::..., symbols no portable unit defines.
// Eigen's kernels use explicit fused multiply-adds here, so the products agree with
// the portable build's to rounding, not bit for bit.
#define Eigen shaped_transformer::simd::avx2::eigen
#include "gemm_impl.hpp"
#undef Eigen

namespace shaped_transformer::detail {
void gemm_rowmajor_avx2(bool ta, bool tb, int n, int p, int q, const double* A, int lda, const double* B, int ldb,
                        double* C, int ldc) {
  gemm_rowmajor_impl(ta, tb, n, p, q, A, lda, B, ldb, C, ldc);
}
bool llt_rowmajor_avx2(int m, const double* V, double* L) { return llt_rowmajor_impl(m, V, L); }
void mlp_gram_tile_avx2(int m, int w, const double* L, int ldl, bool lower, const double* Gt, double sp, double sm,
                        double* K, double* Gram, int ldg) {
  mlp_gram_tile_impl(m, w, L, ldl, lower, Gt, sp, sm, K, Gram, ldg);
}
}  // namespace shaped_transformer::detail
