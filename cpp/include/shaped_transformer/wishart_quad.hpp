// The Wishart term of the exact step's value part (docs/model.md section 4):
// C R C^T with C = [C_1 .. C_H] (m x Hm) and R ~ Wishart_{Hm}(k, I), k = n - m.
//
// Write R = G G^T with G an Hm x k standard Gaussian matrix.  The k columns of C G
// are independent N(0, Sigma), Sigma = C C^T = sum_h C_h C_h^T, so
//   C R C^T ~ Wishart_m(k, Sigma) = K W K^T,  K K^T = Sigma,  W ~ Wishart_m(k, I),
// for any root K.  Only an m x m Wishart is drawn: O(H m^3) for Sigma and O(m^3)
// for the rest, instead of the Hm x Hm Bartlett factor (O(H^2 m^3), and the wrong
// law below k = Hm, where the factor is not triangular).
#pragma once

#include <Eigen/Dense>

#include "linalg.hpp"

namespace shaped_transformer {

/// F (m x m) with F F^T ~ C R C^T, R ~ Wishart_{Hm}(k, I): F = K B with B B^T = W ~
/// Wishart_m(k, I) drawn by wishart_factor from `r` (the Bartlett factor when
/// k >= m, an m x k Gaussian padded with zero columns when k < m: a singular
/// Wishart, k an integer >= 0).  K = C itself when H = 1 (so the one-head and MLP
/// steps draw exactly what they always drew for k >= m), else psd_root(C C^T)
/// (Sigma may be singular).  `C` is m x (H m).
template <class CovT = Cov>
inline void wishart_quad_factor(const CovT& C, int H, double k, MatrixRng& r, CovT& F) {
  const Eigen::Index m = C.rows();
  CovT B;
  wishart_factor(k, m, r, B);
  const bool bartlett = k > double(m - 1);  // B lower triangular
  auto apply = [&](const CovT& K) {
    if (bartlett) F.noalias() = K * B.template triangularView<Eigen::Lower>();
    else F.noalias() = K * B;
  };
  if (H == 1) return apply(C);
  CovT Sigma(m, m), K;
  Sigma.noalias() = C * C.transpose();
  psd_root(Sigma, K);
  apply(K);
}

}  // namespace shaped_transformer
