// Definitions of the exact chain (exact.hpp) for any network type: the per-block
// dispatch, one sample, and simulate_exact.  The library instantiates them for
// Network (cpp/src/exact.cpp); include this header only to run a network of other
// block kinds (e.g. a test-only kind) or to call exact_block directly.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include "../checks.hpp"
#include "../exact/batch.hpp"
#include "../exact.hpp"
#include "../linalg.hpp"  // gamma_variate
#include "../network.hpp"
#include "driver_loop.hpp"

namespace shaped_transformer {

namespace exact_small {

/// The same step as exact_step(const ShapedAttention&, ...) for one head and small
/// m, on matrices of compile-time size (M: 8 x 8, or bounded by 32 x 32): no heap
/// allocation and coefficient-based products instead of Eigen's GEMM (packing
/// costs more than the product at m <= 32).  The random numbers are the same
/// draws in the same order, so V agrees with the general path to rounding.
template <class M>
inline void gaussian(const Stream& s, M& out) {
  const Eigen::Index m = out.rows();
  double buf[32 * 32];
  fill_normal(s, 0, std::size_t(m * m), buf);
  for (Eigen::Index i = 0; i < m; ++i)
    for (Eigen::Index j = 0; j < m; ++j) out(i, j) = buf[i * m + j];
}

/// SeqNormal's numbers (normals 0, 1, 2, ... of one stream), drawn 64 at a time
/// with the vectorized fill_normal (same numbers) instead of 4 at a time.
class BulkNormal {
 public:
  explicit BulkNormal(const Stream& s) : s_(s) {}
  double operator()() {
    if (pos_ == kBuf) {
      fill_normal(s_, next_, std::size_t(kBuf), buf_);
      next_ += kBuf;
      pos_ = 0;
    }
    return buf_[pos_++];
  }

 private:
  static constexpr int kBuf = 64;
  Stream s_;
  std::uint64_t next_ = 0;
  double buf_[kBuf];
  int pos_ = kBuf;
};

struct BulkRng {
  BulkNormal normal;
  SeqUniform uniform;
  BulkRng(const Stream& normals, const Stream& uniforms) : normal(normals), uniform(uniforms) {}
};

template <class M>
inline void attention(const ShapedAttention& b, Cov& Vio, long n, const ExactKey& key) {
  const Eigen::Index m = Vio.rows();
  M V = Vio, L(m, m), B(m, m), Z(m, m), Mk(m, m), T(m, m), Y(m, m), C(m, m), P(m, m), CB(m, m), Q(m, m);
  psd_root(V, L);
  const double nk = b.key_dim > 0 ? double(b.key_dim) : double(n);
  const double tau = b.tau0 * std::sqrt(double(n) * nk);
  {  // key product M = chol(Wishart_m(n_k)) Z
    BulkRng r(key.head_stream(0, ExactKey::kKeyWishart), key.head_stream(0, ExactKey::kKeyUniform));
    wishart_factor(nk, int(m), r, B);
    gaussian(key.head_stream(0, ExactKey::kKeyGauss), Z);
    small_product(Mk, B, Z);
  }
  small_product(T, L, Mk);
  small_product(Y, T, L.transpose());
  Y /= tau;
  for (Eigen::Index i = 0; i < m; ++i) {  // softmax_rows, then A = alpha I + beta (S - C)
    const Eigen::Index k = b.causal ? i + 1 : m;
    const double mx = Y.row(i).head(k).maxCoeff();
    double sum = 0.0;
    for (Eigen::Index j = 0; j < k; ++j) sum += (Y(i, j) = std::exp(Y(i, j) - mx));
    for (Eigen::Index j = 0; j < k; ++j) Y(i, j) /= sum;
    for (Eigen::Index j = k; j < m; ++j) Y(i, j) = 0.0;
    const double c = 1.0 / double(k);
    for (Eigen::Index j = 0; j < m; ++j) Y(i, j) = b.beta * (Y(i, j) - (j < k ? c : 0.0));
    Y(i, i) += b.alpha;
  }
  small_product(C, Y, L);
  // value_mix with H = 1
  gaussian(key.head_stream(0, ExactKey::kValueZ), Z);
  small_product(P, C, Z);
  {
    BulkRng r(key.stream(ExactKey::kR), key.stream(ExactKey::kRUniform));
    wishart_factor(double(n) - double(m), int(m), r, B);
  }
  small_product(CB, C, B);
  const double HN = double(n);
  small_product(T, L, P.transpose());
  small_product(Q, P, P.transpose());
  small_product(Y, CB, CB.transpose());
  Q += Y;
  M out = (b.lambda * b.lambda) * V;
  out += (b.lambda * b.gamma / std::sqrt(HN)) * (T + T.transpose());
  out += (b.gamma * b.gamma / HN) * Q;
  Vio = 0.5 * (out + out.transpose());
}

/// Whether the small path covers this block at this m and width.
inline bool covers(const ShapedAttention& b, Eigen::Index m, long n) {
  const double nk = b.key_dim > 0 ? double(b.key_dim) : double(n);
  return b.heads == 1 && !b.concat && m >= 1 && m <= 32 && nk > double(m - 1) && double(n) - double(m) > double(m - 1);
}

}  // namespace exact_small

/// Applies one block to V in place at width n (the small fixed-size path for the
/// shaped head it covers, the block's exact_step otherwise).
template <class... K>
inline void exact_block(const std::variant<K...>& block, Cov& V, long n, const ExactKey& key) {
  std::visit(
      [&](const auto& b) {
        using B = block_kind_t<decltype(b)>;
        if constexpr (std::is_same_v<B, ShapedAttention>) {
          if (exact_small::covers(b, V.rows(), n)) {
            if (V.rows() == 8) return exact_small::attention<Eigen::Matrix<double, 8, 8>>(b, V, n, key);
            return exact_small::attention<Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, 0, 32, 32>>(b, V, n,
                                                                                                           key);
          }
        }
        if constexpr (B::has_exact) exact_step(b, V, n, key);
        else throw std::invalid_argument(std::string("blocks: ") + B::kind + " has no exact chain");
      },
      block);
}

/// Throws std::invalid_argument when the exact chain cannot run this network.
template <class Net>
inline void check_exact_arguments(const Net& net, const Cov& V0, long width, int depth, int samples,
                                  const std::vector<std::int64_t>& save_at, const RunOptions& opt) {
  check_covariance(V0, "V0");
  if (width < V0.rows()) throw std::invalid_argument("width: must be >= the number of tokens m");
  if (depth < 0) throw std::invalid_argument("depth: must be >= 0");
  if (samples < 1) throw std::invalid_argument("samples: must be >= 1");
  check_save_at(save_at, depth, "layer");
  check_run_options(opt);
  validate_network(net, width);
  check_exact_covers(net);
}

/// Runs one sample of the exact chain; writes the saved covariances of sample s.
/// Returns the layer at which the sample blew up (-1: never).
template <class Net>
inline std::int64_t exact_sample(const Net& net, const Cov& V0, long width, int depth, std::uint64_t seed,
                                 std::uint32_t sample, const std::vector<std::int64_t>& save_at, double blowup,
                                 double* out, const CancelToken* cancel = nullptr) {
  Cov V = V0;
  SaveAt save(save_at, out, int(V0.rows()));
  std::int64_t exploded = -1;
  save(0, V);
  for (int l = 0; l < depth; ++l) {
    if (cancel && cancel->stop_requested()) return exploded;
    bool finite = true;
    for (std::size_t b = 0; b < net.blocks.size() && finite; ++b) {
      const ExactKey key{seed, sample, net.block_index(std::size_t(l), b), cancel};
      exact_block(net.blocks[b], V, width, key);
      finite = V.allFinite();  // stop inside the layer once V overflowed
      if (cancel && cancel->stop_requested()) return exploded;  // the run is discarded
    }
    if (!finite || !covariance_ok(V, blowup)) {
      exploded = l + 1;
      break;
    }
    save(l + 1, V);
  }
  save.fill_nan();
  return exploded;
}

/// The batch kernel simulate_exact uses (run == null: the per-sample path); see
/// simulate_exact for `kernel`.  Only the registry's Network can hold the batch
/// kernels' blocks in the layout they read.
template <class Net>
inline exact_batch::Kernel choose_exact_kernel(const Net& net, int m, long width, const char* kernel) {
  bool covered = false;
  if constexpr (std::is_same_v<Net, Network>) covered = exact_batch::covers(net, m, width);
  if (!kernel || !*kernel) return covered ? exact_batch::kernel() : exact_batch::Kernel{};
  if (std::strcmp(kernel, "generic") == 0) return {};
  if (!covered)
    throw std::invalid_argument("kernel: the batch kernels cover networks of one-head shaped attention, m <= 32");
  const exact_batch::Kernel k = exact_batch::kernel(kernel);
  if (!k.run) throw std::invalid_argument(std::string("kernel: '") + kernel + "' is not available on this CPU");
  return k;
}

template <class Net>
Trajectories simulate_exact(const Net& net, const Cov& V0, long width, int depth, int samples, std::uint64_t seed,
                            const std::vector<std::int64_t>& save_at, const RunOptions& opt, const char* kernel) {
  check_exact_arguments(net, V0, width, depth, samples, save_at, opt);
  const int m = int(V0.rows());
  Trajectories tr(samples, int(save_at.size()), m);
  const exact_batch::Kernel k = choose_exact_kernel(net, m, width, kernel);
  if (!k.run) {
    detail::for_each_item(std::size_t(samples), 1, std::size_t(samples), opt,
                          [&](std::size_t s, const CancelToken& cancel) {
                            tr.exploded[s] = exact_sample(net, V0, width, depth, seed, std::uint32_t(s), save_at,
                                                          opt.blowup, tr.V_at(int(s), 0), &cancel);
                          });
    return tr;
  }
  if constexpr (std::is_same_v<Net, Network>) {
    // W samples per work item, one per SIMD lane (the same numbers for any W).
    const exact_batch::Params p = exact_batch::params(net, m, width, depth, seed, opt.blowup, save_at);
    std::vector<double> v0(std::size_t(m) * std::size_t(m));
    for (int a = 0; a < m; ++a)
      for (int b = 0; b < m; ++b) v0[std::size_t(a * m + b)] = V0(a, b);
    const std::size_t W = std::size_t(k.width), items = (std::size_t(samples) + W - 1) / W;
    detail::for_each_item(items, W, std::size_t(samples), opt, [&](std::size_t i, const CancelToken& cancel) {
      const std::size_t s0 = i * W;
      k.run(p, v0.data(), std::uint32_t(s0), int(std::min(W, std::size_t(samples) - s0)), tr.V_at(int(s0), 0),
            &tr.exploded[s0], &cancel);
    });
  }
  return tr;
}

}  // namespace shaped_transformer
