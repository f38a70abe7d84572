// row_softmax_impl.hpp in AVX-512 lanes (8 doubles); called after a CPUID check (row_softmax.cpp).
#include "row_softmax_impl.hpp"
#include "shaped_transformer/simd/lanes.hpp"

namespace shaped_transformer::detail {
void row_softmax_avx512(int m, double* S, int ld, bool causal) {
  row_softmax_impl<simd::avx512::Lanes>(m, S, ld, causal);
}
}  // namespace shaped_transformer::detail
