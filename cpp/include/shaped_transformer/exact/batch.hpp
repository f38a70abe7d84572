// The batched exact chain (docs/model.md section 4) for networks made only of
// single-head shaped attention blocks: W samples advanced together, one sample per
// SIMD lane (structure of arrays: entry (i, j) of lane l at V[(i m + j) W + l]).
// W = 8 with AVX-512, 4 with AVX2, 1 for the portable build; the kernel is picked
// at run time like the SDE kernels (sde/batch.hpp: same CPU checks, same
// SHAPED_TRANSFORMER_KERNEL override).  Kernels live in cpp/src/exact_kernels*.cpp.
//
// Each lane draws exactly the random numbers of exact_small::attention (exact.hpp)
// in the same order: the Philox normals and uniforms of its own streams, computed
// for all lanes at once, and the Marsaglia-Tsang gamma variates of the Bartlett
// factors accepted lane by lane (a lane that needs a second proposal, or a shape
// < 1, redraws its factor with the scalar sampler of linalg.hpp: same draws).
// Products, Cholesky and softmax run in the lanes with the same IEEE operations in
// every kernel (fused multiply-adds written out), so all kernels give the same
// numbers; they differ from the per-sample Eigen path by rounding only (the order
// of the sums and the exponential's last bit; tests/test_exact_batch.py).
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <variant>
#include <vector>

#include "../network.hpp"
#include "../parallel.hpp"
#include "../rng.hpp"

namespace shaped_transformer::exact_batch {

inline constexpr int kMaxM = 32;

/// One attention block, flattened (no Eigen, no variants).
struct BlockParams {
  double alpha = 1.0, beta = 1.0, lambda = 0.0, gamma = 0.0, tau0 = 1.0;
  double nk = 0.0;  ///< key dimension n_k (the width when key_dim = 0)
  bool causal = false;
};

struct Params {
  int m = 0;
  long n = 0;  ///< width
  int depth = 0;
  std::uint64_t seed = 0;
  double blowup = 1e30;
  std::vector<BlockParams> blocks;  ///< one layer
  const std::int64_t* save_at = nullptr;
  std::size_t nsave = 0;
};

/// Runs samples sample0 .. sample0+count-1 (count <= width) from V0 (m x m,
/// row-major).  out: the Trajectories array (samples x nsave x m x m, row-major)
/// at sample0; exploded[l] gets the layer of blow-up (-1: never) for l < count.
/// On cancellation it returns early with out incomplete (the run is discarded).
using BatchFn = void (*)(const Params& p, const double* V0, std::uint32_t sample0, int count, double* out,
                         std::int64_t* exploded, const CancelToken* cancel);

struct Kernel {
  const char* name = "none";
  int width = 0;
  BatchFn run = nullptr;
};

/// The kernel of this CPU's SIMD level (simd_level(), cpu_features.hpp), or the
/// named one ("scalar", "avx2", "avx512"); run is null when the CPU or build lacks
/// it.  Defined in cpp/src/exact_kernels.cpp.
Kernel kernel(const char* name = nullptr);

/// Whether the batch kernels cover this network at this m and width: every block a
/// one-head, non-concatenated shaped attention whose Bartlett factors exist
/// (n_k > m - 1 and n - m > m - 1, as exact_small::covers), m <= kMaxM.  Any other
/// kind runs on the per-sample chain (exact_step), so `false` here is a choice of
/// path, not a refusal.
inline bool covers(const Network& net, int m, long n) {
  if (m < 1 || m > kMaxM || net.blocks.empty()) return false;
  for (const auto& blk : net.blocks) {
    const bool ok = std::visit(
        [&](const auto& b) {
          if constexpr (std::is_same_v<block_kind_t<decltype(b)>, ShapedAttention>) {
            const double nk = b.key_dim > 0 ? double(b.key_dim) : double(n);
            return b.heads == 1 && !b.concat && nk > double(m - 1) && double(n) - double(m) > double(m - 1);
          } else {
            return false;
          }
        },
        blk);
    if (!ok) return false;
  }
  return true;
}

namespace detail {
/// GammaProposal(shape).log_test (math/samplers.hpp), compiled once for every kernel.
bool gamma_log_accept(double shape, double u, double x2, double v);
/// wishart_factor (math/samplers.hpp) for one lane, B row-major m x m.
void wishart_lane(double df, int m, const Stream& normals, const Stream& uniforms, double* B);
}  // namespace detail

inline Params params(const Network& net, int m, long n, int depth, std::uint64_t seed, double blowup,
                     const std::vector<std::int64_t>& save_at) {
  Params p;
  p.m = m;
  p.n = n;
  p.depth = depth;
  p.seed = seed;
  p.blowup = blowup;
  p.save_at = save_at.data();
  p.nsave = save_at.size();
  for (const auto& blk : net.blocks) {
    const auto& b = std::get<ShapedAttention>(blk);
    p.blocks.push_back({b.alpha, b.beta, b.lambda, b.gamma, b.tau0, b.key_dim > 0 ? double(b.key_dim) : double(n),
                        b.causal});
  }
  return p;
}

}  // namespace shaped_transformer::exact_batch
