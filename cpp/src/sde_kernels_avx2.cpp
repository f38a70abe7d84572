// The batched SDE kernel with AVX2: 4 paths in the lanes of a register, their
// Brownian increments from Philox4x32-10 on 8 counters (two groups of the 4
// paths' streams) and the vectorized Box-Muller of box_muller_vec.hpp.
// Compiled with -mavx2 -mfma -ffp-contract=off; called after a CPUID check.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "shaped_transformer/rng.hpp"
#include "shaped_transformer/sde/batch.hpp"

namespace shaped_transformer::sde {
namespace {

typedef float VF __attribute__((vector_size(32)));
typedef std::uint32_t VU __attribute__((vector_size(32)));
typedef std::int32_t VI __attribute__((vector_size(32)));
inline VF vsqrt(VF x) { return (VF)_mm256_sqrt_ps((__m256)x); }
#include "box_muller_vec.hpp"

constexpr int W = 4;
typedef double VD __attribute__((vector_size(32)));
typedef long long VL __attribute__((vector_size(32)));
inline VD vfma(VD a, VD b, VD c) { return (VD)_mm256_fmadd_pd((__m256d)a, (__m256d)b, (__m256d)c); }
inline VD vsqrtd(VD a) { return (VD)_mm256_sqrt_pd((__m256d)a); }

inline void mulhilo(__m256i a, __m256i M, __m256i& hi, __m256i& lo) {
  const __m256i pe = _mm256_mul_epu32(a, M);
  const __m256i po = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), M);
  hi = _mm256_blend_epi32(_mm256_srli_epi64(pe, 32), po, 0xAA);
  lo = _mm256_blend_epi32(pe, _mm256_slli_epi64(po, 32), 0xAA);
}
inline __m256i xor3(__m256i a, __m256i b, __m256i c) { return _mm256_xor_si256(_mm256_xor_si256(a, b), c); }

inline void store_groups(const __m256i c[4], double sd, VD* out) {
  VF z[4];
  box_muller_vec<VF, VU, VI, vsqrt>((VU)c[0], (VU)c[1], z[0], z[1]);
  box_muller_vec<VF, VU, VI, vsqrt>((VU)c[2], (VU)c[3], z[2], z[3]);
  const __m256d s = _mm256_set1_pd(sd);
  for (int i = 0; i < 4; ++i) {
    const __m256 zi = (__m256)z[i];
    out[i] = (VD)_mm256_mul_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(zi)), s);
    out[4 + i] = (VD)_mm256_mul_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(zi, 1)), s);
  }
}

/// Groups g, g+1 (one set) and g+2, g+3 (a second set, to hide the multiply latency).
inline void lane_normals(std::uint64_t seed, std::uint32_t matrix, std::uint32_t step, std::uint32_t path0, int groups,
                         double sd, VD* out) {
  const __m256i M0 = _mm256_set1_epi32(int(0xD2511F53u)), M1 = _mm256_set1_epi32(int(0xCD9E8D57u));
  const __m256i half = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
  const __m256i paths = _mm256_add_epi32(_mm256_set1_epi32(int(path0)), _mm256_setr_epi32(0, 1, 2, 3, 0, 1, 2, 3));
  for (int g = 0; g < groups; g += 4) {
    __m256i a[4], b[4];
    a[0] = _mm256_add_epi32(_mm256_set1_epi32(g), half);
    b[0] = _mm256_add_epi32(_mm256_set1_epi32(g + 2), half);
    a[1] = b[1] = _mm256_set1_epi32(int(matrix << 16));
    a[2] = b[2] = _mm256_set1_epi32(int(step));
    a[3] = b[3] = paths;
    std::uint32_t k0 = std::uint32_t(seed), k1 = std::uint32_t(seed >> 32);
    for (int r = 0; r < 10; ++r) {
      const __m256i K0 = _mm256_set1_epi32(int(k0)), K1 = _mm256_set1_epi32(int(k1));
      __m256i hi0, lo0, hi1, lo1, hj0, lj0, hj1, lj1;
      mulhilo(a[0], M0, hi0, lo0);
      mulhilo(a[2], M1, hi1, lo1);
      mulhilo(b[0], M0, hj0, lj0);
      mulhilo(b[2], M1, hj1, lj1);
      a[0] = xor3(hi1, a[1], K0);
      a[1] = lo1;
      a[2] = xor3(hi0, a[3], K1);
      a[3] = lo0;
      b[0] = xor3(hj1, b[1], K0);
      b[1] = lj1;
      b[2] = xor3(hj0, b[3], K1);
      b[3] = lj0;
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    store_groups(a, sd, out + 4 * g);
    store_groups(b, sd, out + 4 * g + 8);
  }
}

#include "sde_kernels_impl.hpp"
}  // namespace

namespace detail {
void run_batch_avx2(const BatchParams& p, const double* V0, std::uint32_t path0, int count, BatchSink& sink,
                    std::int64_t* exploded, std::int64_t* projections, const CancelToken* cancel) {
  run_batch(p, V0, path0, count, sink, exploded, projections, cancel);
}
}  // namespace detail
}  // namespace shaped_transformer::sde
