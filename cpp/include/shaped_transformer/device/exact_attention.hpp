// The exact chain's attention-only step for one sample (exact_common.hpp and
// blocks/shaped_attention.hpp, exact_step) as ST_HD code on plain arrays, and the
// whole sample (exact.hpp, exact_sample) for networks of shaped attention blocks.
// Same streams and the same draws in the same order as the CPU (ExactKey ids), so
// on the CPU the two agree to rounding (tests/cpp/test_device.cpp); on the GPU
// the exp / log / pow of libdevice may differ from glibc's by an ulp, which can
// flip a gamma rejection decision only with probability ~1e-16 per draw.
#pragma once

#include <cstdint>

#include "philox.hpp"
#include "small_linalg.hpp"

namespace shaped_transformer::device {

inline constexpr std::uint32_t kExactBase = 0x8000;  // matrix_id::kExactBase
inline constexpr int kMaxAttnBlocks = 16;

/// One shaped attention block (any alpha, beta, causal, heads, key_dim; no concat).
struct AttnBlock {
  int heads = 1;
  int causal = 0;
  std::int64_t key_dim = 0;  ///< 0: n_k = width
  double tau0 = 1.0, gamma = 0.5, lambda = 0.8660254037844386, alpha = 1.0, beta = 1.0;
};

struct ExactProblem {
  int m = 0;
  int nblocks = 0;
  AttnBlock blocks[kMaxAttnBlocks];
  std::int64_t width = 0;
  std::int64_t depth = 0;  ///< layers (steps for the SDE's exact_chain scheme)
  double blowup = 1e4;
  std::uint64_t seed = 0;
  double V0[16 * 16];  ///< row-major m x m (m <= 16)
};

/// Stream ids of ExactKey (exact_common.hpp).
ST_HD inline Key exact_stream(std::uint64_t seed, std::uint32_t sample, std::uint32_t block, std::uint32_t id) {
  return Key{seed, sample, block, kExactBase + id};
}
ST_HD inline Key exact_head_stream(std::uint64_t seed, std::uint32_t sample, std::uint32_t block, int h,
                                   std::uint32_t id) {
  return exact_stream(seed, sample, block, 8u + 8u * std::uint32_t(h) + id);
}

/// Row-major rows x cols Gaussian matrix (normals 0.. of stream k), leading dimension ld.
ST_HD inline void gaussian_matrix(const Key& k, int rows, int cols, double* out, int ld) {
  float z[4];
  std::uint64_t g = 0;
  int pos = 4;
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < cols; ++j) {
      if (pos == 4) {
        normal4(k, g++, z);
        pos = 0;
      }
      out[i * ld + j] = double(z[pos++]);
    }
}

/// exact_common.hpp's softmax_rows on an m x m array (leading dimension MM).
template <int MM>
ST_HD inline void softmax_rows(double* S, int m, bool causal) {
  for (int i = 0; i < m; ++i) {
    const int k = causal ? i + 1 : m;
    double mx = S[i * MM];
    for (int j = 1; j < k; ++j) mx = max_d(mx, S[i * MM + j]);
    double sum = 0.0;
    for (int j = 0; j < k; ++j) sum += (S[i * MM + j] = exp_d(S[i * MM + j] - mx));
    for (int j = 0; j < k; ++j) S[i * MM + j] /= sum;
    for (int j = k; j < m; ++j) S[i * MM + j] = 0.0;
  }
}

/// One shaped attention block applied to V exactly in law at width n
/// (exact_step(ShapedAttention) + value_mix).  MM bounds m, HM bounds heads * m.
template <int MM, int HM>
ST_HD inline void exact_attention_step(const AttnBlock& b, double* V, int m, std::int64_t n, std::uint64_t seed,
                                       std::uint32_t sample, std::uint32_t block) {
  double L[MM * MM], M[MM * MM], Y[MM * MM], T[MM * MM], Z[MM * MM], C[MM * HM];
  psd_root<MM>(V, L, m);
  const double nk = b.key_dim > 0 ? double(b.key_dim) : double(n);
  const double tau = b.tau0 * sqrt_d(double(n) * nk);
  const int H = b.heads;
  for (int h = 0; h < H; ++h) {
    // M = G_q G_k^T (draw_key_product)
    MatrixRng r(exact_head_stream(seed, sample, block, h, 0), exact_head_stream(seed, sample, block, h, 1));
    if (nk > double(m - 1)) {
      wishart_factor(nk, m, r, T, MM);  // lower triangular
      gaussian_matrix(exact_head_stream(seed, sample, block, h, 2), m, m, Z, MM);
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < m; ++j) {
          double s = 0.0;
          for (int k = 0; k <= i; ++k) s += T[i * MM + k] * Z[k * MM + j];
          M[i * MM + j] = s;
        }
    } else {
      const int k = int(nk + 0.5);  // 0 <= k <= m - 1
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < k; ++j) T[i * MM + j] = r.normal();
      gaussian_matrix(exact_head_stream(seed, sample, block, h, 2), m, k, Z, MM);
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < m; ++j) {
          double s = 0.0;
          for (int q = 0; q < k; ++q) s += T[i * MM + q] * Z[j * MM + q];
          M[i * MM + j] = s;
        }
    }
    mat_mul<MM>(L, M, T, m);     // L M
    mat_mul_bt<MM>(T, L, Y, m);  // L M L^T
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < m; ++j) Y[i * MM + j] /= tau;
    softmax_rows<MM>(Y, m, b.causal != 0);
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < m; ++j) {
        const double c = (!b.causal || j <= i) ? 1.0 / double(b.causal ? i + 1 : m) : 0.0;
        T[i * MM + j] = b.beta * (Y[i * MM + j] - c) + (i == j ? b.alpha : 0.0);
      }
    for (int i = 0; i < m; ++i)  // C_h = A_h L
      for (int j = 0; j < m; ++j) {
        double s = 0.0;
        for (int k = 0; k < m; ++k) s += T[i * MM + k] * L[k * MM + j];
        C[i * HM + h * m + j] = s;
      }
  }
  // value_mix: P = sum_h C_h Z_h
  double P[MM * MM];
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) P[i * MM + j] = 0.0;
  for (int h = 0; h < H; ++h) {
    gaussian_matrix(exact_head_stream(seed, sample, block, h, 3), m, m, Z, MM);
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < m; ++j) {
        double s = 0.0;
        for (int k = 0; k < m; ++k) s += C[i * HM + h * m + k] * Z[k * MM + j];
        P[i * MM + j] += s;
      }
  }
  const int Hm = H * m;
  double quad[MM * MM];
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) {
      double s = 0.0;
      for (int k = 0; k < m; ++k) s += P[i * MM + k] * P[j * MM + k];
      quad[i * MM + j] = s;
    }
  {
    // quad += F F^T, F F^T ~ C R C^T with R ~ Wishart_{Hm}(n - m): wishart_quad.hpp's
    // wishart_quad_factor (F = K B, K = C for one head, else the root of C C^T; B
    // the Bartlett factor of Wishart_m(n - m), or an m x (n - m) Gaussian below m).
    const double k = double(n) - double(m);
    const bool bartlett = k > double(m - 1);
    double B[MM * MM], F[MM * MM];
    MatrixRng r(exact_stream(seed, sample, block, 0), exact_stream(seed, sample, block, 1));
    wishart_factor(k, m, r, B, MM);
    if (H > 1) {
      for (int i = 0; i < m; ++i)  // Sigma = C C^T (in Y), its root in T
        for (int j = 0; j < m; ++j) {
          double s = 0.0;
          for (int q = 0; q < Hm; ++q) s += C[i * HM + q] * C[j * HM + q];
          Y[i * MM + j] = s;
        }
      psd_root<MM>(Y, T, m);
    } else {
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < m; ++j) T[i * MM + j] = C[i * HM + j];
    }
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < m; ++j) {
        double s = 0.0;
        for (int q = bartlett ? j : 0; q < m; ++q) s += T[i * MM + q] * B[q * MM + j];
        F[i * MM + j] = s;
      }
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < m; ++j) {
        double s = 0.0;
        for (int q = 0; q < m; ++q) s += F[i * MM + q] * F[j * MM + q];
        quad[i * MM + j] += s;
      }
  }
  const double HN = double(H) * double(n);
  const double l2 = b.lambda * b.lambda, lg = b.lambda * b.gamma / sqrt_d(HN), g2 = b.gamma * b.gamma / HN;
  mat_mul_bt<MM>(L, P, T, m);  // cross = L P^T
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j)
      Y[i * MM + j] = l2 * V[i * MM + j] + lg * (T[i * MM + j] + T[j * MM + i]) + g2 * quad[i * MM + j];
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) V[i * MM + j] = 0.5 * (Y[i * MM + j] + Y[j * MM + i]);
}

/// A whole sample of the exact chain (exact.hpp's exact_sample) for an
/// attention-only network; `block index` = layer * nblocks + b.  Saves V at the
/// layers save_at[0..nsave) into out (nsave x m x m), NaN after a blow-up.
/// Returns the layer of the blow-up (-1: never).
template <int MM, int HM>
ST_HD inline std::int64_t exact_sample(const ExactProblem& p, const std::int64_t* save_at, int nsave,
                                       std::uint32_t sample, double* out) {
  const int m = p.m;
  const int mm = m * m;
  double V[MM * MM];
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) V[i * MM + j] = p.V0[i * m + j];
  int k = 0;
  auto save = [&](std::int64_t layer) {
    while (k < nsave && save_at[k] == layer) {
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < m; ++j) out[std::int64_t(k) * mm + i * m + j] = V[i * MM + j];
      ++k;
    }
  };
  save(0);
  std::int64_t exploded = -1;
  for (std::int64_t l = 0; l < p.depth; ++l) {
    bool finite = true;
    for (int b = 0; b < p.nblocks && finite; ++b) {
      const std::uint32_t bi = std::uint32_t(l * p.nblocks + b);
      exact_attention_step<MM, HM>(p.blocks[b], V, m, p.width, p.seed, sample, bi);
      finite = all_finite<MM>(V, m);
    }
    bool bad = !finite;
    for (int i = 0; i < m && !bad; ++i) bad = V[i * MM + i] > p.blowup;
    if (bad) {
      exploded = l + 1;
      break;
    }
    save(l + 1);
  }
  for (; k < nsave; ++k)
    for (int i = 0; i < mm; ++i) out[std::int64_t(k) * mm + i] = nan_d();
  return exploded;
}

}  // namespace shaped_transformer::device
