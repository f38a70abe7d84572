// The finite network at initialization, two ways:
//  * simulate_explicit: Gaussian weights, drawn tile by tile from the counter-based
//    generator and consumed at once (memory O(m n), never an n x n matrix);
//  * simulate_law: the law-exact activation sampler of docs/model.md section 4, which
//    replaces every X W / sqrt(n) by L G (L L^T = X X^T / n, G an m x cols
//    Gaussian), so a block costs O(m n) normals instead of O(n^2): the same law of
//    the tokens, at any width.
// Both run `samples` independent initializations (sample s uses
// Stream{seed, s, net.block_index(layer, b), matrix}) in parallel and record
// V = X X^T / n at the layers in save_at.  Results do not depend on the thread count.
#pragma once

#include <cstdint>
#include <vector>

#include "network.hpp"
#include "result.hpp"
#include "types.hpp"

namespace shaped_transformer {

/// Runs `depth` layers of `net` on the tokens X0 (m x n, n >= m) for `samples`
/// samples.  save_at: sorted layer indices in [0, depth].  float32: float arithmetic
/// for the tokens and weight products (V is always accumulated in double).
/// A sample whose V turns non-finite or has max diag V > opts.blowup is stopped;
/// Trajectories::exploded holds that layer and its saved V from then on are NaN.
/// Throws std::invalid_argument (naming the parameter) on bad input, Cancelled
/// when opts.poll asked to stop.  Defined in detail/explicit_impl.hpp; the library
/// holds the instantiation for Network.
template <class Net>
Trajectories simulate_explicit(const Net& net, const MatD& X0, int depth, int samples, std::uint64_t seed,
                               const std::vector<std::int64_t>& save_at, bool float32, const RunOptions& opts);

/// Same contract; the law-exact activation sampler.
template <class Net>
Trajectories simulate_law(const Net& net, const MatD& X0, int depth, int samples, std::uint64_t seed,
                          const std::vector<std::int64_t>& save_at, bool float32, const RunOptions& opts);

extern template Trajectories simulate_explicit<Network>(const Network&, const MatD&, int, int, std::uint64_t,
                                                        const std::vector<std::int64_t>&, bool, const RunOptions&);
extern template Trajectories simulate_law<Network>(const Network&, const MatD&, int, int, std::uint64_t,
                                                   const std::vector<std::int64_t>&, bool, const RunOptions&);

}  // namespace shaped_transformer
