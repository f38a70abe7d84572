// Run-time dispatch of the normal kernels and of the fused Gaussian product, plus
// the portable fallback (same numbers as the SIMD kernels for the normals; the
// product differs from the FMA kernels only by rounding).
#include "shaped_transformer/normal_kernels.hpp"

#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

#include "gaussian_gemm_impl.hpp"
#include "shaped_transformer/cpu_features.hpp"

namespace shaped_transformer {

namespace detail {
#if defined(SHAPED_TRANSFORMER_X86_DISPATCH)
void fill_normal_avx512(const Stream&, std::uint64_t, std::size_t, float*);
void fill_normal_avx512(const Stream&, std::uint64_t, std::size_t, double*);
void fill_normal_avx2(const Stream&, std::uint64_t, std::size_t, float*);
void fill_normal_avx2(const Stream&, std::uint64_t, std::size_t, double*);
void gemm_cols_avx512(const Stream&, int, std::int64_t, std::int64_t, const float*, std::int64_t, float*, std::int64_t,
                      float, std::int64_t, std::int64_t);
void gemm_cols_avx512(const Stream&, int, std::int64_t, std::int64_t, const double*, std::int64_t, double*,
                      std::int64_t, double, std::int64_t, std::int64_t);
void gemm_cols_avx2(const Stream&, int, std::int64_t, std::int64_t, const float*, std::int64_t, float*, std::int64_t,
                    float, std::int64_t, std::int64_t);
void gemm_cols_avx2(const Stream&, int, std::int64_t, std::int64_t, const double*, std::int64_t, double*, std::int64_t,
                    double, std::int64_t, std::int64_t);
#endif
}  // namespace detail

namespace {

// ---- portable fallback: the skeleton of gaussian_gemm_impl.hpp with scalars ----
struct PortableBatch {
  static constexpr int kGroups = 4;
  static void philox_batch(const Stream& s, std::uint64_t g, float* out) {
    for (int k = 0; k < kGroups; ++k) normal4(s, g + std::uint64_t(k), out + 4 * k);
  }
};
template <class S>
struct Scalar {
  using T = S;
  using reg = S;
  static constexpr int L = 1;
  static reg loadu(const S* p) { return *p; }
  static void storeu(S* p, reg v) { *p = v; }
  static reg set1(S x) { return x; }
  static reg fma(reg a, reg b, reg c) { return a * b + c; }
};

template <class T>
void fill_with(SimdLevel k, const Stream& s, std::uint64_t first, std::size_t count, T* out) {
  switch (k) {
#if defined(SHAPED_TRANSFORMER_X86_DISPATCH)
    case SimdLevel::Avx512: detail::fill_normal_avx512(s, first, count, out); return;
    case SimdLevel::Avx2: detail::fill_normal_avx2(s, first, count, out); return;
#endif
    default: normal_kernels::fill_generic<PortableBatch>(s, first, count, out); return;
  }
}

template <class T>
void gemm_cols(const Stream& s, int m, std::int64_t n_in, std::int64_t n_out, const T* X, std::int64_t ldx, T* Out,
               std::int64_t ldo, T scale, std::int64_t jb, std::int64_t je) {
  switch (simd_level()) {
#if defined(SHAPED_TRANSFORMER_X86_DISPATCH)
    case SimdLevel::Avx512: detail::gemm_cols_avx512(s, m, n_in, n_out, X, ldx, Out, ldo, scale, jb, je); return;
    case SimdLevel::Avx2: detail::gemm_cols_avx2(s, m, n_in, n_out, X, ldx, Out, ldo, scale, jb, je); return;
#endif
    default:
      normal_kernels::gemm_cols<Scalar<T>, PortableBatch>(s, m, n_in, n_out, X, ldx, Out, ldo, scale, jb, je);
      return;
  }
}

template <class T>
void gaussian_gemm_impl(const Stream& s, int m, std::int64_t n_in, std::int64_t n_out, const T* X, std::int64_t ldx,
                        T* Out, std::int64_t ldo, T scale, int threads, const CancelToken* cancel) {
  if (m < 0 || n_in < 0 || n_out < 0) throw std::invalid_argument("gaussian_gemm: negative size");
  if (m == 0 || n_out == 0) return;
  // Chunks of 512 columns (a multiple of every kernel's column block) handed out
  // through an atomic counter; the result does not depend on who takes which.
  constexpr std::int64_t kChunk = 512;
  const std::int64_t chunks = (n_out + kChunk - 1) / kChunk;
  const double work = double(m) * double(n_in) * double(n_out);
  int nt = threads;
  if (nt > chunks) nt = int(chunks);
  if (nt <= 1 || work < double(1 << 22)) nt = 1;
  std::atomic<std::int64_t> next{0};
  auto worker = [&] {
    for (;;) {
      if (cancel && cancel->stop_requested()) break;
      const std::int64_t c = next.fetch_add(1);
      if (c >= chunks) break;
      const std::int64_t jb = c * kChunk, je = std::min(n_out, jb + kChunk);
      gemm_cols(s, m, n_in, n_out, X, ldx, Out, ldo, scale, jb, je);
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < nt; ++t) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
}

}  // namespace

void fill_normal(const Stream& s, std::uint64_t first, std::size_t count, float* out) {
  fill_with(simd_level(), s, first, count, out);
}

void fill_normal(const Stream& s, std::uint64_t first, std::size_t count, double* out) {
  fill_with(simd_level(), s, first, count, out);
}

const char* normal_kernel_name() { return simd_level_name(simd_level()); }

bool fill_normal_kernel(const char* name, const Stream& s, std::uint64_t first, std::size_t count, float* out) {
  SimdLevel level;
  if (!simd_level_from_name(name, level) || !cpu_supports(level)) return false;
  fill_with(level, s, first, count, out);
  return true;
}

void gaussian_gemm(const Stream& s, int m, std::int64_t n_in, std::int64_t n_out, const float* X, std::int64_t ldx,
                   float* Out, std::int64_t ldo, float scale, int threads, const CancelToken* cancel) {
  gaussian_gemm_impl(s, m, n_in, n_out, X, ldx, Out, ldo, scale, threads, cancel);
}
void gaussian_gemm(const Stream& s, int m, std::int64_t n_in, std::int64_t n_out, const double* X, std::int64_t ldx,
                   double* Out, std::int64_t ldo, double scale, int threads, const CancelToken* cancel) {
  gaussian_gemm_impl(s, m, n_in, n_out, X, ldx, Out, ldo, scale, threads, cancel);
}

}  // namespace shaped_transformer
