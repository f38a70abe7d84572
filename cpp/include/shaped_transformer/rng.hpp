// Counter-based random numbers: Philox4x32-10 and a Box-Muller transform.
//
// Every random number in the library is a pure function of
//   (seed, sample, block, matrix, index),
// so results do not depend on the thread count, the tile size or the order in
// which tiles are generated.  The seed is the Philox key; the counter words are
//   c0 = index / 4 (low 32 bits)   c1 = matrix << 16 | (index / 4) >> 32
//   c2 = block                     c3 = sample
// One Philox call yields four 32-bit words, which Box-Muller turns into four
// normals (two pairs).  Generator and transform are written once, in
// math/philox.hpp, for every lane width (this scalar reference, the SIMD kernels
// of cpp/src/, the CUDA threads), so all give the same numbers bit for bit.
//
// The functions below are `static inline` on purpose: the SIMD translation units
// (compiled with -mavx2 / -mavx512f) include this header too, and with external
// linkage the linker could keep their AVX-512 copy of an inline function for the
// whole program, which would crash on CPUs without AVX-512 (an ODR trap).  They are
// `ST_HD`: the device code (device/) calls them too.
#pragma once

#include <cstddef>
#include <cstdint>

#include "device/hd.hpp"
#include "math/philox.hpp"

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

/// The four Philox words of group `group` of stream s: the counter
///   (group, matrix << 16 | group >> 32, block, sample) under the key seed.
ST_HD static inline void philox_words(const Stream& s, std::uint64_t group, std::uint32_t c[4]) {
  std::uint32_t w[1][4] = {{std::uint32_t(group), philox::counter_hi(s.matrix, group), s.block, s.sample}};
  philox::rounds<philox::Scalar, 1>(w, std::uint32_t(s.seed), std::uint32_t(s.seed >> 32));
  for (int i = 0; i < 4; ++i) c[i] = w[0][i];
}

/// Four normals of group `group` (normals 4*group .. 4*group+3) of a stream.
ST_HD static inline void normal4(const Stream& s, std::uint64_t group, float out[4]) {
  std::uint32_t c[4];
  philox_words(s, group, c);
  philox::box_muller<philox::Scalar>(c[0], c[1], out[0], out[1]);
  philox::box_muller<philox::Scalar>(c[2], c[3], out[2], out[3]);
}

namespace detail {
/// Philox4x32-10 of the counter c under the key (k0, k1), in place (the bare
/// generator, for the known-answer tests).
static inline void philox4x32_10(std::uint32_t c[4], std::uint32_t k0, std::uint32_t k1) {
  std::uint32_t w[1][4] = {{c[0], c[1], c[2], c[3]}};
  philox::rounds<philox::Scalar, 1>(w, k0, k1);
  for (int i = 0; i < 4; ++i) c[i] = w[0][i];
}
}  // namespace detail

/// Scalar reference: normals first .. first+count-1 of a stream.
/// The fast kernels (fill_normal in normal_kernels.hpp) must reproduce it exactly.
template <class T>
ST_HD static inline void fill_normal_reference(const Stream& s, std::uint64_t first, std::size_t count, T* out) {
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
