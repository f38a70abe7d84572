// One path of the covariance SDE (the Euler and tamed Euler schemes, PSD clipping,
// the blow-up rule and saving) as ST_HD code on plain m x m arrays: the CUDA kernel
// runs one path per thread with it, and the CPU tests run the same function against
// shaped_transformer::solve_sde.  The step is kernels/sde_step.hpp (the generic
// solver's and the batched kernels' step) on the scalar lanes, with the blocks' own
// drift and noise faces; the Brownian increments are generated in place from the
// Philox streams of sde/brownian.hpp (Stream{seed, path, step, kSdeBase + block}),
// so both sides use the same normals bit for bit; the roots are small_linalg.hpp's
// (Cholesky, or Jacobi's eigen-decomposition), so the m x m algebra agrees to rounding.
#pragma once

#include <cstdint>

#include "../kernels/sde_step.hpp"
#include "../math/lane.hpp"
#include "../rng.hpp"
#include "philox.hpp"
#include "small_linalg.hpp"

namespace shaped_transformer::device {

inline constexpr int kMaxBlocks = 16;

/// Everything one path needs besides its index (passed to the kernel by value):
/// the SDE terms of the blocks of one layer of a network of kinds Kinds...
template <class... Kinds>
struct SdeProblemOf {
  int m = 0;
  int nblocks = 0;
  SdeBlock<Kinds...> blocks[kMaxBlocks];
  double dt = 1e-3;
  std::int64_t steps = 0;
  int tamed = 0;  ///< 1: tamed Euler
  int clip = 1;   ///< 1: PSD clipping after each step
  double blowup = 1e4;
  std::uint64_t seed = 0;
  double V0[16 * 16];  ///< row-major m x m (m <= 16)
};

/// Writes V (m x m, leading dimension ld) to dst (leading dimension m).
ST_HD inline void store(const double* V, int ld, double* dst, int m) {
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) dst[i * m + j] = V[i * ld + j];
}

/// A whole path (sde.hpp's solver): saves V at save_steps[0..nsave) into out
/// (nsave x m x m), NaN after a blow-up.  Returns the blow-up step (-1: never) and
/// counts PSD projections.  MM bounds m; FIXED: m == MM at compile time (the GPU
/// kernels for m = 4 and 8: the m x m loops unroll).
template <int MM, bool FIXED, class Problem>
ST_HD inline std::int64_t solve_path(const Problem& p, const std::int64_t* save_steps, int nsave, std::uint32_t path,
                                     double* out, std::int64_t& projections) {
  constexpr int MC = FIXED ? MM : 0;
  using Mat = MatRef<double, MC>;
  const int m = FIXED ? MM : p.m;
  double V[MM * MM], buf[kSdeMatrices * MM * MM + 3 * MM], dW[2 * MM * MM];
  SdeState<ScalarLanes, MC> s;
  Mat drift, incr;
  sde_state_layout(s, V, buf, m, MM, drift, incr);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) V[i * MM + j] = 0.5 * (p.V0[i * m + j] + p.V0[j * m + i]);
  projections = 0;
  int k = 0;
  const int mm = m * m;
  while (k < nsave && save_steps[k] == 0) store(V, MM, out + std::int64_t(k++) * mm, m);
  bool have_root = false;
  std::int64_t result = -1;
  const double sd = sqrt_d(p.dt);
  const bool normalize = sde_normalizes(p.blocks, p.nblocks);
  double r[MM];
  for (std::int64_t st = 0; st < p.steps; ++st) {
    if (!have_root) psd_root<MM>(V, s.L.data(), m);
    s.tri = is_lower(s.L);
    have_root = false;
    auto normals = [&](int b, int dim, double* z) {
      fill_normal(Key{p.seed, path, std::uint32_t(st), matrix_id::kSdeBase + std::uint32_t(b)}, 0, dim, z);
      for (int i = 0; i < dim; ++i) z[i] *= sd;
    };
    sde_increment<ScalarLanes, MC>(p.blocks, p.nblocks, s, p.dt, p.tamed != 0, normals, dW, drift, incr);
    if (apply_increment<ScalarLanes, MC>(s.V, incr, p.blowup, normalize, r)) {
      result = st + 1;
      break;
    }
    if (p.clip) {
      if (psd_clip_root<MM>(V, s.L.data(), m)) {
        ++projections;
        if (normalize) {  // back to unit diagonal, the root with it (as on the CPU)
          Mat L = s.L;
          normalize_to_correlation<ScalarLanes, MC>(s.V, r, &L);
        }
      }
      have_root = true;
    }
    while (k < nsave && save_steps[k] == st + 1) store(V, MM, out + std::int64_t(k++) * mm, m);
  }
  for (; k < nsave; ++k)
    for (int i = 0; i < mm; ++i) out[std::int64_t(k) * mm + i] = nan_d();
  return result;
}

/// The launch variants of the SDE kernel (kernels.cu) and of its CPU twin
/// (host_solve_path): the fixed m = 4 and m = 8 instances, and bounds 4, 8, 16.
enum class SdeVariant { Fixed4, Fixed8, Bound4, Bound8, Bound16 };
ST_HD inline SdeVariant sde_variant(int m) {
  return m == 4   ? SdeVariant::Fixed4
         : m == 8 ? SdeVariant::Fixed8
         : m <= 4 ? SdeVariant::Bound4
         : m <= 8 ? SdeVariant::Bound8
                  : SdeVariant::Bound16;
}

}  // namespace shaped_transformer::device
