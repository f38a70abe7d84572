// Shaped attention block: X' = lambda X + (gamma / sqrt(H)) sum_h A_h X W^V_h / sqrt(n),
// A_h = alpha I + beta Softmax(Y_h / tau) - beta C, tau = tau0 sqrt(n n_k).
// The paper's shaped head is alpha = beta = 1 and C = 1 1^T / m; `causal` uses the
// uniform causal matrix for C (and masks the softmax).  MODEL.md sections 1, 2, 4, 5.
//
// Three faces, side by side:
//   explicit forward on X  | exact step on V (section 4) | SDE drift and noise (section 5)
#pragma once

#include <cmath>

#include "../types.hpp"

namespace shaped_transformer {

struct ShapedAttention {
  int heads = 1;
  double tau0 = 1.0;
  double gamma = 0.5;
  double lambda = std::sqrt(1.0 - 0.25);  ///< lambda^2 + gamma^2 = 1, checked by validate()
  double alpha = 1.0;
  double beta = 1.0;
  bool causal = false;
  int key_dim = 0;      ///< n_k; 0 means n_k = width
  bool concat = false;  ///< H heads of width n/H and an output projection W^O (explicit only)
};

// ---- explicit forward on X ------------------------------------------------

// ---- exact step on V ------------------------------------------------------

// ---- SDE drift and noise --------------------------------------------------

}  // namespace shaped_transformer
