// Philox4x32-10 and the Box-Muller transform of rng.hpp as plain `ST_HD` functions
// (host and device), with the same counter layout, constants and operation order:
// on the CPU these return the numbers of shaped_transformer::normal4 bit for bit
// (tests/cpp/test_device.cpp, tests/test_cuda.py), and under nvcc -fmad=false the
// GPU does too.  Plus the sequential normal / uniform draws and the exact gamma,
// chi-square and Wishart samplers of linalg.hpp on plain arrays.
#pragma once

#include <cstdint>

#include "hd.hpp"

namespace shaped_transformer::device {

/// One stream of numbers (as shaped_transformer::Stream): seed, sample, block, matrix id.
struct Key {
  std::uint64_t seed;
  std::uint32_t sample, block, matrix;
};

ST_HD inline void mulhilo32(std::uint32_t a, std::uint32_t b, std::uint32_t& hi, std::uint32_t& lo) {
#if defined(__CUDA_ARCH__)
  hi = __umulhi(a, b);
  lo = a * b;
#else
  const std::uint64_t p = std::uint64_t(a) * b;
  hi = std::uint32_t(p >> 32);
  lo = std::uint32_t(p);
#endif
}

/// Philox4x32-10 (Salmon et al. 2011), in place on the counter c.
ST_HD inline void philox4x32_10(std::uint32_t c[4], std::uint32_t k0, std::uint32_t k1) {
  constexpr std::uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int r = 0; r < 10; ++r) {
    std::uint32_t hi0, lo0, hi1, lo1;
    mulhilo32(M0, c[0], hi0, lo0);
    mulhilo32(M1, c[2], hi1, lo1);
    const std::uint32_t n0 = hi1 ^ c[1] ^ k0, n2 = hi0 ^ c[3] ^ k1;
    c[0] = n0;
    c[1] = lo1;
    c[2] = n2;
    c[3] = lo0;
    k0 += W0;
    k1 += W1;
  }
}

/// Natural log of u in (0, 1]: rng.hpp's Cephes polynomial, same operation order.
ST_HD inline float log_poly(float u) {
  const std::uint32_t b = float_to_bits(u);
  float e = float(int((b >> 23) & 0xFFu) - 126);
  float x = bits_to_float((b & 0x807FFFFFu) | 0x3F000000u);
  const bool small = x < 0.707106781186547524f;
  e = small ? e - 1.0f : e;
  x = small ? (x + x) - 1.0f : x - 1.0f;
  const float z = x * x;
  float y = 7.0376836292e-2f;
  y = y * x - 1.1514610310e-1f;
  y = y * x + 1.1676998740e-1f;
  y = y * x - 1.2420140846e-1f;
  y = y * x + 1.4249322787e-1f;
  y = y * x - 1.6668057665e-1f;
  y = y * x + 2.0000714765e-1f;
  y = y * x - 2.4999993993e-1f;
  y = y * x + 3.3333331174e-1f;
  y = y * x * z;
  y = y + -2.12194440e-4f * e;
  y = y + -0.5f * z;
  x = x + y;
  return x + 0.693359375f * e;
}

/// rng.hpp's box_muller_pair: two normals from two uniform words.
ST_HD inline void box_muller_pair(std::uint32_t a, std::uint32_t b, float& z0, float& z1) {
  const float u = (float(a >> 8) + 0.5f) * 5.9604644775390625e-8f;
  const float r = sqrt_f(-2.0f * log_poly(u));
  const float f = (float((b >> 8) & 0x3FFFFFu) + 0.5f) * 2.384185791015625e-7f;
  const float y = f * 1.57079632679489662f - 0.785398163397448310f;
  const float y2 = y * y;
  float s = -1.9515295891e-4f;
  s = s * y2 + 8.3321608736e-3f;
  s = s * y2 - 1.6666654611e-1f;
  s = s * y2 * y + y;
  float c = 2.443315711809948e-5f;
  c = c * y2 - 1.388731625493765e-3f;
  c = c * y2 + 4.166664568298827e-2f;
  c = c * y2 * y2 - 0.5f * y2 + 1.0f;
  const float h = 0.70710678118654752f;
  const float cq = (c - s) * h, sq = (c + s) * h;
  const std::uint32_t q = b >> 30;
  const float cx = (q & 1u) ? -sq : cq;
  const float sx = (q & 1u) ? cq : sq;
  const float sign = (q & 2u) ? -1.0f : 1.0f;
  z0 = r * (cx * sign);
  z1 = r * (sx * sign);
}

/// The four Philox words of group `group` of stream k (rng.hpp's counter layout).
ST_HD inline void philox_words(const Key& k, std::uint64_t group, std::uint32_t c[4]) {
  c[0] = std::uint32_t(group);
  c[1] = (k.matrix << 16) | std::uint32_t(group >> 32);
  c[2] = k.block;
  c[3] = k.sample;
  philox4x32_10(c, std::uint32_t(k.seed), std::uint32_t(k.seed >> 32));
}

/// Normals 4*group .. 4*group+3 of stream k (shaped_transformer::normal4).
ST_HD inline void normal4(const Key& k, std::uint64_t group, float out[4]) {
  std::uint32_t c[4];
  philox_words(k, group, c);
  box_muller_pair(c[0], c[1], out[0], out[1]);
  box_muller_pair(c[2], c[3], out[2], out[3]);
}

/// Normals first .. first+count-1 of stream k, widened to double
/// (shaped_transformer::fill_normal for double).
ST_HD inline void fill_normal(const Key& k, std::uint64_t first, int count, double* out) {
  float z[4];
  std::uint64_t g = first / 4;
  int j = int(first % 4);
  int i = 0;
  while (i < count) {
    normal4(k, g++, z);
    for (; j < 4 && i < count; ++j) out[i++] = double(z[j]);
    j = 0;
  }
}

/// Normals 0, 1, 2, ... of one stream, one at a time (linalg.hpp's SeqNormal).
struct SeqNormal {
  Key k;
  std::uint64_t group = 0;
  float buf[4] = {0, 0, 0, 0};
  int pos = 4;
  ST_HD explicit SeqNormal(const Key& key) : k(key) {}
  ST_HD double operator()() {
    if (pos == 4) {
      normal4(k, group++, buf);
      pos = 0;
    }
    return double(buf[pos++]);
  }
};

/// Uniforms in (0, 1) with 53 random bits (linalg.hpp's SeqUniform).
struct SeqUniform {
  Key k;
  std::uint64_t group = 0;
  std::uint32_t buf[4] = {0, 0, 0, 0};
  int pos = 4;
  ST_HD explicit SeqUniform(const Key& key) : k(key) {}
  ST_HD double operator()() {
    if (pos == 4) {
      philox_words(k, group++, buf);
      pos = 0;
    }
    const std::uint64_t a = buf[pos] >> 5, b = buf[pos + 1] >> 6;
    pos += 2;
    return (double(a) * 67108864.0 + double(b) + 0.5) * (1.0 / 9007199254740992.0);
  }
};

struct MatrixRng {
  SeqNormal normal;
  SeqUniform uniform;
  ST_HD MatrixRng(const Key& normals, const Key& uniforms) : normal(normals), uniform(uniforms) {}
};

/// Gamma(shape, 1), Marsaglia-Tsang (linalg.hpp's gamma_variate; shape > 0).
ST_HD inline double gamma_variate(double shape, MatrixRng& r) {
  double boost = 1.0;
  if (shape < 1.0) {
    boost = pow_d(r.uniform(), 1.0 / shape);
    shape += 1.0;
  }
  const double d = shape - 1.0 / 3.0, c = 1.0 / sqrt_d(9.0 * d);
  for (;;) {
    double x, v;
    do {
      x = r.normal();
      v = 1.0 + c * x;
    } while (v <= 0.0);
    v = v * v * v;
    const double u = r.uniform();
    const double x2 = x * x;
    if (u < 1.0 - 0.0331 * x2 * x2) return boost * d * v;
    if (log_d(u) < 0.5 * x2 + d * (1.0 - v + log_d(v))) return boost * d * v;
  }
}

ST_HD inline double chi2_variate(double df, MatrixRng& r) { return 2.0 * gamma_variate(0.5 * df, r); }

/// p x p lower-triangular B (row-major, leading dimension ld) with B B^T ~
/// Wishart_p(df, I): linalg.hpp's wishart_factor, same draws in the same order.
/// A singular Wishart (df <= p - 1) needs integer df (the caller checks).
ST_HD inline void wishart_factor(double df, int p, MatrixRng& r, double* B, int ld) {
  for (int i = 0; i < p; ++i)
    for (int j = 0; j < p; ++j) B[i * ld + j] = 0.0;
  if (df <= 0.0) return;
  if (df > double(p - 1)) {
    for (int i = 0; i < p; ++i) {
      B[i * ld + i] = sqrt_d(chi2_variate(df - double(i), r));
      for (int j = 0; j < i; ++j) B[i * ld + j] = r.normal();
    }
    return;
  }
  const int k = int(df + 0.5);
  for (int i = 0; i < p; ++i)
    for (int j = 0; j < k; ++j) B[i * ld + j] = r.normal();
}

}  // namespace shaped_transformer::device
