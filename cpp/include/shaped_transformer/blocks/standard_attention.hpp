// Standard attention block: A_h = Softmax(Y_h / sqrt(n_k)), with an optional per-token
// normalisation before the block (pre-LN) or after the residual sum (post-LN).
// It has no SDE limit: its covariance collapses to rank one (docs/model.md section 5).
#pragma once

#include <cmath>
#include <cstdint>

#include "../types.hpp"
#include "fields.hpp"
#include "resources.hpp"

namespace shaped_transformer {

struct StandardAttention {
  static constexpr const char* kind = "standard_attention";
  static constexpr const char* python_class = "StandardAttention";  ///< its class in shaped_transformer
  int heads = 1;
  double gamma = 0.5;
  double lambda = std::sqrt(1.0 - 0.25);
  int key_dim = 0;  ///< n_k; 0 means n_k = width
  Norm norm = Norm::None;
  bool concat = false;

  static constexpr auto fields() {
    using B = StandardAttention;
    return std::make_tuple(
        field("heads", &B::heads, at_least(1), "number of heads H"),
        field("gamma", &B::gamma, within(0.0, 1.0), "branch weight"),
        field("lam", &B::lambda, residual_weight(), "residual weight, lambda^2 + gamma^2 = 1; None: sqrt(1 - gamma^2)"),
        field("key_dim", &B::key_dim, or_unset(at_least(1), 0), "n_k; None (0 in C++): the head width"),
        field("norm", &B::norm, any_value(), "per-token normalisation"),
        field("concat", &B::concat, any_value(), "concatenated heads with W^O (explicit only)"));
  }
  void validate(long width = 0) const {
    check_fields(*this);
    check_residual(gamma, lambda);
    check_concat_width(concat, heads, width);
  }

  static constexpr bool has_explicit = true, has_exact = true, has_sde = false;
  static constexpr const char* no_sde = "standard attention has no SDE limit (its covariance collapses to rank one)";
  const char* exact_refusal() const;

  /// Its weight matrices (explicit network) and the memory one worker holds for it (resources.hpp).
  template <class F>
  void weights(long width, F&& f) const {
    attention_weights(heads, key_dim, concat, width, f);
  }
  Workspace workspace(double m, double n, double itemsize) const {
    return attention_workspace(heads, key_dim, m, n, itemsize);
  }
};

// ---- explicit forward on X ------------------------------------------------
class CancelToken;  // parallel.hpp
// Defined in cpp/src/explicit_blocks.cpp for S = float and double.
// forward_explicit: one block on the tokens X (m x n), in place, with Gaussian
// weights drawn from Stream{seed, sample, block, matrix_id} in tiles (never an
// n x n matrix); `threads` > 1 splits each weight product over column tiles with
// identical results; `cancel` stops a long product early (the result is then
// garbage and must be discarded).  forward_law: the law-exact activation sampler of docs/model.md
// section 4 (same law of X', O(m n) normals from the kLawBase matrix ids).
template <class S>
void forward_explicit(const StandardAttention& b, Mat<S>& X, std::uint64_t seed, std::uint32_t sample,
                      std::uint32_t block, int threads = 1, const CancelToken* cancel = nullptr);
template <class S>
void forward_law(const StandardAttention& b, Mat<S>& X, std::uint64_t seed, std::uint32_t sample, std::uint32_t block);

// ---- exact step on V ------------------------------------------------------
// Same reduction as the shaped head with A_h = Softmax(Y_h / sqrt(n_k)),
// Y_h = L_in M_h L_in^T.  RMS norms are rotation invariant: pre_rms feeds the branch
// with L_in = D^{-1/2} L (D = diag V) while the residual keeps L; post_rms maps
// V' -> D'^{-1/2} V' D'^{-1/2}.  LayerNorm (feature centring) is not covered.

}  // namespace shaped_transformer
#include "../exact_common.hpp"
namespace shaped_transformer {

inline const char* StandardAttention::exact_refusal() const {
  if (concat) return "concat: concatenated heads are not covered by the exact chain";
  if (is_layer_norm(norm)) return "norm: LayerNorm is not rotation invariant; the exact chain does not cover it";
  if (heads > ExactKey::kMaxHeads) return "heads: too many heads for the exact chain";
  return nullptr;
}

/// One standard attention block applied to V exactly in law, at width n.
template <class CovT = Cov>
inline void exact_step(const StandardAttention& b, CovT& V, long n, const ExactKey& key) {
  const Eigen::Index m = V.rows();
  CovT L;
  psd_root(V, L);
  const CovT L_in = b.norm == Norm::PreRMS ? rms_normalize_root(L) : L;
  const double nk = b.key_dim > 0 ? double(b.key_dim) : double(n);
  CovT C(m, b.heads * m), M, Y(m, m);
  for (int h = 0; h < b.heads; ++h) {
    draw_key_product(nk, m, key, h, M);
    Y.noalias() = L_in * M * L_in.transpose();
    Y /= std::sqrt(nk);
    softmax_rows(Y, false);
    C.middleCols(h * m, m).noalias() = Y * L_in;
  }
  value_mix(V, L, C, b.heads, double(n), b.lambda, b.gamma, key, false);
  if (b.norm == Norm::PostRMS) rms_normalize(V);
}

}  // namespace shaped_transformer
