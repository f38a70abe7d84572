// mlp_gram_impl.hpp compiled for AVX2 (same bits as the portable build, faster);
// called after a CPUID check (mlp_gram.cpp).
#include <algorithm>
#include <cstdint>

#include "shaped_transformer/exact/mlp_gram.hpp"
#include "shaped_transformer/normal_kernels.hpp"

namespace shaped_transformer::exact_mlp {
namespace {
#include "mlp_gram_impl.hpp"
}  // namespace
namespace detail {
bool gram_avx2(const Stream& pre, int m, long n, const double* L, double sp, double sm, double* gram,
               const CancelToken* cancel) {
  return mlp_gram_impl(pre, m, n, L, sp, sm, gram, cancel);
}
}  // namespace detail
}  // namespace shaped_transformer::exact_mlp
