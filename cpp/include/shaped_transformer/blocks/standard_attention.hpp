// Standard attention block: A_h = Softmax(Y_h / sqrt(n_k)), with an optional per-token
// normalisation before the block (pre-LN) or after the residual sum (post-LN).
// It has no SDE limit: its covariance collapses to rank one (MODEL.md section 5).
#pragma once

#include <cmath>

#include "../types.hpp"

namespace shaped_transformer {

struct StandardAttention {
  int heads = 1;
  double gamma = 0.5;
  double lambda = std::sqrt(1.0 - 0.25);
  int key_dim = 0;  ///< n_k; 0 means n_k = width
  Norm norm = Norm::None;
  bool concat = false;
};

// ---- explicit forward on X ------------------------------------------------

// ---- exact step on V ------------------------------------------------------

}  // namespace shaped_transformer
