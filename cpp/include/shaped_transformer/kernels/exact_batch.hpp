// The batched exact chain (exact/batch.hpp): every block's exact step (the faces of
// the block headers, exact_common.hpp) on the SIMD lanes `Ln` of simd/lanes.hpp, one
// sample per lane.  cpp/src/exact_kernels.cpp (portable, W = 1),
// exact_kernels_avx2.cpp (W = 4) and exact_kernels_avx512.cpp (W = 8) instantiate it
// for the library's Network; kernels/instantiate.hpp for another network.  Every lane
// only reads its own data and every kernel runs the same operations per lane, so all
// kernels give the same numbers.  Each lane draws exactly the random numbers of the
// generic chain in the same order: the Philox normals and uniforms of its own streams
// (simd/lane_rng.hpp), and the Marsaglia-Tsang gamma variates of the Bartlett factors
// accepted lane by lane; a lane that needs a second proposal (or a shape < 1) redraws
// its factor with the scalar sampler (same draws).  Scalar pieces every kernel shares
// (that sampler, the gamma log test, the PSD root of a lane whose Cholesky factor
// fails, the MLP's Gram kernel) are compiled once, outside the SIMD units.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "../exact/batch.hpp"
#include "../exact/mlp_gram.hpp"
#include "../exact_common.hpp"
#include "../math/cholesky.hpp"
#include "../math/samplers.hpp"
#include "../parallel.hpp"
#include "../sde/batch.hpp"
#include "../simd/lane_rng.hpp"
#include "../simd/lanes.hpp"

namespace shaped_transformer::exact_batch::kernels {

/// Lanes of scratch a lane_normals / lane_uniforms call may write for `count` numbers.
inline constexpr int lane_buffer(int count) { return 16 * ((count + 15) / 16); }

/// The exact faces' context (exact_common.hpp) for W samples at once.
template <class Lanes, int Fixed>
class LaneCtx {
 public:
  using Ln = Lanes;
  using D = typename Ln::D;
  static constexpr int MC = Fixed;
  using Mat = MatRef<D, MC>;
  using Dyn = MatRef<D, 0>;

  int m;
  long n;
  Mat V;
  D* s = nullptr;  ///< LayerNorm's state s (m lanes: carry_s), when the network carries it

  LaneCtx(int m_, long n_, int wide_max, std::uint64_t seed, std::uint32_t sample0, const unsigned char* alive,
          const CancelToken* cancel)
      : m(m_),
        n(n_),
        wmax_(wide_max),
        seed_(seed),
        sample0_(sample0),
        alive_(alive),
        cancel_(cancel),
        buf_(std::size_t((1 + kExactScratch) * m_ * m_ + 2 * m_ * wide_max + 2 * m_ + 2 * lane_buffer(m_ * m_))) {
    V = Mat(buf_.data(), m, m, m);
  }
  void set_block(std::uint32_t block) { block_ = block; }
  /// Carries LayerNorm's state: s = s0 (m numbers) in every lane.
  void carry_s(const double* s0) {
    s = vec() + m;
    for (int a = 0; a < m; ++a) s[a] = Ln::splat(s0[a]);
  }

  Mat tmp(int i) { return Mat(buf_.data() + (1 + i) * m * m, m, m, m); }
  Dyn wide(int i, int cols) { return Dyn(wide_base() + i * m * wmax_, m, cols, cols); }
  D* vec() { return wide_base() + 2 * m * wmax_; }

  /// The lanes' Cholesky factor, the scalar remedy (psd_root's rule) where it fails.
  template <class VA, class VL>
  bool root(VA A, VL L) {
    const typename Ln::M ok = cholesky_lanes<Ln, MC>(m, A.data(), L.data());
    bool tri = true;
    double tA[kMaxM * kMaxM], tL[kMaxM * kMaxM];
    for (int l = 0; l < Ln::W; ++l) {
      if (ok[l] || !alive_[l]) continue;
      for (int i = 0; i < m * m; ++i) tA[i] = A.data()[i][l];
      sde::batch_lane_root(tA, tL, m, false);
      for (int i = 0; i < m * m; ++i) L.data()[i][l] = tL[i];
      tri = false;
    }
    return tri;
  }

  /// G(i, j) = normal i cols + j of every lane's stream id.
  template <class VG>
  void gaussian(std::uint32_t id, VG G) {
    const int rows = G.rows(), cols = G.cols();
    D* z = normals_base();
    simd::lane_normals<Ln>(seed_, matrix_id::kExactBase + id, block_, sample0_, (rows * cols + 3) / 4, 1.0, z);
    for (int i = 0; i < rows; ++i)
      for (int j = 0; j < cols; ++j) G(i, j) = z[i * cols + j];
  }

  /// wishart_factor's draws in every lane: the Bartlett factor's first proposals for
  /// all lanes at once, the scalar sampler for a lane that needs more; the singular
  /// Wishart's plain normals.
  template <class VB>
  void wishart(double df, int p, std::uint32_t idn, std::uint32_t idu, VB B) {
    using M = typename Ln::M;
    for (int i = 0; i < p; ++i)
      for (int j = 0; j < p; ++j) B(i, j) = Ln::splat(0.0);
    if (df <= 0.0) return;
    D* N = normals_base();
    if (!(df > double(p - 1))) {  // integer df <= p - 1: B = G (p x df), row by row
      const int k = int(df + 0.5);
      simd::lane_normals<Ln>(seed_, matrix_id::kExactBase + idn, block_, sample0_, (p * k + 3) / 4, 1.0, N);
      for (int i = 0; i < p; ++i)
        for (int j = 0; j < k; ++j) B(i, j) = N[i * k + j];
      return;
    }
    D* U = N + lane_buffer(m * m);
    const std::uint32_t mn = matrix_id::kExactBase + idn, mu = matrix_id::kExactBase + idu;
    simd::lane_normals<Ln>(seed_, mn, block_, sample0_, (p * (p + 1) / 2 + 3) / 4, 1.0, N);
    simd::lane_uniforms<Ln>(seed_, mu, block_, sample0_, p, U);
    M redo = M{};  // lanes for the scalar sampler
    for (int i = 0; i < p; ++i) {
      const double shape = 0.5 * (df - double(i));
      const int base = i * (i + 1) / 2;  // row i draws its diagonal, then i normals
      for (int j = 0; j < i; ++j) B(i, j) = N[base + 1 + j];
      if (!(shape >= 1.0)) {  // gamma_variate's boost: uniforms first, rare here
        redo = Ln::all_true();
        B(i, i) = Ln::splat(1.0);
        continue;
      }
      const GammaProposal g(shape);  // the first Marsaglia-Tsang proposal of every lane
      const D x = N[base];
      D v = g.base(x);
      redo |= (M)(v <= Ln::splat(0.0));
      v = v * v * v;
      const D u = U[i];
      const D x2 = x * x;
      const M squeeze = (M)g.squeeze(u, x2);
      for (int l = 0; l < Ln::W; ++l)
        if (!squeeze[l] && !redo[l] && alive_[l] && !detail::gamma_log_accept(shape, u[l], x2[l], v[l])) redo[l] = -1;
      B(i, i) = Ln::sqrt(Ln::splat(2.0) * (Ln::splat(g.d) * v));
    }
    for (int l = 0; l < Ln::W; ++l)
      if (redo[l] && alive_[l]) {
        double b[kMaxM * kMaxM];
        detail::wishart_lane(df, p, Stream{seed_, sample0_ + std::uint32_t(l), block_, mn},
                             Stream{seed_, sample0_ + std::uint32_t(l), block_, mu}, b);
        for (int i = 0; i < p; ++i)
          for (int j = 0; j < p; ++j) B(i, j)[l] = b[i * p + j];
      }
  }

  /// The MLP's Gram matrix, lane by lane with the fused kernel (exact/mlp_gram.hpp).
  template <class VL, class VG>
  bool gram(VL Lin, double sp, double sm, VG G) {
    double Lr[kMaxM * kMaxM], g[kMaxM * kMaxM];
    for (int l = 0; l < Ln::W; ++l) {
      if (!alive_[l]) {
        for (int i = 0; i < m; ++i)
          for (int j = 0; j < m; ++j) G(i, j)[l] = i == j ? 1.0 : 0.0;
        continue;
      }
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < m; ++j) Lr[i * m + j] = Lin(i, j)[l];
      const Stream pre{seed_, sample0_ + std::uint32_t(l), block_, matrix_id::kExactBase + ExactKey::kPre};
      if (!exact_mlp::gram(pre, m, n, Lr, sp, sm, g, cancel_)) return false;
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < m; ++j) G(i, j)[l] = g[i * m + j];
    }
    return true;
  }

 private:
  D* wide_base() { return buf_.data() + (1 + kExactScratch) * m * m; }
  D* normals_base() { return vec() + 2 * m; }  // after vec() and s

  int wmax_;
  std::uint64_t seed_;
  std::uint32_t sample0_, block_ = 0;
  const unsigned char* alive_;
  const CancelToken* cancel_;
  std::vector<D> buf_;
};

template <class Net, class Ln, int MC>
void run_exact_impl(const Params<Net>& p, const double* V0, std::uint32_t sample0, int count, double* out,
                    std::int64_t* exploded, const CancelToken* cancel) {
  using D = typename Ln::D;
  constexpr int W = Ln::W;
  const int m = MC > 0 ? MC : p.m, mm = m * m;
  const std::size_t nsave = p.nsave, nblocks = p.blocks.size();
  unsigned char alive[W];
  for (int l = 0; l < W; ++l) {
    alive[l] = l < count ? 1 : 0;
    if (l < count) exploded[l] = -1;
  }
  LaneCtx<Ln, MC> c(m, p.n, p.wide, p.seed, sample0, alive, cancel);
  for (int i = 0; i < mm; ++i) c.V.data()[i] = Ln::splat(V0[i]);
  if (!p.s0.empty()) c.carry_s(p.s0.data());
  std::size_t k = 0;
  auto save = [&](std::int64_t layer) {
    for (; k < nsave && (layer < 0 || p.save_at[k] == layer); ++k)
      for (int l = 0; l < count; ++l) {
        double* o = out + (std::size_t(l) * nsave + k) * std::size_t(mm);
        for (int i = 0; i < mm; ++i) o[i] = alive[l] ? c.V.data()[i][l] : std::numeric_limits<double>::quiet_NaN();
      }
  };
  save(0);
  for (int layer = 0; layer < p.depth; ++layer) {
    if (cancel && cancel->stop_requested()) return;
    D bad = Ln::splat(0.0);  // NaN in the lanes that overflowed inside the layer
    for (std::size_t bi = 0; bi < nblocks; ++bi) {
      c.set_block(std::uint32_t(std::size_t(layer) * nblocks + bi));
      bool done = true;
      p.blocks[bi].visit([&](const auto& t) { done = exact_step(t, c); });
      if (!done) return;  // cancelled: the run is discarded
      for (int i = 0; i < mm; ++i) bad += c.V.data()[i] * 0.0;
    }
    D maxdiag = c.V(0, 0);
    for (int a = 1; a < m; ++a) maxdiag = c.V(a, a) > maxdiag ? c.V(a, a) : maxdiag;
    const typename Ln::M stop = (typename Ln::M)((bad != Ln::splat(0.0)) | !(maxdiag <= Ln::splat(p.blowup)));
    bool any = false;
    for (int l = 0; l < W; ++l) {
      if (alive[l] && stop[l]) {
        alive[l] = 0;
        exploded[l] = layer + 1;
      }
      if (!alive[l]) {  // park the lane at the identity (and s = 0: V - s s^T / n stays I)
        for (int a = 0; a < m; ++a)
          for (int b = 0; b < m; ++b) c.V(a, b)[l] = a == b ? 1.0 : 0.0;
        if (c.s)
          for (int a = 0; a < m; ++a) c.s[a][l] = 0.0;
      }
      any = any || alive[l];
    }
    if (!any) break;
    save(layer + 1);
  }
  save(-1);  // saves not reached: NaN
}

/// The kernel of the lanes Ln for Net (a BatchFn): fixed-size loops for m = 8.
template <class Net, class Ln>
void run_exact(const Params<Net>& p, const double* V0, std::uint32_t sample0, int count, double* out,
               std::int64_t* exploded, const CancelToken* cancel) {
  if (p.m == 8) run_exact_impl<Net, Ln, 8>(p, V0, sample0, count, out, exploded, cancel);
  else run_exact_impl<Net, Ln, 0>(p, V0, sample0, count, out, exploded, cancel);
}

}  // namespace shaped_transformer::exact_batch::kernels

namespace shaped_transformer::exact_batch {

/// kernel for a network other than the library's: its portable kernel, and the SIMD
/// builds SimdBatch<Net> provides.
template <class Net>
Kernel<Net> kernel(const char* name) {
  return choose_simd_kernel<Kernel<Net>>(name, &SimdBatch<Net>::get, &kernels::run_exact<Net, simd::portable::Lanes>);
}

}  // namespace shaped_transformer::exact_batch
