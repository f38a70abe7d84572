// The batched exact chain (docs/model.md section 4): W samples advanced together,
// one sample per SIMD lane (structure of arrays: entry (i, j) of lane l at
// V[(i m + j) W + l]).  W = 8 with AVX-512, 4 with AVX2, 1 for the portable build;
// the kernel is picked at run time like the SDE kernels (cpu_features.hpp, the same
// SHAPED_TRANSFORMER_KERNEL override).  Each block runs its own exact step (the face
// of its header, exact_common.hpp), the one the generic per-sample chain and the CUDA
// threads run, drawing the same random numbers in the same order; products, Cholesky
// and softmax run in the lanes with the same IEEE operations in every kernel (fused
// multiply-adds written out), so all kernels give the same numbers; they differ from
// the per-sample chain by rounding only (the order of the sums, the exponential's last
// bit; tests/test_exact_batch.py).  Kernels: kernels/exact_batch.hpp, built for the
// library's Network in cpp/src/exact_kernels*.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include "../cpu_features.hpp"
#include "../exact_common.hpp"
#include "../kernels/block_list.hpp"
#include "../network.hpp"
#include "../parallel.hpp"
#include "../rng.hpp"

namespace shaped_transformer {

namespace detail {
template <class Net>
struct exact_block_of;
template <class... K>
struct exact_block_of<BasicNetwork<K...>> {
  using type = ExactBlock<K...>;
};
}  // namespace detail

template <class Net>
using ExactBlockOf = typename detail::exact_block_of<Net>::type;

/// The exact terms of one block, and the widest scratch (m x wide) its step uses.
template <class... K>
inline ExactBlock<K...> exact_block_terms(const std::variant<K...>& blk, int m, int& wide) {
  return std::visit(
      [&](const auto& b) -> ExactBlock<K...> {
        using B = std::decay_t<decltype(b)>;
        if constexpr (B::has_exact) {
          const auto t = b.exact_terms();
          wide = t.wide(m) > wide ? t.wide(m) : wide;
          return ExactBlock<K...>::template make<kind_index<B, K...>()>(t);
        } else {
          throw std::invalid_argument(std::string("blocks: ") + B::kind + " has no exact chain");
        }
      },
      blk);
}

namespace exact_batch {

inline constexpr int kMaxM = 32;

template <class Net>
struct Params {
  int m = 0;
  long n = 0;  ///< width
  int depth = 0;
  std::uint64_t seed = 0;
  double blowup = 1e30;
  std::vector<ExactBlockOf<Net>> blocks;  ///< one layer
  int wide = 0;                           ///< the widest scratch of a block's step (>= m)
  const std::int64_t* save_at = nullptr;
  std::size_t nsave = 0;
  /// LayerNorm's s_0 (m numbers, the same for every sample; exact/start.hpp); empty
  /// when the network carries no s (exact_carries_s).
  std::vector<double> s0;
};

/// Runs samples sample0 .. sample0+count-1 (count <= width) from V0 (m x m,
/// row-major).  out: the Trajectories array (samples x nsave x m x m, row-major)
/// at sample0; exploded[l] gets the layer of blow-up (-1: never) for l < count.
/// On cancellation it returns early with out incomplete (the run is discarded).
template <class Net>
using BatchFn = void (*)(const Params<Net>& p, const double* V0, std::uint32_t sample0, int count, double* out,
                         std::int64_t* exploded, const CancelToken* cancel);

template <class Net>
struct Kernel {
  const char* name = "none";
  int width = 0;
  BatchFn<Net> run = nullptr;
};

/// The SIMD builds of the kernel for Net (null: none); see sde::SimdBatch.
template <class Net>
struct SimdBatch {
  static BatchFn<Net> get(SimdLevel) { return nullptr; }
};

/// The kernel of this CPU's SIMD level (simd_level(), cpu_features.hpp), or the
/// named one ("scalar", "avx2", "avx512"); run is null when the CPU or build lacks
/// it.  Network: cpp/src/exact_kernels.cpp; another network: kernels/exact_batch.hpp.
template <class Net>
Kernel<Net> kernel(const char* name);
template <>
Kernel<Network> kernel<Network>(const char* name);
/// The library network's kernel.
inline Kernel<Network> kernel(const char* name = nullptr) { return kernel<Network>(name); }

/// Whether the batch kernels cover this network at this m: every block has an exact
/// step the chain can run (check_exact_covers refuses the others first) and its
/// scratch fits (m and the stacked heads' H m <= kMaxM), at a width the chain runs
/// (n >= m, and n >= m + 1 with LayerNorm, whose state s the kernels carry in m lanes
/// per sample; docs/norms.md section 6).  Any other network runs on the per-sample
/// chain, so `false` here is a choice of path, not a refusal.
template <class Net>
inline bool covers(const Net& net, int m, long n) {
  if (m < 1 || m > kMaxM || net.blocks.empty() || n < long(m) + (exact_carries_s(net) ? 1 : 0)) return false;
  for (const auto& blk : net.blocks) {
    const bool ok = std::visit(
        [&](const auto& b) {
          using B = std::decay_t<decltype(b)>;
          if constexpr (B::has_exact) return !b.exact_refusal() && b.exact_terms().wide(m) <= kMaxM;
          else return false;
        },
        blk);
    if (!ok) return false;
  }
  return true;
}

namespace detail {
/// GammaProposal(shape).log_test (math/samplers.hpp), compiled once for every kernel.
bool gamma_log_accept(double shape, double u, double x2, double v);
/// wishart_factor (math/samplers.hpp) for one lane, B row-major p x p.
void wishart_lane(double df, int p, const Stream& normals, const Stream& uniforms, double* B);
}  // namespace detail

/// The kernels' parameters; s0: LayerNorm's s_0 (m numbers) when the network carries
/// s (exact_carries_s; null otherwise).
template <class Net>
inline Params<Net> params(const Net& net, int m, long n, int depth, std::uint64_t seed, double blowup,
                          const std::vector<std::int64_t>& save_at, const double* s0 = nullptr) {
  Params<Net> p;
  p.m = m;
  p.n = n;
  p.depth = depth;
  p.seed = seed;
  p.blowup = blowup;
  p.save_at = save_at.data();
  p.nsave = save_at.size();
  p.wide = m;
  for (const auto& blk : net.blocks) p.blocks.push_back(exact_block_terms(blk, m, p.wide));
  if (exact_carries_s(net)) {
    if (!s0) throw std::invalid_argument("s0: a network with a LayerNorm block needs s_0 (exact_start_s)");
    p.s0.assign(s0, s0 + m);
  }
  return p;
}

}  // namespace exact_batch
}  // namespace shaped_transformer
