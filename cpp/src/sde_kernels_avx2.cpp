// The batched SDE kernel (kernels/sde_batch.hpp) with AVX2: 4 paths in the lanes of
// a register.  Compiled with -mavx2 -mfma -ffp-contract=off; called after a CPUID
// check (sde_kernels.cpp).
#include "shaped_transformer/kernels/sde_batch.hpp"

namespace shaped_transformer::sde::detail {
void run_batch_avx2(const BatchParams<Network>& p, const double* V0, std::uint32_t path0, int count, BatchSink& sink,
                    std::int64_t* exploded, std::int64_t* projections, const CancelToken* cancel) {
  kernels::run_batch<Network, simd::avx2::Lanes>(p, V0, path0, count, sink, exploded, projections, cancel);
}
}  // namespace shaped_transformer::sde::detail
