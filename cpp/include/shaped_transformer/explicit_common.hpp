// The explicit network's block math on the tokens (docs/model.md sections 1-2),
// written once for every backend as templates over the backend's token operations
// `Ops`: the CPU (Eigen tokens and gaussian_gemm, detail/explicit_ops.hpp; also the
// law-exact activation sampler, section 4) and the GPU (device tokens and the fused
// in-kernel Philox product, cpp/cuda/explicit_cuda.cpp).  A block kind's explicit
// face, explicit_forward(const Kind&, Ops&), calls these or the Ops directly.
//
// Ops provides, on the m x n tokens X and named token buffers (Slot):
//   o.m(), o.n()                       tokens and width
//   o.input(norm) -> Slot              X, or its per-token normalised copy (pre-norms)
//   o.source(slot)                     the next projections read `slot` (the law
//                                      sampler takes the root of its Gram matrix here)
//   o.project(id, in, cols, out)       out (m x cols) = in W / sqrt(n_in), W the weight
//                                      matrix of the block's stream `id` (never stored)
//   o.scores(q, k, A)                  A (m x m doubles) = q k^T in the token precision
//   o.mix(A, v, out, col0, accumulate) out[:, col0 ..] (+)= A v, A cast to the precision
//   o.zero(slot), o.leaky(slot, s_plus, s_minus)
//   o.residual(lambda, g, slot)        X = lambda X + g slot
//   o.scale(f)                         X = f X
//   o.normalize(layer)                 per-token normalisation of X (RMS or LayerNorm)
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "exact_common.hpp"
#include "math/lane.hpp"
#include "math/matrix.hpp"
#include "norm.hpp"
#include "rng.hpp"

namespace shaped_transformer {

/// The token buffers of a block (X itself is Slot::X).
enum class Slot : int { X = 0, In, Q, K, Vals, B, P, Out, kCount };

/// What the two attention kinds' explicit forward needs.
struct AttentionForward {
  int heads = 1;
  int key_dim = 0;  ///< n_k; 0: the head width
  bool concat = false;
  double gamma = 0.5, lambda = 0.0;
  Norm norm = Norm::None;
  bool shaped = false;  ///< shaped head: A = alpha I + beta (Softmax(Y / tau) - C); else Softmax(Y / sqrt(n_k))
  double alpha = 1.0, beta = 1.0, tau0 = 1.0;
  bool causal = false;
};

/// One attention block on the tokens: X' = lambda X + gamma / sqrt(H) sum_h A_h X W^V_h / sqrt(n)
/// (concat: lambda X + gamma [A_h X W^V_h]_h W^O / sqrt(n), heads of width n / H).
template <class Ops>
inline void attention_forward(const AttentionForward& a, Ops& o) {
  const std::int64_t n = o.n();
  const int m = o.m(), H = a.heads;
  const std::int64_t hd = a.concat ? n / H : n;  // value width of one head
  const std::int64_t nk = a.key_dim > 0 ? a.key_dim : hd;
  if (a.gamma == 0.0 && !is_post_norm(a.norm)) return;  // X' = X exactly (lambda = 1)
  const Slot in = o.input(a.norm);
  o.source(in);
  if (!a.concat) o.zero(Slot::B);
  const double logit_scale =
      a.shaped ? 1.0 / (a.tau0 * std::sqrt(double(n) * double(nk))) : 1.0 / std::sqrt(double(nk));
  std::vector<double> A(std::size_t(m) * std::size_t(m));
  const MatRef<double> Am(A.data(), m);
  for (int h = 0; h < H; ++h) {
    o.project(matrix_id::head(matrix_id::kQuery, h), in, nk, Slot::Q);
    o.project(matrix_id::head(matrix_id::kKey, h), in, nk, Slot::K);
    o.scores(Slot::Q, Slot::K, A.data());
    for (double& y : A) y *= logit_scale;
    softmax_rows<ScalarLanes>(Am, a.shaped && a.causal);  // the exact chain's softmax
    if (a.shaped) shaped_attention_matrix<ScalarLanes>(Am, a.alpha, a.beta, a.causal);
    o.project(matrix_id::head(matrix_id::kValue, h), in, hd, Slot::Vals);
    o.mix(A.data(), Slot::Vals, Slot::B, a.concat ? h * hd : 0, !a.concat);
  }
  if (a.concat) {
    o.source(Slot::B);
    o.project(matrix_id::kOutput, Slot::B, n, Slot::Out);
    o.residual(a.lambda, a.gamma, Slot::Out);
  } else {
    o.residual(a.lambda, a.gamma / std::sqrt(double(H)), Slot::B);
  }
  if (is_post_norm(a.norm)) o.normalize(is_layer_norm(a.norm));
}

/// One MLP block on the tokens: X' = lambda X + gamma sqrt(c) phi(X W^pre / sqrt(n)) W^post / sqrt(n),
/// phi(x) = x > 0 ? s_plus x : s_minus x.
template <class Ops>
inline void mlp_forward(double s_plus, double s_minus, double c, double gamma, double lambda, Norm norm, Ops& o) {
  if (gamma == 0.0 && !is_post_norm(norm)) return;
  const std::int64_t n = o.n();
  const Slot in = o.input(norm);
  o.source(in);
  o.project(matrix_id::kPre, in, n, Slot::P);
  o.leaky(Slot::P, s_plus, s_minus);
  o.source(Slot::P);
  o.project(matrix_id::kPost, Slot::P, n, Slot::Out);
  o.residual(lambda, gamma * std::sqrt(c), Slot::Out);
  if (is_post_norm(norm)) o.normalize(is_layer_norm(norm));
}

}  // namespace shaped_transformer
