// Pieces shared by the exact m x m steps of all block kinds (docs/model.md section 4).
//
// Write V = L L^T (any root, see psd_root) and X = L U with U U^T = n I.  The
// weights are rotation invariant, so in a rotated feature frame X = sqrt(n) L [I, 0]
// and every product of X with a fresh Gaussian matrix becomes L times a Gaussian:
//   attention: X' = lambda X + gamma / sqrt(H) sum_h C_h G_h,   C_h = A_h L_in,
//   MLP:       X' = lambda X + gamma L_Phi G,
// with G_h (m x n) standard Gaussian, independent of C_h.  Splitting G_h into its
// first m columns Z_h and the rest gives, with P = sum_h C_h Z_h (m x m),
//   V' = lambda^2 V + lambda gamma / sqrt(H n) (L P^T + P L^T)
//        + gamma^2 / (H n) (P P^T + C R C^T),
// C = [C_1 .. C_H] (m x Hm), R ~ Wishart_{Hm}(n - m, I) the Gram matrix of the
// stacked remaining columns (cross-head blocks included).  Given C, the columns of
// C [Z_1; ..; Z_H] and of C G (R = G G^T) are i.i.d. N(0, Sigma), Sigma = C C^T =
// sum_h C_h C_h^T, so (P, C R C^T) has the law of (K Z, K W K^T) for any root K K^T =
// Sigma, Z one m x m standard Gaussian and W ~ Wishart_m(n - m, I): the step draws
// that (wishart_quad.hpp), one product for P instead of H.  K = C_1 for one head and
// the MLP (the draws of earlier versions); for H > 1 a root of Sigma (lower triangular
// unless Sigma is singular), Z from head 0's value stream.
//
// The exact step of a kind is a template over a context Ctx (written once for the
// generic per-sample chain, the batched SIMD kernels and the CUDA threads):
//   Ctx::Ln, Ctx::MC       its lanes (math/lane.hpp) and compile-time m (0: run time)
//   c.m, c.n               tokens and width;  c.key: the sample's ExactKey
//   c.V                    V (MatRef<D, MC>), updated in place
//   c.tmp(i)               m x m scratch (i < kExactScratch): 0 holds the root L of V,
//                          1 the branch's root L_in, 2..7 the helpers below
//   c.vec()                m lanes of scratch
//   c.wide(i, cols)        m x cols scratch (i < 2, cols <= the block's Exact::wide(m))
//   c.root(A, L)           L L^T = A (psd_root's rule in every backend); true when
//                          every lane's L is lower triangular (products then skip zeros)
//   c.gaussian(id, G)      G(i, j) = normal i cols + j of the step's stream id
//   c.wishart(df, p, idn, idu, B)   the draws of wishart_factor (math/samplers.hpp)
//   c.gram(L, sp, sm, G)   the MLP's O(m^2 n) Gram matrix (host contexts only; false:
//                          cancelled, the sample is then discarded)
//   c.s                    LayerNorm's state s = X 1_n / sqrt(n) (m lanes), updated in
//                          place; nullptr when the network carries no s (with_norm)
//
// LayerNorm (docs/norms.md section 6).  Centring a token subtracts its component along
// the all-ones feature direction 1_n, so the law is invariant only under the rotations
// that fix 1_n, and the state is (V, s).  Rotate so that 1_n / sqrt(n) is the last
// feature and the centred tokens lie in the first m: X = sqrt(n) [L_c, s / sqrt(n)] E
// with L_c L_c^T = V - s s^T / n (E selects the features {1..m, n}; needs n >= m + 1).
// The branch's Gaussian columns at those m + 1 features are Z_h and one more column
// z_h; the other n - m - 1 give R ~ Wishart_{Hm}(n - m - 1).  With P_e = sum_h C_h z_h
// (drawn as K z, z one Gaussian column, as P is drawn as K Z):
//   V' = lambda^2 V + lambda gamma / sqrt(H n) (L_c P^T + s P_e^T / sqrt(n) + transposes)
//        + gamma^2 / (H n) (P P^T + P_e P_e^T + C R C^T),
//   s' = lambda s + gamma / sqrt(H) P_e.
// A network with a LayerNorm block carries s (c.s != nullptr) and every one of its
// blocks takes this step (any residual moves s); the others never do, and draw what
// they always drew.
#pragma once

#include <cmath>
#include <cstdint>

#include "device/hd.hpp"
#include "kernels/block_list.hpp"
#include "math/matrix.hpp"
#include "mutation.hpp"
#include "norm.hpp"
#include "rng.hpp"
#include "wishart_quad.hpp"

namespace shaped_transformer {

class CancelToken;  // parallel.hpp

/// Where the random numbers of one exact step come from: Stream{seed, sample,
/// block, kExactBase + id}.  Ids: 0/1 value Wishart R (normals/uniforms), 2 MLP
/// pre-activations, 3 MLP value Z, 4 the MLP's LayerNorm frame column z (5..7 free);
/// head h uses 8 + 8h + {0,1: key Wishart, 2: m x m Gaussian of M_h, 3: value Z_h,
/// 4/5: the cross-heads mutation's fresh Wishart (test builds only), 6: the LayerNorm
/// frame column z_h; 7 free}.  The value part draws its one Z (and z) from head 0's
/// streams 3 (and 6) for any H; heads h > 0 use theirs only in the cross-heads mutation.
struct ExactKey {
  std::uint64_t seed = 0;
  std::uint32_t sample = 0;
  std::uint32_t block = 0;
  /// Checked inside the O(m n) MLP step, whose single block can take seconds at
  /// huge width; nullptr: never cancelled.  Not part of the random-number key.
  const CancelToken* cancel = nullptr;

  static constexpr std::uint32_t kR = 0, kRUniform = 1, kPre = 2, kMlpZ = 3, kMlpFrame = 4;
  static constexpr std::uint32_t kKeyWishart = 0, kKeyUniform = 1, kKeyGauss = 2, kValueZ = 3, kValueFrame = 6;
  static constexpr int kMaxHeads = (0x4000 - 8) / 8;

  /// The id of stream `id` of head h (add to matrix_id::kExactBase).
  ST_HD static constexpr std::uint32_t head_id(int h, std::uint32_t id) { return 8u + 8u * std::uint32_t(h) + id; }
  ST_HD Stream stream(std::uint32_t id) const { return Stream{seed, sample, block, matrix_id::kExactBase + id}; }
  ST_HD Stream head_stream(int h, std::uint32_t id) const { return stream(head_id(h, id)); }
};

namespace detail {
template <class K, bool>
struct exact_face {
  using type = NoFace;
};
template <class K>
struct exact_face<K, true> {
  using type = typename K::Exact;
};
}  // namespace detail

/// The exact face of kind K: its terms type K::Exact (NoFace when K has no exact step).
template <class K>
struct ExactFace : detail::exact_face<K, K::has_exact> {};
/// The exact face the CUDA threads run: kinds whose step needs no host kernel (exact_on_device).
template <class K>
struct ExactDeviceFace : detail::exact_face<K, K::has_exact && K::exact_on_device> {};
/// A block's exact step terms, for a network of kinds Kinds...
template <class... Kinds>
using ExactBlock = FaceBlock<ExactFace, Kinds...>;

/// m x m scratch matrices of an exact step (c.tmp(0) .. c.tmp(kExactScratch - 1)).
inline constexpr int kExactScratch = 8;

/// The logits of head h, Y = L_in M L_in^T / scale with M = G_q G_k^T (G_q, G_k
/// m x n_k standard Gaussian).  M = B Z with B = chol(Wishart_m(n_k)) (lower, Bartlett)
/// and Z an m x m Gaussian when n_k > m - 1 (O(m^3)), M = G_q Z^T (the m x n_k Gaussians
/// themselves) otherwise.  Formed as E = L_in B (or L_in G_q), W = E Z (E Z^T) and Y =
/// (L_in W^T)^T: with L_in lower (tri) that is a product of two lower factors and two
/// with one, about 7/6 m^3 multiply-adds against 3/2 m^3 for L_in (B Z) L_in^T, and the
/// last product is formed transposed so that its triangular factor comes first, the
/// form the large products' GEMM recognises (math/matrix.hpp); the pass that transposes
/// it back divides by the scale.  Y: m x m (its own
/// scratch); uses c.tmp(2), c.tmp(3), c.tmp(6), c.tmp(7).
template <class Ctx, class VL, class VM>
ST_HD inline void head_logits(Ctx& c, double n_k, int h, double scale, VL Lin, bool tri, VM Y) {
  using Ln = typename Ctx::Ln;
  const int m = c.m;
  const std::uint32_t wid = ExactKey::head_id(h, ExactKey::kKeyWishart);
  auto E = c.tmp(2), W = c.tmp(3), Yt = c.tmp(6);
  if (n_k > double(m - 1)) {
    auto B = c.tmp(6), Z = c.tmp(7);
    c.wishart(n_k ST_MUTATE(kKeyDf), m, wid, ExactKey::head_id(h, ExactKey::kKeyUniform),
              B);  // lower, B B^T ~ Wishart_m(n_k)
    c.gaussian(ExactKey::head_id(h, ExactKey::kKeyGauss), Z);
    mul<Ln>(E, Lin, B, tri, true);  // L_in B
    mul<Ln>(W, E, Z, tri);          // L_in M
  } else {
    const int k = int(n_k + 0.5);  // 0 <= k <= m - 1
    auto Gq = c.tmp(6).middle_cols(0, k), Z = c.tmp(7).middle_cols(0, k), Ek = E.middle_cols(0, k);
    c.gaussian(wid, Gq);  // the key Wishart stream's normals, row by row (the singular Wishart's draws)
    c.gaussian(ExactKey::head_id(h, ExactKey::kKeyGauss), Z);
    mul<Ln>(Ek, Lin, Gq, tri);  // L_in G_q
    mul_nt<Ln>(W, Ek, Z);       // L_in M
  }
  mul_nt<Ln>(Yt, Lin, W, tri);  // L_in (L_in M)^T = Y^T
  for (int i = 0; i < m; ++i)   // the transpose and the logits' scale in one pass
    for (int j = 0; j < m; ++j) Y(i, j) = Yt(j, i) / scale;
}

/// Row-wise softmax of S in place, optionally causal (row i over columns 0..i, the
/// rest zero).
template <class Ln, class VM>
ST_HD inline void softmax_rows(VM S, bool causal) {
  using D = typename Ln::D;
  const int m = S.rows();
  for (int i = 0; i < m; ++i) {
    const int k = causal ? i + 1 : m;
    D mx = S(i, 0);
    for (int j = 1; j < k; ++j) mx = S(i, j) > mx ? S(i, j) : mx;
    D sum = Ln::splat(0.0);
    for (int j = 0; j < k; ++j) sum += (S(i, j) = Ln::exp(S(i, j) - mx));
    for (int j = 0; j < k; ++j) S(i, j) = S(i, j) / sum;
    for (int j = k; j < m; ++j) S(i, j) = Ln::splat(0.0);
  }
}

/// The shaped head's attention matrix from its softmax S, in place:
/// A = alpha I + beta S - beta C, C = 1 1^T / m or the uniform causal matrix (the
/// explicit network's and the exact chain's A, in this order of operations).
template <class Ln, class VM>
ST_HD inline void shaped_attention_matrix(VM S, double alpha, double beta, bool causal) {
  const int m = S.rows();
  for (int i = 0; i < m; ++i) {
    const int k = causal ? i + 1 : m;
    const double bc = beta * (1.0 / double(k));
    for (int j = 0; j < m; ++j)
      S(i, j) = (Ln::splat(i == j ? alpha : 0.0) + beta * S(i, j)) - Ln::splat(j < k ? bc : 0.0);
  }
}

/// How an attention step turns its logits into attention matrices (attention_heads).
struct HeadsForm {
  int heads;
  double nk;     ///< key dimension n_k (the width when 0 is given)
  double scale;  ///< logits Y_h = L_in M_h L_in^T / scale
  bool causal;   ///< row i of the softmax over tokens 0..i
  bool shaped;   ///< A_h = alpha I + beta S - beta C (shaped_attention_matrix), else S
  double alpha = 1.0, beta = 1.0;
};

/// The heads of an attention step, for every attention kind: for head h the logits
/// Y_h = L_in M_h L_in^T / scale (M_h = G_q G_k^T, head_logits), their row softmax S,
/// A_h from S (f.shaped), then C_h = A_h L_in into columns h m .. h m + m - 1 of C.
/// tri: L_in is lower triangular.  Uses c.tmp(2) .. c.tmp(4), c.tmp(6), c.tmp(7).
template <class Ctx, class VL, class VC>
ST_HD inline void attention_heads(Ctx& c, VL Lin, bool tri, const HeadsForm& f, VC C) {
  using Ln = typename Ctx::Ln;
  const int m = c.m;
  auto Y = c.tmp(4);
  for (int h = 0; h < f.heads; ++h) {
    head_logits(c, f.nk, h, f.scale, Lin, tri, Y);  // L_in M_h L_in^T / scale
    softmax_rows<Ln>(Y, f.causal);
    if (f.shaped) shaped_attention_matrix<Ln>(Y, f.alpha, f.beta, f.causal);
    mul<Ln>(C.middle_cols(h * m, m), Y, Lin, false, tri);  // C_h = A_h L_in
  }
}

/// D^{-1/2} V D^{-1/2} with D = diag(V): the covariance after RMS normalisation of
/// every token (x_a -> x_a / sqrt(V_aa)).  Zero tokens stay zero.  s: m lanes of scratch.
template <class Ln, class VM>
ST_HD inline void rms_normalize(VM V, typename Ln::D* s) {
  const int m = V.rows();
  for (int a = 0; a < m; ++a) {
    const auto pos = V(a, a) > Ln::splat(0.0);
    s[a] = pos ? Ln::splat(1.0) / Ln::sqrt(pos ? V(a, a) : Ln::splat(1.0)) : Ln::splat(0.0);
  }
  for (int a = 0; a < m; ++a)
    for (int b = 0; b < m; ++b) V(a, b) = s[a] * V(a, b) * s[b];
}

/// out = L with its rows scaled so that out out^T is RMS-normalised (the root of
/// rms_normalize(L L^T)).
template <class Ln, class VM>
ST_HD inline void rms_normalize_root(VM L, VM out) {
  const int m = L.rows();
  for (int a = 0; a < m; ++a) {
    auto v = L(a, 0) * L(a, 0);
    for (int j = 1; j < m; ++j) v = v + L(a, j) * L(a, j);
    const auto pos = v > Ln::splat(0.0);
    const auto f = pos ? Ln::splat(1.0) / Ln::sqrt(pos ? v : Ln::splat(1.0)) : Ln::splat(0.0);
    for (int j = 0; j < m; ++j) out(a, j) = L(a, j) * f;
  }
}

/// The norm placements around the branch of an exact step, for every block kind
/// (docs/norms.md sections 6 and 8).  Without LayerNorm's state (c.s == nullptr; RMS
/// norms are rotation invariant): the root L of V into c.tmp(0); pre_rms hands the
/// branch L_in = D^{-1/2} L (D = diag V, rms_normalize_root into c.tmp(1)) while the
/// residual keeps L, otherwise L_in = L; post_rms maps the V' the branch leaves in c.V
/// to its correlation matrix.  With c.s (the network has a LayerNorm block; see the
/// header comment): the residual's root is L_c, L_c L_c^T = V - s s^T / n (the branch's
/// value_mix adds the frame's s column); L_in is D^{-1/2} L_c for pre_layer (the
/// centred tokens, normalised), a root of V, D^{-1/2}-scaled for pre_rms, otherwise;
/// after the branch post_layer maps V' - s' s'^T / n to its correlation matrix and sets
/// s = 0, post_rms maps V' to its correlation matrix and scales s_a by V'_aa^{-1/2} as
/// it scales token a.  branch(L, L_in, tri) updates c.V (and c.s) and returns false
/// when cancelled (false is returned, the norm skipped); tri: every lane's L_in is
/// lower triangular.  LayerNorm without c.s never runs (the drivers carry s then).
template <class Ctx, class Branch>
ST_HD inline bool with_norm(Ctx& c, Norm norm, Branch&& branch) {
  using Ln = typename Ctx::Ln;
  auto L = c.tmp(0);
  if (!c.s) {
    const bool tri = c.root(c.V, L);
    const bool pre = norm == Norm::PreRMS;
    if (pre) rms_normalize_root<Ln>(L, c.tmp(1));
    if (!branch(L, pre ? c.tmp(1) : L, tri)) return false;
    if (norm == Norm::PostRMS) rms_normalize<Ln>(c.V, c.vec());
    return true;
  }
  const int m = c.m;
  auto* s = c.s;
  const double inv_n = 1.0 / double(c.n) ST_MUTATE(kLayerCentring);
  auto Vc = c.tmp(2), Lin = c.tmp(1);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) Vc(i, j) = c.V(i, j) - s[i] * s[j] * inv_n;
  bool tri = c.root(Vc, L);
  if (norm == Norm::PreLayer) {
    rms_normalize_root<Ln>(L, Lin);
  } else {
    tri = c.root(c.V, Lin);
    if (norm == Norm::PreRMS) rms_normalize_root<Ln>(Lin, Lin);
  }
  if (!branch(L, Lin, tri)) return false;
  if (norm == Norm::PostLayer) {
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < m; ++j) c.V(i, j) = c.V(i, j) - s[i] * s[j] * inv_n;
    rms_normalize<Ln>(c.V, c.vec());
    for (int a = 0; a < m; ++a) s[a] = Ln::splat(0.0);
  } else if (norm == Norm::PostRMS) {
    rms_normalize<Ln>(c.V, c.vec());
    for (int a = 0; a < m; ++a) s[a] = s[a] * c.vec()[a];
  }
  return true;
}

/// value_mix given K (K K^T = C C^T; k_lower: K is lower triangular).  K may be C's
/// first m columns (one head) or c.tmp(7).
template <class Ctx, class VL, class VC, class VK>
ST_HD inline void value_mix_root(Ctx& c, VL L, VC C, VK K, bool k_lower, int H, double lambda, double gamma, bool mlp) {
  using Ln = typename Ctx::Ln;
  using D = typename Ln::D;
  const int m = c.m;
  auto V = c.V;
  auto P = c.tmp(2), T = c.tmp(3), Q = c.tmp(4), Y = c.tmp(5), Z = c.tmp(6);
  (void)C;  // only the cross-heads mutation reads the per-head parts
  c.gaussian(mlp ? ExactKey::kMlpZ : ExactKey::head_id(0, ExactKey::kValueZ), Z);
  mul<Ln>(P, K, Z, k_lower);        // P = K Z, in law sum_h C_h Z_h
  D* pe = c.s ? c.vec() : nullptr;  // P_e = K z, in law sum_h C_h z_h: LayerNorm's frame only
  if (pe) {
    auto z = T.middle_cols(0, 1);
    c.gaussian(mlp ? ExactKey::kMlpFrame : ExactKey::head_id(0, ExactKey::kValueFrame), z);
    for (int i = 0; i < m; ++i) {
      D x = Ln::splat(0.0);
      const int k1 = k_lower ? i + 1 : m;
      for (int k = 0; k < k1; ++k) x = x + K(i, k) * z(k, 0);
      pe[i] = x;
    }
  }
  ST_MUTATION_ONLY(if (pe) for (int i = 0; i < m; ++i) pe[i] = pe[i] * mutation::factor(mutation::kFrameColumn);)
  // CB CB^T ~ C R C^T, R ~ Wishart_{Hm}(n - m) (n - m - 1 in LayerNorm's frame): the m x m
  // draw K W K^T of wishart_quad.hpp (W's factor in Z, P drawn)
  auto CB = c.tmp(1);
  const double df = double(c.n) - double(m) ST_MUTATE(kValueDf) - (pe ? 1.0 : 0.0);
  wishart_quad_factor(c, K, k_lower, df, ExactKey::kR, ExactKey::kRUniform, CB, Z);
  mul_nt<Ln>(T, L, P);    // L P^T
  mul_nt<Ln>(Q, P, P);    // P P^T
  mul_nt<Ln>(Y, CB, CB);  // C R C^T
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) Q(i, j) = Q(i, j) + Y(i, j);
#ifdef SHAPED_TRANSFORMER_MUTATIONS
  // Test-only: scales the cross-head terms (h != g) of Q = P P^T + C R C^T by the
  // kCrossHeads factor (0 drops them: heads with independent value weights).  The
  // diagonal terms C_h R_hh C_h^T are drawn afresh (R_hh ~ Wishart_m(n - m)
  // independent, from head streams 4 and 5, unused by the model), since the m x m
  // draw of C R C^T has no per-head parts.
  if (const double f = mutation::factor(mutation::kCrossHeads); f != 1.0 && H > 1) {
    auto diag = c.tmp(7), Ph = c.tmp(1), Fh = c.wide(1, m);  // sum_h P_h P_h^T + F_h F_h^T
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < m; ++j) diag(i, j) = Ln::splat(0.0);
    for (int h = 0; h < H; ++h) {
      c.gaussian(ExactKey::head_id(h, ExactKey::kValueZ), Z);
      mul<Ln>(Ph, C.middle_cols(h * m, m), Z);
      mul_nt<Ln>(Y, Ph, Ph);
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < m; ++j) diag(i, j) += Y(i, j);
      wishart_quad_factor(c, C.middle_cols(h * m, m), false, df, ExactKey::head_id(h, 4), ExactKey::head_id(h, 5), Fh,
                          Z);
      mul_nt<Ln>(Y, Fh, Fh);
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < m; ++j) diag(i, j) += Y(i, j);
    }
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < m; ++j) Q(i, j) = diag(i, j) + f * (Q(i, j) - diag(i, j));
  }
#endif
  if (pe) {  // the frame's s column: L P^T += s P_e^T / sqrt(n), P P^T += P_e P_e^T
    const double rn = 1.0 / device::sqrt_d(double(c.n));
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < m; ++j) {
        T(i, j) = T(i, j) + (c.s[i] * rn) * pe[j];
        Q(i, j) = Q(i, j) + pe[i] * pe[j];
      }
  }
  const double HN = double(H) * double(c.n);
  const D ll = Ln::splat(lambda * lambda), lg = Ln::splat(lambda * gamma / device::sqrt_d(HN)),
          gg = Ln::splat(gamma * gamma / HN);
  // V <- the symmetric part of Y = ll V + lg (T + T^T) + gg Q, one pass over the pairs
  // i <= j (V(j, i) is read before the pair writes it; sums commute, so the bits are
  // those of forming Y first)
  for (int i = 0; i < m; ++i)
    for (int j = i; j < m; ++j) {
      const D tt = T(i, j) + T(j, i);
      D yij = ll * V(i, j);
      yij = yij + lg * tt;
      yij = yij + gg * Q(i, j);
      D yji = ll * V(j, i);
      yji = yji + lg * tt;
      yji = yji + gg * Q(j, i);
      V(i, j) = V(j, i) = Ln::splat(0.5) * (yij + yji);
    }
  if (pe) {
    const double gh = gamma / device::sqrt_d(double(H));
    for (int i = 0; i < m; ++i) c.s[i] = lambda * c.s[i] + gh * pe[i];
  }
}

/// The value part shared by attention and MLP blocks (see the header comment):
/// V <- lambda^2 V + lambda gamma / sqrt(H n) (L P^T + P L^T) + gamma^2/(H n)(P P^T + C R C^T),
/// drawn as P = K Z and C R C^T = K W K^T with K K^T = C C^T (wishart_quad.hpp).
/// C is m x (H m): C_h = A_h L_in side by side (c.wide(0, .)); L is the root of the
/// residual V.  With c.s (LayerNorm's frame, header comment): L is L_c, the frame's
/// column adds P_e = K z to the cross term and P_e P_e^T, R has n - m - 1 degrees of
/// freedom, and s <- lambda s + gamma / sqrt(H) P_e (P_e in c.vec()).  Uses c.tmp(1) ..
/// c.tmp(7) (c.tmp(1), the branch's root, is no longer needed here; the mutation build
/// also c.wide(1, m)).
template <class Ctx, class VL, class VC>
ST_HD inline void value_mix(Ctx& c, VL L, VC C, int H, double lambda, double gamma, bool mlp) {
  if (H == 1) return value_mix_root(c, L, C, C.middle_cols(0, c.m), false, H, lambda, gamma, mlp);
  auto K = c.tmp(7);
  const bool tri = value_root(c, C, c.tmp(5), K);
  value_mix_root(c, L, C, K, tri, H, lambda, gamma, mlp);
}

/// The exact step of every attention kind: with_norm around the heads
/// (attention_heads, in the kind's form f) and the value part (value_mix).  t: the
/// kind's Exact terms (norm, lambda, gamma).  Never cancelled: returns true.
template <class Ctx, class Terms>
ST_HD inline bool attention_exact_step(Ctx& c, const Terms& t, const HeadsForm& f) {
  return with_norm(c, t.norm, [&](auto L, auto Lin, bool tri) {
    auto C = c.wide(0, f.heads * c.m);
    attention_heads(c, Lin, tri, f, C);
    value_mix(c, L, C, f.heads, t.lambda, t.gamma, false);
    return true;
  });
}

/// The exact MLP step: Phi = c phi(K) phi(K)^T / n with K = L_in G' (G' m x n
/// Gaussian; phi(x) = x > 0 ? sp x : sm x), then value_mix with C = a root of Phi.
/// Returns false when cancelled (the sample is discarded).
template <class Ctx, class VL>
ST_HD inline bool mlp_exact_step(Ctx& c, VL L, VL L_in, double cst, double sp, double sm, double lambda, double gamma) {
  const int m = c.m;
  auto G = c.tmp(2), R = c.tmp(3);
  if (!c.gram(L_in, sp, sm, G)) return false;
  const double f = cst / double(c.n);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) G(i, j) = f * G(i, j);
  c.root(G, R);
  auto LPhi = c.wide(0, m);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) LPhi(i, j) = R(i, j);
  value_mix(c, L, LPhi, 1, lambda, gamma, true);
  return true;
}

}  // namespace shaped_transformer
