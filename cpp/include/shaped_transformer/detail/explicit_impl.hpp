// Definitions of simulate_explicit and simulate_law (explicit.hpp) for any network
// type.  The library instantiates them for Network (cpp/src/explicit.cpp); include
// this header only to run a network of other block kinds (e.g. a test-only kind).
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
  if (std::uint64_t(depth) * net.blocks.size() > std::uint64_t(std::numeric_limits<std::uint32_t>::max()))
    throw std::invalid_argument("depth: depth * blocks must stay below 2^32 (the block counter word)");
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
              if (law) forward_law<S>(blk, X, seed, std::uint32_t(s), bi);
              else forward_explicit<S>(blk, X, seed, std::uint32_t(s), bi, inner, &cancel);
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
