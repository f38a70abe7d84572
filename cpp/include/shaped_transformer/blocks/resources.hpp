// What a block needs besides its math, declared by each kind with the helpers below:
//  * weights(width, f): the weight matrices its explicit forward draws (name, matrix
//    id in the block's stream, shape), so that the tests' NumPy reference can draw the
//    same matrices (_core.block_weights) without a switch over the kinds;
//  * workspace(m, n, itemsize): the working memory one driver worker holds for it, for
//    the memory check of the Python package (docs/robustness.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "../rng.hpp"
#include "../workspace.hpp"

namespace shaped_transformer {

/// One weight matrix of a block: rows x cols, drawn row-major from matrix id `matrix`
/// of the block's stream (W(i, j) = normal i * cols + j, rng.hpp).
struct WeightMatrix {
  std::string name;
  std::uint32_t matrix;
  std::int64_t rows, cols;
};

/// Bytes one worker holds for a block (an upper bound up to a small factor; double,
/// so that the product of a huge width and head count cannot wrap around).
struct Workspace {
  double explicit_bytes = 0;  ///< explicit network and law sampler, elements of `itemsize` bytes
  double exact_bytes = 0;     ///< exact chain (and the SDE's exact_chain scheme)
};

/// W_Q_h, W_K_h (width x n_k) and W_V_h (width x head width) per head, and W_O
/// (width x width) for concatenated heads of width width / H.
template <class F>
void attention_weights(int heads, int key_dim, bool concat, long width, F&& f) {
  const std::int64_t hd = concat ? width / heads : width;
  const std::int64_t nk = key_dim > 0 ? key_dim : hd;
  for (int h = 0; h < heads; ++h) {
    const std::string k = std::to_string(h);
    f(WeightMatrix{"W_Q_" + k, matrix_id::head(matrix_id::kQuery, h), width, nk});
    f(WeightMatrix{"W_K_" + k, matrix_id::head(matrix_id::kKey, h), width, nk});
    f(WeightMatrix{"W_V_" + k, matrix_id::head(matrix_id::kValue, h), width, hd});
  }
  if (concat) f(WeightMatrix{"W_O", matrix_id::kOutput, width, width});
}

/// W_pre and W_post, width x width.
template <class F>
void mlp_weights(long width, F&& f) {
  f(WeightMatrix{"W_pre", matrix_id::kPre, width, width});
  f(WeightMatrix{"W_post", matrix_id::kPost, width, width});
}

/// Attention: O(H m n) per-head products and the m x n_k queries and keys (explicit);
/// the per-head m x m factors and the value part's m x m matrices (exact: the
/// m x m Wishart draw of wishart_quad.hpp).
inline Workspace attention_workspace(int heads, int key_dim, double m, double n, double itemsize) {
  const double H = heads, nk = key_dim > 0 ? double(key_dim) : n;
  return {(8 + 4 * H) * m * n * itemsize + 2 * H * m * nk * itemsize, (8 * m * m + 4 * H * m * m) * 8};
}

/// MLP: the m x n pre-activations and their images (explicit); the exact step's m x
/// tile tiles (workspace.hpp).
inline Workspace mlp_workspace(double m, double n, double itemsize) {
  return {12 * m * n * itemsize, double(workspace::exact_mlp_workspace_bytes(std::size_t(m)))};
}

}  // namespace shaped_transformer
