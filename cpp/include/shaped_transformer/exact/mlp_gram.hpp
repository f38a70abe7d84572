// The O(m^2 n) part of the exact MLP step (exact_common.hpp, mlp_exact_step) for
// piecewise-linear activations: the pre-activations K = L G' drawn with the
// vectorized Philox kernels (fill_normal) and reduced to phi(K) phi(K)^T tile by
// tile, in one pass through L1.  Portable, AVX2 and AVX-512 builds of one source
// (cpp/src/mlp_gram*.cpp) give the same bits; they differ from Eigen's products
// by the order of the sums only.
#pragma once

#include "../parallel.hpp"
#include "../rng.hpp"

namespace shaped_transformer::exact_mlp {

inline constexpr int kMaxM = 32;

/// phi(x) = x > 0 ? sp x : sm x (ReLU: sp = 1, sm = 0; the shaped ReLU), passed to
/// mlp_exact_step instead of a lambda to select the fused kernel.
struct PiecewiseLinear {
  double sp = 1.0, sm = 0.0;
  double operator()(double x) const { return x > 0 ? sp * x : sm * x; }
};

/// Gram (row-major m x m, m <= kMaxM) = sum over the n columns g_j of G' (normals
/// m j .. m j + m - 1 of `pre`) of phi(L g_j) phi(L g_j)^T, L row-major.  Returns
/// false when `cancel` stopped it (Gram incomplete).
bool gram(const Stream& pre, int m, long n, const double* L, double sp, double sm, double* out,
          const CancelToken* cancel);

}  // namespace shaped_transformer::exact_mlp
