// A network is a sequence of blocks (as in neural-tangents' stax.serial) that is
// repeated `depth` times.  One repetition is one "layer" and advances time by 1/n:
// a shaped Transformer layer is {ShapedAttention, ShapedMLP}.
//
// BasicNetwork<Kinds...> works for any list of block kinds; each kind is one header
// (blocks/*.hpp: field table, validate(), its traits, and its faces written once for
// every backend: explicit forward, exact step, SDE drift and noise).  Every dispatch
// over the kinds reads those traits (a std::visit with `if constexpr`, or the plain
// face data of kernels/block_list.hpp for the SIMD kernels and the GPU), so a kind
// that lacks a face is refused by name and a kind missing a trait cannot compile.
// The registry (the kinds the library is built for) is the one line `Network` below;
// docs/architecture.md shows how to add a kind.
#pragma once

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "blocks/relu_mlp.hpp"
#include "blocks/shaped_attention.hpp"
#include "blocks/shaped_mlp.hpp"
#include "blocks/standard_attention.hpp"

namespace shaped_transformer {

template <class... Kinds>
struct BasicNetwork {
  using Block = std::variant<Kinds...>;
  std::vector<Block> blocks;  ///< one layer

  /// Global block index of block b of layer l: the `block` word of the RNG counter.
  std::uint32_t block_index(std::size_t layer, std::size_t b) const { return std::uint32_t(layer * blocks.size() + b); }
};

/// The registry: the block kinds the library (and the Python module) is built for.
using Network = BasicNetwork<ShapedAttention, StandardAttention, ShapedMLP, ReluMLP>;
using Block = Network::Block;

template <class B>
using block_kind_t = std::decay_t<B>;

/// " (block i, kind)": where an error about a network's block comes from.
template <class B>
std::string block_where(std::size_t i) {
  return " (block " + std::to_string(i) + ", " + B::kind + ")";
}

/// Checks the parameters of every block (std::invalid_argument whose message starts
/// with the parameter's name); `width` > 0 also checks that concatenated heads divide it.
template <class Net>
void validate_network(const Net& net, long width) {
  if (net.blocks.empty()) throw std::invalid_argument("blocks: the network has no blocks");
  for (std::size_t i = 0; i < net.blocks.size(); ++i)
    std::visit(
        [&](const auto& b) {
          using B = block_kind_t<decltype(b)>;
          try {
            b.validate(width);
          } catch (const std::invalid_argument& e) {
            throw std::invalid_argument(e.what() + block_where<B>(i));
          }
        },
        net.blocks[i]);
}

namespace detail {
template <class B, class = void>
struct takes_norm : std::false_type {};
template <class B>
struct takes_norm<B, std::void_t<decltype(std::declval<const B&>().norm)>> : std::true_type {};
}  // namespace detail

/// Whether block kind B has a `norm` placement.  The exact step of such a kind goes
/// through with_norm (exact_common.hpp), which carries LayerNorm's state s.
template <class B>
inline constexpr bool takes_norm_v = detail::takes_norm<B>::value;

/// The norm placement of a block (Norm::None for a kind without one).
template <class B>
Norm block_norm(const B& b) {
  if constexpr (takes_norm_v<B>) return b.norm;
  else return Norm::None;
}

/// Whether the exact chain of `net` carries LayerNorm's state s = X 1_n / sqrt(n)
/// (docs/norms.md section 6): when any block has a LayerNorm placement.  Every block of
/// such a network then takes the frame step of exact_common.hpp.
template <class Net>
bool exact_carries_s(const Net& net) {
  for (const auto& blk : net.blocks)
    if (std::visit([](const auto& b) { return is_layer_norm(block_norm(b)); }, blk)) return true;
  return false;
}

/// Throws std::invalid_argument (naming the parameter) when the exact chain cannot
/// run a block of `net`.
template <class Net>
void check_exact_covers(const Net& net) {
  const bool carries_s = exact_carries_s(net);
  for (std::size_t i = 0; i < net.blocks.size(); ++i)
    std::visit(
        [&](const auto& b) {
          using B = block_kind_t<decltype(b)>;
          if constexpr (!B::has_exact) {
            throw std::invalid_argument(std::string("blocks: ") + B::kind + " has no exact chain" + block_where<B>(i));
          } else {
            if (const char* why = b.exact_refusal()) throw std::invalid_argument(why + block_where<B>(i));
            if (carries_s && !takes_norm_v<B>)
              throw std::invalid_argument(std::string("blocks: ") + B::kind +
                                          " has no norm, so its exact step does not carry LayerNorm's state s "
                                          "(docs/norms.md section 6) that another block of this network needs" +
                                          block_where<B>(i));
          }
        },
        net.blocks[i]);
}

/// Why block b has no covariance SDE limit (nullptr: it has one).
template <class... K>
const char* sde_refusal(const std::variant<K...>& block) {
  return std::visit(
      [](const auto& b) -> const char* {
        using B = block_kind_t<decltype(b)>;
        if constexpr (B::has_sde) return b.sde_refusal();
        else return B::no_sde;
      },
      block);
}

/// Throws std::invalid_argument (naming `what`, "depth" or "steps") when `count`
/// layers of `net` need more than 2^32 block indices (the block word of the random
/// counter): layer * blocks + b must fit in 32 bits.
template <class Net>
void check_block_counter(const Net& net, std::int64_t count, const char* what) {
  if (count > 0 && std::uint64_t(count) * net.blocks.size() > std::uint64_t(std::numeric_limits<std::uint32_t>::max()))
    throw std::invalid_argument(std::string(what) + ": " + what +
                                " * blocks must stay below 2^32 (the block counter word)");
}

/// The per-token normalisation of block b (Norm::None for a kind without one).
template <class... K>
Norm block_norm(const std::variant<K...>& block) {
  return std::visit([](const auto& b) -> Norm { return block_norm(b); }, block);
}

/// 0: no norm, 1: pre-norm, 2: post-norm (RMS and LayerNorm share their SDE limit).
inline int norm_placement(Norm k) { return k == Norm::None ? 0 : is_pre_norm(k) ? 1 : 2; }

/// Why `net` has no covariance SDE limit, naming its first block without one
/// ("network: block 1 (relu_mlp): ..."), or the placements it mixes ("norm: ...");
/// empty when it has one.  The Python package shows this text (Network.sde_refusal)
/// instead of keeping its own.
template <class Net>
std::string sde_refusal_text(const Net& net) {
  if (net.blocks.empty()) return "network: no blocks";
  for (std::size_t b = 0; b < net.blocks.size(); ++b)
    if (const char* why = sde_refusal(net.blocks[b])) {
      const char* kind = std::visit([](const auto& blk) { return block_kind_t<decltype(blk)>::kind; }, net.blocks[b]);
      return "network: block " + std::to_string(b) + " (" + kind + "): " + why;
    }
  // The normalized SDE (docs/norms.md section 8 item 4): the scales' recursion behind
  // pre-norm's fast drift assumes every block normalizes the same way.
  const Norm first = block_norm(net.blocks[0]);
  for (std::size_t b = 1; b < net.blocks.size(); ++b) {
    const Norm k = block_norm(net.blocks[b]);
    if (norm_placement(k) != norm_placement(first))
      return std::string("norm: the SDE needs every block to normalize in the same place, got '") + norm_name(first) +
             "' in block 0 and '" + norm_name(k) + "' in block " + std::to_string(b) +
             " (an un-normalized block does not relax the token scales, a post-norm block resets them, so the "
             "limit of docs/norms.md does not hold); use the explicit network, the law sampler or the exact chain";
  }
  return "";
}

/// Throws std::invalid_argument naming the first block without an SDE limit.
template <class Net>
void check_sde_covers(const Net& net) {
  const std::string why = sde_refusal_text(net);
  if (!why.empty()) throw std::invalid_argument(why);
}

}  // namespace shaped_transformer
