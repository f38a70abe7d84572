// Where LayerNorm's exact chain starts (docs/norms.md section 6): its state is (V, s)
// with s = X 1_n / sqrt(n), and V_0 does not determine s_0.  Every driver of the chain
// (the per-sample path, the batched SIMD kernels, the CUDA threads) takes s_0 from here,
// so that all of them start from the same state.  Host only.
#pragma once

#include <stdexcept>
#include <string>

#include "../linalg.hpp"
#include "../types.hpp"

namespace shaped_transformer {

/// s_0 of the exact chain from V0: `given` (X_0 1_n / sqrt(n) of the input tokens,
/// m numbers) when not null, else that of the tokens the library builds from V0
/// (inputs.tokens_from_covariance: X_0 = L_0 sqrt(n) [I, 0] with its root L_0, which
/// psd_root's law_root_rule reproduces): L_0 1_m.
inline Eigen::VectorXd exact_start_s(const Cov& V0, const Eigen::VectorXd* given = nullptr) {
  if (given) {
    if (given->size() != V0.rows())
      throw std::invalid_argument("s0: must have m = " + std::to_string(V0.rows()) + " entries, got " +
                                  std::to_string(given->size()));
    return *given;
  }
  Cov L;
  psd_root(V0, L, law_root_rule());
  return L.rowwise().sum();
}

}  // namespace shaped_transformer
