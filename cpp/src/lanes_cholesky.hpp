// Lane-wise Cholesky factor shared by the batched SDE and exact-chain kernels
// (sde_kernels_impl.hpp, exact_kernels_impl.hpp).  Included inside an anonymous
// namespace after the including file defined W, VD, VL, vfma and vsqrtd; no
// #include here on purpose.

inline VD vset(double x) { return VD{} + x; }

/// Lane-wise Cholesky of V into L (lower, upper part zeroed).  Returns the lanes
/// (as a mask) whose factor is usable: all pivots > 1e-6 sqrt(max diag V), the
/// acceptance rule of psd_root / psd_clip_root (linalg.hpp).
template <int MC>
inline VL cholesky_lanes(int m, const VD* V, VD* L) {
  const VD zero = vset(0.0);
  VD maxdiag = V[0], minpiv = vset(INFINITY);
  VL ok = (VL{} == VL{});  // all true
  for (int a = 1; a < m; ++a) maxdiag = V[a * m + a] > maxdiag ? V[a * m + a] : maxdiag;
  for (int j = 0; j < m; ++j) {
    VD d = V[j * m + j];
    for (int k = 0; k < j; ++k) d = vfma(-L[j * m + k], L[j * m + k], d);
    ok &= d > zero;  // false for NaN too
    const VD piv = vsqrtd(d > zero ? d : vset(1.0));
    minpiv = piv < minpiv ? piv : minpiv;
    L[j * m + j] = piv;
    const VD inv = vset(1.0) / piv;
    for (int i = j + 1; i < m; ++i) {
      VD s = V[i * m + j];
      for (int k = 0; k < j; ++k) s = vfma(-L[i * m + k], L[j * m + k], s);
      L[i * m + j] = s * inv;
      L[j * m + i] = zero;
    }
  }
  ok &= minpiv > vsqrtd(maxdiag) * 1e-6;
  return ok;
}
