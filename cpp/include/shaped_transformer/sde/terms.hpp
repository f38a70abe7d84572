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

/// Whether a block has an SDE limit (a shaped head with alpha = 1, causal or not,
/// any beta, no concat; or the shaped MLP).
inline bool has_sde(const Block& block) {
  if (const auto* a = std::get_if<ShapedAttention>(&block)) return has_sde_limit(*a);
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
    else if (std::get<ShapedAttention>(net.blocks[b]).concat)
      why = "concat: concatenated heads with an output projection are not covered by the SDE";
    else
      why = "alpha: only shaped heads with alpha = 1 (any beta, causal or not) have an SDE limit "
            "(A -> alpha I, so V would change by lambda^2 + gamma^2 alpha^2 != 1 per block)";
    throw std::invalid_argument("network: block " + std::to_string(b) + ": " + why);
  }
}

/// The drift of one layer at V: out = sum over blocks of b_block(V).
template <class M>
inline void drift(const Network& net, const M& V, M& out) {
  out.setZero(V.rows(), V.cols());
  for (const auto& blk : net.blocks) {
    if (const auto* a = std::get_if<ShapedAttention>(&blk)) {
      if (is_paper_head(*a)) sde_drift(*a, V, out);
      else sde_drift_general(*a, V, out);  // causal or beta != 1 (docs/causal.md)
    } else if (const auto* s = std::get_if<ShapedMLP>(&blk)) sde_drift(*s, V, out);
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
  if (const auto* a = std::get_if<ShapedAttention>(&blk)) {
    if (is_paper_head(*a)) sde_noise(*a, V, L, dW, out);
    else sde_noise_general(*a, V, L, dW, out);  // causal or beta != 1 (docs/causal.md)
  } else if (const auto* s = std::get_if<ShapedMLP>(&blk)) sde_noise(*s, V, L, dW, out);
}

}  // namespace shaped_transformer::sde
