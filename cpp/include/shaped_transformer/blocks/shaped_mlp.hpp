// Shaped MLP block: X' = lambda X + gamma sqrt(c) phi_s(X W^pre / sqrt(n)) W^post / sqrt(n),
// phi_s(x) = s_+ max(x,0) + s_- min(x,0), s_+- = 1 + c_+- / sqrt(n), c = 2 / (s_+^2 + s_-^2).
// docs/model.md sections 2, 4, 5.  Its three faces, written once for every backend.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>

#include "../explicit_common.hpp"
#include "../kernels/sde_step.hpp"
#include "../mutation.hpp"
#include "fields.hpp"
#include "resources.hpp"

namespace shaped_transformer {

struct ShapedMLP {
  static constexpr const char* kind = "shaped_mlp";
  static constexpr const char* python_class = "ShapedMLP";  ///< its class in shaped_transformer
  double c_plus = 0.0;
  double c_minus = -1.0;
  double gamma = 0.5;
  double lambda = std::sqrt(1.0 - 0.25);
  Norm norm = Norm::None;  ///< per-token normalisation (docs/norms.md)

  static constexpr auto fields() {
    using B = ShapedMLP;
    return std::make_tuple(
        field("c_plus", &B::c_plus, finite(), "slope shift c_+ of phi_s"),
        field("c_minus", &B::c_minus, finite(), "slope shift c_- of phi_s"),
        field("gamma", &B::gamma, within(0.0, 1.0), "branch weight"),
        field("lam", &B::lambda, residual_weight(), "residual weight, lambda^2 + gamma^2 = 1; None: sqrt(1 - gamma^2)"),
        field("norm", &B::norm, any_value(),
              "per-token normalisation (exact chain, SDE: the correlation SDE; docs/norms.md)"));
  }
  void validate(long = 0) const {
    check_fields(*this);
    check_residual(gamma, lambda);
  }

  // ---- traits: what the drivers, the batched kernels and the device read ----
  static constexpr bool has_explicit = true, has_exact = true, has_sde = true;
  /// Its exact step needs the host's O(m^2 n) Gram kernel: the CPU runs it.
  static constexpr bool exact_on_device = false;
  const char* exact_refusal() const { return nullptr; }
  const char* sde_refusal() const { return nullptr; }
  /// Its weight matrices (explicit network) and the memory one worker holds for it (resources.hpp).
  template <class F>
  void weights(long width, F&& f) const {
    mlp_weights(width, f);
  }
  Workspace workspace(double m, double n, double itemsize) const { return mlp_workspace(m, n, itemsize); }
  /// The parameters of its exact step (plain data).
  struct Exact {
    Norm norm;
    double c_plus, c_minus, gamma, lambda;
    ST_HD int wide(int m) const { return m; }
  };
  Exact exact_terms() const { return Exact{norm, c_plus, c_minus, gamma, lambda}; }
  /// The coefficients of its SDE drift and noise (plain data).
  struct Sde {
    double kdrift;  ///< gamma^2 (c_+ - c_-)^2 / (2 pi)
    double gamma;
    Norm norm = Norm::None;  ///< the placement (the step normalizes when it is not None)
    double fast = 0.0;       ///< pre-norm: its coefficient in beta_fast (sde/terms.hpp), else 0
    ST_HD static constexpr int noise_dim(int m) { return m * m; }
  };
  Sde sde_terms(int) const {
    return Sde{gamma * gamma * (c_plus - c_minus) * (c_plus - c_minus) / (2.0 * M_PI) ST_MUTATE(kMlpDrift),
               gamma ST_MUTATE(kMlpNoise), norm, 0.0};
  }
};

// ---- explicit forward on X ------------------------------------------------
template <class Ops>
inline void explicit_forward(const ShapedMLP& b, Ops& o) {
  const double rn = std::sqrt(double(o.n()));
  const double sp = 1.0 + b.c_plus / rn, sm = 1.0 + b.c_minus / rn;
  mlp_forward(sp, sm, 2.0 / (sp * sp + sm * sm), b.gamma, b.lambda, b.norm, o);
}

// ---- exact step on V ------------------------------------------------------
// Phi = c phi_s(K) phi_s(K)^T / n with K = L G' (O(m^2 n), the context's Gram kernel),
// then the value part with C = a root of Phi (exact_common.hpp, mlp_exact_step).
// Norms by with_norm (exact_common.hpp; pre_rms: the branch gets D^{-1/2} L; post_rms: V' -> its
// correlation matrix; LayerNorm on the state (V, s), docs/norms.md section 6).
template <class Ctx>
ST_HD inline bool exact_step(const ShapedMLP::Exact& t, Ctx& c) {
  const double rn = device::sqrt_d(double(c.n));
  const double sp = 1.0 + t.c_plus / rn, sm = 1.0 + t.c_minus / rn;
  return with_norm(c, t.norm, [&](auto L, auto Lin, bool) {
    return mlp_exact_step(c, L, Lin, 2.0 / (sp * sp + sm * sm), sp, sm, t.lambda, t.gamma);
  });
}

// ---- SDE drift and noise --------------------------------------------------
// drift b_ab = gamma^2 nu(rho_ab) sqrt(V_aa V_bb) off the diagonal,
// nu(rho) = ((c_+ - c_-)^2 / (2 pi)) (sqrt(1 - rho^2) - rho arccos rho);
// noise covariance 2 gamma^2 Sigma_lin, drawn as gamma (L dZ L^T + L dZ^T L^T).
// Templates over the lanes (see shaped_attention.hpp); they add the upper triangle.

/// Adds the MLP drift to the upper triangle of out.
template <class Ln, int MC>
ST_HD inline void sde_drift(const ShapedMLP::Sde& t, const SdeState<Ln, MC>& s, MatRef<typename Ln::D, MC> out) {
  using D = typename Ln::D;
  if (t.kdrift == 0.0) return;
  const auto V = s.V;
  const int m = s.m();
  const D zero = Ln::splat(0.0), one = Ln::splat(1.0);
  const double kd = t.kdrift;       // a local: out's stores could alias t for the compiler
  D *d = s.vec[1], *rd = s.vec[2];  // sqrt(V_aa) and its reciprocal (0 where V_aa <= 0): m roots, not m^2
  for (int a = 0; a < m; ++a) {
    const D v = V(a, a);
    d[a] = Ln::sqrt(v > zero ? v : zero);
    rd[a] = d[a] > zero ? one / (d[a] > zero ? d[a] : one) : zero;
  }
  for (int a = 0; a < m; ++a)
    for (int c = a + 1; c < m; ++c) {
      D rho = V(a, c) * (rd[a] * rd[c]);
      rho = rho < -one ? -one : (rho > one ? one : rho);
      out(a, c) = out(a, c) + kd * (Ln::sqrt(1.0 - rho * rho) - rho * Ln::acos(rho)) * (d[a] * d[c]);
    }
}

/// Adds t.fast v_ab to the upper triangle of out (a != b), v_ab = n Var(dV_aa - dV_bb) =
/// 8 gamma^2 (1 - C_ab^2) at the correlation matrix C = s.V (docs/norms.md section 3.4).
template <class Ln, int MC>
ST_HD inline void sde_gap_variance(const ShapedMLP::Sde& t, const SdeState<Ln, MC>& s, MatRef<typename Ln::D, MC> out) {
  const auto V = s.V;
  const int m = s.m();
  const double k = 8.0 * t.gamma * t.gamma * t.fast;
  for (int a = 0; a < m; ++a)
    for (int b = a + 1; b < m; ++b) out(a, b) = out(a, b) + (1.0 - V(a, b) * V(a, b)) * k;
}

/// Adds the MLP noise increment gamma (L dZ L^T + L dZ^T L^T) to the step, in root form
/// (s.Z: kernels/sde_step.hpp); dW: m^2 N(0, dt) numbers, row-major dZ.
template <class Ln, int MC>
ST_HD inline void sde_noise(const ShapedMLP::Sde& t, const SdeState<Ln, MC>& s, const typename Ln::D* dW,
                            MatRef<typename Ln::D, MC>) {
  using D = typename Ln::D;
  add_root_noise<Ln, MC>(s, MatRef<D, MC>(const_cast<D*>(dW), s.m()), t.gamma);
}

}  // namespace shaped_transformer
