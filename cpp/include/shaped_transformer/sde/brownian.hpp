// Brownian increments of the SDE: for path p, step k and block b, the N(0, dt)
// numbers are sqrt(dt) times normals 0.. of Stream{seed, p, k, kSdeBase + b}, so a
// path's noise depends on nothing but (seed, path, step) (thread-count invariant).
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "../normal_kernels.hpp"
#include "../rng.hpp"

namespace shaped_transformer::sde {

inline void brownian_increment(std::uint64_t seed, std::uint32_t path, std::uint32_t step, std::uint32_t block,
                               double dt, int count, double* out) {
  const Stream s{seed, path, step, matrix_id::kSdeBase + block};
  fill_normal(s, 0, std::size_t(count), out);
  const double sd = std::sqrt(dt);
  for (int i = 0; i < count; ++i) out[i] *= sd;
}

}  // namespace shaped_transformer::sde
