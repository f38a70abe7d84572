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
//   Ln::sqrt, exp, log, acos   correctly rounded sqrt; exp/log/acos from libm here
//                      (libdevice on the GPU), a polynomial exp in the SIMD lanes
//   Ln::any(m), Ln::lane(x, l), Ln::set_lane(x, l, v)
//
// The SIMD and scalar lanes therefore agree to rounding, not bit for bit; the SIMD
// kernels agree with each other bit for bit (tests/test_sde_fast.py).
#pragma once

#include "../device/hd.hpp"

namespace shaped_transformer {

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
  ST_HD static D acos(D x) { return device::acos_d(x); }
  ST_HD static double lane(D x, int) { return x; }
  ST_HD static void set_lane(D& x, int, double v) { x = v; }
  ST_HD static bool lane(M m, int) { return m; }
  ST_HD static bool any(M m) { return m; }
  ST_HD static M all_true() { return true; }
};

}  // namespace shaped_transformer
