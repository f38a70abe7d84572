// The SIMD lanes of the batched kernels, for the instruction set this translation
// unit is compiled for (-mavx512f..., -mavx2 -mfma, or none: the portable build).
// One sample (a path, an exact-chain sample) per lane of doubles:
//
//   simd::Lanes::W     samples per batch: 8 (AVX-512), 4 (AVX2), 1 (portable)
//   D, M               W doubles (GCC vector extensions) and the masks their
//                      comparisons give (`m ? a : b` selects lane by lane)
//   U, F               2W 32-bit words and floats: one Philox call on 2W counters draws
//                      two groups of W streams (math/philox.hpp's `Lanes` interface)
//   madd(a, b, c)      a b + c rounded once (a fused multiply-add in every kernel, so
//                      that all kernels give the same numbers; the scalar lanes of the
//                      generic and device paths, ScalarLanes in math/lane.hpp, round twice)
//   sqrt, exp, log, acos (acos_lanes, math/lane.hpp), any, lane access ...
//
// The vector widths differ between instruction sets (AVX2: 32-byte vectors only,
// AVX-512: 64-byte vectors only, portable: 8-byte vectors), and the lane types live in
// a namespace per instruction set, so no template is ever instantiated with the same
// arguments in translation units compiled for different CPUs: the linker cannot lend
// an AVX-512 instance to AVX2 code.  portable::Lanes is defined in every translation
// unit (the kernel every network gets); a unit compiled for AVX2 or AVX-512 must use
// only its own lanes.  Intrinsics are used
// where GCC's generic vector code is slower: the 32 x 32 -> 64-bit products of Philox
// (`mulhilo`, in the one place that draws normals) and the square roots.
#pragma once

#include <cmath>
#include <cstdint>
#include <utility>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "../math/lane.hpp"

namespace shaped_transformer::simd {

/// The GCC vector of `Bytes` bytes of T (a specialization per size: GCC does not
/// accept a vector_size that depends on a template parameter in a member typedef).
template <class T, int Bytes>
struct Vector;
template <class T>
struct Vector<T, 4> {
  typedef T type __attribute__((vector_size(4)));
};
template <class T>
struct Vector<T, 8> {
  typedef T type __attribute__((vector_size(8)));
};
template <class T>
struct Vector<T, 16> {
  typedef T type __attribute__((vector_size(16)));
};
template <class T>
struct Vector<T, 32> {
  typedef T type __attribute__((vector_size(32)));
};
template <class T>
struct Vector<T, 64> {
  typedef T type __attribute__((vector_size(64)));
};

/// What every instruction set shares (the operations GCC's vector types express).
template <class Self, int Width>
struct LanesBase {
  static constexpr int W = Width;
  using D = typename Vector<double, 8 * Width>::type;
  using M = typename Vector<long long, 8 * Width>::type;
  using U = typename Vector<std::uint32_t, 8 * Width>::type;
  using F = typename Vector<float, 8 * Width>::type;
  using I = typename Vector<std::int32_t, 8 * Width>::type;
  using Ih = typename Vector<std::int32_t, 4 * Width>::type;  ///< W ints

  /// x in every lane: x - 0 is x for every x (0 + x would turn -0 into +0), so the
  /// compiler broadcasts x with no scalar add on the way (a hot spot in the SDE step).
  static D splat(double x) { return x - D{}; }
  static F to_float(U x) { return __builtin_convertvector((I)x, F); }
  static F from_bits(U x) { return (F)x; }
  static U to_bits(F x) { return (U)x; }
  static double lane(const D& x, int l) { return x[l]; }
  static void set_lane(D& x, int l, double v) { x[l] = v; }
  static bool lane(const M& m, int l) { return m[l] != 0; }
  static bool any(const M& m) {
    for (int l = 0; l < W; ++l)
      if (m[l]) return true;
    return false;
  }
  static M all_true() { return M{} == M{}; }
  /// i in word i (constants built by the compiler: a vector filled word by word at
  /// run time costs more than the Philox batch it sets up).
  static U iota() { return iota_of(std::make_integer_sequence<std::uint32_t, 2 * Width>{}); }
  /// 0 in words 0 .. W-1, 1 in words W .. 2W-1 (which of the two groups a word draws).
  static U half_index() { return half_of(std::make_integer_sequence<std::uint32_t, 2 * Width>{}); }
  /// l mod W in word l (which stream, i.e. sample, a word draws).
  static U lane_index() { return lane_of(std::make_integer_sequence<std::uint32_t, 2 * Width>{}); }
  /// Words 0 .. W-1 and W .. 2W-1 of x (< 2^31), as doubles.
  static void halves(U x, D& lo, D& hi) {
    Ih a, b;
    for (int l = 0; l < W; ++l) {
      a[l] = std::int32_t(x[l]);
      b[l] = std::int32_t(x[W + l]);
    }
    lo = __builtin_convertvector(a, D);
    hi = __builtin_convertvector(b, D);
  }
  /// log lane by lane (libm: the numbers of the scalar lanes).
  static D log(D x) {
    for (int l = 0; l < W; ++l) x[l] = std::log(x[l]);
    return x;
  }
  /// arccos of every lane at once (math/lane.hpp's acos_lanes, as the scalar lanes).
  static D acos(D x) { return acos_lanes<Self>(x); }
  template <std::uint32_t... I>
  static U iota_of(std::integer_sequence<std::uint32_t, I...>) {
    return U{I...};
  }
  template <std::uint32_t... I>
  static U half_of(std::integer_sequence<std::uint32_t, I...>) {
    return U{(I / std::uint32_t(Width))...};
  }
  template <std::uint32_t... I>
  static U lane_of(std::integer_sequence<std::uint32_t, I...>) {
    return U{(I % std::uint32_t(Width))...};
  }

  /// exp(x) for every lane: 2^k exp(r), r = x - k ln 2 in [-ln2/2, ln2/2], degree-13
  /// Taylor polynomial (truncation below 1e-17 relative); within ~2 ulp of std::exp.
  /// Results below 2^-1022 (x < -708) are flushed to 0.  NaN stays NaN.
  static D exp(D x) {
    const D big = splat(6755399441055744.0);  // 1.5 * 2^52: adding it rounds to an integer
    const D xc = x < splat(-708.0) ? splat(-708.0) : (x > splat(709.0) ? splat(709.0) : x);
    const D t = Self::madd(xc, splat(1.4426950408889634), big);
    const D k = t - big;
    D r = Self::madd(k, splat(-0.6931471803691238), xc);   // ln 2, high part (exact product for |k| < 2^11)
    r = Self::madd(k, splat(-1.9082149292705877e-10), r);  // ln 2, low part
    D p = splat(1.0 / 6227020800.0);
    const double inv_fact[13] = {1.0 / 479001600.0,
                                 1.0 / 39916800.0,
                                 1.0 / 3628800.0,
                                 1.0 / 362880.0,
                                 1.0 / 40320.0,
                                 1.0 / 5040.0,
                                 1.0 / 720.0,
                                 1.0 / 120.0,
                                 1.0 / 24.0,
                                 1.0 / 6.0,
                                 0.5,
                                 1.0,
                                 1.0};
    for (int i = 0; i < 13; ++i) p = Self::madd(p, r, splat(inv_fact[i]));
    const M kb = ((M)t - (M)big + 1023) << 52;  // 2^k: k in [-1022, 1023]
    D y = p * (D)kb;
    y = x < splat(-708.0) ? splat(0.0) : y;
    return x != x ? x : y;
  }
};

namespace portable {
/// One lane: the same source as the SIMD kernels, for any x86-64 or other CPU.
struct Lanes : LanesBase<Lanes, 1> {
  static constexpr const char* name = "scalar";
  static D madd(D a, D b, D c) { return D{std::fma(a[0], b[0], c[0])}; }
  static D sqrt(D a) { return D{std::sqrt(a[0])}; }
  static F sqrt(F a) { return F{std::sqrt(a[0]), std::sqrt(a[1])}; }
  static void mulhilo(U a, std::uint32_t mul, U& hi, U& lo) {
    U h{}, l{};
    for (int i = 0; i < 2; ++i) {
      const std::uint64_t p = std::uint64_t(a[i]) * mul;
      h[i] = std::uint32_t(p >> 32);
      l[i] = std::uint32_t(p);
    }
    hi = h;
    lo = l;
  }
  static void halves(F z, D& lo, D& hi) {
    lo = D{double(z[0])};
    hi = D{double(z[1])};
  }
  using LanesBase::halves;
};
}  // namespace portable

#if defined(__AVX2__) && defined(__FMA__)
namespace avx2 {
struct Lanes : LanesBase<Lanes, 4> {
  static constexpr const char* name = "avx2";
  static D madd(D a, D b, D c) { return (D)_mm256_fmadd_pd((__m256d)a, (__m256d)b, (__m256d)c); }
  static D sqrt(D a) { return (D)_mm256_sqrt_pd((__m256d)a); }
  static F sqrt(F a) { return (F)_mm256_sqrt_ps((__m256)a); }
  /// Philox's products (see avx512::Lanes::mulhilo).
  static void mulhilo(U a, std::uint32_t mul, U& hi, U& lo) {
    const __m256i A = (__m256i)a, Mv = _mm256_set1_epi32(int(mul));
    const __m256i pe = _mm256_mul_epu32(A, Mv);
    const __m256i po = _mm256_mul_epu32(_mm256_srli_epi64(A, 32), Mv);
    hi = (U)_mm256_blend_epi32(_mm256_srli_epi64(pe, 32), po, 0xAA);
    lo = (U)_mm256_blend_epi32(pe, _mm256_slli_epi64(po, 32), 0xAA);
  }
  static void halves(F z, D& lo, D& hi) {
    lo = (D)_mm256_cvtps_pd(_mm256_castps256_ps128((__m256)z));
    hi = (D)_mm256_cvtps_pd(_mm256_extractf128_ps((__m256)z, 1));
  }
  using LanesBase::halves;
};
}  // namespace avx2
#endif

#if defined(__AVX512F__) && defined(__AVX512DQ__)
namespace avx512 {
struct Lanes : LanesBase<Lanes, 8> {
  static constexpr const char* name = "avx512";
  static D madd(D a, D b, D c) { return (D)_mm512_fmadd_pd((__m512d)a, (__m512d)b, (__m512d)c); }
  static D sqrt(D a) { return (D)_mm512_sqrt_pd((__m512d)a); }
  static F sqrt(F a) { return (F)_mm512_sqrt_ps((__m512)a); }
  /// Philox's products: even and odd words through the 32 x 32 -> 64-bit multiply
  /// (GCC's generic code for this is a 64 x 64-bit multiply, several times slower).
  static void mulhilo(U a, std::uint32_t mul, U& hi, U& lo) {
    const __m512i A = (__m512i)a, Mv = _mm512_set1_epi32(int(mul));
    const __m512i pe = _mm512_mul_epu32(A, Mv);
    const __m512i po = _mm512_mul_epu32(_mm512_srli_epi64(A, 32), Mv);
    hi = (U)_mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(pe, 32), po);
    lo = (U)_mm512_mullo_epi32(A, Mv);
  }
  static void halves(F z, D& lo, D& hi) {
    lo = (D)_mm512_cvtps_pd(_mm512_castps512_ps256((__m512)z));
    hi = (D)_mm512_cvtps_pd(_mm512_extractf32x8_ps((__m512)z, 1));
  }
  using LanesBase::halves;
};
}  // namespace avx512
#endif

/// The widest lanes of this translation unit's instruction set.
#if defined(__AVX512F__) && defined(__AVX512DQ__)
using Lanes = avx512::Lanes;
#elif defined(__AVX2__) && defined(__FMA__)
using Lanes = avx2::Lanes;
#else
using Lanes = portable::Lanes;
#endif

}  // namespace shaped_transformer::simd
