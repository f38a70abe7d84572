// Per-token normalisation of the standard blocks (docs/model.md section 2): the enum
// and its names, in a header of its own (no Eigen) so that the block faces, the
// device code and the field tables share it.
#pragma once

#include <stdexcept>
#include <string>

#include "device/hd.hpp"

namespace shaped_transformer {

enum class Norm { None, PreRMS, PreLayer, PostRMS, PostLayer };

/// The Python spelling of each Norm ("none", "pre_rms", ...), in enum order.
inline constexpr const char* kNormNames[] = {"none", "pre_rms", "pre_layer", "post_rms", "post_layer"};

inline const char* norm_name(Norm k) { return kNormNames[int(k)]; }

inline Norm norm_from_string(const std::string& s) {
  for (int i = 0; i < 5; ++i)
    if (s == kNormNames[i]) return Norm(i);
  throw std::invalid_argument("norm: unknown normalisation '" + s + "'");
}

ST_HD constexpr bool is_layer_norm(Norm k) { return k == Norm::PreLayer || k == Norm::PostLayer; }
ST_HD constexpr bool is_pre_norm(Norm k) { return k == Norm::PreRMS || k == Norm::PreLayer; }
ST_HD constexpr bool is_post_norm(Norm k) { return k == Norm::PostRMS || k == Norm::PostLayer; }

/// Why the covariance SDE does not run a shaped block with placement `k` (nullptr for
/// Norm::None): the normalized SDE of docs/norms.md is not in the solver yet.
inline const char* shaped_norm_sde_refusal(Norm k) {
  constexpr const char* why[] = {nullptr,
                                 "norm: 'pre_rms' on a shaped block is not covered by the SDE yet (docs/norms.md)",
                                 "norm: 'pre_layer' on a shaped block is not covered by the SDE yet (docs/norms.md)",
                                 "norm: 'post_rms' on a shaped block is not covered by the SDE yet (docs/norms.md)",
                                 "norm: 'post_layer' on a shaped block is not covered by the SDE yet (docs/norms.md)"};
  return why[int(k)];
}

}  // namespace shaped_transformer
