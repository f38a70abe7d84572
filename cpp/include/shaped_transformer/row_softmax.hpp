// The row softmax of the per-sample exact chain's large attention matrices (m >=
// kGemmFrom on the host) in SIMD lanes along each row: a vector exp (simd/lanes.hpp's,
// within ~2 ulp of libm's) and lane-wise sums, compiled for AVX2 + FMA and AVX-512
// (cpp/src/row_softmax*.cpp) and chosen at run time by simd_level().  The portable
// build keeps exact_common.hpp's softmax_rows (libm's exp, the sums in order), so the
// two agree to rounding, not bit for bit; small m never comes here.
#pragma once

namespace shaped_transformer::detail {

/// softmax_rows (exact_common.hpp) of the m x m row-major S (leading dimension ld), in
/// place, in the SIMD build of SimdLevel `level` (1 AVX2, 2 AVX-512); false (S
/// untouched) for the portable level 0 or when this CPU or build cannot run it.
bool row_softmax_at(int level, int m, double* S, int ld, bool causal);
/// row_softmax_at in the build for this CPU (simd_level()); false: the caller's
/// portable softmax runs.
bool row_softmax(int m, double* S, int ld, bool causal);

}  // namespace shaped_transformer::detail
