// Dispatch of the exact MLP step's fused Gram kernel (exact/mlp_gram.hpp) and its
// portable build, by the one CPU check (cpu_features.hpp).
#include "mlp_gram_impl.hpp"
#include "shaped_transformer/cpu_features.hpp"

namespace shaped_transformer::exact_mlp {
namespace detail {
#if defined(SHAPED_TRANSFORMER_X86_DISPATCH)
bool gram_avx512(const Stream&, int, long, const double*, double, double, double*, const CancelToken*);
bool gram_avx2(const Stream&, int, long, const double*, double, double, double*, const CancelToken*);
#endif
}  // namespace detail

bool gram(const Stream& pre, int m, long n, const double* L, double sp, double sm, double* out,
          const CancelToken* cancel) {
#if defined(SHAPED_TRANSFORMER_X86_DISPATCH)
  switch (simd_level()) {
    case SimdLevel::Avx512: return detail::gram_avx512(pre, m, n, L, sp, sm, out, cancel);
    case SimdLevel::Avx2: return detail::gram_avx2(pre, m, n, L, sp, sm, out, cancel);
    default: break;
  }
#endif
  return fused::mlp_gram_impl(pre, m, n, L, sp, sm, out, cancel);
}

}  // namespace shaped_transformer::exact_mlp
