// Shaped MLP block: X' = lambda X + gamma sqrt(c) phi_s(X W^pre / sqrt(n)) W^post / sqrt(n),
// phi_s(x) = s_+ max(x,0) + s_- min(x,0), s_+- = 1 + c_+- / sqrt(n), c = 2 / (s_+^2 + s_-^2).
// docs/model.md sections 2, 4, 5.
#pragma once

#include <cmath>
#include <cstdint>

#include "../mutation.hpp"
#include "../types.hpp"
#include "fields.hpp"
#include "resources.hpp"

namespace shaped_transformer {

struct ShapedMLP {
  static constexpr const char* kind = "shaped_mlp";
  static constexpr const char* python_class = "ShapedMLP";  ///< its class in shaped_transformer
  double c_plus = 0.0;
  double c_minus = -1.0;
  double gamma = 0.5;
  double lambda = std::sqrt(1.0 - 0.25);

  static constexpr auto fields() {
    using B = ShapedMLP;
    return std::make_tuple(field("c_plus", &B::c_plus, finite(), "slope shift c_+ of phi_s"),
                           field("c_minus", &B::c_minus, finite(), "slope shift c_- of phi_s"),
                           field("gamma", &B::gamma, within(0.0, 1.0), "branch weight"),
                           field("lam", &B::lambda, residual_weight(),
                                 "residual weight, lambda^2 + gamma^2 = 1; None: sqrt(1 - gamma^2)"));
  }
  void validate(long = 0) const {
    check_fields(*this);
    check_residual(gamma, lambda);
  }

  static constexpr bool has_explicit = true, has_exact = true, has_sde = true;
  const char* exact_refusal() const { return nullptr; }
  const char* sde_refusal() const { return nullptr; }

  /// Its weight matrices (explicit network) and the memory one worker holds for it (resources.hpp).
  template <class F>
  void weights(long width, F&& f) const {
    mlp_weights(width, f);
  }
  Workspace workspace(double m, double n, double itemsize) const { return mlp_workspace(m, n, itemsize); }
};

// ---- explicit forward on X ------------------------------------------------
class CancelToken;  // parallel.hpp
// Defined in cpp/src/explicit_blocks.cpp for S = float and double.
// forward_explicit: one block on the tokens X (m x n), in place, with Gaussian
// weights drawn from Stream{seed, sample, block, matrix_id} in tiles (never an
// n x n matrix); `threads` > 1 splits each weight product over column tiles with
// identical results; `cancel` stops a long product early (the result is then
// garbage and must be discarded).  forward_law: the law-exact activation sampler of docs/model.md
// section 4 (same law of X', O(m n) normals from the kLawBase matrix ids).
template <class S>
void forward_explicit(const ShapedMLP& b, Mat<S>& X, std::uint64_t seed, std::uint32_t sample, std::uint32_t block,
                      int threads = 1, const CancelToken* cancel = nullptr);
template <class S>
void forward_law(const ShapedMLP& b, Mat<S>& X, std::uint64_t seed, std::uint32_t sample, std::uint32_t block);

// ---- exact step on V ------------------------------------------------------
// Phi = c phi_s(K) phi_s(K)^T / n with K = L G' (O(m^2 n)), then the
// value part with C = chol(Phi) (exact_common.hpp, mlp_exact_step).

}  // namespace shaped_transformer
#include "../exact_common.hpp"
namespace shaped_transformer {

/// One shaped MLP block applied to V exactly in law, at width n.
template <class CovT = Cov>
inline void exact_step(const ShapedMLP& b, CovT& V, long n, const ExactKey& key) {
  const double sp = 1.0 + b.c_plus / std::sqrt(double(n)), sm = 1.0 + b.c_minus / std::sqrt(double(n));
  const double c = 2.0 / (sp * sp + sm * sm);
  CovT L;
  psd_root(V, L);
  mlp_exact_step(V, L, L, n, c, b.lambda, b.gamma, key, exact_mlp::PiecewiseLinear{sp, sm});
}

// ---- SDE drift and noise --------------------------------------------------
// drift b_ab = gamma^2 nu(rho_ab) sqrt(V_aa V_bb) off the diagonal,
// nu(rho) = ((c_+ - c_-)^2 / (2 pi)) (sqrt(1 - rho^2) - rho arccos rho);
// noise covariance 2 gamma^2 Sigma_lin, drawn as gamma (L dZ L^T + L dZ^T L^T).

/// Adds the MLP drift to `out` (M: Cov or a fixed-size Eigen matrix).
template <class M>
inline void sde_drift(const ShapedMLP& b, const M& V, M& out) {
  const Eigen::Index m = V.rows();
  const double k =
      b.gamma * b.gamma * (b.c_plus - b.c_minus) * (b.c_plus - b.c_minus) / (2.0 * M_PI) ST_MUTATE(kMlpDrift);
  if (k == 0.0) return;
  for (Eigen::Index a = 0; a < m; ++a)
    for (Eigen::Index c = a + 1; c < m; ++c) {
      const double s = std::sqrt(std::max(0.0, V(a, a) * V(c, c)));
      if (s == 0.0) continue;
      const double rho = std::clamp(V(a, c) / s, -1.0, 1.0);
      const double v = k * (std::sqrt(1.0 - rho * rho) - rho * std::acos(rho)) * s;
      out(a, c) += v;
      out(c, a) += v;
    }
}

/// Number of N(0, dt) normals one MLP noise increment uses.
inline int sde_noise_dim(const ShapedMLP&, int m) { return m * m; }

/// Adds the MLP noise increment to `out` (see sde_noise of ShapedAttention).
template <class M>
inline void sde_noise(const ShapedMLP& b, const M& V, const M& L, const double* dW, M& out) {
  const Eigen::Index m = V.rows();
  using RM = Eigen::Matrix<double, M::RowsAtCompileTime, M::ColsAtCompileTime, Eigen::RowMajor, M::MaxRowsAtCompileTime,
                           M::MaxColsAtCompileTime>;
  const Eigen::Map<const RM> dZ(dW, m, m);
  M LZ, S;
  small_product(LZ, L, dZ);
  small_product(S, LZ, L.transpose());
  out += b.gamma ST_MUTATE(kMlpNoise) * (S + S.transpose());
}

}  // namespace shaped_transformer
