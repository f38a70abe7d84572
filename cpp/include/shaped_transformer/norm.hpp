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

// Every placement runs on the shaped blocks: the explicit network and the law sampler
// (normalize_tokens), the exact chain (with_norm in exact_common.hpp; LayerNorm carries
// the (V, s) state of docs/norms.md section 6) and the covariance SDE (the correlation
// SDE; kernels/sde_step.hpp normalizes the step, sde/terms.hpp adds pre-norm's fast
// drift).  The refusals left are per head (ShapedAttention::sde_refusal), per layer
// (mixed placements, sde_refusal_text in network.hpp) and per width (LayerNorm's exact
// step needs width >= m + 1, check_exact_arguments).

}  // namespace shaped_transformer
