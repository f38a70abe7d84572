// The batched SDE step (sde/batch.hpp), written once for the lanes `Ln` of
// simd/lanes.hpp: cpp/src/sde_kernels.cpp (portable, W = 1),
// sde_kernels_avx2.cpp (W = 4) and sde_kernels_avx512.cpp (W = 8) instantiate it with
// the lanes of their instruction set.  No operation below depends on W except
// through the lanes, and every lane only reads its own data, so all kernels give the
// same numbers per path.  The only freedom used is that the products skip the zero
// upper triangle of a Cholesky factor when every lane has one: adding an exact zero
// (fma(0, x, acc)) leaves acc unchanged except for the sign of a zero, so values
// compare equal either way.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "../math/cholesky.hpp"
#include "../parallel.hpp"
#include "../rng.hpp"
#include "../sde/batch.hpp"
#include "../simd/lane_rng.hpp"

namespace shaped_transformer::sde::kernels {

/// Roots of all lanes: the lane Cholesky, and the scalar remedy (shared by every
/// kernel) for live lanes where it fails.  Returns true when every L is triangular.
template <class Ln, int MC>
inline bool root_lanes(int m, typename Ln::D* V, typename Ln::D* L, bool clip, const unsigned char* alive, std::int64_t* projections,
                       double* tV, double* tL) {
  const typename Ln::M ok = cholesky_lanes<Ln, MC>(m, V, L);
  bool tri = true;
  for (int l = 0; l < Ln::W; ++l) {
    if (ok[l] || !alive[l]) continue;
    for (int i = 0; i < m * m; ++i) tV[i] = V[i][l];
    if (batch_lane_root(tV, tL, m, clip)) ++projections[l];
    for (int i = 0; i < m * m; ++i) {
      V[i][l] = tV[i];
      L[i][l] = tL[i];
    }
    tri = false;
  }
  return tri;
}

template <class Ln, int MC>
void run_batch_impl(const BatchParams& p, const double* V0, std::uint32_t path0, int count, BatchSink& sink,
                    std::int64_t* exploded, std::int64_t* projections, const CancelToken* cancel) {
  using VD = typename Ln::D;
  using VL = typename Ln::M;
  constexpr int W = Ln::W;
  const auto vset = [](double x) { return Ln::splat(x); };
  const int m = MC > 0 ? MC : p.m;
  const int mm = m * m;
  const int groups = (2 * mm + 3) / 4;
  const double inv_m = 1.0 / double(m), inv_2m = 0.5 / double(m);
  const double sd = std::sqrt(p.dt);
  std::vector<VD> buf(std::size_t(6 * mm + 16 * ((groups + 3) / 4)));  // lane_normals may round up to 4 groups
  VD* V = buf.data();
  VD* L = V + mm;
  VD* VP = L + mm;
  VD* R = VP + mm;
  VD* Q = R + mm;
  VD* S = Q + mm;
  VD* dW = S + mm;  // 4 groups normals
  VD r[kBatchMaxM], w[kBatchMaxM], wV[kBatchMaxM];
  double tV[kBatchMaxM * kBatchMaxM], tL[kBatchMaxM * kBatchMaxM];  // the scalar remedy's lane
  unsigned char alive[W];
  std::int64_t proj[W];
  for (int l = 0; l < W; ++l) {
    alive[l] = l < count ? 1 : 0;
    proj[l] = 0;
    if (l < count) exploded[l] = -1;
  }
  for (int a = 0; a < m; ++a)
    for (int b = 0; b < m; ++b) V[a * m + b] = vset(0.5 * (V0[a * m + b] + V0[b * m + a]));
  // Lanes past `count` integrate V0 too (wasted work, never saved).
  bool tri = root_lanes<Ln, MC>(m, V, L, false, alive, proj, tV, tL);
  std::size_t next_save = 0;
  auto do_saves = [&](std::int64_t step) {
    while (next_save < p.nsave && p.save_steps[next_save] == step)
      sink.save(next_save++, reinterpret_cast<const double*>(V), W, alive);
  };
  do_saves(0);
  const std::size_t nblocks = p.c1.size();
  for (std::int64_t k = 0; k < p.steps; ++k) {
    if (cancel && cancel->stop_requested()) break;
    const std::uint32_t step = std::uint32_t(k);
    // ---- drift (shaped_attention.hpp, sde_drift), all blocks at once ----
    for (int a = 0; a < m; ++a) {
      VD s = V[a * m];
      for (int j = 1; j < m; ++j) s += V[a * m + j];
      r[a] = s * inv_m;
    }
    for (int a = 0; a < m; ++a)
      for (int j = 0; j < m; ++j) VP[a * m + j] = V[a * m + j] - r[j];  // P V: column means (= row means) removed
    VD trPVP = vset(0.0), trVPVP = vset(0.0);
    for (int a = 0; a < m; ++a) {
      VD s = VP[a * m];
      for (int j = 1; j < m; ++j) s += VP[a * m + j];
      w[a] = VP[a * m + a] - s * inv_m;  // (P V P)_aa = (PV)_aa - row mean of PV
      trPVP += w[a];
    }
    for (int a = 0; a < m; ++a)
      for (int j = 0; j < m; ++j) trVPVP = Ln::madd(VP[a * m + j], VP[j * m + a], trVPVP);
    const VD trm = trPVP * inv_m;
    for (int a = 0; a < m; ++a) w[a] = (w[a] - trm) * inv_2m;
    for (int a = 0; a < m; ++a) {
      VD s = vset(0.0);
      for (int j = 0; j < m; ++j) s = Ln::madd(V[a * m + j], w[j], s);
      wV[a] = s;
    }
    const VD sv = trVPVP * (inv_m * inv_m);
    // S (upper triangle) <- drift
    VD norm2 = vset(0.0);
    for (int a = 0; a < m; ++a)
      for (int b = a; b < m; ++b) {
        const VD x = Ln::madd(sv, V[a * m + b], V[a * m + a] * wV[b] + V[b * m + b] * wV[a]) * p.kdrift;
        S[a * m + b] = x;
        norm2 = Ln::madd(x, x, a == b ? norm2 : Ln::madd(x, x, norm2));  // off-diagonal entries count twice
      }
    const VD fac = p.tamed ? vset(p.dt) / (Ln::madd(vset(p.dt), Ln::sqrt(norm2), vset(1.0))) : vset(p.dt);
    for (int a = 0; a < m; ++a)
      for (int b = a; b < m; ++b) S[a * m + b] *= fac;
    // ---- noise: R = L^T (P V), Q = sum_b c1 dZ L^T + c2 dXi R, N = L Q ----
    // R (stored in VP's partner R): R_aj = sum_k L_ka PV_kj.
    for (int a = 0; a < m; ++a)
      for (int j = 0; j < m; ++j) {
        VD s = vset(0.0);
        for (int kk = tri ? a : 0; kk < m; ++kk) s = Ln::madd(L[kk * m + a], VP[kk * m + j], s);
        R[a * m + j] = s;
      }
    for (std::size_t b = 0; b < nblocks; ++b) {
      simd::lane_normals<Ln>(p.seed, matrix_id::kSdeBase + std::uint32_t(b), step, path0, groups, sd, dW);
      const VD* dZ = dW;
      const VD* dX = dW + mm;
      const double c1 = p.c1[b], c2 = p.c2[b];
      for (int a = 0; a < m; ++a)
        for (int j = 0; j < m; ++j) {
          VD s1 = vset(0.0), s2 = vset(0.0);
          const int kend = tri ? j + 1 : m;
          for (int kk = 0; kk < kend; ++kk) s1 = Ln::madd(dZ[a * m + kk], L[j * m + kk], s1);
          for (int kk = 0; kk < m; ++kk) s2 = Ln::madd(dX[a * m + kk], R[kk * m + j], s2);
          const VD q = Ln::madd(vset(c2), s2, s1 * c1);
          Q[a * m + j] = b == 0 ? q : Q[a * m + j] + q;
        }
    }
    // N = L Q; V += drift increment + N + N^T (upper triangle, then mirrored).
    for (int a = 0; a < m; ++a)
      for (int j = 0; j < m; ++j) {
        VD s = vset(0.0);
        const int kend = tri ? a + 1 : m;
        for (int kk = 0; kk < kend; ++kk) s = Ln::madd(L[a * m + kk], Q[kk * m + j], s);
        R[a * m + j] = s;  // R is free again
      }
    VD bad = vset(0.0), maxdiag = vset(-INFINITY);
    for (int a = 0; a < m; ++a)
      for (int b = a; b < m; ++b) {
        const VD x = V[a * m + b] + (S[a * m + b] + (R[a * m + b] + R[b * m + a]));
        V[a * m + b] = x;
        V[b * m + a] = x;
        bad += x * 0.0;  // NaN unless finite
        if (a == b) maxdiag = x > maxdiag ? x : maxdiag;
      }
    // ---- blow-up: non-finite or max diag > blowup (a NaN diag fails both tests) ----
    const VL stop = (bad != vset(0.0)) | (maxdiag > vset(p.blowup));
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
    tri = root_lanes<Ln, MC>(m, V, L, p.clip, alive, proj, tV, tL);
    do_saves(k + 1);
  }
  for (int l = 0; l < count; ++l) projections[l] = proj[l];
  // Saves not reached (blow-up of every lane, or cancellation) are the sink's NaN.
  if (next_save < p.nsave) {
    for (int l = 0; l < W; ++l) alive[l] = 0;
    while (next_save < p.nsave) sink.save(next_save++, reinterpret_cast<const double*>(V), W, alive);
  }
}

/// The kernel of the lanes Ln (a BatchFn): fixed-size loops for m = 4 and 8.
template <class Ln>
void run_batch(const BatchParams& p, const double* V0, std::uint32_t path0, int count, BatchSink& sink,
               std::int64_t* exploded, std::int64_t* projections, const CancelToken* cancel) {
  if (p.m == 8) run_batch_impl<Ln, 8>(p, V0, path0, count, sink, exploded, projections, cancel);
  else if (p.m == 4) run_batch_impl<Ln, 4>(p, V0, path0, count, sink, exploded, projections, cancel);
  else run_batch_impl<Ln, 0>(p, V0, path0, count, sink, exploded, projections, cancel);
}

}  // namespace shaped_transformer::sde::kernels
