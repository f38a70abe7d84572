// AVX2 kernels: Philox4x32-10 on 8 counters at once with integer intrinsics, a
// Box-Muller loop the compiler vectorizes (rng.hpp's own polynomials,
// -ffp-contract=off: bit-identical to the scalar reference), and the fused
// Gaussian product with FMA intrinsics.  Compiled with -mavx2 -mfma only; called
// after a CPUID check (normal_kernels.cpp).
// GCC 12 reports false 'maybe uninitialized' warnings inside its own intrinsic headers.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "shaped_transformer/workspace.hpp"
#include "shaped_transformer/rng.hpp"

namespace shaped_transformer {
namespace {

typedef float VF __attribute__((vector_size(32)));
typedef std::uint32_t VU __attribute__((vector_size(32)));
typedef std::int32_t VI __attribute__((vector_size(32)));
inline VF vsqrt(VF x) { return (VF)_mm256_sqrt_ps((__m256)x); }
#include "box_muller_vec.hpp"

constexpr int kGroups = 16;

inline void mulhilo(__m256i a, __m256i M, __m256i& hi, __m256i& lo) {
  const __m256i pe = _mm256_mul_epu32(a, M);                         // even lanes
  const __m256i po = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), M);  // odd lanes
  hi = _mm256_blend_epi32(_mm256_srli_epi64(pe, 32), po, 0xAA);
  lo = _mm256_blend_epi32(pe, _mm256_slli_epi64(po, 32), 0xAA);
}

inline __m256i xor3(__m256i a, __m256i b, __m256i c) { return _mm256_xor_si256(_mm256_xor_si256(a, b), c); }

/// 8 groups (32 normals) from Philox words c0..c3 -> out (interleaved layout).
inline void box_muller_store(__m256i c0, __m256i c1, __m256i c2, __m256i c3, float* out) {
  VF z[4];
  box_muller_vec<VF, VU, VI, vsqrt>((VU)c0, (VU)c1, z[0], z[1]);
  box_muller_vec<VF, VU, VI, vsqrt>((VU)c2, (VU)c3, z[2], z[3]);
  // Structure of arrays -> out[4 * lane + k] = z[k][lane].
  const __m256 a = (__m256)z[0], b = (__m256)z[1];
  const __m256 c = (__m256)z[2], d = (__m256)z[3];
  const __m256 ab_lo = _mm256_unpacklo_ps(a, b), ab_hi = _mm256_unpackhi_ps(a, b);
  const __m256 cd_lo = _mm256_unpacklo_ps(c, d), cd_hi = _mm256_unpackhi_ps(c, d);
  // r_k holds group k in its low 128-bit half and group 4 + k in its high half.
  const __m256 r0 = _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(ab_lo), _mm256_castps_pd(cd_lo)));
  const __m256 r1 = _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(ab_lo), _mm256_castps_pd(cd_lo)));
  const __m256 r2 = _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(ab_hi), _mm256_castps_pd(cd_hi)));
  const __m256 r3 = _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(ab_hi), _mm256_castps_pd(cd_hi)));
  _mm256_storeu_ps(out, _mm256_permute2f128_ps(r0, r1, 0x20));
  _mm256_storeu_ps(out + 8, _mm256_permute2f128_ps(r2, r3, 0x20));
  _mm256_storeu_ps(out + 16, _mm256_permute2f128_ps(r0, r1, 0x31));
  _mm256_storeu_ps(out + 24, _mm256_permute2f128_ps(r2, r3, 0x31));
}

/// 4 * 16 normals of groups g .. g+15 (g's low word must not wrap within the batch).
/// Two independent sets of 8 counters go through the rounds together, which hides
/// the latency of the 32x32->64 multiplies.
inline void philox_batch(const Stream& s, std::uint64_t g, float* out) {
  const __m256i M0 = _mm256_set1_epi32(int(0xD2511F53u)), M1 = _mm256_set1_epi32(int(0xCD9E8D57u));
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i base = _mm256_add_epi32(_mm256_set1_epi32(int(std::uint32_t(g))), iota);
  __m256i a0 = base, b0 = _mm256_add_epi32(base, _mm256_set1_epi32(8));
  __m256i a1 = _mm256_set1_epi32(int((s.matrix << 16) | std::uint32_t(g >> 32))), b1 = a1;
  __m256i a2 = _mm256_set1_epi32(int(s.block)), b2 = a2;
  __m256i a3 = _mm256_set1_epi32(int(s.sample)), b3 = a3;
  std::uint32_t k0 = std::uint32_t(s.seed), k1 = std::uint32_t(s.seed >> 32);
  for (int r = 0; r < 10; ++r) {
    const __m256i K0 = _mm256_set1_epi32(int(k0)), K1 = _mm256_set1_epi32(int(k1));
    __m256i hi0, lo0, hi1, lo1, hj0, lj0, hj1, lj1;
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
  box_muller_store(b0, b1, b2, b3, out + 32);
}

struct VecF {
  using T = float;
  using reg = __m256;
  static constexpr int L = 8;
  static reg loadu(const float* p) { return _mm256_loadu_ps(p); }
  static void storeu(float* p, reg v) { _mm256_storeu_ps(p, v); }
  static reg set1(float x) { return _mm256_set1_ps(x); }
  static reg fma(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
};
struct VecD {
  using T = double;
  using reg = __m256d;
  static constexpr int L = 4;
  static reg loadu(const double* p) { return _mm256_loadu_pd(p); }
  static void storeu(double* p, reg v) { _mm256_storeu_pd(p, v); }
  static reg set1(double x) { return _mm256_set1_pd(x); }
  static reg fma(reg a, reg b, reg c) { return _mm256_fmadd_pd(a, b, c); }
};

#include "normal_kernels_impl.hpp"

}  // namespace

namespace detail {
void fill_normal_avx2(const Stream& s, std::uint64_t first, std::size_t count, float* out) {
  fill_generic(s, first, count, out);
}
void fill_normal_avx2(const Stream& s, std::uint64_t first, std::size_t count, double* out) {
  fill_generic(s, first, count, out);
}
void gemm_cols_avx2(const Stream& s, int m, std::int64_t n_in, std::int64_t n_out, const float* X, std::int64_t ldx,
                    float* Out, std::int64_t ldo, float scale, std::int64_t jb, std::int64_t je) {
  gemm_cols<VecF>(s, m, n_in, n_out, X, ldx, Out, ldo, scale, jb, je);
}
void gemm_cols_avx2(const Stream& s, int m, std::int64_t n_in, std::int64_t n_out, const double* X, std::int64_t ldx,
                    double* Out, std::int64_t ldo, double scale, std::int64_t jb, std::int64_t je) {
  gemm_cols<VecD>(s, m, n_in, n_out, X, ldx, Out, ldo, scale, jb, je);
}
}  // namespace detail

}  // namespace shaped_transformer
