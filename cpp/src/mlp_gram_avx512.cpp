// mlp_gram_impl.hpp compiled for AVX-512 (same bits as the portable build, faster);
// called after a CPUID check (mlp_gram.cpp).
#include "mlp_gram_impl.hpp"

namespace shaped_transformer::exact_mlp {
namespace detail {
bool gram_avx512(const Stream& pre, int m, long n, const double* L, double sp, double sm, double* gram,
                 const CancelToken* cancel) {
  return fused::mlp_gram_impl(pre, m, n, L, sp, sm, gram, cancel);
}
}  // namespace detail
}  // namespace shaped_transformer::exact_mlp
