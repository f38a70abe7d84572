// Run-time dispatch of the batched SDE kernels (sde/batch.hpp), the portable
// one-lane kernel (same operations per lane as the SIMD kernels, so the same
// numbers), and the scalar PSD remedy every kernel calls for the lanes whose
// Cholesky factor fails (compiled once, here, so that it is the same code for all).
#include <cmath>
#include <cstdint>

#include "shaped_transformer/cpu_features.hpp"
#include "shaped_transformer/kernels/sde_batch.hpp"
#include "shaped_transformer/linalg.hpp"
#include "shaped_transformer/sde/batch.hpp"
#include "shaped_transformer/simd/lanes.hpp"

namespace shaped_transformer::sde {

namespace detail {
#if defined(SHAPED_TRANSFORMER_X86_DISPATCH)
void run_batch_avx512(const BatchParams<Network>&, const double*, std::uint32_t, int, BatchSink&, std::int64_t*,
                      std::int64_t*, const CancelToken*);
void run_batch_avx2(const BatchParams<Network>&, const double*, std::uint32_t, int, BatchSink&, std::int64_t*,
                    std::int64_t*, const CancelToken*);
#endif
}  // namespace detail

bool batch_lane_root(double* V, double* L, int m, bool clip) {
  Cov v = Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(V, m, m);
  Cov l;
  bool projected = false;
  if (clip) projected = psd_clip(v);
  psd_root(v, l);
  Eigen::Map<Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(V, m, m) = v;
  Eigen::Map<Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(L, m, m) = l;
  return projected;
}

template <>
BatchKernel<Network> batch_kernel<Network>(const char* name) {
  const auto simd = [](SimdLevel level) -> BatchFn<Network> {
#if defined(SHAPED_TRANSFORMER_X86_DISPATCH)
    return level == SimdLevel::Avx512 ? &detail::run_batch_avx512 : &detail::run_batch_avx2;
#else
    (void)level;
    return nullptr;
#endif
  };
  return choose_simd_kernel<BatchKernel<Network>>(name, simd, &kernels::run_batch<Network, simd::portable::Lanes>);
}

}  // namespace shaped_transformer::sde
