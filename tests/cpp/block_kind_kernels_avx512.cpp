// The batched SDE and exact-chain kernels for the test network (scaled_identity_block.hpp)
// compiled for AVX-512 (-mavx512f ... -ffp-contract=off), exactly as
// cpp/src/sde_kernels_avx512.cpp and exact_kernels_avx512.cpp compile them for the library's
// network; test_block_kind.cpp calls them after the CPU check.
#include <shaped_transformer/kernels/exact_batch.hpp>
#include <shaped_transformer/kernels/sde_batch.hpp>

#include "scaled_identity_block.hpp"

namespace st_test {
shaped_transformer::sde::BatchFn<TestNetwork> sde_kernel_avx512() {
  return &shaped_transformer::sde::kernels::run_batch<TestNetwork, shaped_transformer::simd::avx512::Lanes>;
}
shaped_transformer::exact_batch::BatchFn<TestNetwork> exact_kernel_avx512() {
  return &shaped_transformer::exact_batch::kernels::run_exact<TestNetwork, shaped_transformer::simd::avx512::Lanes>;
}
}  // namespace st_test
