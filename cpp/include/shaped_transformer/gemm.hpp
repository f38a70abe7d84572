// Which build runs the scalar lanes' large products and Cholesky roots (math/matrix.hpp's
// detail::gemm_rowmajor: m x m and wider products at m >= kGemmFrom on the host, the
// per-sample exact chain and the per-path SDE solver at long sequences), and the exact
// MLP step's Gram tiles there.  Eigen's GEMM
// is compiled portably and for AVX2 + FMA and AVX-512 (cpp/src/gemm*.cpp) and chosen
// at run time by simd_level() (cpu_features.hpp; SHAPED_TRANSFORMER_KERNEL=scalar|avx2
// lowers it).  The builds agree to rounding (the SIMD ones use fused multiply-adds),
// not bit for bit.
#pragma once

namespace shaped_transformer {

/// The instruction set of the large products: "avx512", "avx2" or "scalar".
const char* gemm_kernel();

namespace detail {
/// gemm_rowmajor (math/matrix.hpp) in the build of SimdLevel `level` (0 scalar,
/// 1 AVX2, 2 AVX-512); false (C untouched) when this CPU or build cannot run it.
bool gemm_rowmajor_at(int level, bool ta, bool tb, int n, int p, int q, const double* A, int lda, const double* B,
                      int ldb, double* C, int ldc);
/// Eigen's Cholesky of the m x m row-major V (lower triangle read) into L (row-major,
/// zero upper triangle) in the build of SimdLevel `level`; *ok: it succeeded (every
/// pivot positive).  False (nothing done) when this CPU or build cannot run it.
bool llt_rowmajor_at(int level, int m, const double* V, double* L, bool* ok);
/// llt_rowmajor_at in the build for this CPU (gemm_kernel()): whether it succeeded.
bool llt_rowmajor(int m, const double* V, double* L);
/// One tile of the exact MLP step's Gram beyond the fused kernel's 32 tokens
/// (detail/exact_impl.hpp, HostCtx::gram), in the build of SimdLevel `level`:
/// K = L Gt^T (m x w, row-major scratch; L m x m row-major with leading dimension ldl,
/// a triangular product when `lower`, i.e. its upper triangle is zero; Gt the tile's
/// w x m row-major normals), K <- phi(K) with phi(x) = (x > 0 ? sp : sm) x, and
/// Gram's lower triangle (row-major, leading dimension ldg) += K K^T, its upper
/// triangle untouched.  False (nothing done) when this CPU or build cannot run it.
bool mlp_gram_tile_at(int level, int m, int w, const double* L, int ldl, bool lower, const double* Gt, double sp,
                      double sm, double* K, double* Gram, int ldg);
/// mlp_gram_tile_at in the build for this CPU (gemm_kernel()).
void mlp_gram_tile(int m, int w, const double* L, int ldl, bool lower, const double* Gt, double sp, double sm,
                   double* K, double* Gram, int ldg);
}  // namespace detail

}  // namespace shaped_transformer
