// The dispatch of the large row softmax (row_softmax.hpp): the AVX2 / AVX-512 builds
// after the CPU check of the other kernels; no portable build (the caller's
// softmax_rows, with libm's exp, is the portable one).
#include "shaped_transformer/row_softmax.hpp"

#include "shaped_transformer/cpu_features.hpp"

namespace shaped_transformer::detail {

#if defined(SHAPED_TRANSFORMER_X86_DISPATCH)
void row_softmax_avx2(int m, double* S, int ld, bool causal);
void row_softmax_avx512(int m, double* S, int ld, bool causal);
#endif

bool row_softmax_at(int level, int m, double* S, int ld, bool causal) {
  if (level <= 0 || !cpu_supports(SimdLevel(level))) return false;
  switch (SimdLevel(level)) {
#if defined(SHAPED_TRANSFORMER_X86_DISPATCH)
    case SimdLevel::Avx512: row_softmax_avx512(m, S, ld, causal); return true;
    case SimdLevel::Avx2: row_softmax_avx2(m, S, ld, causal); return true;
#endif
    default: return false;
  }
}

bool row_softmax(int m, double* S, int ld, bool causal) { return row_softmax_at(int(simd_level()), m, S, ld, causal); }

}  // namespace shaped_transformer::detail
