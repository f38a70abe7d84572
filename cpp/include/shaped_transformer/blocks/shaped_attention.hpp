// Shaped attention block: X' = lambda X + (gamma / sqrt(H)) sum_h A_h X W^V_h / sqrt(n),
// A_h = alpha I + beta Softmax(Y_h / tau) - beta C, tau = tau0 sqrt(n n_k).
// The paper's shaped head is alpha = beta = 1 and C = 1 1^T / m; `causal` uses the
// uniform causal matrix for C (and masks the softmax).  docs/model.md sections 1, 2, 4, 5.
//
// Three faces, side by side:
//   explicit forward on X  | exact step on V (section 4) | SDE drift and noise (section 5)
#pragma once

#include <cmath>
#include <cstdint>

#include "../mutation.hpp"
#include "../types.hpp"
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
  int key_dim = 0;      ///< n_k; 0 means n_k = width
  bool concat = false;  ///< H heads of width n/H and an output projection W^O (explicit only)

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
        field("concat", &B::concat, any_value(), "concatenated heads with W^O (explicit only)"));
  }
  /// Throws std::invalid_argument naming the parameter; width > 0 also checks concat.
  void validate(long width = 0) const {
    check_fields(*this);
    check_residual(gamma, lambda);
    check_concat_width(concat, heads, width);
  }

  // What the block covers (docs/architecture.md).
  static constexpr bool has_explicit = true, has_exact = true, has_sde = true;
  /// Why the exact chain cannot run this block (nullptr: it can).
  const char* exact_refusal() const;
  /// Why this head has no covariance SDE limit (nullptr: it has one).
  const char* sde_refusal() const {
    if (concat) return "concat: concatenated heads with an output projection are not covered by the SDE";
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
};

// ---- explicit forward on X ------------------------------------------------
class CancelToken;  // parallel.hpp
// Defined in cpp/src/explicit_blocks.cpp for S = float and double.
// forward_explicit: one block on the tokens X (m x n), in place, with Gaussian
// weights drawn from Stream{seed, sample, block, matrix_id} in tiles (never an
// n x n matrix); `threads` > 1 splits each weight product over column tiles with
// identical results; `cancel` stops a long product early (the result is then
// garbage and must be discarded).  forward_law: the law-exact activation sampler of docs/model.md
// section 4 (same law of X', O(m n) normals from the kLawBase matrix ids).
template <class S>
void forward_explicit(const ShapedAttention& b, Mat<S>& X, std::uint64_t seed, std::uint32_t sample,
                      std::uint32_t block, int threads = 1, const CancelToken* cancel = nullptr);
template <class S>
void forward_law(const ShapedAttention& b, Mat<S>& X, std::uint64_t seed, std::uint32_t sample, std::uint32_t block);

// ---- exact step on V ------------------------------------------------------
// Y_h = L M_h L^T with M_h = G_q G_k^T drawn in O(m^3); then the
// shared value part (exact_common.hpp).  A_h = alpha I + beta Softmax(Y_h/tau) - beta C.

}  // namespace shaped_transformer
#include "../exact_common.hpp"
namespace shaped_transformer {

inline const char* ShapedAttention::exact_refusal() const {
  if (concat) return "concat: concatenated heads are not covered by the exact chain";
  if (heads > ExactKey::kMaxHeads) return "heads: too many heads for the exact chain";
  return nullptr;
}

/// The matrix C of the general shaped head: 1 1^T / m, or the uniform causal matrix.
template <class CovT = Cov>
inline CovT shaped_centering(Eigen::Index m, bool causal) {
  CovT C = CovT::Zero(m, m);
  for (Eigen::Index i = 0; i < m; ++i)
    for (Eigen::Index j = 0; j < (causal ? i + 1 : m); ++j) C(i, j) = 1.0 / double(causal ? i + 1 : m);
  return C;
}

/// One shaped attention block applied to V exactly in law, at width n.
template <class CovT = Cov>
inline void exact_step(const ShapedAttention& b, CovT& V, long n, const ExactKey& key) {
  const Eigen::Index m = V.rows();
  CovT L;
  psd_root(V, L);
  const double nk = b.key_dim > 0 ? double(b.key_dim) : double(n);
  const double tau = b.tau0 * std::sqrt(double(n) * nk);
  const CovT Cm = shaped_centering(m, b.causal);
  CovT C(m, b.heads * m), M, Y(m, m), A;
  for (int h = 0; h < b.heads; ++h) {
    draw_key_product(nk, m, key, h, M);
    Y.noalias() = L * M * L.transpose();
    Y /= tau;
    softmax_rows(Y, b.causal);
    A = b.beta * (Y - Cm);
    A.diagonal().array() += b.alpha;
    C.middleCols(h * m, m).noalias() = A * L;
  }
  value_mix(V, L, C, b.heads, double(n), b.lambda, b.gamma, key, false);
}

// ---- SDE drift and noise --------------------------------------------------
// docs/model.md section 5, confirmed by tests/test_moments.py.
//   drift b(V) = (gamma^2/tau0^2) (D V + V D^T + tr(V P V P)/m^2 V), D_ab = V_aa w_b/(2m),
//         w_b = (P V P)_bb - tr(P V P)/m;
//   noise gamma sqrt(2 - gamma^2) (L dZ L^T + L dZ^T L^T)/sqrt(2)
//         + gamma^2/(tau0 m sqrt(H)) (L dXi L^T P V + V P L dXi^T L^T).
// These are the paper's head (alpha = beta = 1, not causal, not concat); the causal and
// general heads (alpha = 1) use sde_drift_general / sde_noise_general below.

/// Adds the attention drift b(V) to `out`.  `M` is Cov or a fixed-size Eigen matrix
/// (the SDE solver instantiates small m at compile time).
template <class M>
inline void sde_drift_paper(const ShapedAttention& b, const M& V, M& out) {
  const Eigen::Index m = V.rows();
  const double md = double(m);
  // V P = V - (V 1) 1^T / m and P V P, without forming P.
  const auto r = (V.rowwise().sum() / md).eval();
  M VP = V;
  VP.colwise() -= r;
  const auto c = (VP.colwise().sum() / md).eval();
  M PVP = VP;
  PVP.rowwise() -= c;
  const double trPVP = PVP.trace();
  const double trVPVP = VP.cwiseProduct(VP.transpose()).sum();
  const auto w = ((PVP.diagonal().array() - trPVP / md) / (2.0 * md)).matrix().eval();
  // D = diag(V) w^T, so D V = diag(V) (w^T V), and w^T V = (V w)^T as V is symmetric.
  std::decay_t<decltype(w)> wV;
  small_product(wV, V, w);
  M DV = V.diagonal() * wV.transpose();
  out +=
      (b.gamma * b.gamma / (b.tau0 * b.tau0)) ST_MUTATE(kAttDrift) * (DV + DV.transpose() + (trVPVP / (md * md)) * V);
}

/// Number of N(0, dt) normals one attention noise increment uses (dZ, dXi).
inline int sde_noise_dim(const ShapedAttention&, int m) { return 2 * m * m; }

/// Adds the attention noise increment to `out`; `dW` holds sde_noise_dim N(0, dt)
/// numbers (row-major dZ then dXi), `L` is a root of V.
template <class M>
inline void sde_noise_paper(const ShapedAttention& b, const M& V, const M& L, const double* dW, M& out) {
  const Eigen::Index m = V.rows();
  const double md = double(m);
  using RM = Eigen::Matrix<double, M::RowsAtCompileTime, M::ColsAtCompileTime, Eigen::RowMajor, M::MaxRowsAtCompileTime,
                           M::MaxColsAtCompileTime>;
  const Eigen::Map<const RM> dZ(dW, m, m), dXi(dW + m * m, m, m);
  // Both terms share the left factor L:
  //   c1 L dZ L^T + c2 L dXi L^T P V = L (c1 dZ L^T + c2 dXi (L^T P V)),
  // then symmetrise once: four small products instead of five, one symmetrisation.
  const double c1 = b.gamma * std::sqrt(std::max(0.0, 2.0 - b.gamma * b.gamma)) / std::sqrt(2.0);
  const double c2 = b.gamma * b.gamma / (b.tau0 * md * std::sqrt(double(b.heads))) ST_MUTATE(kSoftNoise);
  M PV = V, R, Q, S;
  PV.rowwise() -= (V.colwise().sum() / md).eval();  // P V
  small_product(R, L.transpose(), PV);              // L^T P V
  small_product(Q, dZ, L.transpose());
  small_product(S, dXi, R);
  Q = c1 * Q + c2 * S;
  small_product(S, L, Q);
  out += S + S.transpose();
}

// ---- SDE drift and noise of the causal and general heads ------------------
// docs/causal.md.  A = I + beta (Softmax_mask(Y/tau) - C): row i of the softmax and
// of C covers the first k_i tokens (k_i = i + 1 causal, k_i = m bidirectional), and
// P_i = diag(1_{k_i}) - 1_{k_i} 1_{k_i}^T / k_i is row i's centring.  With
//   D_ij = V_ii w^(i)_j / (2 k_i)  (j < k_i, else 0),
//          w^(i)_j = (P_i V P_i)_jj - tr(P_i V P_i) / k_i,
//   T_ab = tr(P_a V P_b V) / (k_a k_b),
// the drift is  (gamma^2/tau0^2) (beta (D V + V D^T) + beta^2 V o T)  (o: entrywise)
// and the noise  gamma sqrt(2 - gamma^2) (L dZ L^T + L dZ^T L^T)/sqrt(2)
//              + gamma^2 beta/(tau0 sqrt(H)) (Q V + V Q^T),
//   Q_ij = ((L dXi L^T)_ij - mean_{l < k_i} (L dXi L^T)_il) / k_i  (j < k_i, else 0).
// With k_i = m and beta = 1 these are the paper's terms above (tests/test_causal_sde.py
// checks that), which keep their own faster code.  alpha must be 1: A -> alpha I
// otherwise, and V changes by a factor lambda^2 + gamma^2 alpha^2 != 1 per block.

/// The paper's head (alpha = beta = 1, bidirectional, no concat): the terms above.
inline bool is_paper_head(const ShapedAttention& b) {
  return b.alpha == 1.0 && b.beta == 1.0 && !b.causal && !b.concat;
}

/// Number of tokens row i of the head attends to.
inline Eigen::Index attended(const ShapedAttention& b, Eigen::Index i, Eigen::Index m) { return b.causal ? i + 1 : m; }

/// Adds the drift of a causal or general head (see above) to `out`.  O(m^2) prefix
/// sums for the traces, one m x m product for D V.
template <class M>
inline void sde_drift_general(const ShapedAttention& b, const M& V, M& out) {
  const Eigen::Index m = V.rows();
  // Prefix sums, indexed by prefix length - 1:  Rc(p, j) = sum_{i <= p} V_ij,
  // G(p, q) = sum_{i <= p, j <= q} V_ij, F likewise of V_ij^2, H(p, q) = sum_{j <= q} Rc(p, j)^2.
  M Rc = V, F = V.cwiseAbs2();
  for (Eigen::Index p = 1; p < m; ++p) {
    Rc.row(p) += Rc.row(p - 1);
    F.row(p) += F.row(p - 1);
  }
  M G = Rc, H = Rc.cwiseAbs2();
  for (Eigen::Index q = 1; q < m; ++q) {
    G.col(q) += G.col(q - 1);
    H.col(q) += H.col(q - 1);
    F.col(q) += F.col(q - 1);
  }
  // tr(P_a V P_b V) = F - H_ab / k_a - H_ba / k_b + G^2 / (k_a k_b) at (k_a, k_b).
  M VT(m, m), D = M::Zero(m, m);
  for (Eigen::Index a = 0; a < m; ++a) {
    const Eigen::Index ia = attended(b, a, m) - 1;
    const double ka = double(ia + 1);
    for (Eigen::Index c = 0; c < m; ++c) {
      const Eigen::Index ic = attended(b, c, m) - 1;
      const double kc = double(ic + 1);
      const double tr = F(ia, ic) - H(ia, ic) / ka - H(ic, ia) / kc + G(ia, ic) * G(ia, ic) / (ka * kc);
      VT(a, c) = V(a, c) * tr / (ka * kc);
    }
    // w^(a)_j = V_jj - 2 Rc(k-1, j)/k + G/k^2 - tr(P_a V P_a)/k, tr(P_a V P_a) = sum_{j<k} V_jj - G/k.
    const double g = G(ia, ia);
    const double trP = V.diagonal().head(ia + 1).sum() - g / ka;
    for (Eigen::Index j = 0; j <= ia; ++j)
      D(a, j) = V(a, a) * (V(j, j) - 2.0 * Rc(ia, j) / ka + g / (ka * ka) - trP / ka) / (2.0 * ka);
  }
  M DV;
  small_product(DV, D, V);
  out += (b.gamma * b.gamma / (b.tau0 * b.tau0)) ST_MUTATE(kGeneralDrift) *
         (b.beta * (DV + DV.transpose()) + (b.beta * b.beta) * VT);
}

/// Adds the noise increment of a causal or general head (see above) to `out`; `dW`
/// as for sde_noise (row-major dZ then dXi, sde_noise_dim numbers).
template <class M>
inline void sde_noise_general(const ShapedAttention& b, const M& V, const M& L, const double* dW, M& out) {
  const Eigen::Index m = V.rows();
  using RM = Eigen::Matrix<double, M::RowsAtCompileTime, M::ColsAtCompileTime, Eigen::RowMajor, M::MaxRowsAtCompileTime,
                           M::MaxColsAtCompileTime>;
  const Eigen::Map<const RM> dZ(dW, m, m), dXi(dW + m * m, m, m);
  const double c1 = b.gamma * std::sqrt(std::max(0.0, 2.0 - b.gamma * b.gamma)) / std::sqrt(2.0);
  const double c2 = b.gamma * b.gamma * b.beta / (b.tau0 * std::sqrt(double(b.heads))) ST_MUTATE(kGeneralSoftNoise);
  M T, Yh, S, Q = M::Zero(m, m);
  small_product(T, dXi, L.transpose());
  small_product(Yh, L, T);  // L dXi L^T: the first-order logits per unit of dt^(1/2)
  for (Eigen::Index i = 0; i < m; ++i) {
    const Eigen::Index k = attended(b, i, m);
    const double mean = Yh.row(i).head(k).sum() / double(k);
    Q.row(i).head(k) = (Yh.row(i).head(k).array() - mean) / double(k);
  }
  small_product(T, dZ, L.transpose());
  small_product(S, L, T);  // L dZ L^T
  small_product(T, Q, V);
  S = c1 * S + c2 * T;
  out += S + S.transpose();
}

// ---- the SDE face: the paper's head keeps its faster terms --------------------

/// Adds the drift b(V) of this head (paper's or general) to `out`.
template <class M>
inline void sde_drift(const ShapedAttention& b, const M& V, M& out) {
  if (is_paper_head(b)) sde_drift_paper(b, V, out);
  else sde_drift_general(b, V, out);  // causal or beta != 1 (docs/causal.md)
}

/// Adds the noise increment of this head (paper's or general) to `out`.
template <class M>
inline void sde_noise(const ShapedAttention& b, const M& V, const M& L, const double* dW, M& out) {
  if (is_paper_head(b)) sde_noise_paper(b, V, L, dW, out);
  else sde_noise_general(b, V, L, dW, out);  // causal or beta != 1 (docs/causal.md)
}

}  // namespace shaped_transformer
