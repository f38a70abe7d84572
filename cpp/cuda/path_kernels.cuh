// The CUDA kernels of the width-independent paths: one thread per SDE path or per
// exact-chain sample, running the per-thread code of include/shaped_transformer/device/
// (the block faces of the headers on the scalar lanes).  Templates over the problem
// type, so that the kernels compile for any network: kernels.cu launches them for the
// library's Network, tests/test_cuda.py compiles them with nvcc for a test-only kind.
// The instance a problem runs is chosen by device::sde_variant / exact_variant, the
// rule of the CPU twins host_solve_path / host_exact_sample (device/from_network.hpp),
// which the CPU tests run.
#pragma once

#include <cstdint>

#include "shaped_transformer/device/exact_step.hpp"
#include "shaped_transformer/device/sde_step.hpp"

namespace shaped_transformer::cuda::paths {

template <int MM, bool FIXED, class P>
__global__ void sde_kernel(const P* __restrict__ p, const std::int64_t* __restrict__ save, int nsave,
                           std::int64_t first, std::int64_t count, double* __restrict__ out,
                           std::int64_t* __restrict__ exploded, std::int64_t* __restrict__ projections) {
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= count) return;
  std::int64_t proj = 0;
  const std::int64_t mm = std::int64_t(p->m) * p->m;
  exploded[i] = device::solve_path<MM, FIXED>(*p, save, nsave, std::uint32_t(first + i), out + i * nsave * mm, proj);
  projections[i] = proj;
}

template <int MM, int HM, class P>
__global__ void exact_kernel(const P* __restrict__ p, const std::int64_t* __restrict__ save, int nsave,
                             std::int64_t first, std::int64_t count, double* __restrict__ out,
                             std::int64_t* __restrict__ exploded) {
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= count) return;
  const std::int64_t mm = std::int64_t(p->m) * p->m;
  exploded[i] = device::exact_sample<MM, HM>(*p, save, nsave, std::uint32_t(first + i), out + i * nsave * mm);
}

/// Launches the SDE kernel instance of device::sde_variant(m) for paths first ..
/// first + count - 1 (threads of `per_block`); p: the problem in device memory.
template <class P>
void launch_sde(int m, const P* p, const std::int64_t* save, int nsave, std::int64_t first, std::int64_t count,
                double* out, std::int64_t* exploded, std::int64_t* projections, unsigned per_block) {
  const unsigned blocks = unsigned((count + per_block - 1) / per_block);
  switch (device::sde_variant(m)) {
    case device::SdeVariant::Fixed4:
      sde_kernel<4, true><<<blocks, per_block>>>(p, save, nsave, first, count, out, exploded, projections);
      break;
    case device::SdeVariant::Fixed8:
      sde_kernel<8, true><<<blocks, per_block>>>(p, save, nsave, first, count, out, exploded, projections);
      break;
    case device::SdeVariant::Bound4:
      sde_kernel<4, false><<<blocks, per_block>>>(p, save, nsave, first, count, out, exploded, projections);
      break;
    case device::SdeVariant::Bound8:
      sde_kernel<8, false><<<blocks, per_block>>>(p, save, nsave, first, count, out, exploded, projections);
      break;
    default:
      sde_kernel<16, false><<<blocks, per_block>>>(p, save, nsave, first, count, out, exploded, projections);
      break;
  }
}

/// Launches the exact-chain kernel instance of device::exact_variant(m, wide).
template <class P>
void launch_exact(int m, int wide, const P* p, const std::int64_t* save, int nsave, std::int64_t first,
                  std::int64_t count, double* out, std::int64_t* exploded, unsigned per_block) {
  const unsigned blocks = unsigned((count + per_block - 1) / per_block);
  switch (device::exact_variant(m, wide)) {
    case device::ExactVariant::M4W4:
      exact_kernel<4, 4><<<blocks, per_block>>>(p, save, nsave, first, count, out, exploded);
      break;
    case device::ExactVariant::M8W8:
      exact_kernel<8, 8><<<blocks, per_block>>>(p, save, nsave, first, count, out, exploded);
      break;
    case device::ExactVariant::M8W32:
      exact_kernel<8, 32><<<blocks, per_block>>>(p, save, nsave, first, count, out, exploded);
      break;
    default: exact_kernel<16, 32><<<blocks, per_block>>>(p, save, nsave, first, count, out, exploded); break;
  }
}

}  // namespace shaped_transformer::cuda::paths
