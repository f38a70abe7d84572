// The one CPU-feature check behind every run-time dispatch (the normal kernels, the
// fused Gaussian product, the batched SDE and exact-chain kernels, the exact MLP
// Gram kernel): which SIMD level this CPU and this build can run.
#pragma once

namespace shaped_transformer {

enum class SimdLevel : int { Scalar = 0, Avx2 = 1, Avx512 = 2 };

/// The widest level this CPU supports and this build has kernels for (x86-64: AVX2
/// needs AVX2 and FMA; AVX-512 needs AVX-512 F, DQ, BW and VL).  Checked once.
SimdLevel cpu_simd_level();

/// The level the kernels use: cpu_simd_level(), lowered by the environment variable
/// SHAPED_TRANSFORMER_KERNEL=scalar|avx2 (read once, at the first call).
SimdLevel simd_level();

/// Whether this CPU and build can run kernels of `level`.
inline bool cpu_supports(SimdLevel level) { return int(level) <= int(cpu_simd_level()); }

/// "scalar", "avx2" or "avx512".
const char* simd_level_name(SimdLevel level);

/// The level named `name` ("scalar", "avx2", "avx512"); false for any other name.
bool simd_level_from_name(const char* name, SimdLevel& level);

/// A batched kernel {name, lanes, run} by name (null or "": the widest this CPU and
/// build run, simd_level()), for the SDE and exact-chain families alike: `simd(level)`
/// gives the AVX2 / AVX-512 build's run function (null: none), `portable` the
/// one-lane kernel.  run is null when the CPU or build lacks the named kernel.
template <class K, class Simd>
K choose_simd_kernel(const char* name, Simd simd, decltype(K::run) portable) {
  SimdLevel level = simd_level();
  if (name && !simd_level_from_name(name, level)) return {name, 0, nullptr};
  if (!cpu_supports(level)) return {name, 0, nullptr};
  if (level != SimdLevel::Scalar) {
    if (const auto f = simd(level)) return {simd_level_name(level), level == SimdLevel::Avx512 ? 8 : 4, f};
    if (name) return {name, 0, nullptr};
  }
  return {"scalar", 1, portable};
}

}  // namespace shaped_transformer
