// Run-time dispatch of the batched exact-chain kernels (exact/batch.hpp), the
// portable one-lane kernel (same operations per lane as the SIMD kernels, so the
// same numbers), and the scalar pieces every kernel calls (compiled once, here, so
// that they are the same code for all).
#include <cstdint>

#include "shaped_transformer/cpu_features.hpp"
#include "shaped_transformer/exact/batch.hpp"
#include "shaped_transformer/kernels/exact_batch.hpp"
#include "shaped_transformer/math/matrix.hpp"
#include "shaped_transformer/math/samplers.hpp"
#include "shaped_transformer/simd/lanes.hpp"

namespace shaped_transformer::exact_batch {

namespace detail {
#if defined(SHAPED_TRANSFORMER_X86_DISPATCH)
void run_exact_avx512(const Params<Network>&, const double*, std::uint32_t, int, double*, std::int64_t*,
                      const CancelToken*);
void run_exact_avx2(const Params<Network>&, const double*, std::uint32_t, int, double*, std::int64_t*,
                    const CancelToken*);
#endif

bool gamma_log_accept(double shape, double u, double x2, double v) { return GammaProposal(shape).log_test(u, x2, v); }

void wishart_lane(double df, int p, const Stream& normals, const Stream& uniforms, double* B) {
  MatrixRng r(normals, uniforms);
  MatRef<double> b(B, p);
  wishart_factor(df, p, r, b);
}
}  // namespace detail

template <>
Kernel<Network> kernel<Network>(const char* name) {
  const auto simd = [](SimdLevel level) -> BatchFn<Network> {
#if defined(SHAPED_TRANSFORMER_X86_DISPATCH)
    return level == SimdLevel::Avx512 ? &detail::run_exact_avx512 : &detail::run_exact_avx2;
#else
    (void)level;
    return nullptr;
#endif
  };
  return choose_simd_kernel<Kernel<Network>>(name, simd, &kernels::run_exact<Network, simd::portable::Lanes>);
}

}  // namespace shaped_transformer::exact_batch
