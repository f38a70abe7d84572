// The batched exact attention chain (exact/batch.hpp), written once for the lanes
// `Ln` of simd/lanes.hpp: cpp/src/exact_kernels.cpp (portable, W = 1),
// exact_kernels_avx2.cpp (W = 4) and exact_kernels_avx512.cpp (W = 8) instantiate it.
// Every lane only reads its own data and every kernel runs the same operations per
// lane, so all kernels give the same numbers.  Scalar pieces that all kernels share
// (the gamma log test, the Wishart factor of a lane that needs a second proposal,
// the PSD root of a lane whose Cholesky fails) are compiled once in
// exact_kernels.cpp and sde_kernels.cpp (detail::...).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "../exact/batch.hpp"
#include "../exact_common.hpp"
#include "../math/cholesky.hpp"
#include "../math/samplers.hpp"
#include "../parallel.hpp"
#include "../sde/batch.hpp"
#include "../simd/lane_rng.hpp"

namespace shaped_transformer::exact_batch::kernels {

/// Lanes of scratch a lane_normals / lane_uniforms call may write for `count` numbers.
inline constexpr int lane_buffer(int count) { return 16 * ((count + 15) / 16); }

/// Lane Bartlett factor B (lower triangular, B B^T ~ Wishart_m(df)): the draws of
/// exact_small::wishart, lane by lane.  Lanes whose gamma variates need more than
/// the first proposal (or whose log test is close) are redrawn by the scalar
/// sampler (same numbers).  N: scratch of >= 4 * ceil(m (m + 1) / 8) lanes.
template <class Ln, int MC>
inline void wishart_lanes(int m, double df, std::uint64_t seed, std::uint32_t mat_normal, std::uint32_t mat_uniform,
                          std::uint32_t block, std::uint32_t sample0, const unsigned char* alive, typename Ln::D* N,
                          typename Ln::D* U, typename Ln::D* B) {
  using VD = typename Ln::D;
  using VL = typename Ln::M;
  constexpr int W = Ln::W;
  const auto vset = [](double x) { return Ln::splat(x); };
  const int nn = m * (m + 1) / 2;
  simd::lane_normals<Ln>(seed, mat_normal, block, sample0, (nn + 3) / 4, 1.0, N);
  simd::lane_uniforms<Ln>(seed, mat_uniform, block, sample0, m, U);
  VL redo = VL{};  // lanes for the scalar sampler
  for (int i = 0; i < m; ++i) {
    const double shape = 0.5 * (df - double(i));
    const int base = i * (i + 1) / 2;
    for (int j = 0; j < i; ++j) B[i * m + j] = N[base + 1 + j];
    for (int j = i + 1; j < m; ++j) B[i * m + j] = vset(0.0);
    if (!(shape >= 1.0)) {  // gamma_variate's boost: uniforms first, rare here
      redo = (VL{} == VL{});
      B[i * m + i] = vset(1.0);
      continue;
    }
    const GammaProposal g(shape);  // the first Marsaglia-Tsang proposal of every lane
    const VD x = N[base];
    VD v = g.base(x);
    redo |= v <= vset(0.0);
    v = v * v * v;
    const VD u = U[i];
    const VD x2 = x * x;
    const VL squeeze = (VL)g.squeeze(u, x2);
    for (int l = 0; l < W; ++l)
      if (!squeeze[l] && !redo[l] && alive[l] && !detail::gamma_log_accept(shape, u[l], x2[l], v[l])) redo[l] = -1;
    B[i * m + i] = Ln::sqrt(vset(2.0) * (vset(g.d) * v));
  }
  for (int l = 0; l < W; ++l)
    if (redo[l] && alive[l]) {
      double b[kMaxM * kMaxM];
      detail::wishart_lane(df, m, Stream{seed, sample0 + std::uint32_t(l), block, mat_normal},
                           Stream{seed, sample0 + std::uint32_t(l), block, mat_uniform}, b);
      for (int k = 0; k < m * m; ++k) B[k][l] = b[k];
    }
}

/// Y = A B for m x m lane matrices (row-major), summed in k order.
template <class Ln, int MC>
inline void mul(int m, const typename Ln::D* A, const typename Ln::D* Bm, typename Ln::D* Y) {
  using VD = typename Ln::D;
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) {
      VD s = A[i * m] * Bm[j];
      for (int k = 1; k < m; ++k) s = Ln::madd(A[i * m + k], Bm[k * m + j], s);
      Y[i * m + j] = s;
    }
}

/// Y = A B^T.
template <class Ln, int MC>
inline void mul_t(int m, const typename Ln::D* A, const typename Ln::D* Bm, typename Ln::D* Y) {
  using VD = typename Ln::D;
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) {
      VD s = A[i * m] * Bm[j * m];
      for (int k = 1; k < m; ++k) s = Ln::madd(A[i * m + k], Bm[j * m + k], s);
      Y[i * m + j] = s;
    }
}

/// Y = A B with B lower triangular (k >= j only).
template <class Ln, int MC>
inline void mul_lower(int m, const typename Ln::D* A, const typename Ln::D* Bm, typename Ln::D* Y) {
  using VD = typename Ln::D;
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) {
      VD s = A[i * m + j] * Bm[j * m + j];
      for (int k = j + 1; k < m; ++k) s = Ln::madd(A[i * m + k], Bm[k * m + j], s);
      Y[i * m + j] = s;
    }
}

/// Y = A B with A lower triangular (k <= i only).
template <class Ln, int MC>
inline void lower_mul(int m, const typename Ln::D* A, const typename Ln::D* Bm, typename Ln::D* Y) {
  using VD = typename Ln::D;
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) {
      VD s = A[i * m] * Bm[j];
      for (int k = 1; k <= i; ++k) s = Ln::madd(A[i * m + k], Bm[k * m + j], s);
      Y[i * m + j] = s;
    }
}

template <class Ln>
struct Work {
  typename Ln::D *V, *L, *B, *Z, *Mk, *T, *Y, *C, *P, *CB, *Q, *N, *U;
};

/// One attention block on every lane (exact_small::attention's steps and draws).
template <class Ln, int MC>
inline void attention_lanes(const Params& p, const BlockParams& b, std::uint32_t block, std::uint32_t sample0,
                            const unsigned char* alive, Work<Ln>& w, double* tV, double* tL) {
  using VD = typename Ln::D;
  using VL = typename Ln::M;
  constexpr int W = Ln::W;
  const auto vset = [](double x) { return Ln::splat(x); };
  namespace mid = matrix_id;
  const int m = MC > 0 ? MC : p.m, mm = m * m;
  VD *V = w.V, *L = w.L, *B = w.B, *Z = w.Z, *T = w.T, *Y = w.Y, *C = w.C, *P = w.P, *Q = w.Q;
  // root of V: lane Cholesky, psd_root for the lanes where it fails
  const VL ok = cholesky_lanes<Ln, MC>(m, V, L);
  bool tri = true;
  for (int l = 0; l < W; ++l) {
    if (ok[l] || !alive[l]) continue;
    for (int i = 0; i < mm; ++i) tV[i] = V[i][l];
    sde::batch_lane_root(tV, tL, m, false);
    for (int i = 0; i < mm; ++i) L[i][l] = tL[i];
    tri = false;
  }
  const double n = double(p.n);
  const double tau = b.tau0 * std::sqrt(n * b.nk);
  const std::uint32_t head0 = mid::kExactBase + 8u;  // ExactKey::head_stream(0, .)
  // key product M = chol(Wishart_m(n_k)) Z
  wishart_lanes<Ln, MC>(m, b.nk, p.seed, head0 + ExactKey::kKeyWishart, head0 + ExactKey::kKeyUniform, block, sample0,
                    alive, w.N, w.U, B);
  simd::lane_normals<Ln>(p.seed, head0 + ExactKey::kKeyGauss, block, sample0, (mm + 3) / 4, 1.0, Z);
  lower_mul<Ln, MC>(m, B, Z, w.Mk);
  if (tri) lower_mul<Ln, MC>(m, L, w.Mk, T);
  else mul<Ln, MC>(m, L, w.Mk, T);
  mul_t<Ln, MC>(m, T, L, Y);
  // softmax rows, then A = alpha I + beta (S - C)
  for (int i = 0; i < m; ++i) {
    const int k = b.causal ? i + 1 : m;
    for (int j = 0; j < k; ++j) Y[i * m + j] = Y[i * m + j] / tau;
    VD mx = Y[i * m];
    for (int j = 1; j < k; ++j) mx = Y[i * m + j] > mx ? Y[i * m + j] : mx;
    VD sum = vset(0.0);
    for (int j = 0; j < k; ++j) sum += (Y[i * m + j] = Ln::exp(Y[i * m + j] - mx));
    for (int j = 0; j < k; ++j) Y[i * m + j] = Y[i * m + j] / sum;
    for (int j = k; j < m; ++j) Y[i * m + j] = vset(0.0);
    const double c = 1.0 / double(k);
    for (int j = 0; j < m; ++j) Y[i * m + j] = vset(b.beta) * (Y[i * m + j] - vset(j < k ? c : 0.0));
    Y[i * m + i] += b.alpha;
  }
  if (tri) mul_lower<Ln, MC>(m, Y, L, C);
  else mul<Ln, MC>(m, Y, L, C);
  // value mix with H = 1
  simd::lane_normals<Ln>(p.seed, mid::kExactBase + 8u + ExactKey::kValueZ, block, sample0, (mm + 3) / 4, 1.0, Z);
  mul<Ln, MC>(m, C, Z, P);
  wishart_lanes<Ln, MC>(m, n - double(m), p.seed, mid::kExactBase + ExactKey::kR, mid::kExactBase + ExactKey::kRUniform,
                    block, sample0, alive, w.N, w.U, B);
  mul_lower<Ln, MC>(m, C, B, w.CB);
  mul_t<Ln, MC>(m, L, P, T);
  mul_t<Ln, MC>(m, P, P, Q);
  mul_t<Ln, MC>(m, w.CB, w.CB, Y);
  const double HN = n;
  const VD ll = vset(b.lambda * b.lambda), lg = vset(b.lambda * b.gamma / std::sqrt(HN)),
           gg = vset(b.gamma * b.gamma / HN);
  for (int i = 0; i < mm; ++i) Q[i] = Q[i] + Y[i];
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) {
      VD o = ll * V[i * m + j];
      o = o + lg * (T[i * m + j] + T[j * m + i]);
      C[i * m + j] = o + gg * Q[i * m + j];  // C is free again: out
    }
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) V[i * m + j] = vset(0.5) * (C[i * m + j] + C[j * m + i]);
}

template <class Ln, int MC>
void run_exact_impl(const Params& p, const double* V0, std::uint32_t sample0, int count, double* out,
                    std::int64_t* exploded, const CancelToken* cancel) {
  using VD = typename Ln::D;
  using VL = typename Ln::M;
  constexpr int W = Ln::W;
  const auto vset = [](double x) { return Ln::splat(x); };
  const int m = MC > 0 ? MC : p.m, mm = m * m;
  const std::size_t nsave = p.nsave, nblocks = p.blocks.size();
  const int stride = lane_buffer(mm);  // lane_normals writes whole multiples of 16 normals
  std::vector<VD> buf(std::size_t(12 * stride + lane_buffer(m)));
  Work<Ln> w;
  VD* q = buf.data();
  for (VD** v : {&w.V, &w.L, &w.B, &w.Z, &w.Mk, &w.T, &w.Y, &w.C, &w.P, &w.CB, &w.Q, &w.N}) {
    *v = q;
    q += stride;
  }
  w.U = q;
  double tV[kMaxM * kMaxM], tL[kMaxM * kMaxM];
  unsigned char alive[W];
  for (int l = 0; l < W; ++l) {
    alive[l] = l < count ? 1 : 0;
    if (l < count) exploded[l] = -1;
  }
  for (int i = 0; i < mm; ++i) w.V[i] = vset(V0[i]);
  std::size_t k = 0;
  auto save = [&](std::int64_t layer) {
    for (; k < nsave && (layer < 0 || p.save_at[k] == layer); ++k)
      for (int l = 0; l < count; ++l) {
        double* o = out + (std::size_t(l) * nsave + k) * std::size_t(mm);
        for (int i = 0; i < mm; ++i) o[i] = alive[l] ? w.V[i][l] : std::numeric_limits<double>::quiet_NaN();
      }
  };
  save(0);
  for (int layer = 0; layer < p.depth; ++layer) {
    if (cancel && cancel->stop_requested()) return;
    VD bad = vset(0.0);  // NaN in the lanes that overflowed inside the layer
    for (std::size_t bi = 0; bi < nblocks; ++bi) {
      attention_lanes<Ln, MC>(p, p.blocks[bi], std::uint32_t(std::size_t(layer) * nblocks + bi), sample0, alive, w, tV,
                          tL);
      for (int i = 0; i < mm; ++i) bad += w.V[i] * 0.0;
    }
    VD maxdiag = w.V[0];
    for (int a = 1; a < m; ++a) maxdiag = w.V[a * m + a] > maxdiag ? w.V[a * m + a] : maxdiag;
    const VL stop = (bad != vset(0.0)) | !(maxdiag <= vset(p.blowup));
    bool any = false;
    for (int l = 0; l < W; ++l) {
      if (alive[l] && stop[l]) {
        alive[l] = 0;
        exploded[l] = layer + 1;
      }
      if (!alive[l])  // park the lane at the identity
        for (int a = 0; a < m; ++a)
          for (int c = 0; c < m; ++c) w.V[a * m + c][l] = a == c ? 1.0 : 0.0;
      any = any || alive[l];
    }
    if (!any) break;
    save(layer + 1);
  }
  save(-1);  // saves not reached: NaN
}

/// The kernel of the lanes Ln (a BatchFn): fixed-size loops for m = 8.
template <class Ln>
void run_exact(const Params& p, const double* V0, std::uint32_t sample0, int count, double* out,
               std::int64_t* exploded, const CancelToken* cancel) {
  if (p.m == 8) run_exact_impl<Ln, 8>(p, V0, sample0, count, out, exploded, cancel);
  else run_exact_impl<Ln, 0>(p, V0, sample0, count, out, exploded, cancel);
}

}  // namespace shaped_transformer::exact_batch::kernels
