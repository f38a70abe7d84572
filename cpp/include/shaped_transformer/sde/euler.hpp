// Euler-Maruyama step with the structured noise: V <- V + b(V) dt + sum_b noise_b(V, dW_b).
#pragma once

#include "../linalg.hpp"
#include "../mutation.hpp"
#include "brownian.hpp"
#include "terms.hpp"

namespace shaped_transformer::sde {

/// Scratch space of one path, reused across steps.  M: Cov or a fixed-size matrix.
template <class M>
struct Workspace {
  M L, drift, incr;
  std::vector<double> dW;
  bool have_root = false;  ///< L already holds a root of the current V (set by the PSD remedy)
};

/// Adds the noise of all blocks at V to ws.incr.
template <class Net, class M>
inline void add_all_noise(const Net& net, const M& V, std::uint64_t seed, std::uint32_t path, std::uint32_t step,
                          double dt, Workspace<M>& ws) {
  if (!ws.have_root) psd_root(V, ws.L);  // symmetric root of the clipped spectrum if V left the PSD cone
  ws.have_root = false;
  const int m = int(V.rows());
  for (std::size_t b = 0; b < net.blocks.size(); ++b) {
    const int k = noise_dim(net.blocks[b], m);
    ws.dW.resize(std::size_t(k));
    brownian_increment(seed, path, step, std::uint32_t(b), dt, k, ws.dW.data());
    add_noise(net.blocks[b], V, ws.L, ws.dW.data(), ws.incr);
  }
}

/// One Euler-Maruyama step.
template <class Net, class M>
inline void euler_step(const Net& net, M& V, double dt, std::uint64_t seed, std::uint32_t path, std::uint32_t step,
                       Workspace<M>& ws) {
  drift(net, V, ws.drift);
  ws.incr = dt ST_MUTATE(kIntegratorDrift) * ws.drift;
  add_all_noise(net, V, seed, path, step, dt, ws);
  V += ws.incr;
  V = (0.5 * (V + V.transpose())).eval();
}

}  // namespace shaped_transformer::sde
