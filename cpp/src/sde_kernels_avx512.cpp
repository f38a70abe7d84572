// The batched SDE kernel with AVX-512: 8 paths in the lanes of a register, their
// Brownian increments from Philox4x32-10 on 16 counters (two groups of the 8
// paths' streams) and the vectorized Box-Muller of box_muller_vec.hpp.
// Compiled with -mavx512f... -ffp-contract=off; called after a CPUID check.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "shaped_transformer/rng.hpp"
#include "shaped_transformer/sde/batch.hpp"

namespace shaped_transformer::sde {
namespace {

typedef float VF __attribute__((vector_size(64)));
typedef std::uint32_t VU __attribute__((vector_size(64)));
typedef std::int32_t VI __attribute__((vector_size(64)));
inline VF vsqrt(VF x) { return (VF)_mm512_sqrt_ps((__m512)x); }
#include "box_muller_vec.hpp"

constexpr int W = 8;
typedef double VD __attribute__((vector_size(64)));
typedef long long VL __attribute__((vector_size(64)));
inline VD vfma(VD a, VD b, VD c) { return (VD)_mm512_fmadd_pd((__m512d)a, (__m512d)b, (__m512d)c); }
inline VD vsqrtd(VD a) { return (VD)_mm512_sqrt_pd((__m512d)a); }

inline void mulhilo(__m512i a, __m512i M, __m512i& hi, __m512i& lo) {
  const __m512i pe = _mm512_mul_epu32(a, M);
  const __m512i po = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), M);
  hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(pe, 32), po);
  lo = _mm512_mullo_epi32(a, M);
}
inline __m512i xor3(__m512i a, __m512i b, __m512i c) { return _mm512_ternarylogic_epi32(a, b, c, 0x96); }

inline void store_groups(const __m512i c[4], double sd, VD* out) {
  VF z[4];
  box_muller_vec<VF, VU, VI, vsqrt>((VU)c[0], (VU)c[1], z[0], z[1]);
  box_muller_vec<VF, VU, VI, vsqrt>((VU)c[2], (VU)c[3], z[2], z[3]);
  const __m512d s = _mm512_set1_pd(sd);
  for (int i = 0; i < 4; ++i) {
    const __m512 zi = (__m512)z[i];
    out[i] = (VD)_mm512_mul_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(zi)), s);
    out[4 + i] = (VD)_mm512_mul_pd(_mm512_cvtps_pd(_mm512_extractf32x8_ps(zi, 1)), s);
  }
}

/// Groups g, g+1 (one set) and g+2, g+3 (a second set, to hide the multiply latency).
inline void lane_normals(std::uint64_t seed, std::uint32_t matrix, std::uint32_t step, std::uint32_t path0, int groups,
                         double sd, VD* out) {
  const __m512i M0 = _mm512_set1_epi32(int(0xD2511F53u)), M1 = _mm512_set1_epi32(int(0xCD9E8D57u));
  const __m512i half = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
  const __m512i paths = _mm512_add_epi32(_mm512_set1_epi32(int(path0)),
                                         _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7));
  for (int g = 0; g < groups; g += 4) {
    __m512i a[4], b[4];
    a[0] = _mm512_add_epi32(_mm512_set1_epi32(g), half);
    b[0] = _mm512_add_epi32(_mm512_set1_epi32(g + 2), half);
    a[1] = b[1] = _mm512_set1_epi32(int(matrix << 16));
    a[2] = b[2] = _mm512_set1_epi32(int(step));
    a[3] = b[3] = paths;
    std::uint32_t k0 = std::uint32_t(seed), k1 = std::uint32_t(seed >> 32);
    for (int r = 0; r < 10; ++r) {
      const __m512i K0 = _mm512_set1_epi32(int(k0)), K1 = _mm512_set1_epi32(int(k1));
      __m512i hi0, lo0, hi1, lo1, hj0, lj0, hj1, lj1;
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
void run_batch_avx512(const BatchParams& p, const double* V0, std::uint32_t path0, int count, BatchSink& sink,
                      std::int64_t* exploded, std::int64_t* projections, const CancelToken* cancel) {
  run_batch(p, V0, path0, count, sink, exploded, projections, cancel);
}
}  // namespace detail
}  // namespace shaped_transformer::sde
