// A test-only block kind, defined in this one header (docs/architecture.md, "Adding a
// block kind"): the deterministic scaled identity
//   explicit  X' = sqrt(1 + a/n) X,
//   exact     V' = (1 + a/n) V,
//   SDE       dV = a V dt (no noise),
// so that a layer per 1/n gives V(T) = (1 + a/n)^(nT) V0 -> e^{aT} V0.  test_block_kind.cpp
// runs it through every driver with one registry line.
#pragma once

#include <cmath>
#include <cstdint>
#include <tuple>

#include <shaped_transformer/blocks/fields.hpp>
#include <shaped_transformer/exact_common.hpp>
#include <shaped_transformer/types.hpp>

namespace st_test {

namespace st = shaped_transformer;

struct ScaledIdentity {
  static constexpr const char* kind = "scaled_identity";
  double a = 1.0;  ///< growth rate of V per unit time

  static constexpr auto fields() {
    return std::make_tuple(st::field("a", &ScaledIdentity::a, st::finite(), "growth rate of V"));
  }
  void validate(long = 0) const { st::check_fields(*this); }

  static constexpr bool has_explicit = true, has_exact = true, has_sde = true;
  const char* exact_refusal() const { return nullptr; }
  const char* sde_refusal() const { return nullptr; }
};

// ---- explicit forward on X (found by argument-dependent lookup) --------------
template <class S>
void forward_explicit(const ScaledIdentity& b, st::Mat<S>& X, std::uint64_t, std::uint32_t, std::uint32_t, int = 1,
                      const st::CancelToken* = nullptr) {
  b.validate();
  X *= S(std::sqrt(1.0 + b.a / double(X.cols())));
}
template <class S>
void forward_law(const ScaledIdentity& b, st::Mat<S>& X, std::uint64_t seed, std::uint32_t sample,
                 std::uint32_t block) {
  forward_explicit(b, X, seed, sample, block);
}

// ---- exact step on V --------------------------------------------------------
inline void exact_step(const ScaledIdentity& b, st::Cov& V, long n, const st::ExactKey&) { V *= 1.0 + b.a / double(n); }

// ---- SDE drift and noise ----------------------------------------------------
template <class M>
void sde_drift(const ScaledIdentity& b, const M& V, M& out) {
  out += b.a * V;
}
inline int sde_noise_dim(const ScaledIdentity&, int) { return 0; }
template <class M>
void sde_noise(const ScaledIdentity&, const M&, const M&, const double*, M&) {}

}  // namespace st_test
