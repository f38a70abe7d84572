// The exact width-independent chain (docs/model.md section 4): V_{l+1} is drawn from V_l
// exactly in law, at O((H m)^3) per attention block whatever the width n, and
// O(m^2 n) per MLP block.  Random numbers: Stream{seed, sample, block index,
// kExactBase + id} (see ExactKey in exact_common.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include "exact/batch.hpp"
#include "linalg.hpp"  // gamma_variate
#include "network.hpp"
#include "parallel.hpp"
#include "result.hpp"

namespace shaped_transformer {

/// True when V is finite and its largest diagonal entry is <= blowup.
inline bool covariance_ok(const Cov& V, double blowup) {
  return V.allFinite() && V.diagonal().maxCoeff() <= blowup;
}

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

/// wishart_factor for df > p - 1 (same draws, same order).
template <class M>
inline void wishart(double df, BulkRng& r, M& B) {
  const Eigen::Index p = B.rows();
  B.setZero();
  for (Eigen::Index i = 0; i < p; ++i) {
    B(i, i) = std::sqrt(2.0 * gamma_variate(0.5 * (df - double(i)), r));
    for (Eigen::Index j = 0; j < i; ++j) B(i, j) = r.normal();
  }
}

template <class M>
inline void attention(const ShapedAttention& b, Cov& Vio, long n, const ExactKey& key) {
  const Eigen::Index m = Vio.rows();
  M V = Vio, L(m, m), B(m, m), Z(m, m), Mk(m, m), T(m, m), Y(m, m), C(m, m), P(m, m), CB(m, m), Q(m, m);
  psd_root(V, L);
  const double nk = b.key_dim > 0 ? double(b.key_dim) : double(n);
  const double tau = b.tau0 * std::sqrt(double(n) * nk);
  {  // key product M = chol(Wishart_m(n_k)) Z
    BulkRng r(key.head_stream(0, ExactKey::kKeyWishart), key.head_stream(0, ExactKey::kKeyUniform));
    wishart(nk, r, B);
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
    wishart(double(n) - double(m), r, B);
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

/// Applies block b of the network (layer l) to V in place at width n.
inline void exact_block(const Block& block, Cov& V, long n, const ExactKey& key) {
  if (const auto* a = std::get_if<ShapedAttention>(&block); a && exact_small::covers(*a, V.rows(), n)) {
    if (V.rows() == 8) return exact_small::attention<Eigen::Matrix<double, 8, 8>>(*a, V, n, key);
    return exact_small::attention<Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, 0, 32, 32>>(*a, V, n, key);
  }
  std::visit([&](const auto& b) { exact_step(b, V, n, key); }, block);
}

/// Throws std::invalid_argument when the exact chain cannot run this network.
inline void check_exact_arguments(const Network& net, const Cov& V0, long width, int depth, int samples,
                                  const std::vector<std::int64_t>& save_at) {
  if (net.blocks.empty()) throw std::invalid_argument("blocks: the network has no blocks");
  if (V0.rows() < 1 || V0.rows() != V0.cols()) throw std::invalid_argument("V0: must be a non-empty square matrix");
  if (!V0.allFinite()) throw std::invalid_argument("V0: contains non-finite values");
  if (width < V0.rows()) throw std::invalid_argument("width: must be >= the number of tokens m");
  if (depth < 0) throw std::invalid_argument("depth: must be >= 0");
  if (samples < 1) throw std::invalid_argument("samples: must be >= 1");
  if (save_at.empty()) throw std::invalid_argument("save_at: must not be empty");
  for (std::size_t k = 0; k < save_at.size(); ++k)
    if (save_at[k] < 0 || save_at[k] > depth || (k > 0 && save_at[k] <= save_at[k - 1]))
      throw std::invalid_argument("save_at: must be sorted, unique layer indices in [0, depth]");
  for (const auto& blk : net.blocks) {
    if (const auto* a = std::get_if<ShapedAttention>(&blk)) {
      if (a->concat) throw std::invalid_argument("concat: concatenated heads are not covered by the exact chain");
      if (a->heads > ExactKey::kMaxHeads) throw std::invalid_argument("heads: too many heads for the exact chain");
    } else if (const auto* s = std::get_if<StandardAttention>(&blk)) {
      if (s->concat) throw std::invalid_argument("concat: concatenated heads are not covered by the exact chain");
      if (s->norm == Norm::PreLayer || s->norm == Norm::PostLayer)
        throw std::invalid_argument("norm: LayerNorm is not covered by the exact chain");
      if (s->heads > ExactKey::kMaxHeads) throw std::invalid_argument("heads: too many heads for the exact chain");
    } else if (const auto* r = std::get_if<ReluMLP>(&blk)) {
      if (r->norm == Norm::PreLayer || r->norm == Norm::PostLayer)
        throw std::invalid_argument("norm: LayerNorm is not covered by the exact chain");
    }
  }
}

/// Runs one sample of the exact chain; writes the saved covariances of sample s.
/// Returns the layer at which the sample blew up (-1: never).
inline std::int64_t exact_sample(const Network& net, const Cov& V0, long width, int depth, std::uint64_t seed,
                                 std::uint32_t sample, const std::vector<std::int64_t>& save_at, double blowup,
                                 double* out, const CancelToken* cancel = nullptr) {
  const Eigen::Index m = V0.rows();
  Cov V = V0;
  std::size_t k = 0;
  std::int64_t exploded = -1;
  auto save = [&](std::int64_t layer) {
    while (k < save_at.size() && save_at[k] == layer) {
      for (Eigen::Index a = 0; a < m; ++a)
        for (Eigen::Index b = 0; b < m; ++b) out[k * m * m + a * m + b] = V(a, b);
      ++k;
    }
  };
  save(0);
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
    save(l + 1);
  }
  for (; k < save_at.size(); ++k)
    std::fill(out + k * m * m, out + (k + 1) * m * m, std::numeric_limits<double>::quiet_NaN());
  return exploded;
}

/// Fills tr (samples x save_at x m x m) with the exact chain.  for_each(items,
/// samples_per_item, fn(item, cancel)) runs the work items (e.g. parallel_for);
/// results do not depend on how it schedules them.  kernel: null or "" picks the
/// batched SIMD kernel (exact/batch.hpp) when it covers the network, "generic" the
/// per-sample path, "scalar", "avx2" or "avx512" a given batch kernel.
template <class ForEach>
inline void exact_store(const Network& net, const Cov& V0, long width, int depth, int samples, std::uint64_t seed,
                        const std::vector<std::int64_t>& save_at, double blowup, const char* kernel, Trajectories& tr,
                        ForEach&& for_each) {
  const int m = int(V0.rows());
  const bool covered = exact_batch::covers(net, m, width);
  exact_batch::Kernel k;
  if (!kernel || !*kernel) {
    // Also the portable one-lane kernel where no SIMD one exists: the same numbers
    // on every machine (the regression fixture), at some cost in speed there.
    if (covered) k = exact_batch::kernel();
  } else if (std::strcmp(kernel, "generic") != 0) {
    if (!covered)
      throw std::invalid_argument("kernel: the batch kernels cover networks of one-head shaped attention, m <= 32");
    k = exact_batch::kernel(kernel);
    if (!k.run) throw std::invalid_argument(std::string("kernel: '") + kernel + "' is not available on this CPU");
  }
  if (!k.run) {
    for_each(std::size_t(samples), 1, [&](std::size_t s, const CancelToken& cancel) {
      tr.exploded[s] = exact_sample(net, V0, width, depth, seed, std::uint32_t(s), save_at, blowup, tr.V_at(int(s), 0),
                                    &cancel);
    });
    return;
  }
  const exact_batch::Params p = exact_batch::params(net, m, width, depth, seed, blowup, save_at);
  std::vector<double> v0(std::size_t(m) * std::size_t(m));
  for (int a = 0; a < m; ++a)
    for (int b = 0; b < m; ++b) v0[std::size_t(a * m + b)] = V0(a, b);
  const std::size_t W = std::size_t(k.width), items = (std::size_t(samples) + W - 1) / W;
  for_each(items, W, [&](std::size_t i, const CancelToken& cancel) {
    const std::size_t s0 = i * W;
    k.run(p, v0.data(), std::uint32_t(s0), int(std::min(W, std::size_t(samples) - s0)), tr.V_at(int(s0), 0),
          &tr.exploded[s0], &cancel);
  });
}

/// The exact chain for `samples` independent samples (contract: preamble / README).
inline Trajectories simulate_exact(const Network& net, const Cov& V0, long width, int depth, int samples,
                                   std::uint64_t seed, const std::vector<std::int64_t>& save_at,
                                   const RunOptions& opt, const char* kernel = nullptr) {
  check_exact_arguments(net, V0, width, depth, samples, save_at);
  Trajectories tr(samples, int(save_at.size()), int(V0.rows()));
  exact_store(net, V0, width, depth, samples, seed, save_at, opt.blowup, kernel, tr,
              [&](std::size_t items, std::size_t per, auto&& fn) {
                std::function<void(std::size_t)> progress;
                if (opt.progress)
                  progress = [&](std::size_t done) { opt.progress(std::min(done * per, std::size_t(samples))); };
                parallel_for(items, opt.threads, fn, opt.poll, progress);
              });
  return tr;
}

}  // namespace shaped_transformer
