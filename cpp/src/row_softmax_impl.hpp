// The body of the large row softmax (row_softmax.hpp), compiled for AVX2 + FMA and for
// AVX-512 (row_softmax_avx2.cpp, row_softmax_avx512.cpp) with the lanes of the unit's
// own instruction set (simd/lanes.hpp: never a template shared with another build).
#pragma once

#include <cstddef>
#include <cstring>

namespace shaped_transformer::detail {
namespace {

/// Each row i of S over its columns 0 .. k - 1 (k = i + 1 when causal, else m): the
/// maximum (the select of softmax_rows, in any order: a maximum does not round),
/// exp(S - max) with Ln::exp, the sum of W lane-wise partial sums and then of the
/// lanes, the division by it; columns k .. m - 1 zero.  The tail of a row (fewer than
/// W entries) goes through lane 0 of the same exp.
template <class Ln>
inline void row_softmax_impl(int m, double* S, int ld, bool causal) {
  using D = typename Ln::D;
  constexpr int W = Ln::W;
  auto load = [](const double* p) {
    D x;
    std::memcpy(&x, p, sizeof(D));
    return x;
  };
  auto store = [](double* p, D x) { std::memcpy(p, &x, sizeof(D)); };
  for (int i = 0; i < m; ++i) {
    double* r = S + std::size_t(i) * std::size_t(ld);
    const int k = causal ? i + 1 : m, kv = k - k % W;
    D vm = Ln::splat(r[0]);
    for (int j = 0; j < kv; j += W) {
      const D x = load(r + j);
      vm = x > vm ? x : vm;
    }
    double mx = r[0];
    for (int l = 0; l < W; ++l) mx = vm[l] > mx ? vm[l] : mx;
    for (int j = kv; j < k; ++j) mx = r[j] > mx ? r[j] : mx;
    const D vmx = Ln::splat(mx);
    D vs = Ln::splat(0.0);
    for (int j = 0; j < kv; j += W) {
      const D e = Ln::exp(load(r + j) - vmx);
      store(r + j, e);
      vs += e;
    }
    double sum = 0.0;
    for (int l = 0; l < W; ++l) sum += vs[l];
    for (int j = kv; j < k; ++j) sum += (r[j] = Ln::exp(Ln::splat(r[j] - mx))[0]);
    const D vsum = Ln::splat(sum);
    for (int j = 0; j < kv; j += W) store(r + j, load(r + j) / vsum);
    for (int j = kv; j < k; ++j) r[j] = r[j] / sum;
    for (int j = k; j < m; ++j) r[j] = 0.0;
  }
}

}  // namespace
}  // namespace shaped_transformer::detail
