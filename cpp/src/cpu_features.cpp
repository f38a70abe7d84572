// The one CPU-feature check (cpu_features.hpp).
#include "shaped_transformer/cpu_features.hpp"

#include <cstdlib>
#include <cstring>
#include <initializer_list>

namespace shaped_transformer {

namespace {
SimdLevel detect_cpu() {
#if defined(SHAPED_TRANSFORMER_X86_DISPATCH)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl"))
    return SimdLevel::Avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return SimdLevel::Avx2;
#endif
  return SimdLevel::Scalar;
}
}  // namespace

SimdLevel cpu_simd_level() {
  static const SimdLevel level = detect_cpu();
  return level;
}

SimdLevel simd_level() {
  static const SimdLevel level = [] {
    SimdLevel asked;
    const char* env = std::getenv("SHAPED_TRANSFORMER_KERNEL");
    if (env && simd_level_from_name(env, asked) && int(asked) < int(cpu_simd_level())) return asked;
    return cpu_simd_level();
  }();
  return level;
}

const char* simd_level_name(SimdLevel level) {
  switch (level) {
    case SimdLevel::Avx512: return "avx512";
    case SimdLevel::Avx2: return "avx2";
    default: return "scalar";
  }
}

bool simd_level_from_name(const char* name, SimdLevel& level) {
  for (SimdLevel l : {SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512})
    if (name && std::strcmp(name, simd_level_name(l)) == 0) {
      level = l;
      return true;
    }
  return false;
}

}  // namespace shaped_transformer
