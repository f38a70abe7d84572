// Tamed Euler step (Hutzenthaler, Jentzen and Kloeden 2012): the drift increment
// b(V) dt is replaced by b(V) dt / (1 + dt |b(V)|_F), which stays bounded when the
// cubic attention drift is large and agrees with Euler to O(dt^2) where it is not.
#pragma once

#include "euler.hpp"

namespace shaped_transformer::sde {

template <class Net, class M>
inline void tamed_euler_step(const Net& net, M& V, double dt, std::uint64_t seed, std::uint32_t path,
                             std::uint32_t step, Workspace<M>& ws) {
  drift(net, V, ws.drift);
  ws.incr = (dt / (1.0 + dt * ws.drift.norm())) ST_MUTATE(kIntegratorDrift) * ws.drift;
  add_all_noise(net, V, seed, path, step, dt, ws);
  V += ws.incr;
  V = (0.5 * (V + V.transpose())).eval();
}

}  // namespace shaped_transformer::sde
