// The batched exact attention chain (kernels/exact_batch.hpp) with AVX-512: 8 samples
// in the lanes of a register.  Compiled with -mavx512f... -ffp-contract=off; called after a
// CPUID check (exact_kernels.cpp).
#include "shaped_transformer/kernels/exact_batch.hpp"
#include "shaped_transformer/simd/lanes.hpp"

namespace shaped_transformer::exact_batch::detail {
void run_exact_avx512(const Params<Network>& p, const double* V0, std::uint32_t sample0, int count, double* out,
                      std::int64_t* exploded, const CancelToken* cancel) {
  kernels::run_exact<Network, simd::avx512::Lanes>(p, V0, sample0, count, out, exploded, cancel);
}
}  // namespace shaped_transformer::exact_batch::detail
