// The batched SDE kernel: W paths integrated together, one path per SIMD lane
// (structure of arrays: entry (i, j) of lane l at V[(i m + j) W + l]).  W = 8 with
// AVX-512, 4 with AVX2, 1 for the portable build; all three run the same sequence
// of IEEE operations per lane (fused multiply-adds written out), so they give the
// same numbers (tests/test_sde_fast.py).  The kernels live in cpp/src/sde_kernels*.cpp.
//
// It covers the networks made only of the paper's shaped attention head (any
// number of blocks and heads), with the Euler and tamed Euler schemes, for
// m <= kBatchMaxM; everything else goes through the generic per-path solver of
// sde.hpp (Eigen matrices), which is also the reference the kernels agree with to
// rounding.
#pragma once

#include "../mutation.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <variant>
#include <vector>

#include "../network.hpp"
#include "../parallel.hpp"

namespace shaped_transformer::sde {

inline constexpr int kBatchMaxM = 32;

/// Everything the batch kernel needs, flattened (no Eigen, no variants).
struct BatchParams {
  int m = 0;
  double dt = 0.0;
  std::int64_t steps = 0;
  bool tamed = false;  ///< tamed Euler drift increment
  bool clip = true;    ///< PSD remedy: project onto the PSD cone after a step that left it
  double blowup = 1e30;
  std::uint64_t seed = 0;
  double kdrift = 0.0;         ///< sum over the attention blocks of gamma^2 / tau0^2
  std::vector<double> c1, c2;  ///< per attention block: noise coefficients (see shaped_attention.hpp)
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
using BatchFn = void (*)(const BatchParams& p, const double* V0, std::uint32_t path0, int count, BatchSink& sink,
                         std::int64_t* exploded, std::int64_t* projections, const CancelToken* cancel);

struct BatchKernel {
  const char* name = "none";
  int width = 0;
  BatchFn run = nullptr;
};

/// The widest kernel this CPU has (SHAPED_TRANSFORMER_KERNEL=scalar|avx2 forces a
/// narrower one), or the named one ("scalar", "avx2", "avx512"); run is null when
/// this CPU or build lacks it.  Defined in cpp/src/sde_kernels.cpp.
BatchKernel batch_kernel(const char* name = nullptr);

/// Scalar PSD fix of one lane (row-major m x m V and L), shared by every kernel so
/// that all give the same numbers: with clip, psd_clip then psd_root (returns true
/// if V was projected); without, psd_root only.  Defined in cpp/src/sde_kernels.cpp.
bool batch_lane_root(double* V, double* L, int m, bool clip);

/// Whether the batch kernel covers this network, size and scheme: only the paper's
/// shaped head (causal and general heads, other kinds: the generic solver).
template <class Net>
inline bool batch_covers(const Net& net, int m) {
  if (m < 1 || m > kBatchMaxM || net.blocks.empty()) return false;
  for (const auto& blk : net.blocks) {
    const bool paper = std::visit(
        [](const auto& b) {
          if constexpr (std::is_same_v<block_kind_t<decltype(b)>, ShapedAttention>) return is_paper_head(b);
          else return false;
        },
        blk);
    if (!paper) return false;
  }
  return true;
}

/// The attention noise and drift coefficients of `net` (which batch_covers).
template <class Net>
inline void batch_coefficients(const Net& net, int m, BatchParams& p) {
  p.kdrift = 0.0;
  p.c1.clear();
  p.c2.clear();
  for (const auto& blk : net.blocks) {
    const auto& b = std::get<ShapedAttention>(blk);
    p.kdrift += b.gamma * b.gamma / (b.tau0 * b.tau0) ST_MUTATE(kAttDrift);
    p.c1.push_back(b.gamma * std::sqrt(std::max(0.0, 2.0 - b.gamma * b.gamma)) / std::sqrt(2.0));
    p.c2.push_back(b.gamma * b.gamma / (b.tau0 * double(m) * std::sqrt(double(b.heads))) ST_MUTATE(kSoftNoise));
  }
  // The batched step has no separate drift increment: the test-only "no integrator
  // drift" mutation (factor 0) zeroes the drift coefficient instead.
  ST_MUTATION_ONLY(p.kdrift *=
                   ::shaped_transformer::mutation::factor(::shaped_transformer::mutation::kIntegratorDrift);)
}

}  // namespace shaped_transformer::sde
