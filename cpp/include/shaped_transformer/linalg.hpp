// Small dense linear algebra and random matrices for the width-independent paths
// (the exact m x m chain and the covariance SDE): PSD square roots that accept
// singular matrices, eigenvalue clipping and Gaussian matrices from a Philox stream
// (the sequential draws and the exact samplers are math/samplers.hpp).
#pragma once

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>

#include "math/samplers.hpp"
#include "mutation.hpp"
#include "normal_kernels.hpp"
#include "rng.hpp"
#include "types.hpp"

namespace shaped_transformer {

// ---- square roots and projections ------------------------------------------

/// Eigen's storage for the roots of an m x m matrix with compile-time size MC
/// (MC = 0: any m, stack storage up to 32; beyond that, Cov).  The root is the same
/// whatever the storage (Eigen's Cholesky and eigen-solver do not depend on it).
template <int MC>
struct RootMatrix {
  using type = Eigen::Matrix<double, MC, MC>;
};
template <>
struct RootMatrix<0> {
  using type = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, 0, 32, 32>;
};

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

/// The law sampler's rule (src/explicit.cpp): any successful Cholesky, negative
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
  // Constructed from the matrix (not default-constructed, then compute()): GCC 12
  // reports the default-constructed solver's members as maybe-uninitialized.
  const Eigen::SelfAdjointEigenSolver<M> es(rule.symmetrize ? M(0.5 * (V + V.transpose())) : M(V));
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

// Sequential draws and the gamma / chi-square / Wishart samplers: math/samplers.hpp
// (one copy for the CPU, the SIMD kernels and the device).  Eigen matrices are
// written through B(i, j): size B (p x p) before calling wishart_factor.

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
