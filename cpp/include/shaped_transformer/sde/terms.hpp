// The terms of the covariance SDE dV = b(V) dt + noise (docs/model.md section 5) of a
// network: the SDE face of each block (its K::Sde terms, whose drift and noise live
// in the "SDE drift and noise" sections of the block headers) as the plain data the
// step of kernels/sde_step.hpp sums over the blocks, for every backend.  The drivers
// check first (check_sde_covers, network.hpp) that every block has an SDE limit; a
// kind without one is refused here too, never skipped.
#pragma once

#include <algorithm>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include "../kernels/sde_step.hpp"
#include "../linalg.hpp"
#include "../math/lane.hpp"
#include "../mutation.hpp"
#include "../network.hpp"
#include "../types.hpp"

namespace shaped_transformer::sde {

namespace detail {
template <class Net>
struct sde_block_of;
template <class... K>
struct sde_block_of<BasicNetwork<K...>> {
  using type = SdeBlock<K...>;
};
}  // namespace detail

/// The SDE terms of one block of Net.
template <class Net>
using SdeBlockOf = typename detail::sde_block_of<Net>::type;

/// The SDE terms of one block at m tokens (std::invalid_argument for a kind without an SDE limit).
template <class... K>
inline SdeBlock<K...> sde_block(const std::variant<K...>& blk, int m) {
  return std::visit(
      [&](const auto& b) -> SdeBlock<K...> {
        using B = block_kind_t<decltype(b)>;
        if constexpr (B::has_sde) return SdeBlock<K...>::template make<kind_index<B, K...>()>(b.sde_terms(m));
        else throw std::invalid_argument(std::string("network: ") + B::no_sde);
      },
      blk);
}

/// The coefficients coef_j of pre-norm's fast drift (docs/norms.md section 3.4) for a
/// layer of blocks with residual weights lam2[k] = lambda_k^2 and branch weights
/// gam2[k] = gamma_k^2: beta_fast = -(C/8) sum_k lam2_k gam2_k g_k with the periodic
/// stationary gap variances g_1 = sum_k (prod_{j>k} a_j) v_k / (1 - prod_j a_j),
/// g_{k+1} = a_k g_k + v_k (a_k = lambda_k^4), which are linear in the blocks' gap
/// variances v_j: beta_fast = -(C/8) sum_j coef_j v_j.  One block type:
/// coef = lambda^2 gamma^2 / (1 - lambda^4) = lambda^2 / (1 + lambda^2).  All zero when
/// no block has gamma > 0 (the layer is the identity).
inline std::vector<double> fast_coefficients(const std::vector<double>& lam2, const std::vector<double>& gam2) {
  const std::size_t B = lam2.size();
  std::vector<double> coef(B, 0.0), g(B);
  double prod = 1.0;
  for (double l : lam2) prod *= l * l;
  if (!(prod < 1.0)) return coef;
  for (std::size_t j = 0; j < B; ++j) {  // the response g to v = e_j
    double acc = 0.0;
    for (std::size_t k = 0; k < B; ++k) acc = lam2[k] * lam2[k] * acc + (k == j ? 1.0 : 0.0);
    g[0] = acc / (1.0 - prod);
    for (std::size_t k = 0; k + 1 < B; ++k) g[k + 1] = lam2[k] * lam2[k] * g[k] + (k == j ? 1.0 : 0.0);
    for (std::size_t k = 0; k < B; ++k) coef[j] += lam2[k] * gam2[k] * g[k];
    coef[j] = coef[j] ST_MUTATE(kFastDrift);
  }
  return coef;
}

/// lambda^2 and gamma^2 of the blocks of `net` that take a norm, in order (in a
/// normalized layer every block does: network.hpp refuses mixed placements).
template <class Net>
inline void squared_weights(const Net& net, std::vector<double>& lam2, std::vector<double>& gam2) {
  for (const auto& blk : net.blocks)
    std::visit(
        [&](const auto& b) {
          if constexpr (takes_norm_v<block_kind_t<decltype(b)>>) {
            lam2.push_back(b.lambda * b.lambda);
            gam2.push_back(b.gamma * b.gamma);
          }
        },
        blk);
}

/// The SDE terms of every block of one layer of `net` at m tokens; for a pre-norm
/// layer each block's terms carry its fast-drift coefficient (fast_coefficients).
template <class... K>
inline std::vector<SdeBlock<K...>> sde_blocks(const BasicNetwork<K...>& net, int m) {
  std::vector<SdeBlock<K...>> out;
  for (const auto& blk : net.blocks) out.push_back(sde_block(blk, m));
  if (net.blocks.empty() || !is_pre_norm(block_norm(net.blocks[0]))) return out;
  std::vector<double> lam2, gam2;
  squared_weights(net, lam2, gam2);
  if (lam2.size() != out.size())
    throw std::invalid_argument("norm: pre-norm needs every block to normalize");  // refused before
  const std::vector<double> coef = fast_coefficients(lam2, gam2);
  for (std::size_t k = 0; k < out.size(); ++k)
    out[k].update([&](auto& t) {
      if constexpr (shaped_transformer::detail::has_norm_terms<std::decay_t<decltype(t)>>::value) t.fast = coef[k];
    });
  return out;
}

/// The correlation matrix of V (positive diagonal), with an exact unit diagonal.
inline Cov correlation(const Cov& V) {
  const Eigen::VectorXd r = V.diagonal().cwiseSqrt().cwiseInverse();
  Cov C = r.asDiagonal() * V * r.asDiagonal();
  C = 0.5 * (C + C.transpose());
  C.diagonal().setOnes();
  return C;
}

/// Whether the SDE of `net` is the correlation SDE of normalized blocks (docs/norms.md).
template <class Net>
inline bool normalized(const Net& net) {
  return !net.blocks.empty() && block_norm(net.blocks[0]) != Norm::None;
}

/// Where the SDE of `net` starts from V0 (docs/norms.md sections 2 and 3.5): V0 itself
/// without norm; corr(V0) for post-norm; for pre-norm the initial layer, the
/// deterministic map V -> lambda^2 V + gamma^2 corr(V) block by block until the diagonal
/// is 1 (the scales relax in O(1/gamma^2) blocks, o(1) of time), then corr.  V0 needs
/// a positive diagonal when the blocks normalize (check_sde_start).
template <class Net>
inline Cov sde_start(const Net& net, const Cov& V0) {
  if (!normalized(net)) return V0;
  Cov V = 0.5 * (V0 + V0.transpose());
  if (is_pre_norm(block_norm(net.blocks[0]))) {
    std::vector<double> lam2, gam2;
    squared_weights(net, lam2, gam2);
    const bool moves = std::any_of(gam2.begin(), gam2.end(), [](double g2) { return g2 > 0.0; });
    // d_k - 1 = (prod of lambda^2)^k (d_0 - 1): 10^6 layers reach 1e-15 unless gamma < ~0.005.
    for (int layer = 0; moves && layer < 1000000; ++layer) {
      if ((V.diagonal().array() - 1.0).abs().maxCoeff() < 1e-15) break;
      for (std::size_t k = 0; k < lam2.size(); ++k) V = lam2[k] * V + gam2[k] * correlation(V);
    }
  }
  return correlation(V);
}

/// Throws std::invalid_argument naming V0 when the normalized SDE of `net` cannot start
/// from it: each token's norm (its diagonal entry) must be positive.
template <class Net>
inline void check_sde_start(const Net& net, const Cov& V0, const char* name = "V0") {
  if (!normalized(net)) return;
  for (Eigen::Index a = 0; a < V0.rows(); ++a)
    if (!(V0(a, a) > 0.0))
      throw std::invalid_argument(std::string(name) + ": a normalized network needs a positive diagonal (token " +
                                  std::to_string(a) + " has norm 0), got " + name + "[" + std::to_string(a) + ", " +
                                  std::to_string(a) + "] = " + std::to_string(V0(a, a)));
}

/// Number of N(0, dt) normals block b's noise uses per step.
template <class... K>
inline int noise_dim(const std::variant<K...>& blk, int m) {
  int k = 0;
  sde_block(blk, m).visit([&](const auto& t) { k = std::decay_t<decltype(t)>::noise_dim(m); });
  return k;
}

namespace detail {
/// Storage and state for one evaluation of the faces on the scalar lanes (m x m, dense).
struct ScalarFaces {
  std::vector<double> v, buf;
  SdeState<ScalarLanes, 0> s;
  MatRef<double> drift, incr;
  explicit ScalarFaces(int m) : v(std::size_t(m) * m), buf(std::size_t(sde_state_lanes(m))) {
    sde_state_layout(s, v.data(), buf.data(), m, m, drift, incr);
  }
  template <class M>
  void load(const M& V) {
    for (int a = 0; a < s.m(); ++a)
      for (int b = 0; b < s.m(); ++b) s.V(a, b) = V(a, b);
  }
  /// out (resized to m x m) gets the upper triangle of u, mirrored.
  template <class M>
  static void store_symmetric(MatRef<double> u, M& out) {
    const int m = u.rows();
    for (int a = 0; a < m; ++a)
      for (int b = a; b < m; ++b) out(a, b) = out(b, a) = u(a, b);
  }
};
}  // namespace detail

/// The drift of the correlation SDE of a normalized layer at C (unit diagonal), by the
/// general rule of docs/norms.md section 2 (for every head the step covers):
///   beta_ab = J_C(b)_ab - (S_{ab,aa} + S_{ab,bb}) / 2 + C_ab (3 (S_{aa,aa} + S_{bb,bb}) / 8 + S_{aa,bb} / 4)
/// plus, for pre-norm, beta_fast (add_fast_drift).  The entries of Sigma = S are read
/// off the linear noise map by probing each block's noise face with unit normals:
/// O(noise_dim m^3), fine for this diagnostic (the step itself needs none of it: corr
/// does the Ito term).
template <class Block, class M>
inline void correlation_drift(const std::vector<Block>& blocks, const Cov& C, M& out) {
  const int m = int(C.rows());
  detail::ScalarFaces f(m);
  f.load(C);
  for (int a = 0; a < m; ++a)
    for (int b = 0; b < m; ++b) f.drift(a, b) = 0.0;
  for (const auto& blk : blocks) blk.visit([&](const auto& t) { sde_drift(t, f.s, f.drift); });
  Cov bC(m, m);
  detail::ScalarFaces::store_symmetric(f.drift, bC);
  Cov L;
  psd_root(C, L);
  for (int a = 0; a < m; ++a)
    for (int b = 0; b < m; ++b) f.s.L(a, b) = L(a, b);
  f.s.tri = is_lower(f.s.L);
  Cov X = Cov::Zero(m, m), Z = Cov::Zero(m, m), N(m, m);
  Eigen::VectorXd Y = Eigen::VectorXd::Zero(m);
  std::vector<double> e;
  for (const auto& blk : blocks)
    blk.visit([&](const auto& t) {
      const int dim = std::decay_t<decltype(t)>::noise_dim(m);
      e.assign(std::size_t(dim), 0.0);
      for (int i = 0; i < dim; ++i) {
        e[std::size_t(i)] = 1.0;
        for (int a = 0; a < m; ++a)
          for (int b = 0; b < m; ++b) f.incr(a, b) = 0.0;
        block_noise<ScalarLanes, 0>(t, f.s, e.data(), f.incr);
        e[std::size_t(i)] = 0.0;
        detail::ScalarFaces::store_symmetric(f.incr, N);
        for (int a = 0; a < m; ++a) {
          Y(a) += N(a, a) * N(a, a);
          for (int b = 0; b < m; ++b) {
            X(a, b) += N(a, b) * (N(a, a) + N(b, b));
            Z(a, b) += N(a, a) * N(b, b);
          }
        }
      }
    });
  for (int a = 0; a < m; ++a)
    for (int b = 0; b < m; ++b) f.drift(a, b) = 0.0;
  add_fast_drift<ScalarLanes, 0>(blocks.data(), int(blocks.size()), f.s, f.drift);
  out.resize(m, m);
  for (int a = 0; a < m; ++a) {
    out(a, a) = 0.0;
    for (int b = a + 1; b < m; ++b) {
      const double c = C(a, b);
      const double jb = bC(a, b) - c * (bC(a, a) + bC(b, b)) / 2;
      const double ito = -X(a, b) / 2 + c * (3.0 * (Y(a) + Y(b)) / 8 + Z(a, b) / 4);
      out(a, b) = out(b, a) = jb + ito + f.drift(a, b);
    }
  }
}

/// The drift of one layer at V: out = sum over blocks of b_block(V) (Eigen matrices);
/// for normalized blocks the drift of the correlation SDE at corr(V)
/// (correlation_drift: beta_post, plus beta_fast for pre-norm).
template <class Net, class M>
inline void drift(const Net& net, const M& V, M& out) {
  const int m = int(V.rows());
  const auto blocks = sde_blocks(net, m);
  if (normalized(net)) return correlation_drift(blocks, correlation(V), out);
  detail::ScalarFaces f(m);
  f.load(V);
  for (int a = 0; a < m; ++a)
    for (int b = a; b < m; ++b) f.drift(a, b) = 0.0;
  for (const auto& blk : blocks) blk.visit([&](const auto& t) { sde_drift(t, f.s, f.drift); });
  out.resize(m, m);
  detail::ScalarFaces::store_symmetric(f.drift, out);
}

/// Adds block b's noise increment (from its N(0, dt) numbers dW, L a root of V) to out.
template <class M, class... K>
inline void add_noise(const std::variant<K...>& blk, const M& V, const M& L, const double* dW, M& out) {
  const int m = int(V.rows());
  detail::ScalarFaces f(m);
  f.load(V);
  for (int a = 0; a < m; ++a)
    for (int b = 0; b < m; ++b) f.s.L(a, b) = L(a, b);
  f.s.tri = is_lower(f.s.L);
  for (int a = 0; a < m; ++a)
    for (int b = a; b < m; ++b) f.incr(a, b) = 0.0;
  sde_block(blk, m).visit([&](const auto& t) { block_noise<ScalarLanes, 0>(t, f.s, dW, f.incr); });
  for (int a = 0; a < m; ++a)
    for (int b = a; b < m; ++b) {
      out(a, b) += f.incr(a, b);
      if (b != a) out(b, a) += f.incr(a, b);
    }
}

}  // namespace shaped_transformer::sde
