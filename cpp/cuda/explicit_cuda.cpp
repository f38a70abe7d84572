// The explicit network on the GPU: the block faces of the headers
// (explicit_forward, explicit_common.hpp) on device tokens, every weight product
// X W / sqrt(n) done by the fused in-kernel-Philox product (cuda::gaussian_gemm, W
// never stored) and the m x n tokens kept on the GPU.  The m x m pieces (attention
// scores, softmax, V) come to the host and are computed by the faces' own code.
// Same streams as the CPU, so the two agree to rounding.  One Runner per call owns
// all its device buffers (no shared scratch), so calls from several threads at once
// are safe.
#include "explicit_cuda.hpp"

#include <array>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <variant>

#include "cuda_api.hpp"
#include "shaped_transformer/explicit.hpp"
#include "shaped_transformer/explicit_common.hpp"
#include "shaped_transformer/rng.hpp"

namespace shaped_transformer::cuda {

namespace {

/// The widest product of `net` at width n: the widest output of a weight matrix and
/// the GEMM workspace of the largest product (the blocks' weights()).
void widest(const Network& net, int m, std::int64_t n, std::int64_t& cols_max, std::size_t& ws) {
  cols_max = n;
  ws = gemm_workspace(m, n, n);
  for (const auto& blk : net.blocks)
    std::visit(
        [&](const auto& b) {
          b.weights(long(n), [&](const WeightMatrix& w) {
            cols_max = std::max<std::int64_t>(cols_max, w.cols);
            ws = std::max(ws, gemm_workspace(m, w.rows, w.cols));
          });
        },
        blk);
}

/// The explicit faces' token operations (explicit_common.hpp) on device buffers of
/// one run, sized once for the widest product.
template <class S>
class DeviceTokenOps {
 public:
  DeviceTokenOps(const Network& net, int m, std::int64_t n, std::uint64_t seed) : m_(m), n_(n), seed_(seed) {
    std::int64_t cols_max;
    std::size_t ws;
    widest(net, m, n, cols_max, ws);
    const std::size_t mw = std::size_t(m) * std::size_t(cols_max);
    for (auto& b : bufs_) b.resize(mw);
    ws_.resize(ws > 0 ? ws : 1);
    cross_.resize(std::size_t(m) * std::size_t(m));
    mix_.resize(std::size_t(m) * std::size_t(m));
  }

  /// Bytes of device memory a run needs (the buffers above).
  static std::size_t bytes(const Network& net, int m, std::int64_t n) {
    std::int64_t cols_max;
    std::size_t ws;
    widest(net, m, n, cols_max, ws);
    return sizeof(S) * (std::size_t(Slot::kCount) * std::size_t(m) * std::size_t(cols_max) + ws + m * m) +
           sizeof(double) * std::size_t(m) * m;
  }

  void at(std::uint32_t sample, std::uint32_t block) {
    sample_ = sample;
    block_ = block;
  }
  S* X() { return bufs_[0].data(); }

  /// V = X X^T / n (double), from the device tokens.
  Cov covariance() {
    Cov V(m_, m_);
    std::vector<double> h(std::size_t(m_) * m_);
    cross(X(), n_, X(), n_, m_, n_, cross_.data(), h.data());
    for (int a = 0; a < m_; ++a)
      for (int c = 0; c < m_; ++c) V(a, c) = h[std::size_t(a) * m_ + c] / double(n_);
    return V;
  }

  // ---- the Ops of explicit_common.hpp ----
  int m() const { return m_; }
  std::int64_t n() const { return n_; }
  Slot input(Norm norm) {
    if (!is_pre_norm(norm)) return Slot::X;
    dcopy(ptr(Slot::In), X(), sizeof(S) * std::size_t(m_) * std::size_t(n_));
    normalize_rows(ptr(Slot::In), m_, n_, is_layer_norm(norm));
    cols_[std::size_t(Slot::In)] = n_;
    return Slot::In;
  }
  void source(Slot) {}
  void project(std::uint32_t id, Slot in, std::int64_t cols, Slot out) {
    const std::int64_t n_in = width(in);
    gaussian_gemm(device::Key{seed_, sample_, block_, id}, m_, n_in, cols, ptr(in), n_in, ptr(out), cols,
                  S(1.0 / std::sqrt(double(n_in))), ws_.data());
    cols_[std::size_t(out)] = cols;
  }
  void scores(Slot q, Slot k, double* A) {
    std::vector<double> y(std::size_t(m_) * m_);
    cross(ptr(q), width(q), ptr(k), width(k), m_, width(q), cross_.data(), y.data());
    for (std::size_t i = 0; i < y.size(); ++i) A[i] = double(S(y[i]));  // the token precision, as the CPU's product
  }
  void mix(const double* A, Slot v, Slot out, std::int64_t col0, bool accumulate) {
    std::vector<S> As(std::size_t(m_) * m_);
    for (std::size_t i = 0; i < As.size(); ++i) As[i] = S(A[i]);
    to_device(mix_.data(), As.data(), sizeof(S) * As.size());
    left_mix(mix_.data(), ptr(v), width(v), m_, width(v), ptr(out) + col0, n_, accumulate);
    cols_[std::size_t(out)] = n_;
  }
  void zero(Slot s) {
    dzero(ptr(s), sizeof(S) * std::size_t(m_) * std::size_t(n_));
    cols_[std::size_t(s)] = n_;
  }
  void leaky(Slot s, double s_plus, double s_minus) {
    cuda::leaky(ptr(s), std::size_t(m_) * std::size_t(width(s)), S(s_plus), S(s_minus));
  }
  void residual(double lambda, double g, Slot s) {
    axpby(S(lambda), X(), S(g), ptr(s), std::size_t(m_) * std::size_t(n_));
  }
  void scale(double f) { cuda::scale(X(), std::size_t(m_) * std::size_t(n_), S(f)); }
  void normalize(bool layer) { normalize_rows(X(), m_, n_, layer); }

 private:
  S* ptr(Slot s) { return bufs_[std::size_t(s)].data(); }
  std::int64_t width(Slot s) const { return s == Slot::X ? n_ : cols_[std::size_t(s)]; }

  int m_;
  std::int64_t n_;
  std::uint64_t seed_;
  std::uint32_t sample_ = 0, block_ = 0;
  std::array<DeviceArray<S>, std::size_t(Slot::kCount)> bufs_;
  std::array<std::int64_t, std::size_t(Slot::kCount)> cols_{};
  DeviceArray<S> ws_, mix_;
  DeviceArray<double> cross_;
};

template <class S>
Trajectories run(const Network& net, const MatD& X0, int depth, int samples, std::uint64_t seed,
                 const std::vector<std::int64_t>& save_at, const ExplicitCudaOptions& opts) {
  const int m = int(X0.rows());
  const std::int64_t n = X0.cols();
  check_explicit_cuda(net, X0, depth, samples, save_at, opts.blowup);
  const int saved = int(save_at.size());
  Trajectories out(samples, saved, m);
  out.n = int(n);
  if (opts.return_X) out.X.assign(std::size_t(samples) * std::size_t(m) * std::size_t(n), 0.0);
  DeviceTokenOps<S> o(net, m, n, seed);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<S> host(std::size_t(m) * std::size_t(n));
  for (int s = 0; s < samples; ++s) {
    for (int a = 0; a < m; ++a)
      for (std::int64_t j = 0; j < n; ++j) host[std::size_t(a) * n + j] = S(X0(a, j));
    to_device(o.X(), host.data(), sizeof(S) * host.size());
    int k = 0;
    auto save = [&](std::int64_t layer, const Cov& V) {
      while (k < saved && save_at[std::size_t(k)] == layer) {
        double* dst = out.V_at(s, k);
        for (int a = 0; a < m; ++a)
          for (int b = 0; b < m; ++b) dst[a * m + b] = V(a, b);
        ++k;
      }
    };
    auto exploded = [&](const Cov& V) { return !V.allFinite() || V.diagonal().maxCoeff() > opts.blowup; };
    Cov V = o.covariance();
    std::int64_t boom = -1;
    if (exploded(V)) boom = 0;
    else save(0, V);
    for (int l = 0; l < depth && boom < 0; ++l) {
      for (std::size_t b = 0; b < net.blocks.size(); ++b) {
        if (opts.poll && opts.poll()) throw Cancelled();
        o.at(std::uint32_t(s), net.block_index(std::size_t(l), b));
        std::visit([&](const auto& blk) { explicit_forward(blk, o); }, net.blocks[b]);
      }
      V = o.covariance();
      if (exploded(V)) boom = l + 1;
      else save(l + 1, V);
    }
    if (boom >= 0) {
      out.exploded[std::size_t(s)] = boom;
      for (; k < saved; ++k) std::fill(out.V_at(s, k), out.V_at(s, k) + m * m, nan);
    }
    if (opts.return_X) {
      to_host(host.data(), o.X(), sizeof(S) * host.size());
      double* dst = out.X.data() + std::size_t(s) * std::size_t(m) * std::size_t(n);
      for (std::size_t i = 0; i < host.size(); ++i) dst[i] = double(host[i]);
    }
    if (opts.progress) opts.progress(std::size_t(s + 1));
  }
  return out;
}

}  // namespace

void check_explicit_cuda(const Network& net, const MatD& X0, int depth, int samples,
                         const std::vector<std::int64_t>& save_at, double blowup) {
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
  if (!(blowup > 0.0)) throw std::invalid_argument("blowup must be > 0");
  if (net.blocks.empty()) throw std::invalid_argument("blocks must contain at least one block");
  validate_network(net, long(n));
  check_block_counter(net, depth, "depth");
}

std::size_t explicit_cuda_bytes(const Network& net, int m, std::int64_t n, bool float32) {
  return float32 ? DeviceTokenOps<float>::bytes(net, m, n) : DeviceTokenOps<double>::bytes(net, m, n);
}

Trajectories simulate_explicit_cuda(const Network& net, const MatD& X0, int depth, int samples, std::uint64_t seed,
                                    const std::vector<std::int64_t>& save_at, bool float32,
                                    const ExplicitCudaOptions& opts) {
  return float32 ? run<float>(net, X0, depth, samples, seed, save_at, opts)
                 : run<double>(net, X0, depth, samples, seed, save_at, opts);
}

}  // namespace shaped_transformer::cuda
