// Host-only: builds the plain problem descriptions of the per-thread code
// (SdeProblemOf, ExactProblemOf) from a network, refusing (std::invalid_argument,
// naming the parameter) what the device code does not cover, by the kinds' traits:
// every kind with an SDE limit runs the SDE, every kind whose exact step runs on the
// device (exact_on_device) the exact chain.  Also the CPU twins of the CUDA
// kernels' launches (host_solve_path, host_exact_sample): the same template instances
// the GPU runs, chosen by the same rule, so the CPU tests cover every one of them.
#pragma once

#include <stdexcept>
#include <string>
#include <type_traits>
#include <variant>

#include "../exact/batch.hpp"
#include "../exact/start.hpp"
#include "../network.hpp"
#include "../sde/terms.hpp"
#include "../types.hpp"
#include "problems.hpp"

namespace shaped_transformer::device {

inline constexpr int kMaxM = 16;     ///< per-thread matrices live in registers / local memory
inline constexpr int kMaxWide = 32;  ///< the widest scratch of an exact step (heads * m)

inline void check_m(const Cov& V0, const char* what) {
  if (V0.rows() < 1 || V0.rows() != V0.cols()) throw std::invalid_argument("V0: must be a non-empty square matrix");
  if (V0.rows() > kMaxM)
    throw std::invalid_argument(std::string("V0: ") + what +
                                " on the device supports m <= 16 tokens, got m = " + std::to_string(V0.rows()));
}

inline void copy_v0(const Cov& V0, double* dst) {
  const int m = int(V0.rows());
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) dst[i * m + j] = V0(i, j);
}

/// The SDE of `net` (every block with an SDE limit: check_sde_covers).
template <class... K>
inline SdeProblemOf<K...> sde_problem(const BasicNetwork<K...>& net, const Cov& V0, double dt, std::int64_t steps,
                                      bool tamed, bool clip, double blowup, std::uint64_t seed) {
  check_m(V0, "the SDE");
  check_sde_covers(net);
  if (int(net.blocks.size()) > kMaxBlocks)
    throw std::invalid_argument("network: the device SDE supports at most 16 blocks per layer");
  SdeProblemOf<K...> p;
  p.m = int(V0.rows());
  p.nblocks = int(net.blocks.size());
  const auto blocks = sde::sde_blocks(net, p.m);  // with pre-norm's fast-drift coefficients
  for (std::size_t b = 0; b < net.blocks.size(); ++b) {
    p.blocks[b] = blocks[b];
    p.blocks[b].visit([&](const auto& t) {
      if (std::decay_t<decltype(t)>::noise_dim(p.m) > 2 * p.m * p.m)
        throw std::invalid_argument("network: block " + std::to_string(b) +
                                    ": the device SDE supports at most 2 m^2 normals per block and step");
    });
  }
  p.dt = dt;
  p.steps = steps;
  p.tamed = tamed ? 1 : 0;
  p.clip = clip ? 1 : 0;
  p.blowup = blowup;
  p.seed = seed;
  sde::check_sde_start(net, V0);
  copy_v0(sde::sde_start(net, V0), p.V0);  // normalized blocks: corr(V0) or pre-norm's initial layer
  return p;
}

/// The exact chain of `net` at width n for `depth` layers from V0 (as the CPU chain,
/// simulate_exact): every block's exact step on the device (exact_on_device; the MLPs'
/// O(m^2 n) Gram is a CPU job), its scratch (heads * m) at most kMaxWide.  A network
/// with a LayerNorm block carries s (width >= m + 1) from s0 (X_0 1_n / sqrt(n) of the
/// input tokens; null: that of the tokens built from V0, exact_start_s).
template <class... K>
inline typename problems_of<BasicNetwork<K...>>::Exact exact_problem(const BasicNetwork<K...>& net, const Cov& V0,
                                                                     std::int64_t width, std::int64_t depth,
                                                                     double blowup, std::uint64_t seed,
                                                                     const Eigen::VectorXd* s0 = nullptr) {
  using P = typename problems_of<BasicNetwork<K...>>::Exact;
  using Block = std::remove_extent_t<decltype(P::blocks)>;
  check_m(V0, "the exact chain");
  if (net.blocks.empty()) throw std::invalid_argument("network: no blocks");
  if (int(net.blocks.size()) > kMaxExactBlocks)
    throw std::invalid_argument("network: the device exact chain supports at most 16 blocks per layer");
  check_block_counter(net, depth, "depth");  // layer * blocks + b: the 32-bit block word, as the CPU chain
  P p;
  p.m = int(V0.rows());
  p.nblocks = int(net.blocks.size());
  for (std::size_t b = 0; b < net.blocks.size(); ++b)
    std::visit(
        [&](const auto& blk) {
          using B = block_kind_t<decltype(blk)>;
          if constexpr (!(B::has_exact && B::exact_on_device)) {
            throw std::invalid_argument("network: block " + std::to_string(b) + " (" + B::kind +
                                        "): its exact step runs on the CPU only (use device='cpu')");
          } else {
            if (const char* why = blk.exact_refusal()) throw std::invalid_argument(why + block_where<B>(b));
            const auto t = blk.exact_terms();
            if (t.wide(p.m) > kMaxWide)
              throw std::invalid_argument("heads: the device exact chain needs heads * m <= 32, got " +
                                          std::to_string(t.wide(p.m)) + " (m = " + std::to_string(p.m) + ")" +
                                          block_where<B>(b));
            p.blocks[b] = Block::template make<kind_index<B, K...>()>(t);
          }
        },
        net.blocks[b]);
  p.width = width;
  p.depth = depth;
  p.blowup = blowup;
  p.seed = seed;
  copy_v0(V0, p.V0);  // the chain's own normalized steps from V0, as on the CPU
  if (exact_carries_s(net)) {
    if (width < std::int64_t(p.m) + 1)
      throw std::invalid_argument(
          "width: LayerNorm in the exact chain needs width >= m + 1 = " + std::to_string(p.m + 1) + ", got " +
          std::to_string(width) + " (docs/norms.md section 6)");
    const Eigen::VectorXd s = exact_start_s(V0, s0);
    p.carries_s = 1;
    for (int a = 0; a < p.m; ++a) p.s0[a] = s(a);
  }
  return p;
}

/// One SDE path on the host with the per-thread code: the instance the GPU runs for
/// this m (sde_variant).
template <class P>
inline std::int64_t host_solve_path(const P& p, const std::int64_t* save, int nsave, std::uint32_t path, double* out,
                                    std::int64_t& projections) {
  switch (sde_variant(p.m)) {
    case SdeVariant::Fixed4: return solve_path<4, true>(p, save, nsave, path, out, projections);
    case SdeVariant::Fixed8: return solve_path<8, true>(p, save, nsave, path, out, projections);
    case SdeVariant::Bound4: return solve_path<4, false>(p, save, nsave, path, out, projections);
    case SdeVariant::Bound8: return solve_path<8, false>(p, save, nsave, path, out, projections);
    default: return solve_path<16, false>(p, save, nsave, path, out, projections);
  }
}

/// One exact-chain sample on the host with the per-thread code: the instance the GPU
/// runs for this problem (exact_variant).
template <class P>
inline std::int64_t host_exact_sample(const P& p, const std::int64_t* save, int nsave, std::uint32_t sample,
                                      double* out) {
  switch (exact_variant(p.m, exact_wide(p))) {
    case ExactVariant::M4W4: return exact_sample<4, 4>(p, save, nsave, sample, out);
    case ExactVariant::M8W8: return exact_sample<8, 8>(p, save, nsave, sample, out);
    case ExactVariant::M8W32: return exact_sample<8, 32>(p, save, nsave, sample, out);
    default: return exact_sample<16, 32>(p, save, nsave, sample, out);
  }
}

}  // namespace shaped_transformer::device
