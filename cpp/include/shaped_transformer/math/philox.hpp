// The library's one random-number generator: Philox4x32-10 (Salmon et al. 2011)
// and the Box-Muller transform with its own polynomials (no libm), written once as
// templates over the lanes that evaluate them:
//   * `philox::Scalar`: one 32-bit word per lane, a host thread or a device thread
//     (`ST_HD`: the CUDA kernels call exactly this code);
//   * the SIMD lanes of include/shaped_transformer/simd/lanes.hpp (GCC vector types
//     of 2W words, W = 1, 4 or 8 samples), used by the fast normal kernels and the
//     batched SDE and exact-chain kernels.
// Every lane runs the same IEEE operations in the same order (the SIMD translation
// units compile with -ffp-contract=off, nvcc with -fmad=false), so every instance
// gives the numbers of the scalar one bit for bit (tests/test_rng.py,
// tests/cpp/test_device.cpp).
//
// A `Lanes` type provides
//   U, F          the word and float lanes (U: uint32 lanes, F: float lanes of the same count);
//   mulhilo(a, M, hi, lo)   the high and low words of the 32 x 32 -> 64-bit products a * M;
//   to_float(u)   u (< 2^31, read as a signed 32-bit integer) converted to float, exactly;
//   from_bits(u), to_bits(f)   bit casts;
//   sqrt(f)       the correctly rounded square root.
// Comparisons of F lanes give masks that `?:` accepts (bool for scalars, GCC vector
// masks for vectors).  The functions are `static` on purpose: a translation unit
// compiled for AVX-512 must never lend its copy of a scalar instance to the rest of
// the program (a crash on a CPU without AVX-512).
#pragma once

#include <cstdint>

#include "../device/hd.hpp"

namespace shaped_transformer::philox {

inline constexpr std::uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;    ///< round multipliers
inline constexpr std::uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;  ///< key schedule

/// One 32-bit word per lane: a host thread or a device thread.
struct Scalar {
  using U = std::uint32_t;
  using F = float;
  ST_HD static void mulhilo(U a, std::uint32_t M, U& hi, U& lo) {
#if defined(__CUDA_ARCH__)
    hi = __umulhi(a, M);
    lo = a * M;
#else
    const std::uint64_t p = std::uint64_t(a) * M;
    hi = std::uint32_t(p >> 32);
    lo = std::uint32_t(p);
#endif
  }
  ST_HD static F to_float(U x) { return float(std::int32_t(x)); }
  ST_HD static F from_bits(U x) { return device::bits_to_float(x); }
  ST_HD static U to_bits(F x) { return device::float_to_bits(x); }
  ST_HD static F sqrt(F x) { return device::sqrt_f(x); }
};

/// The high counter word: the matrix id (< 2^16) and the high 16 bits of the group.
ST_HD static inline std::uint32_t counter_hi(std::uint32_t matrix, std::uint64_t group) {
  return (matrix << 16) | std::uint32_t(group >> 32);
}

/// Philox4x32-10 on S independent counters c[s] = (c0, c1, c2, c3) with key (k0, k1),
/// in place.  S > 1 interleaves the sets, which hides the latency of the SIMD multiplies.
template <class Lanes, int S>
ST_HD static inline void rounds(typename Lanes::U (&c)[S][4], std::uint32_t k0, std::uint32_t k1) {
  using U = typename Lanes::U;
  // Fully unrolled (the key schedule folds into constants): several times faster in
  // the SIMD lanes than the loop GCC keeps otherwise.
#if defined(__CUDA_ARCH__)
#pragma unroll
#elif defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__)
#pragma GCC unroll 10
#endif
  for (int r = 0; r < 10; ++r) {
    U hi0[S], lo0[S], hi1[S], lo1[S];  // all products first: the sets' multiplies overlap
    for (int s = 0; s < S; ++s) {
      Lanes::mulhilo(c[s][0], kMul0, hi0[s], lo0[s]);
      Lanes::mulhilo(c[s][2], kMul1, hi1[s], lo1[s]);
    }
    const U K0 = U{} + k0, K1 = U{} + k1;  // the round keys in every lane, once for all sets
    for (int s = 0; s < S; ++s) {
      c[s][0] = hi1[s] ^ c[s][1] ^ K0;
      c[s][1] = lo1[s];
      c[s][2] = hi0[s] ^ c[s][3] ^ K1;
      c[s][3] = lo0[s];
    }
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
}

/// Two normals from two uniform words per lane.  Radius from word a:
/// u = (a >> 8 + 0.5) 2^-24 in (0, 1), r = sqrt(-2 log u) with log u from the Cephes
/// logf polynomial (max error ~1 ulp); angle from word b: its top two bits pick the
/// quadrant, the next 22 bits the angle inside it (sine and cosine polynomials).
template <class Lanes>
ST_HD static inline void box_muller(typename Lanes::U a, typename Lanes::U b, typename Lanes::F& z0,
                                    typename Lanes::F& z1) {
  using F = typename Lanes::F;
  using U = typename Lanes::U;
  const F u = (Lanes::to_float(a >> 8) + 0.5f) * 5.9604644775390625e-8f;  // 2^-24
  // log u: u = 2^e x, x in [0.5, 1), then x in [sqrt(1/2), sqrt(2)) around 1.
  const U bits = Lanes::to_bits(u);
  F e = Lanes::to_float(((bits >> 23) & 0xFFu) - 126u);
  F x = Lanes::from_bits((bits & 0x807FFFFFu) | 0x3F000000u);
  const auto small = x < 0.707106781186547524f;
  e = small ? e - 1.0f : e;
  x = small ? (x + x) - 1.0f : x - 1.0f;
  const F z = x * x;
  F y = x * 7.0376836292e-2f;
  y = y - 1.1514610310e-1f;
  y = y * x + 1.1676998740e-1f;
  y = y * x - 1.2420140846e-1f;
  y = y * x + 1.4249322787e-1f;
  y = y * x - 1.6668057665e-1f;
  y = y * x + 2.0000714765e-1f;
  y = y * x - 2.4999993993e-1f;
  y = y * x + 3.3333331174e-1f;
  y = y * x * z;
  y = y + e * -2.12194440e-4f;
  y = y + z * -0.5f;
  x = x + y;
  const F log_u = x + e * 0.693359375f;
  const F r = Lanes::sqrt(log_u * -2.0f);
  // y in (-pi/4, pi/4): the angle inside the quadrant minus pi/4.
  const F f = (Lanes::to_float((b >> 8) & 0x3FFFFFu) + 0.5f) * 2.384185791015625e-7f;  // 2^-22
  const F t = f * 1.57079632679489662f - 0.785398163397448310f;
  const F t2 = t * t;
  F s = t2 * -1.9515295891e-4f;
  s = s + 8.3321608736e-3f;
  s = s * t2 - 1.6666654611e-1f;
  s = s * t2 * t + t;
  F c = t2 * 2.443315711809948e-5f;
  c = c - 1.388731625493765e-3f;
  c = c * t2 + 4.166664568298827e-2f;
  c = c * t2 * t2 - t2 * 0.5f + 1.0f;
  // rotate by pi/4 (the cosine and sine inside the quadrant), then by q pi/2
  const float h = 0.70710678118654752f;
  const F cq = (c - s) * h, sq = (c + s) * h;
  const auto odd = ((b >> 30) & 1u) != 0u;
  const auto neg = ((b >> 30) & 2u) != 0u;
  const F cx = odd ? -sq : cq;
  const F sx = odd ? cq : sq;
  const F sign = neg ? F{} - 1.0f : F{} + 1.0f;
  z0 = r * (cx * sign);
  z1 = r * (sx * sign);
}

/// A uniform in (0, 1) with 53 random bits from two words a, b, given as
/// hi = double(a >> 5) and lo = double(b >> 6) (any lanes of doubles).
template <class D>
ST_HD static inline D uniform53(D hi, D lo) {
  return (hi * 67108864.0 + lo + 0.5) * (1.0 / 9007199254740992.0);
}

}  // namespace shaped_transformer::philox
