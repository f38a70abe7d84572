// Run-time dispatch of the batched exact-chain kernels (exact/batch.hpp), the
// portable one-lane kernel (same operations per lane as the SIMD kernels, so the
// same numbers), and the scalar pieces every kernel calls (compiled once, here, so
// that they are the same code for all).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "shaped_transformer/exact/batch.hpp"
#include "shaped_transformer/linalg.hpp"
#include "shaped_transformer/sde/batch.hpp"

namespace shaped_transformer::exact_batch {

namespace detail {
#if defined(SHAPED_TRANSFORMER_X86_DISPATCH)
void run_exact_avx512(const Params&, const double*, std::uint32_t, int, double*, std::int64_t*, const CancelToken*);
void run_exact_avx2(const Params&, const double*, std::uint32_t, int, double*, std::int64_t*, const CancelToken*);
#endif

bool gamma_log_accept(double u, double x2, double d, double v) {
  return std::log(u) < 0.5 * x2 + d * (1.0 - v + std::log(v));
}

void wishart_lane(double df, int m, const Stream& normals, const Stream& uniforms, double* B) {
  MatrixRng r(normals, uniforms);
  Cov b;
  wishart_factor(df, m, r, b);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) B[i * m + j] = b(i, j);
}
}  // namespace detail

namespace {
// ---- the portable kernel: one lane ----
#include "lanes_scalar.hpp"
inline void lane_normals(std::uint64_t seed, std::uint32_t matrix, std::uint32_t block, std::uint32_t sample0,
                         int groups, VD* out) {
  const Stream s{seed, sample0, block, matrix};
  float z[4];
  for (int g = 0; g < groups; ++g) {
    normal4(s, std::uint64_t(g), z);
    for (int i = 0; i < 4; ++i) out[4 * g + i] = VD{double(z[i])};
  }
}
inline void lane_uniforms(std::uint64_t seed, std::uint32_t matrix, std::uint32_t block, std::uint32_t sample0,
                          int count, VD* out) {
  SeqUniform u(Stream{seed, sample0, block, matrix});
  for (int k = 0; k < count; ++k) out[k] = VD{u()};
}
#include "exact_kernels_impl.hpp"
}  // namespace

Kernel kernel(const char* name) {
  const char* n = name ? name : sde::batch_kernel().name;  // the SDE dispatch: CPU checks, environment override
  if (std::strcmp(n, "scalar") == 0) return {"scalar", 1, &run_exact};
#if defined(SHAPED_TRANSFORMER_X86_DISPATCH)
  if (std::strcmp(n, "avx2") == 0 && sde::batch_kernel("avx2").run) return {"avx2", 4, &detail::run_exact_avx2};
  if (std::strcmp(n, "avx512") == 0 && sde::batch_kernel("avx512").run) return {"avx512", 8, &detail::run_exact_avx512};
#endif
  return {n, 0, nullptr};
}

}  // namespace shaped_transformer::exact_batch
