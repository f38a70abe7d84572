// Dispatch of the exact MLP step's fused Gram kernel (exact/mlp_gram.hpp) and its
// portable build.  The CPU checks are the SDE kernels' (sde::batch_kernel).
#include <algorithm>
#include <cstdint>

#include "shaped_transformer/exact/mlp_gram.hpp"
#include "shaped_transformer/normal_kernels.hpp"
#include "shaped_transformer/sde/batch.hpp"

namespace shaped_transformer::exact_mlp {
namespace detail {
#if defined(SHAPED_TRANSFORMER_X86_DISPATCH)
bool gram_avx512(const Stream&, int, long, const double*, double, double, double*, const CancelToken*);
bool gram_avx2(const Stream&, int, long, const double*, double, double, double*, const CancelToken*);
#endif
}  // namespace detail

namespace {
#include "mlp_gram_impl.hpp"
}  // namespace

bool gram(const Stream& pre, int m, long n, const double* L, double sp, double sm, double* out,
          const CancelToken* cancel) {
#if defined(SHAPED_TRANSFORMER_X86_DISPATCH)
  static const auto fn = [] {
    const char* k = sde::batch_kernel().name;
    return k[3] == '5' ? &detail::gram_avx512 : k[3] == '2' ? &detail::gram_avx2 : &mlp_gram_impl;
  }();
  return fn(pre, m, n, L, sp, sm, out, cancel);
#else
  return mlp_gram_impl(pre, m, n, L, sp, sm, out, cancel);
#endif
}

}  // namespace shaped_transformer::exact_mlp
