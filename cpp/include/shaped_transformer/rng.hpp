// Counter-based random numbers: Philox4x32-10 and a Box-Muller transform.
//
// Every random number in the library is a pure function of
//   (seed, sample, block, matrix, index),
// so results do not depend on the thread count, the tile size or the order in
// which tiles are generated.  The seed is the Philox key; the counter words are
//   c0 = index / 4 (low 32 bits)   c1 = matrix << 16 | (index / 4) >> 32
//   c2 = block                     c3 = sample
// One Philox call yields four 32-bit words, which Box-Muller turns into four
// normals (two pairs).  The transform uses its own polynomials (no libm), so
// the SIMD kernels in cpp/src/ reproduce this scalar reference bit for bit.
//
// The functions below are `static inline` on purpose: the SIMD translation units
// (compiled with -mavx2 / -mavx512f) include this header too, and with external
// linkage the linker could keep their AVX-512 copy of an inline function for the
// whole program, which would crash on CPUs without AVX-512 (an ODR trap).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace shaped_transformer {

/// Identifies one stream of normals: all the entries of one weight matrix (or of
/// one noise matrix) of one block of one sample.
struct Stream {
  std::uint64_t seed = 0;
  std::uint32_t sample = 0;
  std::uint32_t block = 0;
  std::uint32_t matrix = 0;  ///< < 2^16; see matrix_id below for the layout
};

/// Matrix ids inside a block.  Methods use disjoint ranges so that, e.g., the
/// exact chain never reuses the explicit network's weight streams.
namespace matrix_id {
inline constexpr std::uint32_t kQuery = 0, kKey = 1, kValue = 2, kOutput = 3;  // + 4 * head
inline constexpr std::uint32_t kPre = 0, kPost = 1;                            // MLP
inline constexpr std::uint32_t kLawBase = 0x4000;                              ///< law-exact activation sampler
inline constexpr std::uint32_t kExactBase = 0x8000;                            ///< exact m x m chain
inline constexpr std::uint32_t kSdeBase = 0xC000;                              ///< SDE Brownian increments
inline constexpr std::uint32_t head(std::uint32_t base, int h) { return base + 4u * std::uint32_t(h); }
}  // namespace matrix_id

namespace detail {

static inline void philox_round(std::uint32_t c[4], const std::uint32_t k[2]) {
  constexpr std::uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
  const std::uint64_t p0 = std::uint64_t(M0) * c[0];
  const std::uint64_t p1 = std::uint64_t(M1) * c[2];
  const std::uint32_t hi0 = std::uint32_t(p0 >> 32), lo0 = std::uint32_t(p0);
  const std::uint32_t hi1 = std::uint32_t(p1 >> 32), lo1 = std::uint32_t(p1);
  c[0] = hi1 ^ c[1] ^ k[0];
  c[1] = lo1;
  c[2] = hi0 ^ c[3] ^ k[1];
  c[3] = lo0;
}

/// Philox4x32-10 (Salmon et al. 2011): 10 rounds, Weyl key schedule.
static inline void philox4x32_10(std::uint32_t c[4], std::uint32_t k0, std::uint32_t k1) {
  constexpr std::uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  std::uint32_t k[2] = {k0, k1};
  for (int r = 0; r < 10; ++r) {
    philox_round(c, k);
    k[0] += W0;
    k[1] += W1;
  }
}

static inline float bits_to_float(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
static inline std::uint32_t float_to_bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

/// Natural log of u in (0, 1], Cephes logf polynomial (max error ~1 ulp in float).
static inline float log_poly(float u) {
  const std::uint32_t b = float_to_bits(u);
  float e = float(int((b >> 23) & 0xFFu) - 126);  // u = 2^e * x, x in [0.5, 1)
  float x = bits_to_float((b & 0x807FFFFFu) | 0x3F000000u);
  const bool small = x < 0.707106781186547524f;
  e = small ? e - 1.0f : e;
  x = small ? (x + x) - 1.0f : x - 1.0f;
  const float z = x * x;
  float y = 7.0376836292e-2f;
  y = y * x - 1.1514610310e-1f;
  y = y * x + 1.1676998740e-1f;
  y = y * x - 1.2420140846e-1f;
  y = y * x + 1.4249322787e-1f;
  y = y * x - 1.6668057665e-1f;
  y = y * x + 2.0000714765e-1f;
  y = y * x - 2.4999993993e-1f;
  y = y * x + 3.3333331174e-1f;
  y = y * x * z;
  y = y + -2.12194440e-4f * e;
  y = y + -0.5f * z;
  x = x + y;
  return x + 0.693359375f * e;
}

/// Four normals from four uniform words (two Box-Muller pairs).
/// Radius from word a: u = (a >> 8 + 0.5) 2^-24 in (0, 1).  Angle from word b:
/// its top two bits pick the quadrant, the next 22 bits the angle inside it.
static inline void box_muller_pair(std::uint32_t a, std::uint32_t b, float& z0, float& z1) {
  const float u = (float(a >> 8) + 0.5f) * 5.9604644775390625e-8f;  // 2^-24
  const float r = __builtin_sqrtf(-2.0f * log_poly(u));
  // y in (-pi/4, pi/4): angle inside the quadrant minus pi/4.
  const float f = (float((b >> 8) & 0x3FFFFFu) + 0.5f) * 2.384185791015625e-7f;  // 2^-22
  const float y = f * 1.57079632679489662f - 0.785398163397448310f;
  const float y2 = y * y;
  float s = -1.9515295891e-4f;
  s = s * y2 + 8.3321608736e-3f;
  s = s * y2 - 1.6666654611e-1f;
  s = s * y2 * y + y;
  float c = 2.443315711809948e-5f;
  c = c * y2 - 1.388731625493765e-3f;
  c = c * y2 + 4.166664568298827e-2f;
  c = c * y2 * y2 - 0.5f * y2 + 1.0f;
  // rotate by pi/4: (cos, sin) of the angle inside the quadrant
  const float h = 0.70710678118654752f;
  const float cq = (c - s) * h, sq = (c + s) * h;
  const std::uint32_t q = b >> 30;
  const float cx = (q & 1u) ? -sq : cq;  // rotate by q * pi/2
  const float sx = (q & 1u) ? cq : sq;
  const float sign = (q & 2u) ? -1.0f : 1.0f;
  z0 = r * (cx * sign);
  z1 = r * (sx * sign);
}

}  // namespace detail

/// Four normals of group `group` (normals 4*group .. 4*group+3) of a stream.
static inline void normal4(const Stream& s, std::uint64_t group, float out[4]) {
  std::uint32_t c[4] = {std::uint32_t(group), (s.matrix << 16) | std::uint32_t(group >> 32), s.block, s.sample};
  detail::philox4x32_10(c, std::uint32_t(s.seed), std::uint32_t(s.seed >> 32));
  detail::box_muller_pair(c[0], c[1], out[0], out[1]);
  detail::box_muller_pair(c[2], c[3], out[2], out[3]);
}

/// Scalar reference: normals first .. first+count-1 of a stream.
/// The fast kernels (fill_normal in normal_kernels.hpp) must reproduce it exactly.
template <class T>
static inline void fill_normal_reference(const Stream& s, std::uint64_t first, std::size_t count, T* out) {
  float z[4];
  std::uint64_t g = first / 4;
  int j = int(first % 4);
  std::size_t i = 0;
  while (i < count) {
    normal4(s, g++, z);
    for (; j < 4 && i < count; ++j) out[i++] = T(z[j]);
    j = 0;
  }
}

}  // namespace shaped_transformer
