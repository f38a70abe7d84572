// Small dense m x m linear algebra on plain row-major arrays (leading dimension
// MM, the compile-time bound on m), as ST_HD functions: products, Cholesky, a
// cyclic Jacobi eigensolver, and the PSD root / clip of linalg.hpp with the same
// decisions (Cholesky accepted when its smallest pivot exceeds 1e-6 sqrt(scale),
// the symmetric root of the clipped spectrum otherwise).  The results agree with
// Eigen's to rounding: the operations are the same, their order inside a dot
// product and the eigensolver's algorithm are not.
#pragma once

#include "hd.hpp"

namespace shaped_transformer::device {

/// C = A B (m x m, all leading dimension MM).  C must not alias A or B.
template <int MM>
ST_HD inline void mat_mul(const double* A, const double* B, double* C, int m) {
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) {
      double s = 0.0;
      for (int k = 0; k < m; ++k) s += A[i * MM + k] * B[k * MM + j];
      C[i * MM + j] = s;
    }
}
/// C = A B^T.
template <int MM>
ST_HD inline void mat_mul_bt(const double* A, const double* B, double* C, int m) {
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) {
      double s = 0.0;
      for (int k = 0; k < m; ++k) s += A[i * MM + k] * B[j * MM + k];
      C[i * MM + j] = s;
    }
}
/// C = A^T B.
template <int MM>
ST_HD inline void mat_mul_at(const double* A, const double* B, double* C, int m) {
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) {
      double s = 0.0;
      for (int k = 0; k < m; ++k) s += A[k * MM + i] * B[k * MM + j];
      C[i * MM + j] = s;
    }
}

template <int MM>
ST_HD inline bool all_finite(const double* A, int m) {
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j)
      if (!isfinite_d(A[i * MM + j])) return false;
  return true;
}

/// A = 0.5 (A + A^T).
template <int MM>
ST_HD inline void symmetrize(double* A, int m) {
  for (int i = 0; i < m; ++i)
    for (int j = i + 1; j < m; ++j) {
      const double s = 0.5 * (A[i * MM + j] + A[j * MM + i]);
      A[i * MM + j] = s;
      A[j * MM + i] = s;
    }
}

/// Lower Cholesky factor of V (Eigen's unblocked LLT: fails on a pivot <= 0).
template <int MM>
ST_HD inline bool cholesky(const double* V, double* L, int m) {
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) L[i * MM + j] = 0.0;
  for (int k = 0; k < m; ++k) {
    double x = V[k * MM + k];
    for (int j = 0; j < k; ++j) x -= L[k * MM + j] * L[k * MM + j];
    if (x <= 0.0) return false;
    x = sqrt_d(x);
    L[k * MM + k] = x;
    for (int i = k + 1; i < m; ++i) {
      double s = V[i * MM + k];
      for (int j = 0; j < k; ++j) s -= L[i * MM + j] * L[k * MM + j];
      L[i * MM + k] = s / x;
    }
  }
  return true;
}

/// Eigen-decomposition of the symmetric A: A = Q diag(w) Q^T (cyclic Jacobi,
/// columns of Q are the eigenvectors; order unspecified).
template <int MM>
ST_HD inline void jacobi_eigen(const double* A, double* w, double* Q, int m) {
  double B[MM * MM];
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) {
      B[i * MM + j] = A[i * MM + j];
      Q[i * MM + j] = i == j ? 1.0 : 0.0;
    }
  for (int sweep = 0; sweep < 60; ++sweep) {
    double off = 0.0, diag = 0.0;
    for (int i = 0; i < m; ++i) {
      diag += B[i * MM + i] * B[i * MM + i];
      for (int j = i + 1; j < m; ++j) off += B[i * MM + j] * B[i * MM + j];
    }
    if (!(off > 1e-36 * diag) || off == 0.0) break;
    for (int p = 0; p < m; ++p)
      for (int q = p + 1; q < m; ++q) {
        const double apq = B[p * MM + q];
        if (apq == 0.0) continue;
        const double app = B[p * MM + p], aqq = B[q * MM + q];
        const double theta = (aqq - app) / (2.0 * apq);
        const double t = (theta >= 0 ? 1.0 : -1.0) / (abs_d(theta) + sqrt_d(theta * theta + 1.0));
        const double c = 1.0 / sqrt_d(t * t + 1.0), s = t * c;
        for (int k = 0; k < m; ++k) {  // B <- B J (columns p, q)
          const double bkp = B[k * MM + p], bkq = B[k * MM + q];
          B[k * MM + p] = c * bkp - s * bkq;
          B[k * MM + q] = s * bkp + c * bkq;
        }
        for (int k = 0; k < m; ++k) {  // B <- J^T B (rows p, q)
          const double bpk = B[p * MM + k], bqk = B[q * MM + k];
          B[p * MM + k] = c * bpk - s * bqk;
          B[q * MM + k] = s * bpk + c * bqk;
        }
        for (int k = 0; k < m; ++k) {  // Q <- Q J
          const double qkp = Q[k * MM + p], qkq = Q[k * MM + q];
          Q[k * MM + p] = c * qkp - s * qkq;
          Q[k * MM + q] = s * qkp + c * qkq;
        }
      }
  }
  for (int i = 0; i < m; ++i) w[i] = B[i * MM + i];
}

/// out = Q diag(w) Q^T.
template <int MM>
ST_HD inline void from_spectrum(const double* Q, const double* w, double* out, int m) {
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) {
      double s = 0.0;
      for (int k = 0; k < m; ++k) s += Q[i * MM + k] * w[k] * Q[j * MM + k];
      out[i * MM + j] = s;
    }
}

/// linalg.hpp's psd_root: L with L L^T = V (Cholesky when safely positive
/// definite, else the symmetric root of the spectrum with rounding-level
/// eigenvalues dropped); L = NaN when V is not finite.
template <int MM>
ST_HD inline bool psd_root(const double* V, double* L, int m) {
  if (!all_finite<MM>(V, m)) {
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < m; ++j) L[i * MM + j] = nan_d();
    return false;
  }
  double scale = 0.0;
  for (int i = 0; i < m; ++i) scale = max_d(scale, abs_d(V[i * MM + i]));
  if (scale == 0.0) {
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < m; ++j) L[i * MM + j] = 0.0;
    return true;
  }
  if (cholesky<MM>(V, L, m)) {
    double mn = L[0];
    for (int i = 1; i < m; ++i) mn = min_d(mn, L[i * MM + i]);
    if (mn > 1e-6 * sqrt_d(scale)) return true;
  }
  // S zeroed: GCC -O3 cannot see that the loop below fills it (-Wmaybe-uninitialized).
  double S[MM * MM] = {}, Q[MM * MM], w[MM];
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) S[i * MM + j] = 0.5 * (V[i * MM + j] + V[j * MM + i]);
  jacobi_eigen<MM>(S, w, Q, m);
  double wmax = 0.0;
  for (int i = 0; i < m; ++i) wmax = max_d(wmax, abs_d(w[i]));
  const double cut = 64.0 * 2.220446049250313e-16 * wmax;
  for (int i = 0; i < m; ++i) w[i] = w[i] > cut ? sqrt_d(w[i]) : 0.0;
  from_spectrum<MM>(Q, w, L, m);
  return true;
}

/// linalg.hpp's psd_clip: nearest PSD matrix; true if V had a negative eigenvalue.
template <int MM>
ST_HD inline bool psd_clip(double* V, int m) {
  // S zeroed: GCC -O3 cannot see that the loop below fills it (-Wmaybe-uninitialized).
  double S[MM * MM] = {}, Q[MM * MM], w[MM];
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) S[i * MM + j] = 0.5 * (V[i * MM + j] + V[j * MM + i]);
  jacobi_eigen<MM>(S, w, Q, m);
  double wmin = w[0];
  for (int i = 1; i < m; ++i) wmin = min_d(wmin, w[i]);
  if (wmin >= 0.0) return false;
  for (int i = 0; i < m; ++i) w[i] = max_d(w[i], 0.0);
  from_spectrum<MM>(Q, w, V, m);
  symmetrize<MM>(V, m);
  return true;
}

/// linalg.hpp's psd_clip_root: a successful Cholesky proves V is PSD (no
/// projection) and gives L; otherwise clip, then take the root.
template <int MM>
ST_HD inline bool psd_clip_root(double* V, double* L, int m) {
  if (cholesky<MM>(V, L, m)) {
    double scale = V[0], mn = L[0];
    for (int i = 1; i < m; ++i) {
      scale = max_d(scale, V[i * MM + i]);
      mn = min_d(mn, L[i * MM + i]);
    }
    if (mn > 1e-6 * sqrt_d(scale)) return false;
  }
  const bool projected = psd_clip<MM>(V, m);
  psd_root<MM>(V, L, m);
  return projected;
}

}  // namespace shaped_transformer::device
