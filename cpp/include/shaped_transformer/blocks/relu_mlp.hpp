// Standard ReLU MLP block: the shaped MLP with phi = ReLU and c = 2, with the same
// optional per-token normalisations as the standard attention block.
#pragma once

#include <cmath>

#include "../types.hpp"

namespace shaped_transformer {

struct ReluMLP {
  double gamma = 0.5;
  double lambda = std::sqrt(1.0 - 0.25);
  Norm norm = Norm::None;
};

// ---- explicit forward on X ------------------------------------------------

// ---- exact step on V ------------------------------------------------------
// (Engineer H2.)  As the shaped MLP with phi = ReLU, c = 2; pre_rms feeds the branch
// with L_in = D^{-1/2} L, post_rms normalises V' (see standard_attention.hpp).

}  // namespace shaped_transformer
#include "../exact_common.hpp"
namespace shaped_transformer {

/// One ReLU MLP block applied to V exactly in law, at width n.
inline void exact_step(const ReluMLP& b, Cov& V, long n, const ExactKey& key) {
  if (b.norm == Norm::PreLayer || b.norm == Norm::PostLayer)
    throw std::invalid_argument("norm: LayerNorm is not rotation invariant; the exact chain does not cover it");
  Cov L;
  psd_root(V, L);
  const Cov L_in = b.norm == Norm::PreRMS ? rms_normalize_root(L) : L;
  mlp_exact_step(V, L, L_in, n, 2.0, b.lambda, b.gamma, key, [](double x) { return x > 0 ? x : 0.0; });
  if (b.norm == Norm::PostRMS) rms_normalize(V);
}

}  // namespace shaped_transformer
