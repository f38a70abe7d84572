// One path of the covariance SDE (sde.hpp's Euler and tamed Euler schemes with the
// structured noise, PSD clipping, blow-up rule and saving) as ST_HD code on plain
// m x m arrays: the CUDA kernel runs one path per thread with it, and the CPU tests
// run the same function against shaped_transformer::solve_sde.  The Brownian
// increments are generated in place from the Philox streams of sde/brownian.hpp
// (Stream{seed, path, step, kSdeBase + block}), so both sides use the same
// normals bit for bit; the m x m algebra agrees to rounding.
#pragma once

#include <cstdint>

#include "philox.hpp"
#include "small_linalg.hpp"

namespace shaped_transformer::device {

inline constexpr int kMaxBlocks = 16;
inline constexpr std::uint32_t kSdeBase = 0xC000;  // matrix_id::kSdeBase

/// A block with an SDE limit: the paper's shaped attention head or the shaped MLP.
struct SdeBlock {
  int kind = 0;  ///< 0: shaped attention, 1: shaped MLP
  int heads = 1;
  double gamma = 0.5, tau0 = 1.0, c_plus = 0.0, c_minus = -1.0;
};

/// Everything one path needs besides its index (passed to the kernel by value).
struct SdeProblem {
  int m = 0;
  int nblocks = 0;
  SdeBlock blocks[kMaxBlocks];
  double dt = 1e-3;
  std::int64_t steps = 0;
  int tamed = 0;  ///< 1: tamed Euler
  int clip = 1;   ///< 1: PSD clipping after each step
  double blowup = 1e4;
  std::uint64_t seed = 0;
  double V0[16 * 16];  ///< row-major m x m (m <= 16)
};

/// Attention drift (blocks/shaped_attention.hpp, sde_drift), added to out.
template <int MM>
ST_HD inline void drift_attention(const SdeBlock& b, const double* V, double* out, int m) {
  const double md = double(m);
  double r[MM], c[MM], w[MM], wV[MM], VP[MM * MM];
  for (int a = 0; a < m; ++a) {
    double s = 0.0;
    for (int j = 0; j < m; ++j) s += V[a * MM + j];
    r[a] = s / md;
  }
  for (int a = 0; a < m; ++a)
    for (int j = 0; j < m; ++j) VP[a * MM + j] = V[a * MM + j] - r[a];
  for (int j = 0; j < m; ++j) {
    double s = 0.0;
    for (int a = 0; a < m; ++a) s += VP[a * MM + j];
    c[j] = s / md;
  }
  double trPVP = 0.0, trVPVP = 0.0;
  for (int a = 0; a < m; ++a) trPVP += VP[a * MM + a] - c[a];
  for (int a = 0; a < m; ++a)
    for (int j = 0; j < m; ++j) trVPVP += VP[a * MM + j] * VP[j * MM + a];
  for (int j = 0; j < m; ++j) w[j] = ((VP[j * MM + j] - c[j]) - trPVP / md) / (2.0 * md);
  for (int a = 0; a < m; ++a) {
    double s = 0.0;
    for (int j = 0; j < m; ++j) s += V[a * MM + j] * w[j];
    wV[a] = s;
  }
  const double k = b.gamma * b.gamma / (b.tau0 * b.tau0), q = trVPVP / (md * md);
  for (int a = 0; a < m; ++a)
    for (int j = 0; j < m; ++j) {
      const double dv = V[a * MM + a] * wV[j], dvt = V[j * MM + j] * wV[a];
      out[a * MM + j] += k * (dv + dvt + q * V[a * MM + j]);
    }
}

/// MLP drift (blocks/shaped_mlp.hpp, sde_drift), added to out.
template <int MM>
ST_HD inline void drift_mlp(const SdeBlock& b, const double* V, double* out, int m) {
  const double dc = b.c_plus - b.c_minus;
  const double k = b.gamma * b.gamma * dc * dc / (2.0 * 3.14159265358979323846);
  if (k == 0.0) return;
  for (int a = 0; a < m; ++a)
    for (int c = a + 1; c < m; ++c) {
      const double s = sqrt_d(max_d(0.0, V[a * MM + a] * V[c * MM + c]));
      if (s == 0.0) continue;
      double rho = V[a * MM + c] / s;
      rho = rho < -1.0 ? -1.0 : (rho > 1.0 ? 1.0 : rho);
      const double v = k * (sqrt_d(1.0 - rho * rho) - rho * acos_d(rho)) * s;
      out[a * MM + c] += v;
      out[c * MM + a] += v;
    }
}

/// Attention noise (sde_noise of shaped_attention.hpp): dW = dZ then dXi, row-major m x m each.
template <int MM>
ST_HD inline void noise_attention(const SdeBlock& b, const double* V, const double* L, const double* dW, double* out,
                                  int m) {
  const double md = double(m);
  const double c1 = b.gamma * sqrt_d(max_d(0.0, 2.0 - b.gamma * b.gamma)) / sqrt_d(2.0);
  const double c2 = b.gamma * b.gamma / (b.tau0 * md * sqrt_d(double(b.heads)));
  double PV[MM * MM], R[MM * MM], Q[MM * MM], S[MM * MM], cm[MM];
  for (int j = 0; j < m; ++j) {
    double s = 0.0;
    for (int a = 0; a < m; ++a) s += V[a * MM + j];
    cm[j] = s / md;
  }
  for (int a = 0; a < m; ++a)
    for (int j = 0; j < m; ++j) PV[a * MM + j] = V[a * MM + j] - cm[j];
  mat_mul_at<MM>(L, PV, R, m);  // L^T P V
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) {
      double q = 0.0, s = 0.0;
      for (int k = 0; k < m; ++k) {
        q += dW[i * m + k] * L[j * MM + k];          // dZ L^T
        s += dW[m * m + i * m + k] * R[k * MM + j];  // dXi R
      }
      Q[i * MM + j] = c1 * q + c2 * s;
    }
  mat_mul<MM>(L, Q, S, m);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) out[i * MM + j] += S[i * MM + j] + S[j * MM + i];
}

/// MLP noise (sde_noise of shaped_mlp.hpp): gamma (L dZ L^T + its transpose).
template <int MM>
ST_HD inline void noise_mlp(const SdeBlock& b, const double* L, const double* dW, double* out, int m) {
  double LZ[MM * MM], S[MM * MM];
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) {
      double s = 0.0;
      for (int k = 0; k < m; ++k) s += L[i * MM + k] * dW[k * m + j];
      LZ[i * MM + j] = s;
    }
  mat_mul_bt<MM>(LZ, L, S, m);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) out[i * MM + j] += b.gamma * (S[i * MM + j] + S[j * MM + i]);
}

/// The drift of one layer: out = sum over blocks.
template <int MM>
ST_HD inline void drift(const SdeProblem& p, const double* V, double* out, int m) {
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) out[i * MM + j] = 0.0;
  for (int b = 0; b < p.nblocks; ++b) {
    if (p.blocks[b].kind == 0) drift_attention<MM>(p.blocks[b], V, out, m);
    else drift_mlp<MM>(p.blocks[b], V, out, m);
  }
}

/// One (tamed) Euler-Maruyama step of path `path` at step index `step`
/// (sde/euler.hpp, sde/tamed_euler.hpp).  L: root of V when have_root, else scratch.
template <int MM>
ST_HD inline void euler_step(const SdeProblem& p, double* V, double* L, bool have_root, std::uint32_t path,
                             std::uint32_t step, int m) {
  double incr[MM * MM], dW[2 * MM * MM];
  drift<MM>(p, V, incr, m);
  double f = p.dt;
  if (p.tamed) {
    double ss = 0.0;
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < m; ++j) ss += incr[i * MM + j] * incr[i * MM + j];
    f = p.dt / (1.0 + p.dt * sqrt_d(ss));
  }
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) incr[i * MM + j] = f * incr[i * MM + j];
  if (!have_root) psd_root<MM>(V, L, m);
  const double sd = sqrt_d(p.dt);
  for (int b = 0; b < p.nblocks; ++b) {
    const int k = p.blocks[b].kind == 0 ? 2 * m * m : m * m;
    fill_normal(Key{p.seed, path, step, kSdeBase + std::uint32_t(b)}, 0, k, dW);
    for (int i = 0; i < k; ++i) dW[i] *= sd;
    if (p.blocks[b].kind == 0) noise_attention<MM>(p.blocks[b], V, L, dW, incr, m);
    else noise_mlp<MM>(p.blocks[b], L, dW, incr, m);
  }
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) V[i * MM + j] += incr[i * MM + j];
  symmetrize<MM>(V, m);
}

/// Writes V (m x m, row-major, leading dimension m) to dst.
template <int MM>
ST_HD inline void store(const double* V, double* dst, int m) {
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) dst[i * m + j] = V[i * MM + j];
}

/// A whole path (sde.hpp's solve_path_t): saves V at save_steps[0..nsave) into out
/// (nsave x m x m), NaN after a blow-up.  Returns the blow-up step (-1: never) and
/// counts PSD projections.  FIXED: m == MM is known at compile time (the GPU kernel
/// for m = 4 and 8; lets the compiler unroll the m x m loops).
template <int MM, bool FIXED = false>
ST_HD inline std::int64_t solve_path(const SdeProblem& p, const std::int64_t* save_steps, int nsave, std::uint32_t path,
                                     double* out, std::int64_t& projections) {
  const int m = FIXED ? MM : p.m;
  double V[MM * MM], L[MM * MM];
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) V[i * MM + j] = p.V0[i * m + j];
  projections = 0;
  int k = 0;
  const int mm = m * m;
  while (k < nsave && save_steps[k] == 0) store<MM>(V, out + std::int64_t(k++) * mm, m);
  bool have_root = false;
  std::int64_t result = -1;
  for (std::int64_t s = 0; s < p.steps; ++s) {
    euler_step<MM>(p, V, L, have_root, path, std::uint32_t(s), m);
    have_root = false;
    bool bad = !all_finite<MM>(V, m);
    for (int i = 0; i < m && !bad; ++i) bad = V[i * MM + i] > p.blowup;
    if (bad) {
      result = s + 1;
      break;
    }
    if (p.clip) {
      if (psd_clip_root<MM>(V, L, m)) ++projections;
      have_root = true;
    }
    while (k < nsave && save_steps[k] == s + 1) store<MM>(V, out + std::int64_t(k++) * mm, m);
  }
  for (; k < nsave; ++k)
    for (int i = 0; i < mm; ++i) out[std::int64_t(k) * mm + i] = nan_d();
  return result;
}

}  // namespace shaped_transformer::device
