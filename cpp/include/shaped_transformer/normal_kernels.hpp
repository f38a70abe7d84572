// Fast bulk generation of the normals defined by rng.hpp, and the fused
// "generate a Gaussian weight matrix and multiply by it" product that the explicit
// network is made of.  The implementation picks the widest instruction set the CPU
// has at run time; every variant of fill_normal returns exactly the numbers of
// fill_normal_reference.
#pragma once

#include <cstddef>
#include <cstdint>

#include "parallel.hpp"
#include "rng.hpp"

namespace shaped_transformer {

/// Normals first .. first+count-1 of stream s, written to out.
void fill_normal(const Stream& s, std::uint64_t first, std::size_t count, float* out);
/// Same numbers, widened to double.
void fill_normal(const Stream& s, std::uint64_t first, std::size_t count, double* out);

/// Name of the kernel fill_normal uses on this CPU ("avx512", "avx2" or "scalar").
const char* normal_kernel_name();

/// Debug/test entry: fill with a named kernel ("scalar", "avx2", "avx512").
/// Returns false (and writes nothing) when this CPU or build lacks that kernel.
bool fill_normal_kernel(const char* name, const Stream& s, std::uint64_t first, std::size_t count, float* out);

/// Out (m x n_out) = scale * X (m x n_in) * W, where W is the n_in x n_out matrix of
/// stream s in row-major order: W(i, j) = normal number i * n_out + j.
///
/// W is generated in small tiles (a few rows of a block of columns) that are
/// consumed by the product while they are still in L1, so no n_in x n_out matrix is
/// ever stored: memory is O(m * n_out) (the output) plus a fixed workspace.
/// X and Out are row-major with leading dimensions ldx and ldo.  `threads` > 1
/// splits the output columns among threads; every output entry is computed by the
/// same sequence of operations for any thread count, so results are identical.
/// `cancel` (optional) is checked between chunks of 512 columns: when it is set the
/// product returns early with Out incomplete (the caller must discard it), so a
/// single block at a huge width still stops within a fraction of a second.
void gaussian_gemm(const Stream& s, int m, std::int64_t n_in, std::int64_t n_out, const float* X, std::int64_t ldx,
                   float* Out, std::int64_t ldo, float scale, int threads = 1, const CancelToken* cancel = nullptr);
void gaussian_gemm(const Stream& s, int m, std::int64_t n_in, std::int64_t n_out, const double* X, std::int64_t ldx,
                   double* Out, std::int64_t ldo, double scale, int threads = 1, const CancelToken* cancel = nullptr);

}  // namespace shaped_transformer
