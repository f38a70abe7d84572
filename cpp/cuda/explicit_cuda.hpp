// The explicit network on the GPU (same contract as simulate_explicit in
// explicit.hpp; samples run one after the other, each block's products on the GPU).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "shaped_transformer/network.hpp"
#include "shaped_transformer/parallel.hpp"
#include "shaped_transformer/result.hpp"
#include "shaped_transformer/types.hpp"

namespace shaped_transformer::cuda {

struct ExplicitCudaOptions {
  double blowup = 1e4;
  bool return_X = false;
  std::function<bool()> poll;                 ///< true: stop (throws Cancelled)
  std::function<void(std::size_t)> progress;  ///< finished samples
};

/// Throws std::invalid_argument (naming the parameter) on bad input.
void check_explicit_cuda(const Network& net, const MatD& X0, int depth, int samples,
                         const std::vector<std::int64_t>& save_at, double blowup);
/// Device memory one run needs (bytes).
std::size_t explicit_cuda_bytes(const Network& net, int m, std::int64_t n, bool float32);
Trajectories simulate_explicit_cuda(const Network& net, const MatD& X0, int depth, int samples, std::uint64_t seed,
                                    const std::vector<std::int64_t>& save_at, bool float32,
                                    const ExplicitCudaOptions& opts);

}  // namespace shaped_transformer::cuda
