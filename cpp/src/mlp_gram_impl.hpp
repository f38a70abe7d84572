// The Gram matrix of the exact MLP step (exact_common.hpp, mlp_exact_step), fused
// with the generation of its Gaussian pre-activations: the same source compiled for
// three instruction sets by mlp_gram.cpp (portable), mlp_gram_avx2.cpp and
// mlp_gram_avx512.cpp.  No floating-point operation is contracted
// (-ffp-contract=off) or reassociated (the sums over columns keep kLanes fixed
// partial sums, combined in a fixed order), so vectorization only changes the speed:
// every build gives the same bits.  `static`: each translation unit keeps its own
// copy (the AVX-512 one must never serve the others).
#pragma once

#include <algorithm>
#include <cstdint>

#include "shaped_transformer/exact/mlp_gram.hpp"
#include "shaped_transformer/normal_kernels.hpp"

namespace shaped_transformer::exact_mlp::fused {

inline constexpr int kLanes = 8;   ///< partial sums per Gram entry (columns j = l mod 8)
inline constexpr int kTile = 128;  ///< columns per tile (a multiple of kLanes)

/// Gram = sum_j phi(L g_j) phi(L g_j)^T, g_j = normals m j .. m j + m - 1 of `pre`
/// (column j of the m x n Gaussian G'), phi(x) = x > 0 ? sp x : sm x.  L and Gram
/// row-major m x m.  Returns false if cancelled (Gram is then incomplete).
static bool mlp_gram_impl(const shaped_transformer::Stream& pre, int m, long n, const double* L, double sp, double sm,
                          double* gram, const shaped_transformer::CancelToken* cancel) {
  constexpr int M = shaped_transformer::exact_mlp::kMaxM;
  alignas(64) double g[M * kTile], K[M][kTile];
  alignas(64) double acc[M * (M + 1) / 2][kLanes] = {};
  for (long j0 = 0; j0 < n; j0 += kTile) {
    if (cancel && (j0 / kTile) % 1024 == 1023 && cancel->stop_requested()) return false;
    const int w = int(std::min<long>(kTile, n - j0));
    shaped_transformer::fill_normal(pre, std::uint64_t(j0) * std::uint64_t(m), std::size_t(m) * std::size_t(w), g);
    const int wp = (w + kLanes - 1) / kLanes * kLanes;  // padding columns: zero (phi(0) = 0 adds nothing)
    for (int i = 0; i < m; ++i) {
      double* k = K[i];
      for (int j = 0; j < w; ++j) k[j] = L[i * m] * g[j * m];
      for (int c = 1; c < m; ++c) {
        const double l = L[i * m + c];
        for (int j = 0; j < w; ++j) k[j] = k[j] + l * g[j * m + c];
      }
      for (int j = w; j < wp; ++j) k[j] = 0.0;
      for (int j = 0; j < wp; ++j) k[j] = k[j] > 0.0 ? sp * k[j] : sm * k[j];
    }
    int e = 0;
    for (int a = 0; a < m; ++a)
      for (int b = 0; b <= a; ++b, ++e) {
        double* s = acc[e];
        const double *ka = K[a], *kb = K[b];
        for (int j = 0; j < wp; j += kLanes)
          for (int l = 0; l < kLanes; ++l) s[l] = s[l] + ka[j + l] * kb[j + l];
      }
  }
  int e = 0;
  for (int a = 0; a < m; ++a)
    for (int b = 0; b <= a; ++b, ++e) {
      double t = acc[e][0];
      for (int l = 1; l < kLanes; ++l) t = t + acc[e][l];
      gram[a * m + b] = gram[b * m + a] = t;
    }
  return true;
}

}  // namespace shaped_transformer::exact_mlp::fused
