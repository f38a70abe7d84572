// Standard ReLU MLP block: the shaped MLP with phi = ReLU and c = 2, with the same
// optional per-token normalisations as the standard attention block.  Its faces
// (explicit forward, exact step), written once for every backend.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>

#include "../explicit_common.hpp"
#include "fields.hpp"
#include "resources.hpp"

namespace shaped_transformer {

struct ReluMLP {
  static constexpr const char* kind = "relu_mlp";
  static constexpr const char* python_class = "ReluMLP";  ///< its class in shaped_transformer
  double gamma = 0.5;
  double lambda = std::sqrt(1.0 - 0.25);
  Norm norm = Norm::None;

  static constexpr auto fields() {
    using B = ReluMLP;
    return std::make_tuple(
        field("gamma", &B::gamma, within(0.0, 1.0), "branch weight"),
        field("lam", &B::lambda, residual_weight(), "residual weight, lambda^2 + gamma^2 = 1; None: sqrt(1 - gamma^2)"),
        field("norm", &B::norm, any_value(), "per-token normalisation"));
  }
  void validate(long = 0) const {
    check_fields(*this);
    check_residual(gamma, lambda);
  }

  // ---- traits: what the drivers, the batched kernels and the device read ----
  static constexpr bool has_explicit = true, has_exact = true, has_sde = false;
  /// Its exact step needs the host's O(m^2 n) Gram kernel: the CPU runs it.
  static constexpr bool exact_on_device = false;
  static constexpr const char* no_sde = "the unshaped ReLU MLP has no SDE limit";
  const char* exact_refusal() const { return nullptr; }
  /// Its weight matrices (explicit network) and the memory one worker holds for it (resources.hpp).
  template <class F>
  void weights(long width, F&& f) const {
    mlp_weights(width, f);
  }
  Workspace workspace(double m, double n, double itemsize) const { return mlp_workspace(m, n, itemsize); }
  /// The parameters of its exact step (plain data).
  struct Exact {
    Norm norm;
    double gamma, lambda;
    ST_HD int wide(int m) const { return m; }
  };
  Exact exact_terms() const { return Exact{norm, gamma, lambda}; }
};

// ---- explicit forward on X ------------------------------------------------
template <class Ops>
inline void explicit_forward(const ReluMLP& b, Ops& o) {
  mlp_forward(1.0, 0.0, 2.0, b.gamma, b.lambda, b.norm, o);
}

// ---- exact step on V ------------------------------------------------------
// As the shaped MLP with phi = ReLU, c = 2; pre_rms feeds the branch
// with L_in = D^{-1/2} L, post_rms normalises V', LayerNorm on the state (V, s) (with_norm,
// exact_common.hpp).
template <class Ctx>
ST_HD inline bool exact_step(const ReluMLP::Exact& t, Ctx& c) {
  return with_norm(c, t.norm,
                   [&](auto L, auto Lin, bool) { return mlp_exact_step(c, L, Lin, 2.0, 1.0, 0.0, t.lambda, t.gamma); });
}

}  // namespace shaped_transformer
