// The batched SDE kernels: W paths integrated together, one path per SIMD lane
// (structure of arrays: entry (i, j) of lane l at V[(i m + j) W + l]).  W = 8 with
// AVX-512, 4 with AVX2, 1 for the portable build; all three run the same sequence
// of IEEE operations per lane (fused multiply-adds written out), so they give the
// same numbers (tests/test_sde_fast.py).  The step is kernels/sde_step.hpp, the one
// the generic per-path solver (sde.hpp, one path on Eigen's roots) and the CUDA
// threads run too, on the drift and noise faces of the block headers; they agree to
// rounding.
//
// The kernels cover every network whose blocks have an SDE limit, with the Euler and
// tamed Euler schemes, for m <= kBatchMaxM; the exact-chain scheme and larger m go
// through the generic solver.  The library builds them for its Network
// (cpp/src/sde_kernels*.cpp); another network gets the portable kernel wherever
// detail/sde_impl.hpp is included, and SIMD builds through SimdBatch<Net>
// (kernels/instantiate.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "../cpu_features.hpp"
#include "../network.hpp"
#include "../parallel.hpp"
#include "terms.hpp"

namespace shaped_transformer::sde {

inline constexpr int kBatchMaxM = 32;

/// Everything the batch kernel needs, flattened (no Eigen, no variants).
template <class Net>
struct BatchParams {
  int m = 0;
  double dt = 0.0;
  std::int64_t steps = 0;
  bool tamed = false;  ///< tamed Euler drift increment
  bool clip = true;    ///< PSD remedy: project onto the PSD cone after a step that left it
  double blowup = 1e30;
  std::uint64_t seed = 0;
  std::vector<SdeBlockOf<Net>> blocks;  ///< the SDE terms of one layer (sde_blocks)
  int noise_dim = 0;                    ///< the largest noise dimension of a block
  const std::int64_t* save_steps = nullptr;
  std::size_t nsave = 0;
};

/// Receives the batch's covariances at every saved step.  V: structure of arrays
/// (see above) of `width` lanes; alive[l] is 0 for lanes that blew up before or
/// at this step (their V is meaningless) and for lanes past the last path.
struct BatchSink {
  virtual ~BatchSink() = default;
  virtual void save(std::size_t save_index, const double* V, int width, const unsigned char* alive) = 0;
};

/// Integrates paths path0 .. path0+count-1 (count <= width) from V0 (m x m,
/// row-major).  exploded[l] receives the step of blow-up (-1: never),
/// projections[l] the number of PSD projections, for l < count.
template <class Net>
using BatchFn = void (*)(const BatchParams<Net>& p, const double* V0, std::uint32_t path0, int count, BatchSink& sink,
                         std::int64_t* exploded, std::int64_t* projections, const CancelToken* cancel);

template <class Net>
struct BatchKernel {
  const char* name = "none";
  int width = 0;
  BatchFn<Net> run = nullptr;
};

/// The SIMD builds of the batch kernel for Net (null: none); specialized for a network
/// whose kernels some translation units compile with the instruction-set flags
/// (kernels/instantiate.hpp).  The library's Network has its own dispatch.
template <class Net>
struct SimdBatch {
  static BatchFn<Net> get(SimdLevel) { return nullptr; }
};

/// The widest kernel this CPU has (SHAPED_TRANSFORMER_KERNEL=scalar|avx2 forces a
/// narrower one), or the named one ("scalar", "avx2", "avx512"); run is null when
/// this CPU or build lacks it.  Network: cpp/src/sde_kernels.cpp; any other network:
/// kernels/sde_batch.hpp (the portable kernel, SIMD builds from SimdBatch<Net>).
template <class Net>
BatchKernel<Net> batch_kernel(const char* name);
template <>
BatchKernel<Network> batch_kernel<Network>(const char* name);
/// The library network's kernel (batch_kernel<Network>).
inline BatchKernel<Network> batch_kernel(const char* name = nullptr) { return batch_kernel<Network>(name); }

/// Scalar PSD fix of one lane (row-major m x m V and L), shared by every kernel so
/// that all give the same numbers: with clip, psd_clip then psd_root (returns true
/// if V was projected); without, psd_root only.  Defined in cpp/src/sde_kernels.cpp.
bool batch_lane_root(double* V, double* L, int m, bool clip);

/// Whether the batch kernels cover this network at this m: every block has an SDE
/// limit (check_sde_covers refuses the others first) and m <= kBatchMaxM.
template <class Net>
inline bool batch_covers(const Net& net, int m) {
  if (m < 1 || m > kBatchMaxM || net.blocks.empty()) return false;
  for (const auto& blk : net.blocks)
    if (sde_refusal(blk)) return false;
  return true;
}

}  // namespace shaped_transformer::sde
