// A test-only block kind, defined in this one header (docs/architecture.md, "Adding a
// block kind"): the deterministic scaled identity
//   explicit  X' = sqrt(1 + a/n) X,
//   exact     V' = (1 + a/n) V,
//   SDE       dV = a V dt (no noise),
// so that a layer per 1/n gives V(T) = (1 + a/n)^(nT) V0 -> e^{aT} V0.  One registry
// line (test_block_kind.cpp) runs it through every driver: the explicit network and
// the law sampler, the exact chain and the SDE on the generic path and on the batched
// SIMD kernels (block_kind_kernels_*.cpp compile them for it, as the library does for
// its own network), and the CUDA kernels (tests/test_cuda.py compiles them with nvcc).
#pragma once

#include <cmath>
#include <cstdint>
#include <tuple>

#include <shaped_transformer/blocks/fields.hpp>
#include <shaped_transformer/blocks/resources.hpp>
#include <shaped_transformer/explicit_common.hpp>
#include <shaped_transformer/kernels/sde_step.hpp>

namespace st_test {

namespace st = shaped_transformer;

struct ScaledIdentity {
  static constexpr const char* kind = "scaled_identity";
  double a = 1.0;  ///< growth rate of V per unit time

  static constexpr auto fields() {
    return std::make_tuple(st::field("a", &ScaledIdentity::a, st::finite(), "growth rate of V"));
  }
  void validate(long = 0) const { st::check_fields(*this); }

  // traits
  static constexpr bool has_explicit = true, has_exact = true, has_sde = true;
  static constexpr bool exact_on_device = true;
  const char* exact_refusal() const { return nullptr; }
  const char* sde_refusal() const { return nullptr; }
  template <class F>
  void weights(long, F&&) const {}  // no weights
  st::Workspace workspace(double, double, double) const { return {}; }
  struct Exact {
    double a;
    ST_HD int wide(int m) const { return m; }
  };
  Exact exact_terms() const { return Exact{a}; }
  struct Sde {
    double a;
    ST_HD static constexpr int noise_dim(int) { return 0; }
  };
  Sde sde_terms(int) const { return Sde{a}; }
};

// ---- explicit forward on X (found by argument-dependent lookup) --------------
template <class Ops>
void explicit_forward(const ScaledIdentity& b, Ops& o) {
  o.scale(std::sqrt(1.0 + b.a / double(o.n())));
}

// ---- exact step on V --------------------------------------------------------
template <class Ctx>
ST_HD bool exact_step(const ScaledIdentity::Exact& t, Ctx& c) {
  const double f = 1.0 + t.a / double(c.n);
  for (int i = 0; i < c.m; ++i)
    for (int j = 0; j < c.m; ++j) c.V(i, j) = c.V(i, j) * f;
  return true;
}

// ---- SDE drift and noise ----------------------------------------------------
template <class Ln, int MC>
ST_HD void sde_drift(const ScaledIdentity::Sde& t, const st::SdeState<Ln, MC>& s, st::MatRef<typename Ln::D, MC> out) {
  for (int i = 0; i < s.m(); ++i)
    for (int j = i; j < s.m(); ++j) out(i, j) = out(i, j) + t.a * s.V(i, j);
}
template <class Ln, int MC>
ST_HD void sde_noise(const ScaledIdentity::Sde&, const st::SdeState<Ln, MC>&, const typename Ln::D*,
                     st::MatRef<typename Ln::D, MC>) {}

}  // namespace st_test

// ---- the one registry line --------------------------------------------------
#include <shaped_transformer/network.hpp>

namespace st_test {
/// The library's kinds and the test-only kind.
using TestNetwork =
    shaped_transformer::BasicNetwork<shaped_transformer::ShapedAttention, shaped_transformer::StandardAttention,
                                     shaped_transformer::ShapedMLP, shaped_transformer::ReluMLP, ScaledIdentity>;
}  // namespace st_test
