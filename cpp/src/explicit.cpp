// Drivers of the explicit network and of the law-exact activation sampler.
#include "shaped_transformer/explicit.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <variant>

#include "shaped_transformer/parallel.hpp"

namespace shaped_transformer {

namespace {

void check_residual(const char* kind, std::size_t i, double gamma, double lambda) {
  const std::string where = std::string(" (block ") + std::to_string(i) + ", " + kind + ")";
  if (!std::isfinite(gamma) || gamma < 0.0 || gamma > 1.0)
    throw std::invalid_argument("gamma must lie in [0, 1]" + where);
  if (!std::isfinite(lambda) || std::abs(lambda * lambda + gamma * gamma - 1.0) > 1e-9)
    throw std::invalid_argument("lam: lambda^2 + gamma^2 must equal 1" + where);
}

void check_heads(const char* kind, std::size_t i, int heads, int key_dim, bool concat, long width) {
  const std::string where = std::string(" (block ") + std::to_string(i) + ", " + kind + ")";
  if (heads < 1) throw std::invalid_argument("heads must be >= 1" + where);
  if (key_dim < 0) throw std::invalid_argument("key_dim must be >= 0" + where);
  if (concat && width > 0 && width % heads != 0)
    throw std::invalid_argument("heads: with concat the width " + std::to_string(width) +
                                " must be divisible by the number of heads" + where);
}

template <class S>
Trajectories run(const Network& net, const MatD& X0, int depth, int samples, std::uint64_t seed,
                 const std::vector<std::int64_t>& save_at, bool law, const RunOptions& opts) {
  const Eigen::Index m = X0.rows(), n = X0.cols();
  if (m < 1 || n < 1) throw std::invalid_argument("X0 must have at least one token and one feature");
  if (n < m) throw std::invalid_argument("width (X0 columns) must be >= the number of tokens m");
  if (!X0.allFinite()) throw std::invalid_argument("X0 contains non-finite values");
  if (depth < 0) throw std::invalid_argument("depth must be >= 0");
  if (samples < 1) throw std::invalid_argument("samples must be >= 1");
  if (save_at.empty()) throw std::invalid_argument("save_at must not be empty");
  for (std::size_t k = 0; k < save_at.size(); ++k) {
    if (save_at[k] < 0 || save_at[k] > depth) throw std::invalid_argument("save_at must lie in [0, depth]");
    if (k > 0 && save_at[k] <= save_at[k - 1]) throw std::invalid_argument("save_at must be strictly increasing");
  }
  if (!(opts.blowup > 0.0)) throw std::invalid_argument("blowup must be > 0");
  if (net.blocks.empty()) throw std::invalid_argument("blocks must contain at least one block");
  validate_network(net, long(n));
  if (std::uint64_t(depth) * net.blocks.size() > std::uint64_t(std::numeric_limits<std::uint32_t>::max()))
    throw std::invalid_argument("depth: depth * blocks must stay below 2^32 (the block counter word)");

  const int saved = int(save_at.size());
  Trajectories out(samples, saved, int(m));
  out.n = int(n);
  if (opts.return_X) out.X.assign(std::size_t(samples) * std::size_t(m) * std::size_t(n), 0.0);

  unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  const int threads = opts.threads > 0 ? opts.threads : int(hw);
  const int outer = std::min(threads, samples);
  // Fewer samples than threads: the rest of the threads split the weight products.
  const int inner = law ? 1 : std::max(1, threads / samples);

  auto one = [&](std::size_t s, const CancelToken& cancel) {
    Mat<S> X = X0.template cast<S>();
    int k = 0;
    const double nan = std::numeric_limits<double>::quiet_NaN();
    auto save = [&](std::int64_t layer, const Eigen::MatrixXd& V) {
      while (k < saved && save_at[std::size_t(k)] == layer) {
        double* dst = out.V_at(int(s), k);
        for (Eigen::Index a = 0; a < m; ++a)
          for (Eigen::Index b = 0; b < m; ++b) dst[a * m + b] = V(a, b);
        ++k;
      }
    };
    auto covariance = [&]() -> Eigen::MatrixXd {
      const Eigen::MatrixXd Xd = X.template cast<double>();
      return (Xd * Xd.transpose()) / double(n);
    };
    auto exploded = [&](const Eigen::MatrixXd& V) {
      return !V.allFinite() || V.diagonal().maxCoeff() > opts.blowup;
    };
    Eigen::MatrixXd V = covariance();
    std::int64_t boom = -1;
    if (exploded(V)) boom = 0;
    else save(0, V);
    for (int l = 0; l < depth && boom < 0; ++l) {
      for (std::size_t b = 0; b < net.blocks.size(); ++b) {
        if (cancel.stop_requested()) return;
        const std::uint32_t bi = net.block_index(std::size_t(l), b);
        std::visit(
            [&](const auto& blk) {
              if (law)
                forward_law<S>(blk, X, seed, std::uint32_t(s), bi);
              else
                forward_explicit<S>(blk, X, seed, std::uint32_t(s), bi, inner, &cancel);
            },
            net.blocks[b]);
      }
      V = covariance();
      if (exploded(V)) boom = l + 1;
      else save(l + 1, V);
    }
    if (boom >= 0) {
      out.exploded[s] = boom;
      for (; k < saved; ++k) std::fill(out.V_at(int(s), k), out.V_at(int(s), k) + m * m, nan);
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

}  // namespace

void validate_network(const Network& net, long width) {
  for (std::size_t i = 0; i < net.blocks.size(); ++i) {
    std::visit(
        [&](const auto& b) {
          using B = std::decay_t<decltype(b)>;
          if constexpr (std::is_same_v<B, ShapedAttention>) {
            check_residual("shaped_attention", i, b.gamma, b.lambda);
            check_heads("shaped_attention", i, b.heads, b.key_dim, b.concat, width);
            if (!std::isfinite(b.tau0) || b.tau0 <= 0.0) throw std::invalid_argument("tau0 must be > 0");
            if (!std::isfinite(b.alpha) || !std::isfinite(b.beta))
              throw std::invalid_argument("alpha, beta must be finite");
          } else if constexpr (std::is_same_v<B, StandardAttention>) {
            check_residual("standard_attention", i, b.gamma, b.lambda);
            check_heads("standard_attention", i, b.heads, b.key_dim, b.concat, width);
          } else if constexpr (std::is_same_v<B, ShapedMLP>) {
            check_residual("shaped_mlp", i, b.gamma, b.lambda);
            if (!std::isfinite(b.c_plus) || !std::isfinite(b.c_minus))
              throw std::invalid_argument("c_plus, c_minus must be finite");
          } else {
            check_residual("relu_mlp", i, b.gamma, b.lambda);
          }
        },
        net.blocks[i]);
  }
}

Trajectories simulate_explicit(const Network& net, const MatD& X0, int depth, int samples, std::uint64_t seed,
                               const std::vector<std::int64_t>& save_at, bool float32, const RunOptions& opts) {
  return float32 ? run<float>(net, X0, depth, samples, seed, save_at, false, opts)
                 : run<double>(net, X0, depth, samples, seed, save_at, false, opts);
}

Trajectories simulate_law(const Network& net, const MatD& X0, int depth, int samples, std::uint64_t seed,
                          const std::vector<std::int64_t>& save_at, bool float32, const RunOptions& opts) {
  return float32 ? run<float>(net, X0, depth, samples, seed, save_at, true, opts)
                 : run<double>(net, X0, depth, samples, seed, save_at, true, opts);
}

}  // namespace shaped_transformer
