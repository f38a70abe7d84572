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

/// Why the exact chain does not run a shaped block (ShapedAttention, ShapedMLP) with
/// placement `k` (nullptr: it does).  The RMS placements are rotation invariant and the
/// shaped exact steps apply them; LayerNorm needs the (V, s) state of docs/norms.md
/// section 5, not in the chain yet, so the drivers refuse it rather than ignore it.
inline const char* shaped_norm_exact_refusal(Norm k) {
  constexpr const char* why[] = {
      nullptr, nullptr,
      "norm: 'pre_layer' on a shaped block is not covered by the exact chain yet (LayerNorm is not rotation "
      "invariant); use the explicit network or the law sampler",
      nullptr,
      "norm: 'post_layer' on a shaped block is not covered by the exact chain yet (LayerNorm is not rotation "
      "invariant); use the explicit network or the law sampler"};
  return why[int(k)];
}

// The covariance SDE runs every placement on the shaped blocks (docs/norms.md: the
// correlation SDE; kernels/sde_step.hpp normalizes the step, sde/terms.hpp adds
// pre-norm's fast drift); the refusals left are per head (ShapedAttention::sde_refusal)
// and per layer (mixed placements, sde_refusal_text in network.hpp).

}  // namespace shaped_transformer
