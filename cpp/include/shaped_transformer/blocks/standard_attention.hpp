// Standard attention block: A_h = Softmax(Y_h / sqrt(n_k)), with an optional per-token
// normalisation before the block (pre-LN) or after the residual sum (post-LN).
// It has no SDE limit: its covariance collapses to rank one (docs/model.md section 5).
// Its faces (explicit forward, exact step), written once for every backend.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>

#include "../explicit_common.hpp"
#include "fields.hpp"
#include "resources.hpp"

namespace shaped_transformer {

struct StandardAttention {
  static constexpr const char* kind = "standard_attention";
  static constexpr const char* python_class = "StandardAttention";  ///< its class in shaped_transformer
  int heads = 1;
  double gamma = 0.5;
  double lambda = std::sqrt(1.0 - 0.25);
  int key_dim = 0;  ///< n_k; 0 means n_k = width
  Norm norm = Norm::None;
  bool concat = false;

  static constexpr auto fields() {
    using B = StandardAttention;
    return std::make_tuple(
        field("heads", &B::heads, at_least(1), "number of heads H"),
        field("gamma", &B::gamma, within(0.0, 1.0), "branch weight"),
        field("lam", &B::lambda, residual_weight(), "residual weight, lambda^2 + gamma^2 = 1; None: sqrt(1 - gamma^2)"),
        field("key_dim", &B::key_dim, or_unset(at_least(1), 0), "n_k; None (0 in C++): the head width"),
        field("norm", &B::norm, any_value(), "per-token normalisation"),
        field("concat", &B::concat, any_value(), "concatenated heads with W^O (explicit only)"));
  }
  void validate(long width = 0) const {
    check_fields(*this);
    check_residual(gamma, lambda);
    check_concat_width(concat, heads, width);
  }

  // ---- traits: what the drivers, the batched kernels and the device read ----
  static constexpr bool has_explicit = true, has_exact = true, has_sde = false;
  static constexpr bool exact_on_device = true;  ///< its exact step runs on the CUDA threads
  static constexpr const char* no_sde = "standard attention has no SDE limit (its covariance collapses to rank one)";
  /// Why the exact chain cannot run this block (nullptr: it can).
  const char* exact_refusal() const {
    if (concat) return "concat: concatenated heads are not covered by the exact chain";
    if (heads > ExactKey::kMaxHeads) return "heads: too many heads for the exact chain";
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
    Norm norm;
    double gamma, lambda;
    ST_HD int wide(int m) const { return heads * m; }
  };
  Exact exact_terms() const { return Exact{heads, key_dim, norm, gamma, lambda}; }
};

// ---- explicit forward on X ------------------------------------------------
template <class Ops>
inline void explicit_forward(const StandardAttention& b, Ops& o) {
  AttentionForward a;
  a.heads = b.heads;
  a.key_dim = b.key_dim;
  a.concat = b.concat;
  a.gamma = b.gamma;
  a.lambda = b.lambda;
  a.norm = b.norm;
  attention_forward(a, o);
}

// ---- exact step on V ------------------------------------------------------
// Same reduction as the shaped head (attention_exact_step) with A_h = Softmax(Y_h / sqrt(n_k)),
// Y_h = L_in M_h L_in^T.  Norms by with_norm (exact_common.hpp): pre_rms feeds the branch
// with L_in = D^{-1/2} L (D = diag V) while the residual keeps L; post_rms maps
// V' -> D'^{-1/2} V' D'^{-1/2}; LayerNorm runs on the state (V, s) (docs/norms.md section 6).
template <class Ctx>
ST_HD inline bool exact_step(const StandardAttention::Exact& t, Ctx& c) {
  const double nk = t.key_dim > 0 ? double(t.key_dim) : double(c.n);
  return attention_exact_step(c, t, HeadsForm{t.heads, nk, device::sqrt_d(nk), false, false});
}

}  // namespace shaped_transformer
