// Shared skeleton of the normal-number kernels and of the fused Gaussian product
// (normal_kernels*.cpp), instantiated once per instruction set with that
// translation unit's own types (declared in its anonymous namespace, so that every
// instance has internal linkage and the AVX-512 copy can never serve generic code):
//   Batch: kGroups (Philox groups per call) and
//          static void philox_batch(const Stream&, std::uint64_t g, float* out)
//          (normals 4 g .. 4 (g + kGroups) - 1 of the stream);
//   Vec (VecF / VecD): T, L (lanes), reg, loadu, storeu, set1, fma.
#pragma once

#include <cstddef>
#include <cstdint>

#include "shaped_transformer/rng.hpp"
#include "shaped_transformer/workspace.hpp"

namespace shaped_transformer::normal_kernels {

/// Normals first .. first+count-1 of stream s (the layout of fill_normal_reference).
template <class Batch>
inline void fill_generic(const Stream& s, std::uint64_t first, std::size_t count, float* out) {
  constexpr int kGroups = Batch::kGroups;
  std::size_t i = 0;
  std::uint64_t g = first / 4;
  const int j0 = int(first % 4);
  if (count == 0) return;
  if (j0 != 0) {  // finish a partial group with the scalar reference
    float z[4];
    normal4(s, g++, z);
    for (int j = j0; j < 4 && i < count; ++j) out[i++] = z[j];
  }
  constexpr std::size_t kBatch = 4 * std::size_t(kGroups);
  while (count - i >= kBatch) {
    // The SIMD batch adds lane indices to the low counter word; a batch that would
    // carry into the high word (only beyond 2^34 normals) takes the scalar path.
    if ((g & 0xFFFFFFFFull) > 0xFFFFFFFFull - std::uint64_t(kGroups)) {
      for (int k = 0; k < kGroups; ++k) normal4(s, g + std::uint64_t(k), out + i + 4 * std::size_t(k));
    } else {
      Batch::philox_batch(s, g, out + i);
    }
    i += kBatch;
    g += std::uint64_t(kGroups);
  }
  if (i < count) {
    alignas(64) float tmp[kBatch];
    const std::size_t rest = count - i;
    if ((g & 0xFFFFFFFFull) > 0xFFFFFFFFull - std::uint64_t(kGroups)) {
      for (std::size_t k = 0; 4 * k < rest; ++k) normal4(s, g + k, tmp + 4 * k);
    } else {
      Batch::philox_batch(s, g, tmp);
    }
    for (std::size_t k = 0; k < rest; ++k) out[i + k] = tmp[k];
  }
}

template <class Batch>
inline void fill_generic(const Stream& s, std::uint64_t first, std::size_t count, double* out) {
  alignas(64) float tmp[1024];
  while (count > 0) {
    const std::size_t c = count < 1024 ? count : 1024;
    fill_generic<Batch>(s, first, c, tmp);
    for (std::size_t k = 0; k < c; ++k) out[k] = double(tmp[k]);
    first += c;
    out += c;
    count -= c;
  }
}

/// Acc (R rows x kCols) += X(R rows, k0..k0+rb) * Buf(rb x kCols), in registers.
template <class Vec, int R, int kCols>
inline void micro_kernel(typename Vec::T* acc, int ldacc, const typename Vec::T* X, std::int64_t ldx,
                         const typename Vec::T* buf, int rb) {
  using reg = typename Vec::reg;
  constexpr int NV = 4;  // vectors per row in one pass: R * NV <= 16 accumulators
  constexpr int W = NV * Vec::L;
  static_assert(kCols % W == 0, "column block must be a multiple of the register tile");
  for (int c = 0; c < kCols; c += W) {
    reg a[R][NV];
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < NV; ++v) a[r][v] = Vec::loadu(acc + r * ldacc + c + v * Vec::L);
    for (int k = 0; k < rb; ++k) {
      reg w[NV];
      for (int v = 0; v < NV; ++v) w[v] = Vec::loadu(buf + k * kCols + c + v * Vec::L);
      for (int r = 0; r < R; ++r) {
        const reg x = Vec::set1(X[r * ldx + k]);
        for (int v = 0; v < NV; ++v) a[r][v] = Vec::fma(x, w[v], a[r][v]);
      }
    }
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < NV; ++v) Vec::storeu(acc + r * ldacc + c + v * Vec::L, a[r][v]);
  }
}

/// Columns [jb, je) of Out = scale * X * W (see gaussian_gemm in normal_kernels.hpp).
/// Column blocks of kCols, row tiles of kRows: the tile of W is generated into an
/// L1-sized buffer and used at once by all m tokens.  Each output entry accumulates
/// its terms in row order, whatever the column range, so a split over threads
/// gives the same numbers as one thread.
template <class Vec, class Batch>
void gemm_cols(const Stream& s, int m, std::int64_t n_in, std::int64_t n_out, const typename Vec::T* X,
               std::int64_t ldx, typename Vec::T* Out, std::int64_t ldo, typename Vec::T scale, std::int64_t jb,
               std::int64_t je) {
  using T = typename Vec::T;
  // The tile sizes live in workspace.hpp, where the Python memory check reads them.
  constexpr int kCols = int(workspace::kGemmTileCols);  // a multiple of every kernel's batch
  constexpr int kRows = int(sizeof(T) == 4 ? workspace::kGemmTileRowsFloat : workspace::kGemmTileRowsDouble);
  static_assert(kCols % 16 == 0, "the column tile must be a multiple of every kernel's batch");
  alignas(64) T buf[kRows * kCols];
  alignas(64) float fbuf[kCols];
  T* acc = new T[std::size_t(m) * kCols];
  for (std::int64_t j0 = jb; j0 < je; j0 += kCols) {
    const int jw = int((je - j0) < kCols ? (je - j0) : kCols);
    for (std::size_t q = 0; q < std::size_t(m) * kCols; ++q) acc[q] = T(0);
    for (std::int64_t i0 = 0; i0 < n_in; i0 += kRows) {
      const int rb = int((n_in - i0) < kRows ? (n_in - i0) : kRows);
      for (int r = 0; r < rb; ++r) {
        T* row = buf + r * kCols;
        const std::uint64_t first = std::uint64_t(i0 + r) * std::uint64_t(n_out) + std::uint64_t(j0);
        if constexpr (sizeof(T) == 4) {
          fill_generic<Batch>(s, first, std::size_t(jw), reinterpret_cast<float*>(row));
        } else {
          fill_generic<Batch>(s, first, std::size_t(jw), fbuf);
          for (int c = 0; c < jw; ++c) row[c] = T(fbuf[c]);
        }
        for (int c = jw; c < kCols; ++c) row[c] = T(0);
      }
      const T* Xt = X + i0;
      int a = 0;
      for (; a + 4 <= m; a += 4) micro_kernel<Vec, 4, kCols>(acc + a * kCols, kCols, Xt + a * ldx, ldx, buf, rb);
      switch (m - a) {
        case 3: micro_kernel<Vec, 3, kCols>(acc + a * kCols, kCols, Xt + a * ldx, ldx, buf, rb); break;
        case 2: micro_kernel<Vec, 2, kCols>(acc + a * kCols, kCols, Xt + a * ldx, ldx, buf, rb); break;
        case 1: micro_kernel<Vec, 1, kCols>(acc + a * kCols, kCols, Xt + a * ldx, ldx, buf, rb); break;
        default: break;
      }
    }
    for (int a = 0; a < m; ++a)
      for (int c = 0; c < jw; ++c) Out[a * ldo + j0 + c] = scale * acc[a * kCols + c];
  }
  delete[] acc;
}

}  // namespace shaped_transformer::normal_kernels
