// The large products of the scalar lanes (math/matrix.hpp) and the exact MLP step's
// Gram tiles: row-major doubles through Eigen's GEMM, which at m in the hundreds is
// far faster than the plain loops the small matrices use.  The AVX2 / AVX-512 builds
// of the same code (gemm_avx2.cpp, gemm_avx512.cpp) are chosen at run time like the
// other kernels (simd_level(): SHAPED_TRANSFORMER_KERNEL=scalar|avx2 lowers the
// choice); this unit is the portable one.
#include "gemm_impl.hpp"
#include "shaped_transformer/cpu_features.hpp"
#include "shaped_transformer/gemm.hpp"
#include "shaped_transformer/math/matrix.hpp"

namespace shaped_transformer {
namespace detail {

#if defined(SHAPED_TRANSFORMER_X86_DISPATCH)
void gemm_rowmajor_avx2(bool ta, bool tb, int n, int p, int q, const double* A, int lda, const double* B, int ldb,
                        double* C, int ldc);
void gemm_rowmajor_avx512(bool ta, bool tb, int n, int p, int q, const double* A, int lda, const double* B, int ldb,
                          double* C, int ldc);
bool llt_rowmajor_avx2(int m, const double* V, double* L);
bool llt_rowmajor_avx512(int m, const double* V, double* L);
void mlp_gram_tile_avx2(int m, int w, const double* L, int ldl, bool lower, const double* Gt, double sp, double sm,
                        double* K, double* Gram, int ldg);
void mlp_gram_tile_avx512(int m, int w, const double* L, int ldl, bool lower, const double* Gt, double sp, double sm,
                          double* K, double* Gram, int ldg);
#endif

bool gemm_rowmajor_at(int level, bool ta, bool tb, int n, int p, int q, const double* A, int lda, const double* B,
                      int ldb, double* C, int ldc) {
  const SimdLevel l = SimdLevel(level);
  if (level < 0 || !cpu_supports(l)) return false;
  switch (l) {
#if defined(SHAPED_TRANSFORMER_X86_DISPATCH)
    case SimdLevel::Avx512: gemm_rowmajor_avx512(ta, tb, n, p, q, A, lda, B, ldb, C, ldc); return true;
    case SimdLevel::Avx2: gemm_rowmajor_avx2(ta, tb, n, p, q, A, lda, B, ldb, C, ldc); return true;
#endif
    default: gemm_rowmajor_impl(ta, tb, n, p, q, A, lda, B, ldb, C, ldc); return true;
  }
}

void gemm_rowmajor(bool ta, bool tb, int n, int p, int q, const double* A, int lda, const double* B, int ldb, double* C,
                   int ldc) {
  gemm_rowmajor_at(int(simd_level()), ta, tb, n, p, q, A, lda, B, ldb, C, ldc);
}

bool llt_rowmajor_at(int level, int m, const double* V, double* L, bool* ok) {
  const SimdLevel l = SimdLevel(level);
  if (level < 0 || !cpu_supports(l)) return false;
  switch (l) {
#if defined(SHAPED_TRANSFORMER_X86_DISPATCH)
    case SimdLevel::Avx512: *ok = llt_rowmajor_avx512(m, V, L); return true;
    case SimdLevel::Avx2: *ok = llt_rowmajor_avx2(m, V, L); return true;
#endif
    default: *ok = llt_rowmajor_impl(m, V, L); return true;
  }
}

bool llt_rowmajor(int m, const double* V, double* L) {
  bool ok = false;
  llt_rowmajor_at(int(simd_level()), m, V, L, &ok);
  return ok;
}

bool mlp_gram_tile_at(int level, int m, int w, const double* L, int ldl, bool lower, const double* Gt, double sp,
                      double sm, double* K, double* Gram, int ldg) {
  const SimdLevel l = SimdLevel(level);
  if (level < 0 || !cpu_supports(l)) return false;
  switch (l) {
#if defined(SHAPED_TRANSFORMER_X86_DISPATCH)
    case SimdLevel::Avx512: mlp_gram_tile_avx512(m, w, L, ldl, lower, Gt, sp, sm, K, Gram, ldg); return true;
    case SimdLevel::Avx2: mlp_gram_tile_avx2(m, w, L, ldl, lower, Gt, sp, sm, K, Gram, ldg); return true;
#endif
    default: mlp_gram_tile_impl(m, w, L, ldl, lower, Gt, sp, sm, K, Gram, ldg); return true;
  }
}

void mlp_gram_tile(int m, int w, const double* L, int ldl, bool lower, const double* Gt, double sp, double sm,
                   double* K, double* Gram, int ldg) {
  mlp_gram_tile_at(int(simd_level()), m, w, L, ldl, lower, Gt, sp, sm, K, Gram, ldg);
}

}  // namespace detail

const char* gemm_kernel() { return simd_level_name(simd_level()); }

}  // namespace shaped_transformer
