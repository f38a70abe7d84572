// Definitions of the exact chain (exact.hpp) for any network type: the generic
// per-sample chain (the blocks' exact steps on the scalar lanes, with Eigen's roots
// and GEMM for large m), one sample, and simulate_exact with the batched SIMD
// kernels (exact/batch.hpp).  The library instantiates them for Network
// (cpp/src/exact.cpp); include this header only to run a network of other block
// kinds (e.g. a test-only kind) or to call exact_block directly.
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
#include "../exact.hpp"
#include "../exact/batch.hpp"
#include "../exact/mlp_gram.hpp"
#include "../exact/start.hpp"
#include "../exact_common.hpp"
#include "../gemm.hpp"
#include "../kernels/exact_batch.hpp"
#include "../large_root.hpp"
#include "../linalg.hpp"
#include "../math/lane.hpp"
#include "../network.hpp"
#include "../normal_kernels.hpp"
#include "../row_softmax.hpp"
#include "../workspace.hpp"
#include "driver_loop.hpp"

namespace shaped_transformer {

namespace exact_generic {
/// The host context's lanes: ScalarLanes under their own name, so that the softmax of
/// its large attention matrices (below) can take the SIMD row kernels without
/// touching any other user of the scalar lanes.  Same operations, same numbers.
struct HostLanes : ScalarLanes {};
}  // namespace exact_generic

/// softmax_rows (exact_common.hpp) on the host context's run-time-sized matrices:
/// from kGemmFrom tokens on, along each row in SIMD lanes with a vector exp
/// (row_softmax.hpp: about 4 times faster at m = 128, equal to rounding); below that
/// and in the portable build, the scalar code (libm's exp), number for number.
template <>
inline void softmax_rows<exact_generic::HostLanes, MatRef<double, 0>>(MatRef<double, 0> S, bool causal) {
  if (S.rows() >= kGemmFrom && detail::row_softmax(S.rows(), S.data(), S.ld(), causal)) return;
  softmax_rows<ScalarLanes>(S, causal);
}

namespace exact_generic {

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

/// The exact faces' context (exact_common.hpp) for one sample on the host: the scalar
/// lanes, psd_root's Eigen roots (as the chain always had; from kGemmFrom tokens on,
/// with the Cholesky in the build for this CPU, large_root.hpp), the fast normal
/// kernels, and the MLP's fused Gram kernel (GEMM on column tiles beyond its 32 tokens).
template <int Fixed>
class HostCtx {
 public:
  using Ln = HostLanes;
  using D = double;
  static constexpr int MC = Fixed;
  using Mat = MatRef<double, MC>;
  using Dyn = MatRef<double, 0>;

  int m;
  long n = 0;
  ExactKey key;
  Mat V;
  double* s = nullptr;  ///< LayerNorm's state (exact_common.hpp), when the network carries it

  HostCtx(int m_, int wide_max)
      : m(m_),
        wmax_(wide_max),
        buf_(std::size_t((1 + kExactScratch) * m_ * m_ + 2 * m_ * wide_max + m_)),
        z_(std::size_t(m_) * std::size_t(m_)) {
    V = Mat(buf_.data(), m, m, m);
  }

  Mat tmp(int i) { return Mat(buf_.data() + (1 + i) * m * m, m, m, m); }
  Dyn wide(int i, int cols) { return Dyn(wide_base() + i * m * wmax_, m, cols, cols); }
  double* vec() { return wide_base() + 2 * m * wmax_; }

  template <class VA, class VL>
  bool root(VA A, VL L) {
    if (m <= 32) root_as<typename RootMatrix<Fixed>::type>(A, L);
    else if (A.ld() == m && L.ld() == m) psd_root_rowmajor(m, A.data(), L.data());
    else root_as<Cov>(A, L);
    return is_lower(L);
  }
  template <class VG>
  void gaussian(std::uint32_t id, VG G) {
    const int rows = G.rows(), cols = G.cols();
    if (G.ld() == cols) {  // contiguous rows: the normals land in place (no copy)
      fill_normal(key.stream(id), 0, std::size_t(rows) * std::size_t(cols), G.data());
      return;
    }
    fill_normal(key.stream(id), 0, std::size_t(rows) * std::size_t(cols), z_.data());
    for (int i = 0; i < rows; ++i)
      for (int j = 0; j < cols; ++j) G(i, j) = z_[std::size_t(i) * cols + j];
  }
  template <class VB>
  void wishart(double df, int p, std::uint32_t idn, std::uint32_t idu, VB B) {
    BulkRng r(key.stream(idn), key.stream(idu));
    wishart_factor(df, p, r, B);
  }
  template <class VL, class VG>
  bool gram(VL Lin, double sp, double sm, VG G) {
    const Stream pre = key.stream(ExactKey::kPre);
    if (m <= exact_mlp::kMaxM) {  // the fused kernel (exact/mlp_gram.hpp)
      std::vector<double> Lr(std::size_t(m) * m), g(std::size_t(m) * m);
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < m; ++j) Lr[std::size_t(i) * m + j] = Lin(i, j);
      if (!exact_mlp::gram(pre, m, n, Lr.data(), sp, sm, g.data(), key.cancel)) return false;
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < m; ++j) G(i, j) = g[std::size_t(i) * m + j];
      return true;
    }
    // Beyond the fused kernel's size: GEMM on column tiles (O(m * tile) memory), in the
    // build for this CPU's widest instruction set (gemm.hpp, mlp_gram_tile).  Stream
    // layout: normals of column j are m j .. m j + m - 1, so a tile's normals are the
    // rows of a row-major w x m matrix Gt, and the tile's pre-activations are
    // K = L_in Gt^T: a triangular product when L_in is a Cholesky root (checked once
    // here: exact zeros, so skipping them changes no sum).  Each tile adds phi(K) phi(K)^T
    // to the lower triangle of G, mirrored once at the end.  The tiles live in the
    // context: allocated at the chain's first Gram, not per step.
    constexpr long kTile = long(workspace::kExactMlpTile);  // read by the memory check
    if (tile_.empty()) tile_.resize(std::size_t(2 * m) * std::size_t(kTile));
    double* const Gt = tile_.data();
    double* const K = Gt + std::size_t(m) * std::size_t(kTile);
    const bool lower = is_lower(Lin);
    for (int i = 0; i < m; ++i)
      for (int j = 0; j <= i; ++j) G(i, j) = 0.0;
    for (long j0 = 0; j0 < n; j0 += kTile) {
      if (key.cancel && key.cancel->stop_requested()) return false;  // a tile: m^2 kTile products
      const int w = int(std::min<long>(kTile, n - j0));
      fill_normal(pre, std::uint64_t(j0) * std::uint64_t(m), std::size_t(m) * std::size_t(w), Gt);
      detail::mlp_gram_tile(m, w, Lin.data(), Lin.ld(), lower, Gt, sp, sm, K, G.data(), G.ld());
    }
    for (int i = 0; i < m; ++i)
      for (int j = i + 1; j < m; ++j) G(i, j) = G(j, i);
    return true;
  }

 private:
  template <class R, class VA, class VL>
  void root_as(VA A, VL L) {
    R a = R::Zero(m, m), l;
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < m; ++j) a(i, j) = A(i, j);
    psd_root(a, l);
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < m; ++j) L(i, j) = l(i, j);
  }
  double* wide_base() { return buf_.data() + (1 + kExactScratch) * m * m; }

  int wmax_;
  std::vector<double> buf_, z_, tile_;
};

/// The exact faces of the blocks of one layer, the widest scratch they use, and
/// whether the chain carries LayerNorm's state s (exact_carries_s).
template <class Net>
struct Layer {
  std::vector<ExactBlockOf<Net>> blocks;
  int wide = 0;
  bool carries_s = false;
  Layer(const Net& net, int m) : wide(m), carries_s(exact_carries_s(net)) {
    for (const auto& blk : net.blocks) blocks.push_back(exact_block_terms(blk, m, wide));
  }
};

/// Applies the exact step of the block with terms `b` to ctx.V; false when cancelled.
template <class Block, class Ctx>
inline bool apply(const Block& b, Ctx& c) {
  bool done = true;
  b.visit([&](const auto& t) { done = exact_step(t, c); });
  return done;
}

/// One sample of the chain with m = Fixed known at compile time (0: any m); s0: LayerNorm's
/// s_0 (m numbers) when the layer carries s.
template <int Fixed, class Net>
inline std::int64_t sample(const Layer<Net>& layer, const Cov& V0, const double* s0, long width, int depth,
                           std::uint64_t seed, std::uint32_t s, const std::vector<std::int64_t>& save_at, double blowup,
                           double* out, const CancelToken* cancel) {
  const int m = int(V0.rows());
  HostCtx<Fixed> c(m, layer.wide);
  c.n = width;
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) c.V(i, j) = V0(i, j);
  std::vector<double> state;
  if (layer.carries_s) {
    state.assign(s0, s0 + m);
    c.s = state.data();
  }
  SaveAt save(save_at, out, m);
  std::int64_t exploded = -1;
  save(0, c.V);
  const std::size_t nb = layer.blocks.size();
  auto ok = [&] {  // finite, and max diag <= blowup
    double d = -std::numeric_limits<double>::infinity();
    for (int a = 0; a < m; ++a) {
      for (int b = 0; b < m; ++b)
        if (!std::isfinite(c.V(a, b))) return false;
      d = std::max(d, c.V(a, a));
    }
    return d <= blowup;
  };
  auto finite = [&] {
    for (int a = 0; a < m; ++a)
      for (int b = 0; b < m; ++b)
        if (!std::isfinite(c.V(a, b))) return false;
    return true;
  };
  for (int l = 0; l < depth; ++l) {
    if (cancel && cancel->stop_requested()) return exploded;
    bool fin = true;
    for (std::size_t b = 0; b < nb && fin; ++b) {
      c.key = ExactKey{seed, s, std::uint32_t(std::size_t(l) * nb + b), cancel};
      if (!apply(layer.blocks[b], c)) return exploded;  // cancelled: the run is discarded
      fin = finite();                                   // stop inside the layer once V overflowed
      if (cancel && cancel->stop_requested()) return exploded;
    }
    if (!fin || !ok()) {
      exploded = l + 1;
      break;
    }
    save(l + 1, c.V);
  }
  save.fill_nan();
  return exploded;
}

}  // namespace exact_generic

/// Applies one block to V in place at width n: its exact step on the scalar lanes.
/// A LayerNorm block needs the state s (docs/norms.md section 6): run it in a chain.
template <class... K>
inline void exact_block(const std::variant<K...>& block, Cov& V, long n, const ExactKey& key) {
  if (std::visit([](const auto& b) { return is_layer_norm(block_norm(b)); }, block))
    throw std::invalid_argument(
        "norm: a LayerNorm block's exact step needs the state s; run the chain (simulate_exact)");
  const int m = int(V.rows());
  int wide = m;
  const auto b = exact_block_terms(block, m, wide);
  exact_generic::HostCtx<0> c(m, wide);
  c.n = n;
  c.key = key;
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) c.V(i, j) = V(i, j);
  exact_generic::apply(b, c);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) V(i, j) = c.V(i, j);
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
  if (exact_carries_s(net) && width < V0.rows() + 1)
    throw std::invalid_argument(
        "width: LayerNorm in the exact chain needs width >= m + 1 = " + std::to_string(V0.rows() + 1) + ", got " +
        std::to_string(width) +
        " (the all-ones feature direction, along which LayerNorm centres, must lie outside the tokens' span; "
        "docs/norms.md section 6); use method='explicit' or method='law'");
  check_block_counter(net, depth, "depth");
}

/// Runs one sample of the exact chain; writes the saved covariances of sample s.
/// Returns the layer at which the sample blew up (-1: never).
template <class Net>
inline std::int64_t exact_sample(const Net& net, const Cov& V0, long width, int depth, std::uint64_t seed,
                                 std::uint32_t sample, const std::vector<std::int64_t>& save_at, double blowup,
                                 double* out, const CancelToken* cancel = nullptr) {
  const exact_generic::Layer<Net> layer(net, int(V0.rows()));
  const Eigen::VectorXd s0 = layer.carries_s ? exact_start_s(V0) : Eigen::VectorXd();
  if (V0.rows() == 8)
    return exact_generic::sample<8>(layer, V0, s0.data(), width, depth, seed, sample, save_at, blowup, out, cancel);
  return exact_generic::sample<0>(layer, V0, s0.data(), width, depth, seed, sample, save_at, blowup, out, cancel);
}

/// The batch kernel simulate_exact uses (run == null: the per-sample path); see
/// simulate_exact for `kernel`.
template <class Net>
inline exact_batch::Kernel<Net> choose_exact_kernel(const Net& net, int m, long width, const char* kernel) {
  const bool covered = exact_batch::covers(net, m, width);
  if (!kernel || !*kernel) return covered ? exact_batch::kernel<Net>(nullptr) : exact_batch::Kernel<Net>{};
  if (std::strcmp(kernel, "generic") == 0) return {};
  if (!covered) throw std::invalid_argument("kernel: the batch kernels cover m <= 32 and heads * m <= 32");
  const exact_batch::Kernel<Net> k = exact_batch::kernel<Net>(kernel);
  if (!k.run) throw std::invalid_argument(std::string("kernel: '") + kernel + "' is not available on this CPU");
  return k;
}

template <class Net>
Trajectories simulate_exact(const Net& net, const Cov& V0, long width, int depth, int samples, std::uint64_t seed,
                            const std::vector<std::int64_t>& save_at, const RunOptions& opt, const char* kernel,
                            const Eigen::VectorXd* s0) {
  if (!opt.checked) check_exact_arguments(net, V0, width, depth, samples, save_at, opt);
  const int m = int(V0.rows());
  // LayerNorm's s_0 (both paths carry s from it); s0 is checked whenever given
  const Eigen::VectorXd s_start = s0 || exact_carries_s(net) ? exact_start_s(V0, s0) : Eigen::VectorXd();
  Trajectories tr(samples, int(save_at.size()), m);
  const exact_batch::Kernel<Net> k = choose_exact_kernel(net, m, width, kernel);
  tr.kernel = k.run ? k.name : "generic";
  if (!k.run) {
    const exact_generic::Layer<Net> layer(net, m);
    detail::for_each_item(
        std::size_t(samples), 1, std::size_t(samples), opt, [&](std::size_t s, const CancelToken& cancel) {
          tr.exploded[s] =
              m == 8 ? exact_generic::sample<8>(layer, V0, s_start.data(), width, depth, seed, std::uint32_t(s),
                                                save_at, opt.blowup, tr.V_at(int(s), 0), &cancel)
                     : exact_generic::sample<0>(layer, V0, s_start.data(), width, depth, seed, std::uint32_t(s),
                                                save_at, opt.blowup, tr.V_at(int(s), 0), &cancel);
        });
    return tr;
  }
  // W samples per work item, one per SIMD lane (the same numbers for any W).
  const exact_batch::Params<Net> p = exact_batch::params(net, m, width, depth, seed, opt.blowup, save_at,
                                                         exact_carries_s(net) ? s_start.data() : nullptr);
  std::vector<double> v0(std::size_t(m) * std::size_t(m));
  for (int a = 0; a < m; ++a)
    for (int b = 0; b < m; ++b) v0[std::size_t(a * m + b)] = V0(a, b);
  const std::size_t W = std::size_t(k.width), items = (std::size_t(samples) + W - 1) / W;
  detail::for_each_item(items, W, std::size_t(samples), opt, [&](std::size_t i, const CancelToken& cancel) {
    const std::size_t s0 = i * W;
    k.run(p, v0.data(), std::uint32_t(s0), int(std::min(W, std::size_t(samples) - s0)), tr.V_at(int(s0), 0),
          &tr.exploded[s0], &cancel);
  });
  return tr;
}

}  // namespace shaped_transformer
