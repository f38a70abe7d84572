// The batched SDE kernel (sde/batch.hpp): kernels/sde_step.hpp on the SIMD lanes `Ln`
// of simd/lanes.hpp, one path per lane.  cpp/src/sde_kernels.cpp (portable, W = 1),
// sde_kernels_avx2.cpp (W = 4) and sde_kernels_avx512.cpp (W = 8) instantiate it for
// the library's Network; kernels/instantiate.hpp for another network.  No operation
// depends on W except through the lanes, and every lane only reads its own data, so
// all kernels give the same numbers per path.  The roots: the lanes' Cholesky factor
// (math/cholesky.hpp) where it is safe, the scalar remedy (batch_lane_root, compiled
// once) for the other lanes; the products skip the zero upper triangle of the factor
// when every lane has one (an exact zero changes nothing but the sign of a zero).
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "../math/cholesky.hpp"
#include "../parallel.hpp"
#include "../rng.hpp"
#include "../sde/batch.hpp"
#include "../simd/lane_rng.hpp"
#include "../simd/lanes.hpp"
#include "sde_step.hpp"

namespace shaped_transformer::sde::kernels {

/// Roots of all lanes: the lane Cholesky, and the scalar remedy (shared by every
/// kernel) for live lanes where it fails.  Returns true when every L is triangular.
/// normalize (normalized blocks): a projected lane is mapped back to unit diagonal, its
/// root with it (normalize_to_correlation, as the generic solver's clip).
template <class Ln, int MC>
inline bool root_lanes(int m, typename Ln::D* V, typename Ln::D* L, bool clip, const unsigned char* alive,
                       std::int64_t* projections, double* tV, double* tL, bool normalize = false) {
  const typename Ln::M ok = cholesky_lanes<Ln, MC>(m, V, L);
  bool tri = true;
  for (int l = 0; l < Ln::W; ++l) {
    if (ok[l] || !alive[l]) continue;
    for (int i = 0; i < m * m; ++i) tV[i] = V[i][l];
    if (batch_lane_root(tV, tL, m, clip)) {
      ++projections[l];
      if (normalize) {
        double r[kBatchMaxM];
        MatRef<double> lv(tV, m), ll(tL, m);
        normalize_to_correlation<ScalarLanes, 0>(lv, r, &ll);
      }
    }
    for (int i = 0; i < m * m; ++i) {
      V[i][l] = tV[i];
      L[i][l] = tL[i];
    }
    tri = false;
  }
  return tri;
}

/// Lanes of scratch a lane_normals call may write for `count` numbers.
inline constexpr int lane_buffer(int count) { return 16 * ((count + 15) / 16); }

template <class Net, class Ln, int MC>
void run_batch_impl(const BatchParams<Net>& p, const double* V0, std::uint32_t path0, int count, BatchSink& sink,
                    std::int64_t* exploded, std::int64_t* projections, const CancelToken* cancel) {
  using D = typename Ln::D;
  constexpr int W = Ln::W;
  const int m = MC > 0 ? MC : p.m;
  const int mm = m * m;
  const double sd = std::sqrt(p.dt);
  std::vector<D> buf(std::size_t(mm + sde_state_lanes(m) + lane_buffer(p.noise_dim)));
  D* V = buf.data();
  D* dW = V + mm + sde_state_lanes(m);
  SdeState<Ln, MC> s;
  MatRef<D, MC> drift, incr;
  sde_state_layout(s, V, V + mm, m, m, drift, incr);
  D* L = s.L.data();
  double tV[kBatchMaxM * kBatchMaxM], tL[kBatchMaxM * kBatchMaxM];  // the scalar remedy's lane
  unsigned char alive[W];
  std::int64_t proj[W];
  for (int l = 0; l < W; ++l) {
    alive[l] = l < count ? 1 : 0;
    proj[l] = 0;
    if (l < count) exploded[l] = -1;
  }
  for (int a = 0; a < m; ++a)
    for (int b = 0; b < m; ++b) V[a * m + b] = Ln::splat(0.5 * (V0[a * m + b] + V0[b * m + a]));
  // Lanes past `count` integrate V0 too (wasted work, never saved).
  s.tri = root_lanes<Ln, MC>(m, V, L, false, alive, proj, tV, tL);
  std::size_t next_save = 0;
  auto do_saves = [&](std::int64_t step) {
    while (next_save < p.nsave && p.save_steps[next_save] == step)
      sink.save(next_save++, reinterpret_cast<const double*>(V), W, alive);
  };
  do_saves(0);
  const int nblocks = int(p.blocks.size());
  const bool normalize = sde_normalizes(p.blocks.data(), nblocks);
  for (std::int64_t k = 0; k < p.steps; ++k) {
    if (cancel && cancel->stop_requested()) break;
    const std::uint32_t step = std::uint32_t(k);
    auto normals = [&](int b, int dim, D* out) {
      simd::lane_normals<Ln>(p.seed, matrix_id::kSdeBase + std::uint32_t(b), step, path0, (dim + 3) / 4, sd, out);
    };
    sde_increment<Ln, MC>(p.blocks.data(), nblocks, s, p.dt, p.tamed, normals, dW, drift, incr);
    const typename Ln::M stop = apply_increment<Ln, MC>(s.V, incr, p.blowup, normalize, s.vec[0]);
    bool any_alive = false;
    for (int l = 0; l < W; ++l) {
      if (alive[l] && stop[l]) {
        alive[l] = 0;
        exploded[l] = k + 1;
      }
      if (!alive[l]) {  // park the lane at the identity (root: itself)
        for (int a = 0; a < m; ++a)
          for (int c = 0; c < m; ++c) V[a * m + c][l] = a == c ? 1.0 : 0.0;
      }
      any_alive = any_alive || alive[l];
    }
    if (!any_alive) break;
    s.tri = root_lanes<Ln, MC>(m, V, L, p.clip, alive, proj, tV, tL, normalize);
    do_saves(k + 1);
  }
  for (int l = 0; l < count; ++l) projections[l] = proj[l];
  // Saves not reached (blow-up of every lane, or cancellation) are the sink's NaN.
  if (next_save < p.nsave) {
    for (int l = 0; l < W; ++l) alive[l] = 0;
    while (next_save < p.nsave) sink.save(next_save++, reinterpret_cast<const double*>(V), W, alive);
  }
}

/// The kernel of the lanes Ln for Net (a BatchFn): fixed-size loops for m = 4 and 8.
template <class Net, class Ln>
void run_batch(const BatchParams<Net>& p, const double* V0, std::uint32_t path0, int count, BatchSink& sink,
               std::int64_t* exploded, std::int64_t* projections, const CancelToken* cancel) {
  if (p.m == 8) run_batch_impl<Net, Ln, 8>(p, V0, path0, count, sink, exploded, projections, cancel);
  else if (p.m == 4) run_batch_impl<Net, Ln, 4>(p, V0, path0, count, sink, exploded, projections, cancel);
  else run_batch_impl<Net, Ln, 0>(p, V0, path0, count, sink, exploded, projections, cancel);
}

}  // namespace shaped_transformer::sde::kernels

namespace shaped_transformer::sde {

/// batch_kernel for a network other than the library's: its portable kernel, and the
/// SIMD builds SimdBatch<Net> provides.
template <class Net>
BatchKernel<Net> batch_kernel(const char* name) {
  return choose_simd_kernel<BatchKernel<Net>>(name, &SimdBatch<Net>::get,
                                              &kernels::run_batch<Net, simd::portable::Lanes>);
}

}  // namespace shaped_transformer::sde
