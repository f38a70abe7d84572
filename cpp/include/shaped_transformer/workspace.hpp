// The sizes of the core's fixed work buffers, named in one place.  The kernels that
// own these buffers are meant to use these constants (exact_common.hpp's MLP tile,
// gaussian_gemm_impl.hpp's tile), and the Python package's memory
// check reads them through _core.workspace_sizes() / _core.*_workspace_bytes()
// (cpp/python/bind_info.cpp), so that its estimates follow the core instead of
// keeping a copy of its constants.
#pragma once

#include <cstddef>

namespace shaped_transformer::workspace {

/// Columns of one tile of the exact chain's MLP pre-activations (mlp_exact_step):
/// the m x tile Gaussian tile and its m x tile image are live at once.  128: rows of
/// 1 KB, so that the products' packing (24 rows at a time) spreads over cache sets;
/// at 512 (rows of 4 KB, all in one set) the Gram's rank update ran up to 3 times
/// slower at m = 64 to 512 (docs/performance.md, "The exact MLP Gram beyond 32 tokens").
inline constexpr std::size_t kExactMlpTile = 128;

/// gaussian_gemm: output columns of one tile, and rows of the tile of W generated at
/// once (float / double: 16 KB, so that the tile stays in L1 while it is consumed).
inline constexpr std::size_t kGemmTileCols = 128;
inline constexpr std::size_t kGemmTileRowsFloat = 32;
inline constexpr std::size_t kGemmTileRowsDouble = 16;

/// Bytes of one gaussian_gemm thread's buffers for m tokens and elements of
/// `itemsize` bytes (4 or 8): the m x cols accumulator, the rows x cols tile of W
/// and one float row of normals.
constexpr std::size_t gemm_workspace_bytes(std::size_t m, std::size_t itemsize) {
  const std::size_t rows = itemsize == 4 ? kGemmTileRowsFloat : kGemmTileRowsDouble;
  return (m * kGemmTileCols + rows * kGemmTileCols) * itemsize + kGemmTileCols * sizeof(float);
}

/// Bytes of the exact MLP step's two m x tile double tiles (the Gaussian tile and K).
constexpr std::size_t exact_mlp_workspace_bytes(std::size_t m) { return 2 * m * kExactMlpTile * sizeof(double); }

}  // namespace shaped_transformer::workspace
