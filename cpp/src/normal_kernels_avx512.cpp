// AVX-512 kernels: Philox4x32-10 on 16 counters at once with integer intrinsics
// (the widening 32x32->64 multiply is what keeps compilers from vectorizing the
// scalar loop), a Box-Muller loop over the 16 lanes that the compiler vectorizes
// (rng.hpp's own polynomials, -ffp-contract=off: bit-identical to the scalar
// reference), and the fused Gaussian product with FMA intrinsics.
// Compiled with -mavx512f... only; called after a CPUID check (normal_kernels.cpp).
// GCC 12 reports false 'maybe uninitialized' warnings inside its own intrinsic headers.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "shaped_transformer/workspace.hpp"
#include "shaped_transformer/rng.hpp"

namespace shaped_transformer {
namespace {

typedef float VF __attribute__((vector_size(64)));
typedef std::uint32_t VU __attribute__((vector_size(64)));
typedef std::int32_t VI __attribute__((vector_size(64)));
inline VF vsqrt(VF x) { return (VF)_mm512_sqrt_ps((__m512)x); }
#include "box_muller_vec.hpp"

constexpr int kGroups = 32;

inline void mulhilo(__m512i a, __m512i M, __m512i& hi, __m512i& lo) {
  const __m512i pe = _mm512_mul_epu32(a, M);                         // even lanes
  const __m512i po = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), M);  // odd lanes
  hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(pe, 32), po);
  lo = _mm512_mullo_epi32(a, M);  // the low words: one instruction
}

/// Three-way xor in one instruction.
inline __m512i xor3(__m512i a, __m512i b, __m512i c) { return _mm512_ternarylogic_epi32(a, b, c, 0x96); }

/// 16 groups (64 normals) from Philox words c0..c3 -> out (interleaved layout).
inline void box_muller_store(__m512i c0, __m512i c1, __m512i c2, __m512i c3, float* out) {
  VF z[4];
  box_muller_vec<VF, VU, VI, vsqrt>((VU)c0, (VU)c1, z[0], z[1]);
  box_muller_vec<VF, VU, VI, vsqrt>((VU)c2, (VU)c3, z[2], z[3]);
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

/// 4 * 32 normals of groups g .. g+31 (g's low word must not wrap within the batch).
/// Two independent sets of 16 counters go through the rounds together, which
/// hides the latency of the 32x32->64 multiplies.
inline void philox_batch(const Stream& s, std::uint64_t g, float* out) {
  const __m512i M0 = _mm512_set1_epi32(int(0xD2511F53u)), M1 = _mm512_set1_epi32(int(0xCD9E8D57u));
  const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i base = _mm512_add_epi32(_mm512_set1_epi32(int(std::uint32_t(g))), iota);
  __m512i a0 = base, b0 = _mm512_add_epi32(base, _mm512_set1_epi32(16));
  __m512i a1 = _mm512_set1_epi32(int((s.matrix << 16) | std::uint32_t(g >> 32))), b1 = a1;
  __m512i a2 = _mm512_set1_epi32(int(s.block)), b2 = a2;
  __m512i a3 = _mm512_set1_epi32(int(s.sample)), b3 = a3;
  std::uint32_t k0 = std::uint32_t(s.seed), k1 = std::uint32_t(s.seed >> 32);
  for (int r = 0; r < 10; ++r) {
    const __m512i K0 = _mm512_set1_epi32(int(k0)), K1 = _mm512_set1_epi32(int(k1));
    __m512i hi0, lo0, hi1, lo1, hj0, lj0, hj1, lj1;
    mulhilo(a0, M0, hi0, lo0);
    mulhilo(a2, M1, hi1, lo1);
    mulhilo(b0, M0, hj0, lj0);
    mulhilo(b2, M1, hj1, lj1);
    a0 = xor3(hi1, a1, K0);
    a1 = lo1;
    a2 = xor3(hi0, a3, K1);
    a3 = lo0;
    b0 = xor3(hj1, b1, K0);
    b1 = lj1;
    b2 = xor3(hj0, b3, K1);
    b3 = lj0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  box_muller_store(a0, a1, a2, a3, out);
  box_muller_store(b0, b1, b2, b3, out + 64);
}

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

#include "normal_kernels_impl.hpp"

}  // namespace

namespace detail {
void fill_normal_avx512(const Stream& s, std::uint64_t first, std::size_t count, float* out) {
  fill_generic(s, first, count, out);
}
void fill_normal_avx512(const Stream& s, std::uint64_t first, std::size_t count, double* out) {
  fill_generic(s, first, count, out);
}
void gemm_cols_avx512(const Stream& s, int m, std::int64_t n_in, std::int64_t n_out, const float* X, std::int64_t ldx,
                      float* Out, std::int64_t ldo, float scale, std::int64_t jb, std::int64_t je) {
  gemm_cols<VecF>(s, m, n_in, n_out, X, ldx, Out, ldo, scale, jb, je);
}
void gemm_cols_avx512(const Stream& s, int m, std::int64_t n_in, std::int64_t n_out, const double* X, std::int64_t ldx,
                      double* Out, std::int64_t ldo, double scale, std::int64_t jb, std::int64_t je) {
  gemm_cols<VecD>(s, m, n_in, n_out, X, ldx, Out, ldo, scale, jb, je);
}
}  // namespace detail

}  // namespace shaped_transformer
