// The value part's root and Wishart term of the exact step (docs/model.md section 4).
//
// Given C = [C_1 .. C_H] (m x Hm, C_h = A_h L_in), the value part uses its Gaussians
// only through P = sum_h C_h Z_h (Z_h m x m standard Gaussian) and C R C^T with
// R ~ Wishart_{Hm}(k, I), k = n - m.  Write R = G G^T with G an Hm x k standard
// Gaussian matrix, and stack the Z_h into Z (Hm x m).  The m + k columns of
// C [Z, G] are independent N(0, Sigma), Sigma = C C^T = sum_h C_h C_h^T, so for any
// root K (K K^T = Sigma), Z' m x m standard Gaussian and W ~ Wishart_m(k, I)
// independent of it,
//   (P, C R C^T)  has the law of  (K Z', K W K^T).
// One root serves both: P costs one product instead of H (and one block of normals
// instead of H), and only an m x m Wishart is drawn: O(H m^3) for Sigma and O(m^3)
// for the rest, instead of the Hm x Hm Bartlett factor (O(H^2 m^3), and the wrong
// law below k = Hm, where the factor is not triangular).  For one head (and the
// MLP, C = a root of Phi) K = C_1 itself: the draws of earlier versions.
//
// Written once over an exact step's context Ctx (exact_common.hpp): the generic
// chain, the batched SIMD kernels and the CUDA threads all run these templates.
#pragma once

#include <cstdint>

#include "device/hd.hpp"
#include "math/matrix.hpp"

namespace shaped_transformer {

/// K (m x m) with K K^T = Sigma = C C^T for C (m x Hm), H > 1: c.root(Sigma) (Sigma
/// may be singular: psd_root's rule).  S: m x m scratch (Sigma).  Returns whether K is
/// lower triangular (products with it then skip the zeros).  One head needs no root:
/// K = C_1 (value_mix).
template <class Ctx, class VC, class VM>
ST_HD inline bool value_root(Ctx& c, VC C, VM S, VM K) {
  mul_nt<typename Ctx::Ln>(S, C, C);  // Sigma = C C^T
  return c.root(S, K);
}

/// F (m x m) with F F^T ~ K W K^T, W ~ Wishart_m(k, I) (= C R C^T in law when
/// K K^T = C C^T): F = K B with B B^T = W drawn by c.wishart from streams idn / idu
/// into B (the Bartlett factor when k > m - 1, an m x k Gaussian padded with zero
/// columns otherwise: a singular Wishart, k an integer >= 0).  k_lower: K is lower
/// triangular.  F may not alias K or B.
template <class Ctx, class VK, class VF, class VM>
ST_HD inline void wishart_quad_factor(Ctx& c, VK K, bool k_lower, double k, std::uint32_t idn, std::uint32_t idu, VF F,
                                      VM B) {
  const int m = c.m;
  c.wishart(k, m, idn, idu, B);
  mul<typename Ctx::Ln>(F, K, B, k_lower, k > double(m - 1));  // B lower triangular when Bartlett
}

}  // namespace shaped_transformer
