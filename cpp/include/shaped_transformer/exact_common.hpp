// Pieces shared by the exact m x m steps of all block kinds (docs/model.md section 4).
//
// Write V = L L^T (any root, see psd_root) and X = L U with U U^T = n I.  The
// weights are rotation invariant, so in a rotated feature frame X = sqrt(n) L [I, 0]
// and every product of X with a fresh Gaussian matrix becomes L times a Gaussian:
//   attention: X' = lambda X + gamma / sqrt(H) sum_h C_h G_h,   C_h = A_h L_in,
//   MLP:       X' = lambda X + gamma L_Phi G,
// with G_h (m x n) standard Gaussian, independent of C_h.  Splitting G_h into its
// first m columns Z_h and the rest gives, with P = sum_h C_h Z_h (m x m),
//   V' = lambda^2 V + lambda gamma / sqrt(H n) (L P^T + P L^T)
//        + gamma^2 / (H n) (P P^T + C R C^T),
// C = [C_1 .. C_H] (m x Hm), R ~ Wishart_{Hm}(n - m, I) the Gram matrix of the
// stacked remaining columns (cross-head blocks included).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "exact/mlp_gram.hpp"

#include "linalg.hpp"
#include "workspace.hpp"
#include "mutation.hpp"
#include "parallel.hpp"
#include "rng.hpp"
#include "types.hpp"

namespace shaped_transformer {

/// Where the random numbers of one exact step come from: Stream{seed, sample,
/// block, kExactBase + id}.  Ids: 0/1 value Wishart R (normals/uniforms), 2 MLP
/// pre-activations, 3 MLP value Z; head h uses 8 + 8h + {0,1: key Wishart,
/// 2: m x m Gaussian of M_h, 3: value Z_h}.
struct ExactKey {
  std::uint64_t seed = 0;
  std::uint32_t sample = 0;
  std::uint32_t block = 0;
  /// Checked inside the O(m n) MLP step, whose single block can take seconds at
  /// huge width; nullptr: never cancelled.  Not part of the random-number key.
  const CancelToken* cancel = nullptr;

  static constexpr std::uint32_t kR = 0, kRUniform = 1, kPre = 2, kMlpZ = 3;
  static constexpr std::uint32_t kKeyWishart = 0, kKeyUniform = 1, kKeyGauss = 2, kValueZ = 3;
  static constexpr int kMaxHeads = (0x4000 - 8) / 8;

  Stream stream(std::uint32_t id) const { return Stream{seed, sample, block, matrix_id::kExactBase + id}; }
  Stream head_stream(int h, std::uint32_t id) const { return stream(8u + 8u * std::uint32_t(h) + id); }
};

/// M = G_q G_k^T for G_q, G_k m x n_k standard Gaussian: chol(Wishart_m(n_k)) times
/// an m x m Gaussian when n_k >= m (O(m^3)), the direct product otherwise.
template <class CovT = Cov>
inline void draw_key_product(double n_k, Eigen::Index m, const ExactKey& key, int h, CovT& M) {
  MatrixRng r(key.head_stream(h, ExactKey::kKeyWishart), key.head_stream(h, ExactKey::kKeyUniform));
  CovT B, Z;
  if (n_k > double(m - 1)) {
    B.setZero(m, m);
    wishart_factor(n_k, int(m), r, B);  // lower triangular, B B^T ~ Wishart_m(n_k)
    gaussian_matrix(key.head_stream(h, ExactKey::kKeyGauss), m, m, Z);
    M.noalias() = B.template triangularView<Eigen::Lower>() * Z;
  } else {
    const Eigen::Index k = Eigen::Index(std::llround(n_k));
    CovT Gq(m, k);
    for (Eigen::Index i = 0; i < m; ++i)
      for (Eigen::Index j = 0; j < k; ++j) Gq(i, j) = r.normal();
    gaussian_matrix(key.head_stream(h, ExactKey::kKeyGauss), m, k, Z);
    M.noalias() = Gq * Z.transpose();
  }
}

#ifdef SHAPED_TRANSFORMER_MUTATIONS
/// Test-only: scales the cross-head terms (h != g) of quad = P P^T + C R C^T by the
/// kCrossHeads factor (0 drops them: heads with independent value weights).
template <class CovT = Cov>
inline void mutation_cross_heads(CovT& quad, const std::vector<CovT>& Ph, const CovT& C, const CovT& B, int H) {
  const double f = mutation::factor(mutation::kCrossHeads);
  if (f == 1.0) return;
  const Eigen::Index m = quad.rows();
  CovT diag = CovT::Zero(m, m);
  const CovT Bl = B.template triangularView<Eigen::Lower>();
  for (int h = 0; h < H; ++h) {
    const CovT CBh = C.middleCols(h * m, m) * Bl.middleRows(h * m, m);
    diag += Ph[std::size_t(h)] * Ph[std::size_t(h)].transpose() + CBh * CBh.transpose();
  }
  quad = diag + f * (quad - diag);
}
#endif

/// The value part shared by attention and MLP blocks (see the header comment):
/// V <- lambda^2 V + lambda gamma / sqrt(H n) (L P^T + P L^T) + gamma^2/(H n)(P P^T + C R C^T).
/// `C` is m x (H m): C_h = A_h L_in side by side; `L` is the root of the residual V.
/// `z_ids` are the stream ids of the Z_h matrices (one per head).
template <class CovT = Cov>
inline void value_mix(CovT& V, const CovT& L, const CovT& C, int H, double n, double lambda, double gamma,
                      const ExactKey& key, bool mlp) {
  const Eigen::Index m = V.rows();
  CovT P = CovT::Zero(m, m), Z;
  ST_MUTATION_ONLY(std::vector<CovT> Ph;)
  for (int h = 0; h < H; ++h) {
    gaussian_matrix(mlp ? key.stream(ExactKey::kMlpZ) : key.head_stream(h, ExactKey::kValueZ), m, m, Z);
    P.noalias() += C.middleCols(h * m, m) * Z;
    ST_MUTATION_ONLY(Ph.push_back(C.middleCols(h * m, m) * Z);)
  }
  MatrixRng r(key.stream(ExactKey::kR), key.stream(ExactKey::kRUniform));
  CovT B;
  B.setZero(H * m, H * m);
  wishart_factor(n - double(m), int(H * m), r, B);  // R = B B^T ~ Wishart_{Hm}(n - m)
  CovT CB(m, H * m);
  CB.noalias() = C * B.template triangularView<Eigen::Lower>();
  const double HN = double(H) * n;
  CovT cross(m, m);
  cross.noalias() = L * P.transpose();
  CovT out = (lambda * lambda) * V;
  out += (lambda * gamma / std::sqrt(HN)) * (cross + cross.transpose());
  CovT quad(m, m);
  quad.noalias() = P * P.transpose();
  quad.noalias() += CB * CB.transpose();
  ST_MUTATION_ONLY(mutation_cross_heads(quad, Ph, C, B, H);)
  out += (gamma * gamma / HN) * quad;
  V = 0.5 * (out + out.transpose());
}

/// Row-wise softmax of S (in place), optionally causal (row i over columns 0..i).
template <class CovT = Cov>
inline void softmax_rows(CovT& S, bool causal) {
  const Eigen::Index m = S.rows();
  for (Eigen::Index i = 0; i < m; ++i) {
    const Eigen::Index k = causal ? i + 1 : m;
    const double mx = S.row(i).head(k).maxCoeff();
    double sum = 0.0;
    for (Eigen::Index j = 0; j < k; ++j) sum += (S(i, j) = std::exp(S(i, j) - mx));
    for (Eigen::Index j = 0; j < k; ++j) S(i, j) /= sum;
    for (Eigen::Index j = k; j < m; ++j) S(i, j) = 0.0;
  }
}

/// Exact MLP step: Phi = c phi(K) phi(K)^T / n with K = L_in G' (G' m x n Gaussian),
/// drawn in column tiles (O(m^2 n) work, O(m * tile) memory), then value_mix with
/// C = chol(Phi).  `phi(x)` is the activation, `c` its normalising constant.
template <class Phi, class CovT>
inline void mlp_exact_step(CovT& V, const CovT& L, const CovT& L_in, long n, double c, double lambda, double gamma,
                           const ExactKey& key, Phi&& phi) {
  const Eigen::Index m = V.rows();
  constexpr Eigen::Index kTile = Eigen::Index(workspace::kExactMlpTile);  // workspace.hpp: read by the memory check
  CovT K(m, kTile), Gram = CovT::Zero(m, m);
  const Stream pre = key.stream(ExactKey::kPre);
  bool fused = false;
  if constexpr (std::is_same_v<std::decay_t<Phi>, exact_mlp::PiecewiseLinear>) {
    if (m <= exact_mlp::kMaxM) {  // fused kernel (exact/mlp_gram.hpp): same draws, sums in another order
      using RM = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
      const RM Lr = L_in;
      RM G(m, m);
      if (!exact_mlp::gram(pre, int(m), n, Lr.data(), phi.sp, phi.sm, G.data(), key.cancel)) return;  // discarded
      Gram = G;
      fused = true;
    }
  }
  // Stream layout: normals of column j are m*j .. m*j + m - 1 (column-major G'),
  // so tiles can be generated independently.
  for (long j0 = 0; !fused && j0 < n; j0 += kTile) {
    // every 256 tiles (131072 columns: a few milliseconds at m = 8)
    if (key.cancel && (j0 / kTile) % 256 == 255 && key.cancel->stop_requested()) return;  // result discarded
    const Eigen::Index w = Eigen::Index(std::min<long>(kTile, n - j0));
    Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor> Gc(m, w);
    fill_normal(pre, std::uint64_t(j0) * std::uint64_t(m), std::size_t(m * w), Gc.data());
    auto Kt = K.leftCols(w);
    Kt.noalias() = L_in * Gc;
    Kt = Kt.unaryExpr(phi);
    Gram.noalias() += Kt * Kt.transpose();
  }
  CovT PhiM = (c / double(n)) * Gram, LPhi;
  psd_root(PhiM, LPhi);
  value_mix(V, L, LPhi, 1, double(n), lambda, gamma, key, true);
}

}  // namespace shaped_transformer
