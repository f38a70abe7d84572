// The Wishart term of the exact step's value part (docs/model.md section 4):
// C R C^T with C = [C_1 .. C_H] (m x Hm) and R ~ Wishart_{Hm}(k, I), k = n - m.
//
// Write R = G G^T with G an Hm x k standard Gaussian matrix.  The k columns of C G
// are independent N(0, Sigma), Sigma = C C^T = sum_h C_h C_h^T, so
//   C R C^T ~ Wishart_m(k, Sigma) = K W K^T,  K K^T = Sigma,  W ~ Wishart_m(k, I),
// for any root K.  Only an m x m Wishart is drawn: O(H m^3) for Sigma and O(m^3)
// for the rest, instead of the Hm x Hm Bartlett factor (O(H^2 m^3), and the wrong
// law below k = Hm, where the factor is not triangular).
//
// Written once over an exact step's context Ctx (exact_common.hpp): the generic
// chain, the batched SIMD kernels and the CUDA threads all run this template.
#pragma once

#include <cstdint>

#include "device/hd.hpp"
#include "math/matrix.hpp"

namespace shaped_transformer {

/// F (m x m) with F F^T ~ C R C^T, R ~ Wishart_{Hm}(k, I): F = K B with B B^T = W ~
/// Wishart_m(k, I) drawn by c.wishart from streams idn / idu (the Bartlett factor
/// when k > m - 1, an m x k Gaussian padded with zero columns otherwise: a singular
/// Wishart, k an integer >= 0).  K = C itself when H = 1 (so the one-head and MLP
/// steps draw exactly what they always drew for k > m - 1), else c.root(C C^T)
/// (Sigma may be singular: psd_root's rule).  `C` is m x (H m); B, S, K: m x m
/// scratch (S and K unused when H = 1); F may not alias them or C.
template <class Ctx, class VC, class VF, class VM>
ST_HD inline void wishart_quad_factor(Ctx& c, VC C, int H, double k, std::uint32_t idn, std::uint32_t idu, VF F, VM B,
                                      VM S, VM K) {
  using Ln = typename Ctx::Ln;
  const int m = c.m;
  c.wishart(k, m, idn, idu, B);
  const bool bartlett = k > double(m - 1);  // B lower triangular
  if (H == 1) return mul<Ln>(F, C.middle_cols(0, m), B, false, bartlett);
  mul_nt<Ln>(S, C, C);  // Sigma = C C^T
  const bool tri = c.root(S, K);
  mul<Ln>(F, K, B, tri, bartlett);
}

}  // namespace shaped_transformer
