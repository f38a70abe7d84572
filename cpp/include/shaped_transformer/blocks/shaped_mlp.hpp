// Shaped MLP block: X' = lambda X + gamma sqrt(c) phi_s(X W^pre / sqrt(n)) W^post / sqrt(n),
// phi_s(x) = s_+ max(x,0) + s_- min(x,0), s_+- = 1 + c_+- / sqrt(n), c = 2 / (s_+^2 + s_-^2).
// MODEL.md sections 2, 4, 5.
#pragma once

#include <cmath>

#include "../types.hpp"

namespace shaped_transformer {

struct ShapedMLP {
  double c_plus = 0.0;
  double c_minus = -1.0;
  double gamma = 0.5;
  double lambda = std::sqrt(1.0 - 0.25);
};

// ---- explicit forward on X ------------------------------------------------

// ---- exact step on V ------------------------------------------------------

// ---- SDE drift and noise --------------------------------------------------

}  // namespace shaped_transformer
