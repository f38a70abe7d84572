// Portable "host and device" qualifier for the per-thread code of the CUDA backend.
//
// ST_HD expands to `__host__ __device__` under nvcc and to nothing otherwise, so
// the headers of this folder compile with an ordinary C++ compiler: the CPU tests
// (tests/cpp/test_device.cpp, tests/test_cuda.py) run exactly the functions that
// the CUDA kernels (cpp/cuda/) call on the GPU.
//
// Rounding rules that make the GPU reproduce the CPU: nvcc must compile these
// functions with -fmad=false (no contraction of a * b + c into an FMA, as the CPU
// kernels compile with -ffp-contract=off) and with the default IEEE division and
// square root (-prec-div=true -prec-sqrt=true, no --use_fast_math).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#if !defined(__CUDA_ARCH__)
#include <stdexcept>
#endif

#if defined(__CUDACC__)
#define ST_HD __host__ __device__
#else
#define ST_HD
#endif

// A precondition of shared host/device code: std::invalid_argument(msg) on the host;
// on the device, where the host checked the inputs before the launch, a trap (the
// launch then fails with an error) instead of a wrong number.
#if defined(__CUDA_ARCH__)
#define ST_REQUIRE(cond, msg) \
  do {                        \
    if (!(cond)) __trap();    \
  } while (0)
#else
#define ST_REQUIRE(cond, msg)                      \
  do {                                             \
    if (!(cond)) throw std::invalid_argument(msg); \
  } while (0)
#endif

namespace shaped_transformer::device {

/// Bit casts that work on both sides (memcpy on the host, intrinsics on the GPU).
ST_HD inline float bits_to_float(std::uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}
ST_HD inline std::uint32_t float_to_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}

/// Correctly rounded single-precision square root on both sides.
ST_HD inline float sqrt_f(float x) {
#if defined(__CUDA_ARCH__)
  return __fsqrt_rn(x);
#else
  return __builtin_sqrtf(x);
#endif
}

// Double-precision maths.  sqrt is correctly rounded on both sides; log, exp,
// pow and acos may differ by an ulp between glibc and CUDA's libdevice, so the
// GPU agrees with the CPU "within rounding" where they are used (the exact
// chain's gamma sampler and softmax, the MLP drift), bit for bit elsewhere.
ST_HD inline double sqrt_d(double x) { return ::sqrt(x); }
ST_HD inline double log_d(double x) { return ::log(x); }
ST_HD inline double exp_d(double x) { return ::exp(x); }
ST_HD inline double pow_d(double x, double y) { return ::pow(x, y); }
ST_HD inline double acos_d(double x) { return ::acos(x); }
ST_HD inline bool isfinite_d(double x) { return x - x == 0.0; }  // false for inf and NaN
ST_HD inline double nan_d() {
#if defined(__CUDA_ARCH__)
  return __longlong_as_double(0x7ff8000000000000LL);
#else
  return __builtin_nan("");
#endif
}
ST_HD inline double max_d(double a, double b) { return a > b ? a : b; }
ST_HD inline double min_d(double a, double b) { return a < b ? a : b; }
ST_HD inline double abs_d(double a) { return a < 0 ? -a : a; }

}  // namespace shaped_transformer::device
