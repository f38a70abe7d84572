// Shaped attention block: X' = lambda X + (gamma / sqrt(H)) sum_h A_h X W^V_h / sqrt(n),
// A_h = alpha I + beta Softmax(Y_h / tau) - beta C, tau = tau0 sqrt(n n_k).
// The paper's shaped head is alpha = beta = 1 and C = 1 1^T / m; `causal` uses the
// uniform causal matrix for C (and masks the softmax).  docs/model.md sections 1, 2, 4, 5.
//
// Three faces, side by side, each written once for every backend (docs/architecture.md):
//   explicit forward on X  | exact step on V (section 4) | SDE drift and noise (section 5)
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "../explicit_common.hpp"
#include "../kernels/sde_step.hpp"
#include "../mutation.hpp"
#include "fields.hpp"
#include "resources.hpp"

namespace shaped_transformer {

struct ShapedAttention {
  static constexpr const char* kind = "shaped_attention";
  static constexpr const char* python_class = "ShapedAttention";  ///< its class in shaped_transformer
  int heads = 1;
  double tau0 = 1.0;
  double gamma = 0.5;
  double lambda = std::sqrt(1.0 - 0.25);  ///< lambda^2 + gamma^2 = 1, checked by validate()
  double alpha = 1.0;
  double beta = 1.0;
  bool causal = false;
  int key_dim = 0;         ///< n_k; 0 means n_k = width
  bool concat = false;     ///< H heads of width n/H and an output projection W^O (explicit only)
  Norm norm = Norm::None;  ///< per-token normalisation (docs/norms.md)

  static constexpr auto fields() {
    using B = ShapedAttention;
    return std::make_tuple(
        field("heads", &B::heads, at_least(1), "number of heads H"),
        field("tau0", &B::tau0, above(0.0), "softmax temperature, tau = tau0 sqrt(n n_k)"),
        field("gamma", &B::gamma, within(0.0, 1.0), "branch weight"),
        field("lam", &B::lambda, residual_weight(), "residual weight, lambda^2 + gamma^2 = 1; None: sqrt(1 - gamma^2)"),
        field("alpha", &B::alpha, finite(), "identity weight of A_h"),
        field("beta", &B::beta, finite(), "softmax weight of A_h"),
        field("causal", &B::causal, any_value(), "causal mask and causal centring"),
        field("key_dim", &B::key_dim, or_unset(at_least(1), 0), "n_k; None (0 in C++): the head width"),
        field("concat", &B::concat, any_value(), "concatenated heads with W^O (explicit only)"),
        field("norm", &B::norm, any_value(),
              "per-token normalisation (exact chain, SDE: the correlation SDE; docs/norms.md)"));
  }
  /// Throws std::invalid_argument naming the parameter; width > 0 also checks concat.
  void validate(long width = 0) const {
    check_fields(*this);
    check_residual(gamma, lambda);
    check_concat_width(concat, heads, width);
  }

  // ---- traits: what the drivers, the batched kernels and the device read ----
  static constexpr bool has_explicit = true, has_exact = true, has_sde = true;
  static constexpr bool exact_on_device = true;  ///< its exact step runs on the CUDA threads
  /// Why the exact chain cannot run this block (nullptr: it can).
  const char* exact_refusal() const {
    if (concat) return "concat: concatenated heads are not covered by the exact chain";
    if (heads > ExactKey::kMaxHeads) return "heads: too many heads for the exact chain";
    return nullptr;
  }
  /// Why this head has no covariance SDE limit (nullptr: it has one).
  const char* sde_refusal() const {
    if (concat) return "concat: concatenated heads with an output projection are not covered by the SDE";
    if (is_pre_norm(norm) && (causal || beta != 1.0))
      return is_layer_norm(norm)
                 ? "norm: 'pre_layer' on a causal head or one with beta != 1 is not covered by the SDE (its fast "
                   "drift needs the gap variance of the diagonal, in closed form for the paper's head only, "
                   "docs/norms.md section 3.4); post-norm covers every head"
                 : "norm: 'pre_rms' on a causal head or one with beta != 1 is not covered by the SDE (its fast "
                   "drift needs the gap variance of the diagonal, in closed form for the paper's head only, "
                   "docs/norms.md section 3.4); post-norm covers every head";
    if (alpha != 1.0)
      return "alpha: only shaped heads with alpha = 1 (any beta, causal or not) have an SDE limit "
             "(A -> alpha I, so V would change by lambda^2 + gamma^2 alpha^2 != 1 per block)";
    return nullptr;
  }
  /// Its weight matrices (explicit network) and the memory one worker holds for it (resources.hpp).
  template <class F>
  void weights(long width, F&& f) const {
    attention_weights(heads, key_dim, concat, width, f);
  }
  Workspace workspace(double m, double n, double itemsize) const {
    return attention_workspace(heads, key_dim, m, n, itemsize);
  }
  /// The parameters of its exact step (plain data: the kernels and the device copy it).
  struct Exact {
    int heads, key_dim;
    bool causal;
    Norm norm;
    double tau0, gamma, lambda, alpha, beta;
    /// Columns of the widest scratch of the step: the stacked C_h.
    ST_HD int wide(int m) const { return heads * m; }
  };
  Exact exact_terms() const { return Exact{heads, key_dim, causal, norm, tau0, gamma, lambda, alpha, beta}; }
  /// The coefficients of its SDE drift and noise (plain data).  paper: alpha = beta = 1,
  /// bidirectional (the faster terms).
  struct Sde {
    double kdrift;  ///< gamma^2 / tau0^2
    double c1;      ///< gamma sqrt(2 - gamma^2) / sqrt(2): the noise of L dZ L^T
    double c2;      ///< paper: gamma^2 / (tau0 m sqrt(H)); else gamma^2 beta / (tau0 sqrt(H))
    double beta;
    bool paper, causal;
    Norm norm = Norm::None;  ///< the placement (the step normalizes when it is not None)
    double fast = 0.0;       ///< pre-norm: its coefficient in beta_fast (sde/terms.hpp), else 0
    /// Number of N(0, dt) normals one noise increment uses (dZ, dXi: m x m each).
    ST_HD static constexpr int noise_dim(int m) { return 2 * m * m; }
    /// Number of tokens row i of the head attends to.
    ST_HD int attended(int i, int m) const { return causal ? i + 1 : m; }
  };
  Sde sde_terms(int m) const {
    Sde t;
    t.paper = alpha == 1.0 && beta == 1.0 && !causal && !concat;
    t.causal = causal;
    t.beta = beta;
    t.norm = norm;
    t.kdrift = gamma * gamma / (tau0 * tau0) ST_MUTATE(kGeneralDrift);
    if (t.paper) t.kdrift = gamma * gamma / (tau0 * tau0) ST_MUTATE(kAttDrift);
    t.c1 = gamma * std::sqrt(std::max(0.0, 2.0 - gamma * gamma)) / std::sqrt(2.0);
    t.c2 = t.paper ? gamma * gamma / (tau0 * double(m) * std::sqrt(double(heads))) ST_MUTATE(kSoftNoise)
                   : gamma * gamma * beta / (tau0 * std::sqrt(double(heads))) ST_MUTATE(kGeneralSoftNoise);
    return t;
  }
};

// ---- explicit forward on X ------------------------------------------------
// The block on the tokens (explicit_common.hpp), for the CPU, the law sampler and the GPU.
template <class Ops>
inline void explicit_forward(const ShapedAttention& b, Ops& o) {
  AttentionForward a;
  a.heads = b.heads;
  a.key_dim = b.key_dim;
  a.concat = b.concat;
  a.gamma = b.gamma;
  a.lambda = b.lambda;
  a.shaped = true;
  a.alpha = b.alpha;
  a.beta = b.beta;
  a.tau0 = b.tau0;
  a.causal = b.causal;
  a.norm = b.norm;
  attention_forward(a, o);
}

// ---- exact step on V ------------------------------------------------------
// Y_h = L M_h L^T with M_h = G_q G_k^T drawn in O(m^3); then the shared value part
// (exact_common.hpp).  A_h = alpha I + beta Softmax(Y_h/tau) - beta C.  A template
// over the context of exact_common.hpp: the generic chain, the batched SIMD kernels
// and the CUDA threads all run it (attention_exact_step, shared with the standard head;
// only the HeadsForm differs).  Norms by with_norm: pre_rms feeds the branch with
// D^{-1/2} L, post_rms maps V' to its correlation matrix; LayerNorm runs on the state
// (V, s) (docs/norms.md sections 6 and 8).
template <class Ctx>
ST_HD inline bool exact_step(const ShapedAttention::Exact& t, Ctx& c) {
  const double n = double(c.n), nk = t.key_dim > 0 ? double(t.key_dim) : n;
  return attention_exact_step(c, t,
                              HeadsForm{t.heads, nk, t.tau0 * device::sqrt_d(n * nk), t.causal, true, t.alpha, t.beta});
}

// ---- SDE drift and noise --------------------------------------------------
// docs/model.md section 5, confirmed by tests/test_moments.py; templates over the
// lanes Ln (math/lane.hpp): the generic solver, the batched SIMD kernels and the CUDA
// threads all evaluate these (kernels/sde_step.hpp sums them over the blocks).
// The paper's head (alpha = beta = 1, bidirectional, no concat):
//   drift b(V) = (gamma^2/tau0^2) (D V + V D^T + tr(V P V P)/m^2 V), D_ab = V_aa w_b/(2m),
//         w_b = (P V P)_bb - tr(P V P)/m;
//   noise gamma sqrt(2 - gamma^2) (L dZ L^T + L dZ^T L^T)/sqrt(2)
//         + gamma^2/(tau0 m sqrt(H)) (L dXi L^T P V + V P L dXi^T L^T).
// The causal and general heads (docs/causal.md): A = I + beta (Softmax_mask(Y/tau) - C):
// row i of the softmax and of C covers the first k_i tokens (k_i = i + 1 causal,
// k_i = m bidirectional), and P_i = diag(1_{k_i}) - 1_{k_i} 1_{k_i}^T / k_i is row i's
// centring.  With
//   D_ij = V_ii w^(i)_j / (2 k_i)  (j < k_i, else 0),
//          w^(i)_j = (P_i V P_i)_jj - tr(P_i V P_i) / k_i,
//   T_ab = tr(P_a V P_b V) / (k_a k_b),
// the drift is  (gamma^2/tau0^2) (beta (D V + V D^T) + beta^2 V o T)  (o: entrywise)
// and the noise  gamma sqrt(2 - gamma^2) (L dZ L^T + L dZ^T L^T)/sqrt(2)
//              + gamma^2 beta/(tau0 sqrt(H)) (Q V + V Q^T),
//   Q_ij = ((L dXi L^T)_ij - mean_{l < k_i} (L dXi L^T)_il) / k_i  (j < k_i, else 0).
// With k_i = m and beta = 1 these are the paper's terms (tests/test_causal_sde.py
// checks that), which keep their own, faster evaluation.  alpha must be 1: A -> alpha I
// otherwise, and V changes by a factor lambda^2 + gamma^2 alpha^2 != 1 per block.
// The Wishart-like noise, and the paper head's softmax noise, go to the step in root
// form (kernels/sde_step.hpp, SdeState): one pair of root products for all the blocks.
// Faces add the upper triangle (j >= i) of their term to `out`.

/// Adds the drift of the head to the upper triangle of out.
template <class Ln, int MC>
ST_HD inline void sde_drift(const ShapedAttention::Sde& t, const SdeState<Ln, MC>& s, MatRef<typename Ln::D, MC> out) {
  using D = typename Ln::D;
  const auto V = s.V;
  const int m = s.m();
  if (!t.paper) {  // causal or beta != 1: prefix sums, indexed by prefix length - 1:
    // Rc(p, j) = sum_{i <= p} V_ij, G(p, q) = sum_{i <= p, j <= q} V_ij, F likewise of
    // V_ij^2, H(p, q) = sum_{j <= q} Rc(p, j)^2; then tr(P_a V P_b V) = F - H_ab / k_a -
    // H_ba / k_b + G^2 / (k_a k_b) at (k_a, k_b).
    auto Rc = s.tmp[0], F = s.tmp[1], G = s.tmp[2], H = s.tmp[3], Dm = s.tmp[4], DV = s.tmp[5];
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < m; ++j) {
        Rc(i, j) = i == 0 ? V(i, j) : Rc(i - 1, j) + V(i, j);
        F(i, j) = i == 0 ? V(i, j) * V(i, j) : F(i - 1, j) + V(i, j) * V(i, j);
      }
    for (int p = 0; p < m; ++p)
      for (int q = 0; q < m; ++q) {
        G(p, q) = q == 0 ? Rc(p, q) : G(p, q - 1) + Rc(p, q);
        H(p, q) = q == 0 ? Rc(p, q) * Rc(p, q) : H(p, q - 1) + Rc(p, q) * Rc(p, q);
        if (q > 0) F(p, q) = F(p, q - 1) + F(p, q);
      }
    for (int a = 0; a < m; ++a) {
      const int ia = t.attended(a, m) - 1;
      const double ka = double(ia + 1);
      // w^(a)_j = V_jj - 2 Rc(k-1, j)/k + G/k^2 - tr(P_a V P_a)/k, tr(P_a V P_a) = sum_{j<k} V_jj - G/k.
      const D g = G(ia, ia);
      D trP = V(0, 0);
      for (int j = 1; j <= ia; ++j) trP = trP + V(j, j);
      trP = trP - g / ka;
      for (int j = 0; j < m; ++j)
        Dm(a, j) = j <= ia ? V(a, a) * (V(j, j) - 2.0 * Rc(ia, j) / ka + g / (ka * ka) - trP / ka) / (2.0 * ka)
                           : Ln::splat(0.0);
    }
    mul<Ln>(DV, Dm, V, t.causal);
    const double kb = t.kdrift * t.beta, kbb = t.kdrift * (t.beta * t.beta);
    for (int a = 0; a < m; ++a) {
      const int ia = t.attended(a, m) - 1;
      const double ka = double(ia + 1);
      for (int c = a; c < m; ++c) {
        const int ic = t.attended(c, m) - 1;
        const double kc = double(ic + 1);
        const D tr = F(ia, ic) - H(ia, ic) / ka - H(ic, ia) / kc + G(ia, ic) * G(ia, ic) / (ka * kc);
        out(a, c) = out(a, c) + (kb * (DV(a, c) + DV(c, a)) + kbb * (V(a, c) * tr / (ka * kc)));
      }
    }
    return;
  }
  // The paper's head: V P = P V (centred_v, V symmetric) and P V P, without forming P.
  const double inv_m = 1.0 / double(m), inv_2m = 0.5 / double(m);
  D *w = s.vec[1], *wV = s.vec[2];
  const auto VP = centred_v(s);
  D trPVP = Ln::splat(0.0), trVPVP = Ln::splat(0.0);
  for (int a = 0; a < m; ++a) {
    D x = VP(a, 0);
    for (int j = 1; j < m; ++j) x += VP(a, j);
    w[a] = VP(a, a) - x * inv_m;  // (P V P)_aa = (PV)_aa - row mean of PV
    trPVP += w[a];
  }
  const D* r = s.vec[0];  // V's row means (centred_v): (P V)_ja = V_aj - r_a, read along rows
  for (int a = 0; a < m; ++a)
    for (int j = 0; j < m; ++j) trVPVP = Ln::madd(VP(a, j), V(a, j) - r[a], trVPVP);
  const D trm = trPVP * inv_m;
  for (int a = 0; a < m; ++a) w[a] = (w[a] - trm) * inv_2m;
  // D = diag(V) w^T, so D V = diag(V) (w^T V), and w^T V = (V w)^T as V is symmetric.
  for (int a = 0; a < m; ++a) {
    D x = Ln::splat(0.0);
    for (int j = 0; j < m; ++j) x = Ln::madd(V(a, j), w[j], x);
    wV[a] = x;
  }
  const D sv = trVPVP * (inv_m * inv_m);
  const double kd = t.kdrift;  // a local: out's stores could alias t for the compiler
  for (int a = 0; a < m; ++a)
    for (int b = a; b < m; ++b) out(a, b) = out(a, b) + Ln::madd(sv, V(a, b), V(a, a) * wV[b] + V(b, b) * wV[a]) * kd;
}

/// Adds t.fast v_ab to the upper triangle of out (a != b), v_ab = n Var(dV_aa - dV_bb) of
/// the paper's head at the correlation matrix C = s.V (docs/norms.md section 3.4):
///   v_ab = 8 c1^2 (1 - C_ab^2) + 4 (c2 m)^2 (Q_aa + Q_bb - 2 C_ab Q_ab),  Q = C P C P C / m^2,
/// i.e. 4 gamma^2 (2 - gamma^2) (1 - C_ab^2) + 4 gamma^4 / (H tau0^2) (...).  Only the paper's
/// head gets here (sde_refusal refuses pre-norm on the others).  Uses tmp[0], tmp[1].
template <class Ln, int MC>
ST_HD inline void sde_gap_variance(const ShapedAttention::Sde& t, const SdeState<Ln, MC>& s,
                                   MatRef<typename Ln::D, MC> out) {
  using D = typename Ln::D;
  const auto V = s.V;
  const int m = s.m();
  const auto PV = centred_v(s);  // P V; V P = (P V)^T, so Q = V (P V)(P V) (Q is symmetric)
  auto B2 = s.tmp[0], Q = s.tmp[1];
  mul<Ln>(B2, PV, PV);
  mul<Ln>(Q, V, B2);
  const double klin = 8.0 * t.c1 * t.c1, ksoft = 4.0 * t.c2 * t.c2;  // (c2 m)^2 times Q's 1/m^2
  for (int a = 0; a < m; ++a)
    for (int b = a + 1; b < m; ++b) {
      const D c = V(a, b);
      const D v = (1.0 - c * c) * klin + (Q(a, a) + Q(b, b) - 2.0 * c * Q(a, b)) * ksoft;
      out(a, b) = out(a, b) + v * t.fast;
    }
}

/// Adds the noise increment of the head to the step: its Wishart-like term and the paper
/// head's softmax term in root form (s.Z, s.Kt: kernels/sde_step.hpp), the general
/// head's softmax term to the upper triangle of out; dW holds Sde::noise_dim(m) N(0, dt)
/// numbers (row-major dZ, then dXi).
template <class Ln, int MC>
ST_HD inline void sde_noise(const ShapedAttention::Sde& t, const SdeState<Ln, MC>& s, const typename Ln::D* dW,
                            MatRef<typename Ln::D, MC> out) {
  using D = typename Ln::D;
  using Mat = MatRef<D, MC>;
  const auto V = s.V, L = s.L, Kt = s.Kt;
  const int m = s.m();
  const Mat dZ(const_cast<D*>(dW), m), dXi(const_cast<D*>(dW) + m * m, m);
  add_root_noise<Ln, MC>(s, dZ, t.c1);  // c1 (L dZ L^T + L dZ^T L^T)
  auto T1 = s.tmp[0], T2 = s.tmp[1];
  const D c2 = Ln::splat(t.c2);  // a local: Kt's stores could alias t for the compiler
  if (t.paper) {
    // c2 (L dXi L^T P V + V P L dXi^T L^T) = L X + (L X)^T, X^T = c2 (V P L) dXi^T.
    mul_tn<Ln>(T1, centred_v(s), L, false, s.tri);  // (P V)^T L = V P L
    if (detail::use_gemm<Ln>(T2, m)) {
      mul_nt<Ln>(T2, T1, dXi);
      for (int a = 0; a < m; ++a)
        for (int j = 0; j < m; ++j) Kt(a, j) = Ln::madd(c2, T2(a, j), Kt(a, j));
    } else {  // the same sums as mul_nt, added to Kt in the same pass
      for (int a = 0; a < m; ++a)
        for (int j = 0; j < m; ++j) {
          D x = Ln::splat(0.0);
          for (int k = 0; k < m; ++k) x = Ln::madd(T1(a, k), dXi(j, k), x);
          Kt(a, j) = Ln::madd(c2, x, Kt(a, j));
        }
    }
    s.root_noise = true;
    return;
  }
  mul_nt<Ln>(T1, dXi, L, false, s.tri);
  mul<Ln>(T2, L, T1, s.tri);  // L dXi L^T: the first-order logits per unit of dt^(1/2)
  auto Qs = s.tmp[2];
  for (int i = 0; i < m; ++i) {
    const int k = t.attended(i, m);
    D mean = T2(i, 0);
    for (int j = 1; j < k; ++j) mean = mean + T2(i, j);
    mean = mean / double(k);
    for (int j = 0; j < m; ++j) Qs(i, j) = j < k ? (T2(i, j) - mean) / double(k) : Ln::splat(0.0);
  }
  mul<Ln>(T2, Qs, V, t.causal);  // Q V; out += c2 (Q V + V Q^T)
  for (int a = 0; a < m; ++a)
    for (int b = a; b < m; ++b) out(a, b) = out(a, b) + c2 * (T2(a, b) + T2(b, a));
}

}  // namespace shaped_transformer
