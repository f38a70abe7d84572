// The batched exact attention chain with AVX2: 4 samples in the lanes of a
// register (exact/batch.hpp).  Compiled with -mavx2 -mfma -ffp-contract=off;
// called after a CPUID check (exact_kernels.cpp).
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "shaped_transformer/exact/batch.hpp"
#include "shaped_transformer/sde/batch.hpp"  // batch_lane_root

namespace shaped_transformer::exact_batch {
namespace {

constexpr int W = 4;
typedef float VF __attribute__((vector_size(16)));
typedef std::uint32_t VU __attribute__((vector_size(16)));
typedef std::int32_t VI __attribute__((vector_size(16)));
typedef std::uint64_t VU64 __attribute__((vector_size(32)));
typedef double VD __attribute__((vector_size(32)));
typedef long long VL __attribute__((vector_size(32)));
inline VF vsqrt(VF x) { return (VF)_mm_sqrt_ps((__m128)x); }
inline VD vfma(VD a, VD b, VD c) { return (VD)_mm256_fmadd_pd((__m256d)a, (__m256d)b, (__m256d)c); }
/// hi, lo words of the lanes' 32 x 32 -> 64-bit products with M (Philox).
inline void mulhilo(VU a, std::uint64_t M, VU& hi, VU& lo) {
  const VU64 p = (VU64)_mm256_mul_epu32(_mm256_cvtepu32_epi64((__m128i)a), _mm256_set1_epi64x((long long)M));
  hi = __builtin_convertvector(p >> 32, VU);
  lo = __builtin_convertvector(p, VU);
}
inline VD vsqrtd(VD a) { return (VD)_mm256_sqrt_pd((__m256d)a); }
#include "box_muller_vec.hpp"
#include "exact_lanes_vec.hpp"
#include "exact_kernels_impl.hpp"

}  // namespace

namespace detail {
void run_exact_avx2(const Params& p, const double* V0, std::uint32_t sample0, int count, double* out,
                    std::int64_t* exploded, const CancelToken* cancel) {
  run_exact(p, V0, sample0, count, out, exploded, cancel);
}
}  // namespace detail
}  // namespace shaped_transformer::exact_batch
