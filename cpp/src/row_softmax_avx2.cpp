// row_softmax_impl.hpp in AVX2 lanes (4 doubles, -mavx2 -mfma); called after a CPUID check (row_softmax.cpp).
#include "row_softmax_impl.hpp"
#include "shaped_transformer/simd/lanes.hpp"

namespace shaped_transformer::detail {
void row_softmax_avx2(int m, double* S, int ld, bool causal) { row_softmax_impl<simd::avx2::Lanes>(m, S, ld, causal); }
}  // namespace shaped_transformer::detail
