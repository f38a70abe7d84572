// Normals and uniforms of W streams at once, one stream per SIMD lane (the streams
// {seed, sample0 + l, block, matrix} of W consecutive samples or paths), for the
// batched SDE and exact-chain kernels.  math/philox.hpp's generator and transform on
// 2W words: each Philox call draws one group for the W streams twice over (groups g
// and g + 1), two calls at once hide the multiply latency.  Every lane equals
// rng.hpp's scalar reference bit for bit.
#pragma once

#include <cstdint>

#include "../math/philox.hpp"

namespace shaped_transformer::simd {

/// The counters of groups g (words 0..W-1) and g + 1 (words W..2W-1) of the W streams.
template <class Ln>
inline void lane_counters(std::uint32_t matrix, std::uint32_t block, std::uint32_t sample0, std::uint32_t g,
                          typename Ln::U c[4]) {
  using U = typename Ln::U;
  c[0] = Ln::half_index() + g;
  c[1] = U{} + philox::counter_hi(matrix, g);
  c[2] = U{} + block;
  c[3] = Ln::lane_index() + sample0;
}

/// Normals 0 .. 4 * groups - 1 of the W streams, times sd (exactly double(normal) * sd):
/// out[k] holds normal k of every lane.  Whole multiples of 4 groups are written:
/// out needs room for 16 * ceil(groups / 4) lanes.
template <class Ln>
inline void lane_normals(std::uint64_t seed, std::uint32_t matrix, std::uint32_t block, std::uint32_t sample0,
                         int groups, double sd, typename Ln::D* out) {
  using U = typename Ln::U;
  using F = typename Ln::F;
  using D = typename Ln::D;
  for (int g = 0; g < groups; g += 4) {
    U c[2][4];
    lane_counters<Ln>(matrix, block, sample0, std::uint32_t(g), c[0]);
    lane_counters<Ln>(matrix, block, sample0, std::uint32_t(g + 2), c[1]);
    philox::rounds<Ln, 2>(c, std::uint32_t(seed), std::uint32_t(seed >> 32));
    for (int s = 0; s < 2; ++s) {
      F z[4];
      philox::box_muller<Ln>(c[s][0], c[s][1], z[0], z[1]);
      philox::box_muller<Ln>(c[s][2], c[s][3], z[2], z[3]);
      D* o = out + 4 * (g + 2 * s);
      for (int i = 0; i < 4; ++i) {
        D lo, hi;
        Ln::halves(z[i], lo, hi);
        o[i] = lo * sd;
        o[4 + i] = hi * sd;
      }
    }
  }
}

/// Uniforms 0 .. count - 1 of the W streams (SeqUniform's numbers: uniform k from the
/// words 2(k mod 2), 2(k mod 2) + 1 of group k / 2).  Whole multiples of 8 uniforms are
/// written: out needs room for 8 * ceil(count / 8) lanes.
template <class Ln>
inline void lane_uniforms(std::uint64_t seed, std::uint32_t matrix, std::uint32_t block, std::uint32_t sample0,
                          int count, typename Ln::D* out) {
  using U = typename Ln::U;
  using D = typename Ln::D;
  for (int k = 0; k < count; k += 8) {  // groups k/2 .. k/2 + 3
    const std::uint32_t g = std::uint32_t(k / 2);
    U c[2][4];
    lane_counters<Ln>(matrix, block, sample0, g, c[0]);
    lane_counters<Ln>(matrix, block, sample0, g + 2, c[1]);
    philox::rounds<Ln, 2>(c, std::uint32_t(seed), std::uint32_t(seed >> 32));
    for (int s = 0; s < 2; ++s)
      for (int w = 0; w < 2; ++w) {  // words (0, 1) and (2, 3)
        D a_lo, a_hi, b_lo, b_hi;
        Ln::halves(c[s][2 * w] >> 5, a_lo, a_hi);
        Ln::halves(c[s][2 * w + 1] >> 6, b_lo, b_hi);
        D* o = out + k + 4 * s + w;  // uniform 2 (g + 2s) + w, and + 2 for the second group
        o[0] = philox::uniform53(a_lo, b_lo);
        o[2] = philox::uniform53(a_hi, b_hi);
      }
  }
}

}  // namespace shaped_transformer::simd
