// Euler-Maruyama step with the structured noise: V <- V + b(V) dt + sum_b noise_b(V, dW_b).
#pragma once

#include "../linalg.hpp"
#include "brownian.hpp"
#include "terms.hpp"

namespace shaped_transformer::sde {

/// Scratch space of one path, reused across steps.
struct Workspace {
  Cov L, drift, incr;
  std::vector<double> dW;
};

/// Adds the noise of all blocks at V to ws.incr (which the caller zeroed or filled).
inline void add_all_noise(const Network& net, const Cov& V, std::uint64_t seed, std::uint32_t path,
                          std::uint32_t step, double dt, Workspace& ws) {
  psd_root(V, ws.L);  // symmetric root of the clipped spectrum if V left the PSD cone
  const int m = int(V.rows());
  for (std::size_t b = 0; b < net.blocks.size(); ++b) {
    const int k = noise_dim(net.blocks[b], m);
    ws.dW.resize(std::size_t(k));
    brownian_increment(seed, path, step, std::uint32_t(b), dt, k, ws.dW.data());
    add_noise(net.blocks[b], V, ws.L, ws.dW.data(), ws.incr);
  }
}

/// One Euler-Maruyama step.
inline void euler_step(const Network& net, Cov& V, double dt, std::uint64_t seed, std::uint32_t path,
                       std::uint32_t step, Workspace& ws) {
  drift(net, V, ws.drift);
  ws.incr = dt * ws.drift;
  add_all_noise(net, V, seed, path, step, dt, ws);
  V += ws.incr;
  V = 0.5 * (V + V.transpose());
}

}  // namespace shaped_transformer::sde
