// The batched SDE kernel (kernels/sde_batch.hpp) with AVX2: 4 paths in the lanes of
// a register.  Compiled with -mavx2 -mfma -ffp-contract=off; called after a CPUID
// check (sde_kernels.cpp).
#include "shaped_transformer/kernels/sde_batch.hpp"
#include "shaped_transformer/simd/lanes.hpp"

namespace shaped_transformer::sde::detail {
void run_batch_avx2(const BatchParams& p, const double* V0, std::uint32_t path0, int count, BatchSink& sink,
                    std::int64_t* exploded, std::int64_t* projections, const CancelToken* cancel) {
  kernels::run_batch<simd::avx2::Lanes>(p, V0, path0, count, sink, exploded, projections, cancel);
}
}  // namespace shaped_transformer::sde::detail
