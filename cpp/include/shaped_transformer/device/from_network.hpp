// Host-only: builds the plain problem descriptions of the per-thread code
// (SdeProblem, ExactProblem) from a Network, refusing (std::invalid_argument,
// naming the parameter) what the device code does not cover.
#pragma once

#include <stdexcept>
#include <string>
#include <type_traits>
#include <variant>

#include "../network.hpp"
#include "../types.hpp"
#include "exact_attention.hpp"
#include "sde_step.hpp"

namespace shaped_transformer::device {

inline constexpr int kMaxM = 16;  ///< per-thread matrices live in registers / local memory

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

/// The SDE of `net` (attention with an SDE limit and shaped MLP blocks only).
inline SdeProblem sde_problem(const Network& net, const Cov& V0, double dt, std::int64_t steps, bool tamed, bool clip,
                              double blowup, std::uint64_t seed) {
  check_m(V0, "the SDE");
  if (net.blocks.empty()) throw std::invalid_argument("network: no blocks");
  if (int(net.blocks.size()) > kMaxBlocks)
    throw std::invalid_argument("network: the device SDE supports at most 16 blocks per layer");
  SdeProblem p;
  p.m = int(V0.rows());
  p.nblocks = int(net.blocks.size());
  for (std::size_t b = 0; b < net.blocks.size(); ++b) {
    SdeBlock& d = p.blocks[b];
    const auto no_limit = [b] {
      return std::invalid_argument("network: block " + std::to_string(b) + " has no SDE limit");
    };
    std::visit(
        [&](const auto& blk) {
          using B = block_kind_t<decltype(blk)>;
          if constexpr (std::is_same_v<B, ShapedAttention>) {
            if (!(blk.alpha == 1.0 && blk.beta == 1.0 && !blk.causal && !blk.concat)) throw no_limit();
            d.kind = 0;
            d.heads = blk.heads;
            d.gamma = blk.gamma;
            d.tau0 = blk.tau0;
          } else if constexpr (std::is_same_v<B, ShapedMLP>) {
            d.kind = 1;
            d.gamma = blk.gamma;
            d.c_plus = blk.c_plus;
            d.c_minus = blk.c_minus;
          } else {
            // A kind with an SDE limit needs its terms in sde_step.hpp (a new SdeBlock
            // kind) before the device can run it: refusing it here would hide that.
            static_assert(!B::has_sde, "device::sde_problem: give every block kind with an SDE its device terms");
            throw no_limit();
          }
        },
        net.blocks[b]);
  }
  p.dt = dt;
  p.steps = steps;
  p.tamed = tamed ? 1 : 0;
  p.clip = clip ? 1 : 0;
  p.blowup = blowup;
  p.seed = seed;
  copy_v0(V0, p.V0);
  return p;
}

/// The exact chain of an attention-only network (shaped attention, no concat,
/// heads * m <= 32) at width n for `depth` layers.
inline ExactProblem exact_problem(const Network& net, const Cov& V0, std::int64_t width, std::int64_t depth,
                                  double blowup, std::uint64_t seed) {
  check_m(V0, "the exact chain");
  if (net.blocks.empty()) throw std::invalid_argument("network: no blocks");
  if (int(net.blocks.size()) > kMaxAttnBlocks)
    throw std::invalid_argument("network: the device exact chain supports at most 16 blocks per layer");
  ExactProblem p;
  p.m = int(V0.rows());
  p.nblocks = int(net.blocks.size());
  for (std::size_t b = 0; b < net.blocks.size(); ++b) {
    std::visit(
        [&](const auto& a) {
          using B = block_kind_t<decltype(a)>;
          // The device chain is attention-only by design: every other kind is refused.
          if constexpr (!std::is_same_v<B, ShapedAttention>) {
            throw std::invalid_argument("network: block " + std::to_string(b) +
                                        ": the device exact chain covers shaped attention blocks only "
                                        "(use device='cpu')");
          } else {
            if (a.concat) throw std::invalid_argument("concat: concatenated heads are not covered by the exact chain");
            if (a.heads < 1 || a.heads * p.m > 32)
              throw std::invalid_argument("heads: the device exact chain needs heads * m <= 32, got heads = " +
                                          std::to_string(a.heads) + " and m = " + std::to_string(p.m));
            AttnBlock& d = p.blocks[b];
            d.heads = a.heads;
            d.causal = a.causal ? 1 : 0;
            d.key_dim = a.key_dim;
            d.tau0 = a.tau0;
            d.gamma = a.gamma;
            d.lambda = a.lambda;
            d.alpha = a.alpha;
            d.beta = a.beta;
          }
        },
        net.blocks[b]);
  }
  p.width = width;
  p.depth = depth;
  p.blowup = blowup;
  p.seed = seed;
  copy_v0(V0, p.V0);
  return p;
}

/// Which compile-time bounds (MM, HM) run a problem: 0: <4,4>, 1: <8,8>, 2: <8,32>,
/// 3: <16,32>.
inline int exact_variant(const ExactProblem& p) {
  int hm = 0;
  for (int b = 0; b < p.nblocks; ++b) hm = hm > p.blocks[b].heads * p.m ? hm : p.blocks[b].heads * p.m;
  if (p.m <= 4 && hm <= 4) return 0;
  if (p.m <= 8 && hm <= 8) return 1;
  if (p.m <= 8 && hm <= 32) return 2;
  return 3;
}

/// SDE variants: MM = 4, 8, 16.
inline int sde_variant(int m) { return m <= 4 ? 0 : m <= 8 ? 1 : 2; }

/// One SDE path on the host with the per-thread code (the variant the GPU uses).
inline std::int64_t host_solve_path(const SdeProblem& p, const std::int64_t* save, int nsave, std::uint32_t path,
                                    double* out, std::int64_t& projections) {
  switch (sde_variant(p.m)) {
    case 0: return solve_path<4>(p, save, nsave, path, out, projections);
    case 1: return solve_path<8>(p, save, nsave, path, out, projections);
    default: return solve_path<16>(p, save, nsave, path, out, projections);
  }
}

/// One exact-chain sample on the host with the per-thread code.
inline std::int64_t host_exact_sample(const ExactProblem& p, const std::int64_t* save, int nsave, std::uint32_t sample,
                                      double* out) {
  switch (exact_variant(p)) {
    case 0: return exact_sample<4, 4>(p, save, nsave, sample, out);
    case 1: return exact_sample<8, 8>(p, save, nsave, sample, out);
    case 2: return exact_sample<8, 32>(p, save, nsave, sample, out);
    default: return exact_sample<16, 32>(p, save, nsave, sample, out);
  }
}

}  // namespace shaped_transformer::device
