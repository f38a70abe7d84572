// Test-only fault injection (docs/validation.md, "The mutation matrix").
//
// With the CMake option SHAPED_TRANSFORMER_MUTATIONS=ON (never in a release), a few
// formula sites multiply one term or coefficient by a runtime factor (1 by default)
// that the tests set with _core._set_mutation(name, factor), to check that the test
// meant to catch a wrong formula fails (tests/_mutations.py holds the table).  With
// the option OFF (the default) ST_MUTATE expands to nothing and ST_MUTATION_ONLY
// drops its argument: the code is token for token what it is without this header,
// so no number moves.
#pragma once

#ifdef SHAPED_TRANSFORMER_MUTATIONS
#include <cstring>

namespace shaped_transformer::mutation {

enum Id {
  kAttDrift,          ///< attention drift b_att (sde_drift of ShapedAttention)
  kSoftNoise,         ///< amplitude of the softmax noise (Sigma_soft scales by its square)
  kCrossHeads,        ///< cross-head terms (h != g) of the exact chain's value part
  kMlpDrift,          ///< MLP drift b_mlp
  kIntegratorDrift,   ///< the drift increment of the Euler and tamed Euler steps
  kGeneralDrift,      ///< drift of the causal and general heads (sde_drift_general)
  kGeneralSoftNoise,  ///< amplitude of the softmax noise of the causal and general heads (sde_noise_general)
  kMlpNoise,          ///< amplitude of the MLP noise (sde_noise of ShapedMLP)
  kKeyDf,             ///< degrees of freedom n_k of the key Wishart (exact chain, every path)
  kValueDf,           ///< the m in the value Wishart's degrees of freedom n - m (exact chain, every path)
  kExactChainWidth,   ///< the width 1/dt of the SDE scheme exact_chain (sde::exact_width)
  kPsdClip,           ///< the projection of psd_clip: V <- V + f (clip(V) - V) (0: V left indefinite)
  kFastDrift,         ///< pre-norm's fast drift beta_fast (its coefficients, sde/terms.hpp)
  kLayerCentring,     ///< LayerNorm's centring s s^T / n in the exact chain (with_norm; 0: RMS on the frame)
  kFrameColumn,       ///< P_e, the frame's all-ones column of the exact chain's value part (value_mix; 0: dropped)
  kCount
};

inline const char* const kNames[kCount] = {"att_drift",        "soft_noise",     "cross_heads",        "mlp_drift",
                                           "integrator_drift", "general_drift",  "general_soft_noise", "mlp_noise",
                                           "key_df",           "value_df",       "exact_chain_width",  "psd_clip",
                                           "fast_drift",       "layer_centring", "frame_column"};

/// The factor of mutation `id` (1: the true model).
inline double& factor(Id id) {
  static double f[kCount] = {1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0};
  return f[id];
}

/// Sets a factor by name; false if the name is unknown.
inline bool set(const char* name, double value) {
  for (int i = 0; i < kCount; ++i)
    if (std::strcmp(name, kNames[i]) == 0) {
      factor(Id(i)) = value;
      return true;
    }
  return false;
}

}  // namespace shaped_transformer::mutation

#define ST_MUTATE(id) *::shaped_transformer::mutation::factor(::shaped_transformer::mutation::id)
#define ST_MUTATION_ONLY(...) __VA_ARGS__
#else
#define ST_MUTATE(id)
#define ST_MUTATION_ONLY(...)
#endif
