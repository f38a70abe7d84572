// psd_root (linalg.hpp) for the large matrices of the host's scalar lanes (m >=
// kGemmFrom: the per-sample exact chain and the per-path SDE solver at long
// sequences), with its Cholesky in the build for this CPU (gemm.hpp: Eigen's blocked
// Cholesky, whose updates are the GEMM kernels, about twice as fast in AVX2 /
// AVX-512 at m = 128).  The rule is psd_root's: Cholesky when every pivot is above
// its floor, else psd_root itself (the clipped spectrum).  In the portable build the
// root is psd_root's bit for bit; in the SIMD builds equal to rounding.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "gemm.hpp"
#include "linalg.hpp"
#include "types.hpp"

namespace shaped_transformer {

/// The Cholesky branch of psd_root and psd_clip_root for the row-major m x m V
/// (leading dimension m) into L: true when V is finite, its largest diagonal entry
/// `scale` > 0 and every pivot > pivot_floor * sqrt(scale) (their rule); false: the
/// caller's Eigen remedy decides (L then holds anything).
inline bool safe_cholesky_rowmajor(int m, const double* V, double* L, double pivot_floor = PsdRootRule{}.pivot_floor) {
  const std::size_t mm = std::size_t(m) * std::size_t(m);
  bool finite = true;
  for (std::size_t i = 0; i < mm; ++i) finite = finite && std::isfinite(V[i]);
  double scale = 0.0;
  for (int a = 0; a < m; ++a) scale = std::max(scale, V[std::size_t(a) * (m + 1)]);
  if (!finite || !(scale > 0.0) || !detail::llt_rowmajor(m, V, L)) return false;
  double pivot = L[0];
  for (int a = 1; a < m; ++a) pivot = std::min(pivot, L[std::size_t(a) * (m + 1)]);
  return pivot > pivot_floor * std::sqrt(scale);
}

/// L (row-major m x m, leading dimension m) with L L^T = V (row-major, symmetric),
/// by psd_root's default rule.  Returns false when V is not finite (L all NaN).
inline bool psd_root_rowmajor(int m, const double* V, double* L) {
  // a successful Cholesky has a positive diagonal: max V_aa is psd_root's max |V_aa|
  if (safe_cholesky_rowmajor(m, V, L)) return true;
  Cov v(m, m), l;  // not finite, zero, indefinite or (nearly) singular: psd_root decides
  for (int a = 0; a < m; ++a)
    for (int b = 0; b < m; ++b) v(a, b) = V[std::size_t(a) * m + b];
  const bool ok = psd_root(v, l);
  for (int a = 0; a < m; ++a)
    for (int b = 0; b < m; ++b) L[std::size_t(a) * m + b] = l(a, b);
  return ok;
}

}  // namespace shaped_transformer
