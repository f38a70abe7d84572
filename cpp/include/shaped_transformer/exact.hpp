// The exact width-independent chain (docs/model.md section 4): V_{l+1} is drawn from V_l
// exactly in law, at O(H m^3) per attention block whatever the width n, and
// O(m^2 n) per MLP block.  Random numbers: Stream{seed, sample, block index,
// kExactBase + id} (see ExactKey in exact_common.hpp).
//
// Definitions in detail/exact_impl.hpp; the library holds the instantiation for
// Network, so including this header costs a consumer no template instantiation.
#pragma once

#include <cstdint>
#include <vector>

#include "network.hpp"
#include "result.hpp"
#include "types.hpp"

namespace shaped_transformer {

/// The exact chain for `samples` independent samples from the covariance V0 (m x m,
/// symmetric PSD) at width `width` >= m; V recorded at the layers in save_at (sorted,
/// in [0, depth]).  A sample whose V turns non-finite or has max diag V > opt.blowup
/// is stopped (Trajectories::exploded: that layer; later saves NaN).  Throws
/// std::invalid_argument naming the parameter (blocks, V0, width, depth, samples,
/// save_at, blowup, threads, kernel) and Cancelled when opt.poll asked to stop.
/// kernel: null or "" picks the batched SIMD kernel (exact/batch.hpp, one sample per
/// lane) when it covers the network, "generic" the per-sample path, "scalar",
/// "avx2" or "avx512" a given batch kernel (for tests and benchmarks; both paths carry
/// LayerNorm's state s, the kernels at width >= m + 1).  s0: the input's
/// s_0 = X_0 1_n / sqrt(n) (m numbers), read only when a block has a LayerNorm
/// placement (docs/norms.md section 6); null: that of the tokens
/// inputs.tokens_from_covariance builds from V0, L_0 1_m.
template <class Net>
Trajectories simulate_exact(const Net& net, const Cov& V0, long width, int depth, int samples, std::uint64_t seed,
                            const std::vector<std::int64_t>& save_at, const RunOptions& opt,
                            const char* kernel = nullptr, const Eigen::VectorXd* s0 = nullptr);

extern template Trajectories simulate_exact<Network>(const Network&, const Cov&, long, int, int, std::uint64_t,
                                                     const std::vector<std::int64_t>&, const RunOptions&, const char*,
                                                     const Eigen::VectorXd*);

}  // namespace shaped_transformer
