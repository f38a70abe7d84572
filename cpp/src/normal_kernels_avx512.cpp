// AVX-512 kernels: the one Philox4x32-10 and Box-Muller (math/philox.hpp) on the
// 16-word lanes of simd/lanes.hpp (-ffp-contract=off: bit-identical to the scalar
// reference), the normals transposed into the stream's order, and the fused
// Gaussian product with FMA intrinsics.  Compiled with -mavx512f... only; called
// after a CPUID check (normal_kernels.cpp).
// GCC 12 reports false 'maybe uninitialized' warnings inside its own intrinsic headers.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "gaussian_gemm_impl.hpp"
#include "shaped_transformer/math/philox.hpp"
#include "shaped_transformer/rng.hpp"
#include "shaped_transformer/simd/lanes.hpp"

namespace shaped_transformer {
namespace {

using Ln = simd::Lanes;  // 32-bit words and floats in 16 lanes
using VF = Ln::F;
using VU = Ln::U;

/// 16 groups (64 normals) from Philox words c0..c3 -> out (interleaved layout).
inline void box_muller_store(__m512i c0, __m512i c1, __m512i c2, __m512i c3, float* out) {
  VF z[4];
  philox::box_muller<Ln>((VU)c0, (VU)c1, z[0], z[1]);
  philox::box_muller<Ln>((VU)c2, (VU)c3, z[2], z[3]);
  // Structure of arrays -> out[4 * lane + k] = z[k][lane].
  const __m512 a = (__m512)z[0], b = (__m512)z[1];
  const __m512 c = (__m512)z[2], d = (__m512)z[3];
  const __m512 ab_lo = _mm512_unpacklo_ps(a, b), ab_hi = _mm512_unpackhi_ps(a, b);
  const __m512 cd_lo = _mm512_unpacklo_ps(c, d), cd_hi = _mm512_unpackhi_ps(c, d);
  // r_k holds, in its 128-bit lane q, the four normals of group 4q + k.
  const __m512 r0 = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(ab_lo), _mm512_castps_pd(cd_lo)));
  const __m512 r1 = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(ab_lo), _mm512_castps_pd(cd_lo)));
  const __m512 r2 = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(ab_hi), _mm512_castps_pd(cd_hi)));
  const __m512 r3 = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(ab_hi), _mm512_castps_pd(cd_hi)));
  const __m512 t0 = _mm512_shuffle_f32x4(r0, r1, 0x44), t1 = _mm512_shuffle_f32x4(r2, r3, 0x44);
  const __m512 t2 = _mm512_shuffle_f32x4(r0, r1, 0xEE), t3 = _mm512_shuffle_f32x4(r2, r3, 0xEE);
  _mm512_storeu_ps(out, _mm512_shuffle_f32x4(t0, t1, 0x88));
  _mm512_storeu_ps(out + 16, _mm512_shuffle_f32x4(t0, t1, 0xDD));
  _mm512_storeu_ps(out + 32, _mm512_shuffle_f32x4(t2, t3, 0x88));
  _mm512_storeu_ps(out + 48, _mm512_shuffle_f32x4(t2, t3, 0xDD));
}

struct Batch {
  static constexpr int kGroups = 32;
  /// 4 * 32 normals of groups g .. g+31 (g's low word must not wrap within the batch).
  /// Two independent sets of 16 counters go through the rounds together, which
  /// hides the latency of the 32x32->64 multiplies.
  static void philox_batch(const Stream& s, std::uint64_t g, float* out) {
    VU c[2][4];
    c[0][0] = Ln::iota() + std::uint32_t(g);
    c[1][0] = c[0][0] + 16u;
    for (int k = 0; k < 2; ++k) {
      c[k][1] = VU{} + philox::counter_hi(s.matrix, g);
      c[k][2] = VU{} + s.block;
      c[k][3] = VU{} + s.sample;
    }
    philox::rounds<Ln, 2>(c, std::uint32_t(s.seed), std::uint32_t(s.seed >> 32));
    box_muller_store((__m512i)c[0][0], (__m512i)c[0][1], (__m512i)c[0][2], (__m512i)c[0][3], out);
    box_muller_store((__m512i)c[1][0], (__m512i)c[1][1], (__m512i)c[1][2], (__m512i)c[1][3], out + 64);
  }
};

struct VecF {
  using T = float;
  using reg = __m512;
  static constexpr int L = 16;
  static reg loadu(const float* p) { return _mm512_loadu_ps(p); }
  static void storeu(float* p, reg v) { _mm512_storeu_ps(p, v); }
  static reg set1(float x) { return _mm512_set1_ps(x); }
  static reg fma(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
};
struct VecD {
  using T = double;
  using reg = __m512d;
  static constexpr int L = 8;
  static reg loadu(const double* p) { return _mm512_loadu_pd(p); }
  static void storeu(double* p, reg v) { _mm512_storeu_pd(p, v); }
  static reg set1(double x) { return _mm512_set1_pd(x); }
  static reg fma(reg a, reg b, reg c) { return _mm512_fmadd_pd(a, b, c); }
};

}  // namespace

namespace detail {
void fill_normal_avx512(const Stream& s, std::uint64_t first, std::size_t count, float* out) {
  normal_kernels::fill_generic<Batch>(s, first, count, out);
}
void fill_normal_avx512(const Stream& s, std::uint64_t first, std::size_t count, double* out) {
  normal_kernels::fill_generic<Batch>(s, first, count, out);
}
void gemm_cols_avx512(const Stream& s, int m, std::int64_t n_in, std::int64_t n_out, const float* X, std::int64_t ldx,
                      float* Out, std::int64_t ldo, float scale, std::int64_t jb, std::int64_t je) {
  normal_kernels::gemm_cols<VecF, Batch>(s, m, n_in, n_out, X, ldx, Out, ldo, scale, jb, je);
}
void gemm_cols_avx512(const Stream& s, int m, std::int64_t n_in, std::int64_t n_out, const double* X, std::int64_t ldx,
                      double* Out, std::int64_t ldo, double scale, std::int64_t jb, std::int64_t je) {
  normal_kernels::gemm_cols<VecD, Batch>(s, m, n_in, n_out, X, ldx, Out, ldo, scale, jb, je);
}
}  // namespace detail

}  // namespace shaped_transformer
