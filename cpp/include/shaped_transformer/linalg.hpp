// Small dense linear algebra and random matrices for the width-independent paths
// (the exact m x m chain and the covariance SDE): PSD square roots that accept
// singular matrices, eigenvalue clipping, sequential draws from a Philox stream,
// exact gamma / chi-square variates and Wishart matrices by the Bartlett
// decomposition.
#pragma once

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>

#include "mutation.hpp"
#include "normal_kernels.hpp"
#include "rng.hpp"
#include "types.hpp"

namespace shaped_transformer {

// ---- square roots and projections ------------------------------------------

/// out = A * B.  For matrices with a compile-time size bound (the SDE solver's small
/// m) a coefficient-based product: Eigen's GEMM path (pack, kernel, unpack) costs
/// several times more than the product itself at m <= 32.  Dynamic matrices keep
/// the blocked GEMM.  `out` must not alias A or B.
template <class M, class A, class B>
inline void small_product(M& out, const A& a, const B& b) {
  if constexpr (M::MaxRowsAtCompileTime != Eigen::Dynamic && M::MaxColsAtCompileTime != Eigen::Dynamic)
    out.noalias() = a.lazyProduct(b);
  else out.noalias() = a * b;
}

/// When psd_root trusts Cholesky and which eigenvalues it keeps.  The defaults are
/// the solvers' rule (exact chain, SDE, exact_common); the law sampler keeps its
/// own, law_root_rule(), so that its draws are what they always were.
struct PsdRootRule {
  /// Cholesky is kept when every pivot is > pivot_floor * sqrt(max_a |V_aa|): tiny
  /// pivots mean V is (numerically) singular, and Cholesky then loses accuracy in the
  /// null directions.  0 keeps every successful Cholesky.
  double pivot_floor = 1e-6;
  /// Eigenvalues <= eig_floor * eps * max |w| are zeros of a singular V: dropping them
  /// keeps the rank exact (their square roots would be O(sqrt(eps)) noise).  0 drops
  /// only the negative ones.
  double eig_floor = 64.0;
  /// Eigen-decompose (V + V^T) / 2; false: V's lower triangle as given.
  bool symmetrize = true;
};

/// The law sampler's rule (explicit_blocks.cpp): any successful Cholesky, negative
/// eigenvalues clipped to zero, the lower triangle of the Gram matrix as computed.
inline constexpr PsdRootRule law_root_rule() { return PsdRootRule{0.0, 0.0, false}; }

/// L with L L^T = V.  Cholesky when V is safely positive definite; otherwise (V
/// singular or nearly so, or slightly indefinite from rounding) the symmetric
/// square root Q sqrt(w) Q^T with the eigenvalues w of `rule` kept (the others
/// zero).  Returns false when V is not finite (L is then all NaN).
/// M: Cov or a fixed-size Eigen matrix; LM: M, or any matrix type L is to be stored in.
template <class M, class LM = M>
inline bool psd_root(const M& V, LM& L, const PsdRootRule& rule = {}) {
  const Eigen::Index m = V.rows();
  if (!V.allFinite()) {
    // Keep L a valid m x m matrix so that callers propagate NaN (and report a
    // blow-up) instead of indexing an empty root.
    L.setConstant(m, m, std::numeric_limits<double>::quiet_NaN());
    return false;
  }
  const double scale = V.diagonal().cwiseAbs().maxCoeff();
  if (scale == 0.0) {
    L.setZero(m, m);
    return true;
  }
  Eigen::LLT<M> llt(V);
  if (llt.info() == Eigen::Success) {
    L = llt.matrixL();
    if (L.diagonal().minCoeff() > rule.pivot_floor * std::sqrt(scale)) return true;
  }
  Eigen::SelfAdjointEigenSolver<M> es;
  if (rule.symmetrize) es.compute(0.5 * (V + V.transpose()));
  else es.compute(V);
  const double cut = rule.eig_floor * std::numeric_limits<double>::epsilon() * es.eigenvalues().cwiseAbs().maxCoeff();
  const auto w = es.eigenvalues().unaryExpr([cut](double x) { return x > cut ? std::sqrt(x) : 0.0; }).eval();
  L.noalias() = es.eigenvectors() * w.asDiagonal() * es.eigenvectors().transpose();
  return true;
}

/// Nearest PSD matrix in Frobenius norm (clip negative eigenvalues to zero).
/// Returns true if V had a negative eigenvalue (and was changed).
template <class M>
inline bool psd_clip(M& V) {
  ST_MUTATION_ONLY(const M V_in = V;)
  Eigen::SelfAdjointEigenSolver<M> es(0.5 * (V + V.transpose()));
  if (es.eigenvalues().minCoeff() >= 0.0) return false;
  const auto w = es.eigenvalues().cwiseMax(0.0).eval();
  V.noalias() = es.eigenvectors() * w.asDiagonal() * es.eigenvectors().transpose();
  V = (0.5 * (V + V.transpose())).eval();
  ST_MUTATION_ONLY(const double f = mutation::factor(mutation::kPsdClip);
                   if (f != 1.0) V = (V_in + f * (V - V_in)).eval();)
  return true;
}

/// psd_clip followed by psd_root, sharing the work: a successful Cholesky proves V
/// is PSD (no projection) and gives L.  Returns true if V was projected.
template <class M>
inline bool psd_clip_root(M& V, M& L) {
  Eigen::LLT<M> llt(V);
  if (llt.info() == Eigen::Success) {
    L = llt.matrixL();
    const double scale = V.diagonal().maxCoeff();
    if (L.diagonal().minCoeff() > 1e-6 * std::sqrt(scale)) return false;
  }
  const bool projected = psd_clip(V);
  psd_root(V, L);
  return projected;
}

/// D^{-1/2} V D^{-1/2} with D = diag(V): the covariance after RMS normalisation of
/// every token (x_a -> x_a / sqrt(V_aa)).  Zero tokens stay zero.
template <class CovT = Cov>
inline void rms_normalize(CovT& V) {
  const Eigen::Index m = V.rows();
  Eigen::VectorXd s(m);
  for (Eigen::Index a = 0; a < m; ++a) s[a] = V(a, a) > 0 ? 1.0 / std::sqrt(V(a, a)) : 0.0;
  V = s.asDiagonal() * V * s.asDiagonal();
}

/// Scales the rows of L so that L L^T is RMS-normalised (the root of rms_normalize(L L^T)).
template <class CovT = Cov>
inline CovT rms_normalize_root(const CovT& L) {
  CovT out = L;
  for (Eigen::Index a = 0; a < L.rows(); ++a) {
    const double v = L.row(a).squaredNorm();
    out.row(a) *= v > 0 ? 1.0 / std::sqrt(v) : 0.0;
  }
  return out;
}

// ---- sequential draws from one counter-based stream -------------------------

/// Normals 0, 1, 2, ... of one stream, drawn one at a time (same numbers as
/// fill_normal_reference on that stream).
class SeqNormal {
 public:
  explicit SeqNormal(const Stream& s) : s_(s) {}
  double operator()() {
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
/// (same counter layout as the normals of rng.hpp, so streams never overlap as
/// long as the matrix ids differ).
class SeqUniform {
 public:
  explicit SeqUniform(const Stream& s) : s_(s) {}
  double operator()() {
    if (pos_ == 4) {
      std::uint32_t c[4] = {std::uint32_t(group_), (s_.matrix << 16) | std::uint32_t(group_ >> 32), s_.block,
                            s_.sample};
      detail::philox4x32_10(c, std::uint32_t(s_.seed), std::uint32_t(s_.seed >> 32));
      for (int i = 0; i < 4; ++i) buf_[i] = c[i];
      ++group_;
      pos_ = 0;
    }
    const std::uint64_t a = buf_[pos_] >> 5, b = buf_[pos_ + 1] >> 6;
    pos_ += 2;
    return (double(a) * 67108864.0 + double(b) + 0.5) * (1.0 / 9007199254740992.0);
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
  MatrixRng(const Stream& normals, const Stream& uniforms) : normal(normals), uniform(uniforms) {}
};

/// Gamma(shape, 1) variate: Marsaglia and Tsang (2000), exact (rejection); for
/// shape < 1 the boost Gamma(shape + 1) * U^(1/shape).  `Rng` is any source with
/// normal() and uniform() (MatrixRng here, exact.hpp's BulkRng): the same draws.
template <class Rng>
inline double gamma_variate(double shape, Rng& r) {
  if (!(shape > 0.0)) throw std::invalid_argument("gamma_variate: shape must be > 0");
  double boost = 1.0;
  if (shape < 1.0) {
    boost = std::pow(r.uniform(), 1.0 / shape);
    shape += 1.0;
  }
  const double d = shape - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
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
    if (std::log(u) < 0.5 * x2 + d * (1.0 - v + std::log(v))) return boost * d * v;
  }
}

/// Chi-square variate with `df` > 0 (real) degrees of freedom.
inline double chi2_variate(double df, MatrixRng& r) { return 2.0 * gamma_variate(0.5 * df, r); }

/// A p x p lower-triangular B with B B^T ~ Wishart_p(df, I).  Bartlett
/// decomposition (B_ii^2 ~ chi2(df - i), B_ij ~ N(0, 1) below the diagonal) when
/// df > p - 1; for integer df <= p - 1 (singular Wishart) B = G, a p x df Gaussian
/// matrix, padded with zero columns (B B^T = G G^T exactly).  df = 0 gives B = 0.
template <class CovT = Cov>
inline void wishart_factor(double df, Eigen::Index p, MatrixRng& r, CovT& B) {
  B.setZero(p, p);
  if (df <= 0.0) return;
  if (df > double(p - 1)) {
    for (Eigen::Index i = 0; i < p; ++i) {
      B(i, i) = std::sqrt(chi2_variate(df - double(i), r));
      for (Eigen::Index j = 0; j < i; ++j) B(i, j) = r.normal();
    }
    return;
  }
  const Eigen::Index k = Eigen::Index(std::llround(df));
  if (std::abs(df - double(k)) > 1e-9)
    throw std::invalid_argument("wishart_factor: a singular Wishart needs integer degrees of freedom");
  for (Eigen::Index i = 0; i < p; ++i)
    for (Eigen::Index j = 0; j < k; ++j) B(i, j) = r.normal();
}

/// Fills an m x n matrix (column-major Eigen) with normals 0..m*n-1 of a stream,
/// in row-major order.
template <class CovT = Cov>
inline void gaussian_matrix(const Stream& s, Eigen::Index rows, Eigen::Index cols, CovT& out) {
  out.resize(rows, cols);
  Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> tmp(rows, cols);
  fill_normal(s, 0, std::size_t(rows * cols), tmp.data());
  out = tmp;
}

}  // namespace shaped_transformer
