// The scalar lane: one sample per host thread (the generic per-path and per-sample
// solvers) or per CUDA thread (device/).  The block formulas (blocks/*.hpp) are
// templates over a lane type `Ln` with this interface, which simd/lanes.hpp
// implements for SIMD vectors (one sample per vector lane):
//
//   Ln::D, Ln::M       a lane of doubles and the mask a comparison of two gives
//                      (`m ? a : b` selects);  Ln::W samples per lane
//   Ln::splat(x)       x in every lane
//   Ln::madd(a, b, c)  a b + c: rounded twice here (no contraction: the CPU code is
//                      compiled without FMA contraction, nvcc with -fmad=false, so the
//                      host and the GPU agree), once in the SIMD lanes
//   Ln::sqrt, exp, log, acos   correctly rounded sqrt; exp/log from libm here
//                      (libdevice on the GPU), a polynomial exp in the SIMD lanes;
//                      acos: acos_lanes below in every lane type (vectorizes)
//   Ln::any(m), Ln::lane(x, l), Ln::set_lane(x, l, v)
//
// The SIMD and scalar lanes therefore agree to rounding, not bit for bit; the SIMD
// kernels agree with each other bit for bit (tests/test_sde_fast.py).
#pragma once

#include "../device/hd.hpp"

namespace shaped_transformer {

/// arccos(x) on [-1, 1] for any lanes Ln (ScalarLanes, the SIMD lanes, CUDA threads),
/// branch-free so that it vectorizes: fdlibm's e_acos.c (Sun Microsystems, 1993), its
/// rational approximation asin(y) = y + y^3 P(y^2)/Q(y^2) on |y| <= 1/2 and the
/// half-angle formulas acos(x) = 2 asin(sqrt((1 - x)/2)), pi - 2 asin(sqrt((1 + x)/2))
/// for |x| >= 1/2, without fdlibm's split of the square root into high and low words
/// (so about 1 ulp instead of under 1 ulp; tests/cpp/test_sde.cpp measures the error
/// against libm).  acos(1) = 0, acos(-1) = pi; NaN stays NaN; |x| > 1 is not defined.
template <class Ln>
ST_HD inline typename Ln::D acos_lanes(typename Ln::D x) {
  using D = typename Ln::D;
  const double pio2_hi = 1.57079632679489655800e+00, pio2_lo = 6.12323399573676603587e-17,
               pi = 3.14159265358979311600e+00;
  const D ax = x < Ln::splat(0.0) ? -x : x;
  const auto small = ax < Ln::splat(0.5);
  const D z = small ? x * x : (Ln::splat(1.0) - ax) * 0.5;
  D p = Ln::madd(z, Ln::splat(3.47933107596021167570e-05), Ln::splat(7.91534994289814532176e-04));
  p = Ln::madd(z, p, Ln::splat(-4.00555345006794114027e-02));
  p = Ln::madd(z, p, Ln::splat(2.01212532134862925881e-01));
  p = Ln::madd(z, p, Ln::splat(-3.25565818622400915405e-01));
  p = Ln::madd(z, p, Ln::splat(1.66666666666666657415e-01));
  D q = Ln::madd(z, Ln::splat(7.70381505559019352791e-02), Ln::splat(-6.88283971605453293030e-01));
  q = Ln::madd(z, q, Ln::splat(2.02094576023350569471e+00));
  q = Ln::madd(z, q, Ln::splat(-2.40339491173441421878e+00));
  q = Ln::madd(z, q, Ln::splat(1.0));
  const D r = z * p / q;                                                // asin(y) = y + y r, y^2 = z
  const D near0 = pio2_hi - (x - Ln::madd(-x, r, Ln::splat(pio2_lo)));  // pi/2 - asin(x)
  const D s = Ln::sqrt(z);
  const D far = x > Ln::splat(0.0) ? 2.0 * Ln::madd(s, r, s)  // 2 asin(s)
                                   : pi - 2.0 * (s + Ln::madd(r, s, Ln::splat(-pio2_lo)));
  return small ? near0 : far;
}

struct ScalarLanes {
  static constexpr int W = 1;
  static constexpr const char* name = "generic";
  using D = double;
  using M = bool;
  ST_HD static D splat(double x) { return x; }
  ST_HD static D madd(D a, D b, D c) { return a * b + c; }
  ST_HD static D sqrt(D x) { return device::sqrt_d(x); }
  ST_HD static D exp(D x) { return device::exp_d(x); }
  ST_HD static D log(D x) { return device::log_d(x); }
  ST_HD static D acos(D x) { return acos_lanes<ScalarLanes>(x); }
  ST_HD static double lane(D x, int) { return x; }
  ST_HD static void set_lane(D& x, int, double v) { x = v; }
  ST_HD static bool lane(M m, int) { return m; }
  ST_HD static bool any(M m) { return m; }
  ST_HD static M all_true() { return true; }
};

}  // namespace shaped_transformer
