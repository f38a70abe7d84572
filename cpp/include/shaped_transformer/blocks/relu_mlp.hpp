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

}  // namespace shaped_transformer
