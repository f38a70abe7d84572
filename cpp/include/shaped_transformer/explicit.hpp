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
/// when opts.poll asked to stop.
Trajectories simulate_explicit(const Network& net, const MatD& X0, int depth, int samples, std::uint64_t seed,
                               const std::vector<std::int64_t>& save_at, bool float32, const RunOptions& opts);

/// Same contract; the law-exact activation sampler.
Trajectories simulate_law(const Network& net, const MatD& X0, int depth, int samples, std::uint64_t seed,
                          const std::vector<std::int64_t>& save_at, bool float32, const RunOptions& opts);

/// Checks the parameters of every block (throws std::invalid_argument naming the
/// offending parameter); `width` also checks that concatenated heads divide it.
void validate_network(const Network& net, long width);

}  // namespace shaped_transformer
