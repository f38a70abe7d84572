// The terms of the covariance SDE dV = b(V) dt + noise (docs/model.md section 5), summed
// over the blocks of one layer: drifts add, noises are independent and add.  The
// per-block drift and noise live in the "SDE drift and noise" sections of the block
// headers; this file only dispatches over the blocks (like diffrax's MultiTerm).
#pragma once

#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include "../network.hpp"

namespace shaped_transformer::sde {

/// Whether a block has an SDE limit (the paper's shaped head, or the shaped MLP).
inline bool has_sde(const Block& block) {
  if (const auto* a = std::get_if<ShapedAttention>(&block))
    return a->alpha == 1.0 && a->beta == 1.0 && !a->causal && !a->concat;
  return std::holds_alternative<ShapedMLP>(block);
}

/// Throws std::invalid_argument naming the first block without an SDE limit.
inline void check_has_sde(const Network& net) {
  if (net.blocks.empty()) throw std::invalid_argument("network: no blocks");
  for (std::size_t b = 0; b < net.blocks.size(); ++b) {
    if (has_sde(net.blocks[b])) continue;
    std::string why;
    if (std::holds_alternative<StandardAttention>(net.blocks[b]))
      why = "standard attention has no SDE limit (its covariance collapses to rank one)";
    else if (std::holds_alternative<ReluMLP>(net.blocks[b]))
      why = "the unshaped ReLU MLP has no SDE limit";
    else
      why = "only the paper's shaped head (alpha = beta = 1, not causal, no concat) has an SDE limit";
    throw std::invalid_argument("network: block " + std::to_string(b) + ": " + why);
  }
}

/// The drift of one layer at V: out = sum over blocks of b_block(V).
template <class M>
inline void drift(const Network& net, const M& V, M& out) {
  out.setZero(V.rows(), V.cols());
  for (const auto& blk : net.blocks) {
    if (const auto* a = std::get_if<ShapedAttention>(&blk)) sde_drift(*a, V, out);
    else if (const auto* s = std::get_if<ShapedMLP>(&blk)) sde_drift(*s, V, out);
  }
}

/// Number of N(0, dt) normals block b's noise uses per step.
inline int noise_dim(const Block& blk, int m) {
  if (const auto* a = std::get_if<ShapedAttention>(&blk)) return sde_noise_dim(*a, m);
  if (const auto* s = std::get_if<ShapedMLP>(&blk)) return sde_noise_dim(*s, m);
  return 0;
}

/// Adds block b's noise increment (from its N(0, dt) numbers dW) to out.
template <class M>
inline void add_noise(const Block& blk, const M& V, const M& L, const double* dW, M& out) {
  if (const auto* a = std::get_if<ShapedAttention>(&blk)) sde_noise(*a, V, L, dW, out);
  else if (const auto* s = std::get_if<ShapedMLP>(&blk)) sde_noise(*s, V, L, dW, out);
}

}  // namespace shaped_transformer::sde
