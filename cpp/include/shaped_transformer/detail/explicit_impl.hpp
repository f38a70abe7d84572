// Definitions of simulate_explicit and simulate_law (explicit.hpp) for any network
// type, and of one block on the tokens, forward_explicit / forward_law: the block's
// explicit face (explicit_forward, explicit_common.hpp) on the CPU's token operations
// (explicit_ops.hpp).  The library instantiates them for Network
// (cpp/src/explicit.cpp); include this header only to run a network of other block
// kinds (e.g. a test-only kind) or to call forward_explicit directly.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <thread>
#include <type_traits>
#include <variant>

#include "../checks.hpp"
#include "../explicit.hpp"
#include "../normal_kernels.hpp"
#include "driver_loop.hpp"
#include "explicit_ops.hpp"

namespace shaped_transformer {

/// The argument checks of simulate_explicit and simulate_law (std::invalid_argument
/// naming the parameter); the drivers run them unless opts.checked says the caller did.
template <class Net>
void check_explicit_arguments(const Net& net, const MatD& X0, int depth, int samples,
                              const std::vector<std::int64_t>& save_at, const RunOptions& opts) {
  check_tokens(X0, "X0");
  if (depth < 0) throw std::invalid_argument("depth: must be >= 0");
  if (samples < 1) throw std::invalid_argument("samples: must be >= 1");
  check_save_at(save_at, depth, "layer");
  check_run_options(opts);
  validate_network(net, long(X0.cols()));
  check_block_counter(net, depth, "depth");
}

/// One block on the tokens X (m x n), in place, with Gaussian weights drawn from
/// Stream{seed, sample, block, matrix_id} in tiles (never an n x n matrix); `threads`
/// > 1 splits each weight product over column tiles with identical results; `cancel`
/// stops a long product early (the result is then garbage and must be discarded).
template <class S, class B>
void forward_explicit(const B& b, Mat<S>& X, std::uint64_t seed, std::uint32_t sample, std::uint32_t block,
                      int threads = 1, const CancelToken* cancel = nullptr) {
  b.validate(long(X.cols()));
  detail::CpuTokenOps<S> o(X, seed, sample, block, false, threads, cancel);
  explicit_forward(b, o);
}

/// The law-exact activation sampler of docs/model.md section 4 (the same law of X',
/// O(m n) normals from the kLawBase matrix ids) for one block.
template <class S, class B>
void forward_law(const B& b, Mat<S>& X, std::uint64_t seed, std::uint32_t sample, std::uint32_t block) {
  b.validate(long(X.cols()));
  detail::CpuTokenOps<S> o(X, seed, sample, block, true, 1, nullptr);
  explicit_forward(b, o);
}

}  // namespace shaped_transformer

namespace shaped_transformer::detail {

template <class S, class Net>
Trajectories run_explicit(const Net& net, const MatD& X0, int depth, int samples, std::uint64_t seed,
                          const std::vector<std::int64_t>& save_at, bool law, const RunOptions& opts) {
  if (!opts.checked) check_explicit_arguments(net, X0, depth, samples, save_at, opts);
  const Eigen::Index m = X0.rows(), n = X0.cols();

  Trajectories out(samples, int(save_at.size()), int(m));
  out.n = int(n);
  out.kernel = normal_kernel_name();  // the normals of every weight (gaussian_gemm) and activation
  if (opts.return_X) out.X.assign(std::size_t(samples) * std::size_t(m) * std::size_t(n), 0.0);

  unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  const int threads = opts.threads > 0 ? opts.threads : int(hw);
  const int outer = std::min(threads, samples);
  // Fewer samples than threads: the rest of the threads split the weight products.
  const int inner = law ? 1 : std::max(1, threads / samples);

  auto one = [&](std::size_t s, const CancelToken& cancel) {
    Mat<S> X = X0.template cast<S>();
    SaveAt save(save_at, out.V_at(int(s), 0), int(m));
    auto covariance = [&]() -> Cov {
      const Cov Xd = X.template cast<double>();
      return (Xd * Xd.transpose()) / double(n);
    };
    Cov V = covariance();
    std::int64_t boom = -1;
    if (!covariance_ok(V, opts.blowup)) boom = 0;
    else save(0, V);
    for (int l = 0; l < depth && boom < 0; ++l) {
      for (std::size_t b = 0; b < net.blocks.size(); ++b) {
        if (cancel.stop_requested()) return;
        const std::uint32_t bi = net.block_index(std::size_t(l), b);
        std::visit(
            [&](const auto& blk) {
              using B = std::decay_t<decltype(blk)>;
              static_assert(B::has_explicit, "every block kind has an explicit forward");
              if (law) ::shaped_transformer::forward_law<S>(blk, X, seed, std::uint32_t(s), bi);
              else ::shaped_transformer::forward_explicit<S>(blk, X, seed, std::uint32_t(s), bi, inner, &cancel);
            },
            net.blocks[b]);
      }
      V = covariance();
      if (!covariance_ok(V, opts.blowup)) boom = l + 1;
      else save(l + 1, V);
    }
    if (boom >= 0) {
      out.exploded[s] = boom;
      save.fill_nan();
    }
    if (opts.return_X) {
      double* dst = out.X.data() + s * std::size_t(m) * std::size_t(n);
      for (Eigen::Index a = 0; a < m; ++a)
        for (Eigen::Index j = 0; j < n; ++j) dst[a * n + j] = double(X(a, j));
    }
  };
  parallel_for(std::size_t(samples), outer, one, opts.poll, opts.progress);
  return out;
}

}  // namespace shaped_transformer::detail

namespace shaped_transformer {

template <class Net>
Trajectories simulate_explicit(const Net& net, const MatD& X0, int depth, int samples, std::uint64_t seed,
                               const std::vector<std::int64_t>& save_at, bool float32, const RunOptions& opts) {
  return float32 ? detail::run_explicit<float>(net, X0, depth, samples, seed, save_at, false, opts)
                 : detail::run_explicit<double>(net, X0, depth, samples, seed, save_at, false, opts);
}

template <class Net>
Trajectories simulate_law(const Net& net, const MatD& X0, int depth, int samples, std::uint64_t seed,
                          const std::vector<std::int64_t>& save_at, bool float32, const RunOptions& opts) {
  return float32 ? detail::run_explicit<float>(net, X0, depth, samples, seed, save_at, true, opts)
                 : detail::run_explicit<double>(net, X0, depth, samples, seed, save_at, true, opts);
}

}  // namespace shaped_transformer
