// Sequential draws from one counter-based stream and the exact samplers built on
// them: Gamma (Marsaglia and Tsang 2000), chi-square and Wishart factors (Bartlett
// decomposition).  Written once, `ST_HD`: the CPU's exact chain (linalg.hpp,
// exact_common.hpp), the batched SIMD kernels (their first-proposal fast path uses
// the same Marsaglia-Tsang steps, GammaProposal below, and redraws the rare rejected
// lane with wishart_factor) and the CUDA threads all draw the same numbers.
#pragma once

#include <cstdint>

#include "../device/hd.hpp"
#include "../rng.hpp"

namespace shaped_transformer {

/// Normals 0, 1, 2, ... of one stream, drawn one at a time (the numbers of
/// fill_normal_reference on that stream).
class SeqNormal {
 public:
  ST_HD explicit SeqNormal(const Stream& s) : s_(s) {}
  ST_HD double operator()() {
    if (pos_ == 4) {
      normal4(s_, group_++, buf_);
      pos_ = 0;
    }
    return double(buf_[pos_++]);
  }

 private:
  Stream s_;
  std::uint64_t group_ = 0;
  float buf_[4] = {0, 0, 0, 0};
  int pos_ = 4;
};

/// Uniforms in (0, 1) with 53 random bits, two Philox words each, from one stream
/// (the counter layout of the normals, so streams never overlap as long as the
/// matrix ids differ).
class SeqUniform {
 public:
  ST_HD explicit SeqUniform(const Stream& s) : s_(s) {}
  ST_HD double operator()() {
    if (pos_ == 4) {
      philox_words(s_, group_++, buf_);
      pos_ = 0;
    }
    const double hi = double(buf_[pos_] >> 5), lo = double(buf_[pos_ + 1] >> 6);
    pos_ += 2;
    return philox::uniform53(hi, lo);
  }

 private:
  Stream s_;
  std::uint64_t group_ = 0;
  std::uint32_t buf_[4] = {0, 0, 0, 0};
  int pos_ = 4;
};

/// The random source of one random matrix: a normal stream and a uniform stream
/// (for the rejection steps of the gamma sampler) with distinct matrix ids.
struct MatrixRng {
  SeqNormal normal;
  SeqUniform uniform;
  ST_HD MatrixRng(const Stream& normals, const Stream& uniforms) : normal(normals), uniform(uniforms) {}
};

/// Marsaglia and Tsang's method for Gamma(shape >= 1, 1): with d = shape - 1/3 and
/// c = 1 / sqrt(9 d), a standard normal x proposes v = (1 + c x)^3 (rejected when
/// 1 + c x <= 0), accepted with a uniform u when u < 1 - 0.0331 x^4 (the squeeze) or
/// log u < x^2 / 2 + d (1 - v + log v); the variate is then d v.  The steps take any
/// lanes of doubles D, so the batched kernels evaluate the first proposal of every
/// lane with them.
struct GammaProposal {
  double d, c;
  ST_HD explicit GammaProposal(double shape) : d(shape - 1.0 / 3.0), c(1.0 / device::sqrt_d(9.0 * d)) {}
  /// 1 + c x: the proposal is rejected unless it is > 0; v is its cube.
  template <class D>
  ST_HD D base(D x) const {
    return 1.0 + c * x;
  }
  /// The squeeze test (true: accepted) for the uniform u and x2 = x^2.
  template <class D>
  ST_HD auto squeeze(D u, D x2) const {
    return u < 1.0 - 0.0331 * x2 * x2;
  }
  /// The exact test, for a proposal the squeeze did not accept (v: the cube).
  ST_HD bool log_test(double u, double x2, double v) const {
    return device::log_d(u) < 0.5 * x2 + d * (1.0 - v + device::log_d(v));
  }
};

/// Gamma(shape, 1) variate, exact (rejection); for shape < 1 the boost
/// Gamma(shape + 1) U^(1/shape).  `Rng` is any source with normal() and uniform()
/// (MatrixRng, or a buffered source with the same numbers).
template <class Rng>
ST_HD inline double gamma_variate(double shape, Rng& r) {
  ST_REQUIRE(shape > 0.0, "gamma_variate: shape must be > 0");
  double boost = 1.0;
  if (shape < 1.0) {
    boost = device::pow_d(r.uniform(), 1.0 / shape);
    shape += 1.0;
  }
  const GammaProposal g(shape);
  for (;;) {
    double x, v;
    do {
      x = r.normal();
      v = g.base(x);
    } while (v <= 0.0);
    v = v * v * v;
    const double u = r.uniform();
    const double x2 = x * x;
    if (g.squeeze(u, x2) || g.log_test(u, x2, v)) return boost * g.d * v;
  }
}

/// Chi-square variate with `df` > 0 (real) degrees of freedom.
template <class Rng>
ST_HD inline double chi2_variate(double df, Rng& r) {
  return 2.0 * gamma_variate(0.5 * df, r);
}

/// B (p x p, lower triangular, written through B(i, j)) with B B^T ~ Wishart_p(df, I).
/// Bartlett decomposition when df > p - 1: row i draws B_ii = sqrt(chi2(df - i)), then
/// B_ij ~ N(0, 1) for j < i.  For integer df <= p - 1 (singular Wishart) B = G, a
/// p x df Gaussian matrix (row by row), padded with zero columns (B B^T = G G^T
/// exactly).  df <= 0 gives B = 0.
template <class Rng, class Out>
ST_HD inline void wishart_factor(double df, int p, Rng& r, Out& B) {
  for (int i = 0; i < p; ++i)
    for (int j = 0; j < p; ++j) B(i, j) = 0.0;
  if (df <= 0.0) return;
  if (df > double(p - 1)) {
    for (int i = 0; i < p; ++i) {
      B(i, i) = device::sqrt_d(chi2_variate(df - double(i), r));
      for (int j = 0; j < i; ++j) B(i, j) = r.normal();
    }
    return;
  }
  const int k = int(df + 0.5);
  ST_REQUIRE(device::abs_d(df - double(k)) <= 1e-9,
             "wishart_factor: a singular Wishart needs integer degrees of freedom");
  for (int i = 0; i < p; ++i)
    for (int j = 0; j < k; ++j) B(i, j) = r.normal();
}

/// G(i, j) = normal i cols + j of stream s, row by row (the numbers fill_normal gives
/// for the stream), for any view G with rows(), cols() and G(i, j).
template <class VG>
ST_HD inline void gaussian_matrix(const Stream& s, VG& G) {
  SeqNormal z(s);
  for (int i = 0; i < G.rows(); ++i)
    for (int j = 0; j < G.cols(); ++j) G(i, j) = z();
}

}  // namespace shaped_transformer
