// The Cholesky factor of a lane of m x m matrices (row-major, leading dimension m),
// shared by the batched SDE and exact-chain kernels: every lane's factor in the
// same operations, with the acceptance rule of psd_root / psd_clip_root
// (linalg.hpp) as a mask; the kernels take the scalar remedy for the lanes it
// rejects.
#pragma once

#include <cmath>

#include "../device/hd.hpp"

namespace shaped_transformer {

/// Lane-wise Cholesky of V into L (lower, upper part zeroed).  Returns the lanes (as a
/// mask) whose factor is usable: every pivot > 1e-6 sqrt(max diag V).  MC > 0: m = MC.
template <class Ln, int MC>
ST_HD inline typename Ln::M cholesky_lanes(int m, const typename Ln::D* V, typename Ln::D* L) {
  using D = typename Ln::D;
  using M = typename Ln::M;
  if constexpr (MC > 0) m = MC;
  const D zero = Ln::splat(0.0);
  D maxdiag = V[0], minpiv = Ln::splat(HUGE_VAL);
  M ok = Ln::all_true();
  for (int a = 1; a < m; ++a) maxdiag = V[a * m + a] > maxdiag ? V[a * m + a] : maxdiag;
  for (int j = 0; j < m; ++j) {
    D d = V[j * m + j];
    for (int k = 0; k < j; ++k) d = Ln::madd(-L[j * m + k], L[j * m + k], d);
    ok &= d > zero;  // false for NaN too
    const D piv = Ln::sqrt(d > zero ? d : Ln::splat(1.0));
    minpiv = piv < minpiv ? piv : minpiv;
    L[j * m + j] = piv;
    const D inv = Ln::splat(1.0) / piv;
    for (int i = j + 1; i < m; ++i) {
      D s = V[i * m + j];
      for (int k = 0; k < j; ++k) s = Ln::madd(-L[i * m + k], L[j * m + k], s);
      L[i * m + j] = s * inv;
      L[j * m + i] = zero;
    }
  }
  ok &= minpiv > Ln::sqrt(maxdiag) * 1e-6;
  return ok;
}

}  // namespace shaped_transformer
