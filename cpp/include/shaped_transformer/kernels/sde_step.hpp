// One (tamed) Euler-Maruyama step of the covariance SDE (docs/model.md section 5),
// written once for every backend: the generic per-path solver (ScalarLanes, one path
// per host thread), the batched SIMD kernels (one path per vector lane,
// kernels/sde_batch.hpp) and the CUDA threads (device/sde_step.hpp).  The drift and
// noise of each block kind are the faces sde_drift / sde_noise in the kind's header,
// found by argument-dependent lookup on its terms type K::Sde; this file only sums
// them over the blocks of a layer (drifts add, noises are independent and add):
//   V <- V + b(V) f + sum_blocks noise_b(V, dW_b),   f = dt, or dt / (1 + dt |b(V)|_F)
// for the tamed scheme (Hutzenthaler, Jentzen and Kloeden 2012), computed on the upper
// triangle and mirrored, so V stays exactly symmetric.
//
// Normalized blocks (norm = pre/post RMS or LayerNorm, docs/norms.md sections 2-5): the
// state is a correlation matrix C, and the step is the "normalize" scheme of section 5:
// the same increment at V = C (plus, for pre-norm, the fast drift beta_fast of section
// 3.4 in the drift matrix, so the tamed scheme sees it), then V <- corr(V).  corr's
// second-order term is the Ito term of the correlation SDE, to O(dt): no Ito formula
// is coded here.  Every backend gets this from apply_increment (normalize = true).
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "../device/hd.hpp"
#include "../math/matrix.hpp"
#include "../mutation.hpp"
#include "../norm.hpp"
#include "block_list.hpp"

namespace shaped_transformer {

namespace detail {
template <class K, bool>
struct sde_face {
  using type = NoFace;
};
template <class K>
struct sde_face<K, true> {
  using type = typename K::Sde;
};
}  // namespace detail

namespace detail {
/// Whether an SDE terms type carries a placement (`norm`) and a fast-drift
/// coefficient (`fast`): the shaped blocks' terms do; a kind without a norm does not.
template <class T, class = void>
struct has_norm_terms : std::false_type {};
template <class T>
struct has_norm_terms<T, std::void_t<decltype(std::declval<const T&>().norm), decltype(std::declval<const T&>().fast)>>
    : std::true_type {};
}  // namespace detail

/// The placement of a block's SDE terms (Norm::None for a kind without one).
template <class T>
ST_HD inline Norm sde_norm_of(const T& t) {
  if constexpr (detail::has_norm_terms<T>::value) return t.norm;
  else return Norm::None;
}

/// Whether the blocks' SDE is the correlation SDE (their first block normalizes; the
/// drivers refuse layers whose blocks mix placements, network.hpp).
template <class Block>
ST_HD inline bool sde_normalizes(const Block* blocks, int nblocks) {
  Norm k = Norm::None;
  if (nblocks > 0) blocks[0].visit([&](const auto& t) { k = sde_norm_of(t); });
  return k != Norm::None;
}

/// The SDE face of kind K: its terms type K::Sde (NoFace when K has no SDE limit).
template <class K>
struct SdeFace : detail::sde_face<K, K::has_sde> {};

/// A block's SDE terms, for a network of kinds Kinds...
template <class... Kinds>
using SdeBlock = FaceBlock<SdeFace, Kinds...>;

/// Scratch m x m matrices the drift and noise faces may use (a face uses tmp[0] ..).
inline constexpr int kSdeScratch = 6;
/// The m x m matrices of an SdeState's storage besides V: L, PV, the scratch, the
/// root-form noise Z and K, and the step's drift and increment.
inline constexpr int kSdeMatrices = 6 + kSdeScratch;

/// What the faces see of one step: V, a root L (L L^T = V) and scratch space.
///
/// Root-form noise.  Every shaped block's noise is, or contains, L X + (L X)^T for an
/// m x m X linear in its normals: the Wishart-like term c (L dZ L^T + L dZ^T L^T) has
/// X = c dZ L^T, the paper head's softmax term X = c2 dXi L^T P V.  A face adds c dZ to
/// Z and the transpose of any other X to Kt; finish_root_noise then adds N + N^T,
/// N = L (Kt + L Z^T)^T, once for all the blocks of the layer: two root products per
/// step where each block on its own needs two (a layer of attention and MLP: 4 products
/// instead of 6).  Kept transposed so that the root is a lower-triangular left factor
/// in every product (the loops skip its zeros, and so does the GEMM: cpp/src/gemm_impl.hpp).
template <class Ln, int MC>
struct SdeState {
  using D = typename Ln::D;
  using Mat = MatRef<D, MC>;
  Mat V, L;
  bool tri = false;  ///< L is lower triangular in every lane (products skip its upper triangle)
  Mat tmp[kSdeScratch];
  Mat PV;                                   ///< P V once centred_v computed it for this V
  Mat Z, Kt;                                ///< the root-form noise (above): sums of c dZ and of X^T
  mutable bool root_noise = false;          ///< a face added to Z or K since begin_root_noise
  mutable bool pv_ready = false;            ///< reset by sde_increment when V changes
  D* vec[3] = {nullptr, nullptr, nullptr};  ///< m lanes each: [0] centred_v's row means, [1], [2] scratch
  ST_HD int m() const { return V.rows(); }
};

/// Lanes of storage an SdeState needs besides V: L, the scratch, the vectors, and
/// the step's own drift and increment matrices (see sde_increment).
ST_HD constexpr int sde_state_lanes(int m) { return kSdeMatrices * m * m + 3 * m; }

/// Points the matrices of s at `buf` (sde_state_lanes(m) lanes, leading dimension ld;
/// MC > 0: ld = m = MC); drift and incr get the last two matrices.
template <class Ln, int MC>
ST_HD inline void sde_state_layout(SdeState<Ln, MC>& s, typename Ln::D* V, typename Ln::D* buf, int m, int ld,
                                   MatRef<typename Ln::D, MC>& drift, MatRef<typename Ln::D, MC>& incr) {
  using Mat = MatRef<typename Ln::D, MC>;
  const int mm = m * ld;
  s.V = Mat(V, m, m, ld);
  s.L = Mat(buf, m, m, ld);
  for (int i = 0; i < kSdeScratch; ++i) s.tmp[i] = Mat(buf + (1 + i) * mm, m, m, ld);
  s.PV = Mat(buf + (1 + kSdeScratch) * mm, m, m, ld);
  s.Z = Mat(buf + (2 + kSdeScratch) * mm, m, m, ld);
  s.Kt = Mat(buf + (3 + kSdeScratch) * mm, m, m, ld);
  drift = Mat(buf + (4 + kSdeScratch) * mm, m, m, ld);
  incr = Mat(buf + (5 + kSdeScratch) * mm, m, m, ld);
  for (int i = 0; i < 3; ++i) s.vec[i] = buf + kSdeMatrices * mm + i * m;
  s.pv_ready = false;
}

/// P V = V - (V 1) 1^T / m (V with its column means removed, which are its row means:
/// V is symmetric), computed once per V for the faces that use it (the paper head's
/// drift and noise); s.vec[0] keeps V's row means r (P V = V - 1 r^T).
template <class Ln, int MC>
ST_HD inline MatRef<typename Ln::D, MC> centred_v(const SdeState<Ln, MC>& s) {
  using D = typename Ln::D;
  if (!s.pv_ready) {
    const auto V = s.V, PV = s.PV;
    const int m = s.m();
    const double inv_m = 1.0 / double(m);
    D* r = s.vec[0];
    for (int a = 0; a < m; ++a) {
      D x = V(a, 0);
      for (int j = 1; j < m; ++j) x += V(a, j);
      r[a] = x * inv_m;
    }
    for (int a = 0; a < m; ++a)
      for (int j = 0; j < m; ++j) PV(a, j) = V(a, j) - r[j];
    s.pv_ready = true;
  }
  return s.PV;
}

/// Z <- Z + c dZ: a face's Wishart-like noise c (L dZ L^T + L dZ^T L^T) in root form.
template <class Ln, int MC>
ST_HD inline void add_root_noise(const SdeState<Ln, MC>& s, MatRef<typename Ln::D, MC> dZ, double c) {
  const int m = s.m();
  const auto Z = s.Z;
  const typename Ln::D cl = Ln::splat(c);
  for (int a = 0; a < m; ++a)
    for (int j = 0; j < m; ++j) Z(a, j) = Ln::madd(cl, dZ(a, j), Z(a, j));
  s.root_noise = true;
}

/// Starts a step's root-form noise: Z = Kt = 0.
template <class Ln, int MC>
ST_HD inline void begin_root_noise(const SdeState<Ln, MC>& s) {
  const int m = s.m();
  const auto Z = s.Z, Kt = s.Kt;
  for (int a = 0; a < m; ++a)
    for (int j = 0; j < m; ++j) Z(a, j) = Kt(a, j) = Ln::splat(0.0);
  s.root_noise = false;
}

/// Adds the root-form noise N + N^T, N = L (Kt + L Z^T)^T, to the upper triangle of out
/// (nothing when no face used it).  Uses tmp[0].
template <class Ln, int MC>
ST_HD inline void finish_root_noise(const SdeState<Ln, MC>& s, MatRef<typename Ln::D, MC> out) {
  using D = typename Ln::D;
  if (!s.root_noise) return;
  const int m = s.m();
  const auto Z = s.Z, Kt = s.Kt, L = s.L, N = s.tmp[0];
  if (detail::use_gemm<Ln>(N, m)) {
    mul_nt<Ln>(N, L, Z, s.tri);  // L Z^T
    for (int a = 0; a < m; ++a)
      for (int j = 0; j < m; ++j) Kt(a, j) = Kt(a, j) + N(a, j);
  } else {  // the same sums as mul_nt, added to Kt in the same pass
    for (int a = 0; a < m; ++a)
      for (int j = 0; j < m; ++j) {
        D x = Ln::splat(0.0);
        const int k1 = s.tri ? a + 1 : m;
        for (int k = 0; k < k1; ++k) x = Ln::madd(L(a, k), Z(j, k), x);
        Kt(a, j) = Kt(a, j) + x;
      }
  }
  mul_nt<Ln>(N, L, Kt, s.tri);  // L K
  for (int a = 0; a < m; ++a)
    for (int b = a; b < m; ++b) out(a, b) = out(a, b) + (N(a, b) + N(b, a));
}

/// Pre-norm's fast drift (docs/norms.md section 3.4) added to the upper triangle of
/// `drift` at the correlation matrix s.V:
///   beta_fast_ab = -(C_ab / 8) sum_k coef_k v_k,ab,
/// v_k,ab = n Var(dV_aa - dV_bb) of block k at C (its face sde_gap_variance) and coef_k
/// = the block's terms' `fast` (sde/terms.hpp: fast_coefficients, from the stationary
/// recursion of the scales; 0 unless the layer is pre-norm).  The faces accumulate
/// coef_k v_k in the last scratch matrix, which they do not use themselves.
template <class Ln, int MC, class Block>
ST_HD inline void add_fast_drift(const Block* blocks, int nblocks, const SdeState<Ln, MC>& s,
                                 MatRef<typename Ln::D, MC> drift) {
  bool any = false;
  for (int k = 0; k < nblocks; ++k)
    blocks[k].visit([&](const auto& t) {
      if constexpr (detail::has_norm_terms<std::decay_t<decltype(t)>>::value) any = any || t.fast != 0.0;
    });
  if (!any) return;
  const int m = s.m();
  auto G = s.tmp[kSdeScratch - 1];
  for (int a = 0; a < m; ++a)
    for (int b = 0; b < m; ++b) G(a, b) = Ln::splat(0.0);
  for (int k = 0; k < nblocks; ++k)
    blocks[k].visit([&](const auto& t) {
      if constexpr (detail::has_norm_terms<std::decay_t<decltype(t)>>::value)
        if (t.fast != 0.0) sde_gap_variance(t, s, G);
    });
  const auto V = s.V;
  for (int a = 0; a < m; ++a)
    for (int b = a + 1; b < m; ++b) drift(a, b) = drift(a, b) - V(a, b) * G(a, b) * 0.125;
}

/// The increment of one step into the upper triangle of `incr`: the drift of every
/// block times f (dt, or the tamed dt / (1 + dt |b|_F)) plus every block's noise.
/// normals(b, k, dW) fills dW with the k N(0, dt) numbers of block b for this step
/// (its Brownian increment; k = the block's Sde::noise_dim(m)).
template <class Ln, int MC, class Block, class Normals>
ST_HD inline void sde_increment(const Block* blocks, int nblocks, const SdeState<Ln, MC>& s, double dt, bool tamed,
                                Normals&& normals, typename Ln::D* dW, MatRef<typename Ln::D, MC> drift,
                                MatRef<typename Ln::D, MC> incr) {
  using D = typename Ln::D;
  const int m = s.m();
  s.pv_ready = false;  // a new V
  // The whole squares, not only the upper triangles the faces use: fixed-size loops the
  // compiler unrolls into vector stores (the triangle became a memset per row, 7% of a step).
  for (int a = 0; a < m; ++a)
    for (int b = 0; b < m; ++b) drift(a, b) = incr(a, b) = Ln::splat(0.0);
  for (int k = 0; k < nblocks; ++k) blocks[k].visit([&](const auto& t) { sde_drift(t, s, drift); });
  D f = Ln::splat(dt);
  if (tamed) {
    D norm2 = Ln::splat(0.0);  // |b|_F^2: off-diagonal entries count twice
    for (int a = 0; a < m; ++a)
      for (int b = a; b < m; ++b) {
        const D x = drift(a, b);
        norm2 = Ln::madd(x, x, a == b ? norm2 : Ln::madd(x, x, norm2));
      }
    f = Ln::splat(dt) / Ln::madd(Ln::splat(dt), Ln::sqrt(norm2), Ln::splat(1.0));
  }
  add_fast_drift<Ln, MC>(blocks, nblocks, s, drift);
  ST_MUTATION_ONLY(f = f * ::shaped_transformer::mutation::factor(::shaped_transformer::mutation::kIntegratorDrift);)
  begin_root_noise<Ln, MC>(s);
  for (int k = 0; k < nblocks; ++k)
    blocks[k].visit([&](const auto& t) {
      const int dim = std::decay_t<decltype(t)>::noise_dim(m);
      if (dim == 0) return;
      normals(k, dim, dW);
      sde_noise(t, s, dW, incr);
    });
  finish_root_noise<Ln, MC>(s, incr);
  for (int a = 0; a < m; ++a)
    for (int b = a; b < m; ++b) incr(a, b) = drift(a, b) * f + incr(a, b);
}

/// One block's whole noise increment, its root-form part included, added to the upper
/// triangle of out: for callers outside a step (sde/terms.hpp's one-step functions).
template <class Ln, int MC, class T>
ST_HD inline void block_noise(const T& t, const SdeState<Ln, MC>& s, const typename Ln::D* dW,
                              MatRef<typename Ln::D, MC> out) {
  begin_root_noise<Ln, MC>(s);
  sde_noise(t, s, dW, out);
  finish_root_noise<Ln, MC>(s, out);
}

/// V <- D^{-1/2} V D^{-1/2} (D = diag V) and, when L is given, L <- D^{-1/2} L (the
/// root of the new V): the correlation matrix, with an exact unit diagonal.  A
/// non-positive diagonal entry leaves its row and column unscaled (the caller stops
/// such a lane first: apply_increment); r: scratch of m lanes.
template <class Ln, int MC>
ST_HD inline void normalize_to_correlation(MatRef<typename Ln::D, MC> V, typename Ln::D* r,
                                           MatRef<typename Ln::D, MC>* L = nullptr) {
  using D = typename Ln::D;
  const int m = V.rows();
  const D zero = Ln::splat(0.0), one = Ln::splat(1.0);
  for (int a = 0; a < m; ++a) {
    const D d = V(a, a);
    r[a] = d > zero ? one / Ln::sqrt(d > zero ? d : one) : one;
  }
  for (int a = 0; a < m; ++a) {
    V(a, a) = one;
    for (int b = a + 1; b < m; ++b) {
      const D x = V(a, b) * (r[a] * r[b]);
      V(a, b) = x;
      V(b, a) = x;
    }
  }
  if (L)
    for (int a = 0; a < m; ++a)
      for (int b = 0; b < m; ++b) (*L)(a, b) = (*L)(a, b) * r[a];
}

/// V <- V + incr on the upper triangle, mirrored.  Returns the lanes to stop: a
/// non-finite entry or a diagonal entry above `blowup` (a NaN diagonal fails both).
/// normalize (normalized blocks): then V <- corr(V) (normalize_to_correlation, r:
/// scratch of m lanes), and a diagonal entry <= 0 before corr stops the lane too: the
/// Euler step left the covariances (only with a step far too large for the drift and
/// noise at unit diagonal), and corr would divide by it.  The drivers report such a
/// lane as stopped at this step (exploded), never as a NaN.
template <class Ln, int MC>
ST_HD inline typename Ln::M apply_increment(MatRef<typename Ln::D, MC> V, MatRef<typename Ln::D, MC> incr,
                                            double blowup, bool normalize = false, typename Ln::D* r = nullptr) {
  using D = typename Ln::D;
  const int m = V.rows();
  D bad = Ln::splat(0.0), maxdiag = Ln::splat(-HUGE_VAL), mindiag = Ln::splat(HUGE_VAL);
  for (int a = 0; a < m; ++a)
    for (int b = a; b < m; ++b) {
      const D x = V(a, b) + incr(a, b);
      V(a, b) = x;
      V(b, a) = x;
      bad += x * 0.0;  // NaN unless finite
      if (a == b) {
        maxdiag = x > maxdiag ? x : maxdiag;
        if (normalize) mindiag = x < mindiag ? x : mindiag;
      }
    }
  if (!normalize) return (typename Ln::M)((bad != Ln::splat(0.0)) | (maxdiag > Ln::splat(blowup)));
  normalize_to_correlation<Ln, MC>(V, r);
  return (typename Ln::M)((bad != Ln::splat(0.0)) | (maxdiag > Ln::splat(blowup)) | (mindiag <= Ln::splat(0.0)));
}

}  // namespace shaped_transformer
