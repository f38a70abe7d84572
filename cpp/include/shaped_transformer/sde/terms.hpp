// The terms of the covariance SDE dV = b(V) dt + noise (docs/model.md section 5), summed
// over the blocks of one layer: drifts add, noises are independent and add.  The
// per-block drift and noise live in the "SDE drift and noise" sections of the block
// headers; this file only dispatches over the blocks (like diffrax's MultiTerm).
// The drivers check first (check_sde_covers, network.hpp) that every block has an
// SDE limit; a kind without one (has_sde = false) is refused here too, never skipped.
#pragma once

#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include "../network.hpp"

namespace shaped_transformer::sde {

/// Calls fn(block) (returning R) for a block with an SDE face; throws for a kind without one.
template <class R = void, class... K, class Fn>
inline R visit_sde(const std::variant<K...>& block, Fn&& fn) {
  return std::visit(
      [&](const auto& b) -> R {
        using B = block_kind_t<decltype(b)>;
        if constexpr (B::has_sde) return fn(b);
        else throw std::invalid_argument(std::string("network: ") + B::no_sde);
      },
      block);
}

/// The drift of one layer at V: out = sum over blocks of b_block(V).
template <class Net, class M>
inline void drift(const Net& net, const M& V, M& out) {
  out.setZero(V.rows(), V.cols());
  for (const auto& blk : net.blocks) visit_sde(blk, [&](const auto& b) { sde_drift(b, V, out); });
}

/// Number of N(0, dt) normals block b's noise uses per step.
template <class... K>
inline int noise_dim(const std::variant<K...>& blk, int m) {
  return visit_sde<int>(blk, [&](const auto& b) { return sde_noise_dim(b, m); });
}

/// Adds block b's noise increment (from its N(0, dt) numbers dW) to out.
template <class M, class... K>
inline void add_noise(const std::variant<K...>& blk, const M& V, const M& L, const double* dW, M& out) {
  visit_sde(blk, [&](const auto& b) { sde_noise(b, V, L, dW, out); });
}

}  // namespace shaped_transformer::sde
