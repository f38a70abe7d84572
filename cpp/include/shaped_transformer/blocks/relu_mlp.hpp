// Standard ReLU MLP block: the shaped MLP with phi = ReLU and c = 2, with the same
// optional per-token normalisations as the standard attention block.
#pragma once

#include <cmath>
#include <cstdint>

#include "../types.hpp"
#include "fields.hpp"
#include "resources.hpp"

namespace shaped_transformer {

struct ReluMLP {
  static constexpr const char* kind = "relu_mlp";
  static constexpr const char* python_class = "ReluMLP";  ///< its class in shaped_transformer
  double gamma = 0.5;
  double lambda = std::sqrt(1.0 - 0.25);
  Norm norm = Norm::None;

  static constexpr auto fields() {
    using B = ReluMLP;
    return std::make_tuple(
        field("gamma", &B::gamma, within(0.0, 1.0), "branch weight"),
        field("lam", &B::lambda, residual_weight(), "residual weight, lambda^2 + gamma^2 = 1; None: sqrt(1 - gamma^2)"),
        field("norm", &B::norm, any_value(), "per-token normalisation"));
  }
  void validate(long = 0) const {
    check_fields(*this);
    check_residual(gamma, lambda);
  }

  static constexpr bool has_explicit = true, has_exact = true, has_sde = false;
  static constexpr const char* no_sde = "the unshaped ReLU MLP has no SDE limit";
  const char* exact_refusal() const {
    return is_layer_norm(norm) ? "norm: LayerNorm is not rotation invariant; the exact chain does not cover it"
                               : nullptr;
  }

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
void forward_explicit(const ReluMLP& b, Mat<S>& X, std::uint64_t seed, std::uint32_t sample, std::uint32_t block,
                      int threads = 1, const CancelToken* cancel = nullptr);
template <class S>
void forward_law(const ReluMLP& b, Mat<S>& X, std::uint64_t seed, std::uint32_t sample, std::uint32_t block);

// ---- exact step on V ------------------------------------------------------
// As the shaped MLP with phi = ReLU, c = 2; pre_rms feeds the branch
// with L_in = D^{-1/2} L, post_rms normalises V' (see standard_attention.hpp).

}  // namespace shaped_transformer
#include "../exact_common.hpp"
namespace shaped_transformer {

/// One ReLU MLP block applied to V exactly in law, at width n.
template <class CovT = Cov>
inline void exact_step(const ReluMLP& b, CovT& V, long n, const ExactKey& key) {
  CovT L;
  psd_root(V, L);
  const CovT L_in = b.norm == Norm::PreRMS ? rms_normalize_root(L) : L;
  mlp_exact_step(V, L, L_in, n, 2.0, b.lambda, b.gamma, key, exact_mlp::PiecewiseLinear{1.0, 0.0});
  if (b.norm == Norm::PostRMS) rms_normalize(V);
}

}  // namespace shaped_transformer
