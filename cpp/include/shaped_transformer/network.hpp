// A network is a sequence of blocks (as in neural-tangents' stax.serial) that is
// repeated `depth` times.  One repetition is one "layer" and advances time by 1/n:
// a shaped Transformer layer is {ShapedAttention, ShapedMLP}.
#pragma once

#include <variant>
#include <vector>

#include "blocks/relu_mlp.hpp"
#include "blocks/shaped_attention.hpp"
#include "blocks/shaped_mlp.hpp"
#include "blocks/standard_attention.hpp"

namespace shaped_transformer {

using Block = std::variant<ShapedAttention, StandardAttention, ShapedMLP, ReluMLP>;

struct Network {
  std::vector<Block> blocks;  ///< one layer

  /// Global block index of block b of layer l: the `block` word of the RNG counter.
  std::uint32_t block_index(std::size_t layer, std::size_t b) const {
    return std::uint32_t(layer * blocks.size() + b);
  }
};

}  // namespace shaped_transformer
