// Run-time dispatch of the batched SDE kernels (sde/batch.hpp), the portable
// one-lane kernel (same operations per lane as the SIMD kernels, so the same
// numbers), and the scalar PSD remedy every kernel calls for the lanes whose
// Cholesky factor fails (compiled once, here, so that it is the same code for all).
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "shaped_transformer/linalg.hpp"
#include "shaped_transformer/sde/batch.hpp"

namespace shaped_transformer::sde {

namespace detail {
#if defined(SHAPED_TRANSFORMER_X86_DISPATCH)
void run_batch_avx512(const BatchParams&, const double*, std::uint32_t, int, BatchSink&, std::int64_t*, std::int64_t*,
                      const CancelToken*);
void run_batch_avx2(const BatchParams&, const double*, std::uint32_t, int, BatchSink&, std::int64_t*, std::int64_t*,
                    const CancelToken*);
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

namespace {
// ---- the portable kernel: one lane ----
#include "lanes_scalar.hpp"
inline void lane_normals(std::uint64_t seed, std::uint32_t matrix, std::uint32_t step, std::uint32_t path0, int groups,
                         double sd, VD* out) {
  const Stream s{seed, path0, step, matrix};
  float z[4];
  for (int g = 0; g < groups; ++g) {
    normal4(s, std::uint64_t(g), z);
    for (int i = 0; i < 4; ++i) out[4 * g + i] = VD{double(z[i]) * sd};
  }
}
#include "sde_kernels_impl.hpp"
}  // namespace

BatchKernel batch_kernel(const char* name) {
  bool has512 = false, has2 = false;
#if defined(SHAPED_TRANSFORMER_X86_DISPATCH)
  __builtin_cpu_init();
  has512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
  has2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
  const BatchKernel scalar{"scalar", 1, &run_batch};
  auto pick = [&](const char* n) -> BatchKernel {
    if (std::strcmp(n, "scalar") == 0) return scalar;
#if defined(SHAPED_TRANSFORMER_X86_DISPATCH)
    if (std::strcmp(n, "avx2") == 0 && has2) return {"avx2", 4, &detail::run_batch_avx2};
    if (std::strcmp(n, "avx512") == 0 && has512) return {"avx512", 8, &detail::run_batch_avx512};
#endif
    return {n, 0, nullptr};
  };
  if (name) return pick(name);
  static const BatchKernel best = [&] {
    const char* env = std::getenv("SHAPED_TRANSFORMER_KERNEL");
    if (env && std::strcmp(env, "scalar") == 0) return scalar;
    if (env && std::strcmp(env, "avx2") == 0 && has2) return pick("avx2");
    if (has512) return pick("avx512");
    if (has2) return pick("avx2");
    return scalar;
  }();
  return best;
}

}  // namespace shaped_transformer::sde
