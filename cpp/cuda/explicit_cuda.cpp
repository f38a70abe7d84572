// The explicit network on the GPU: the block logic of cpp/src/explicit_blocks.cpp
// with every weight product X W / sqrt(n) done by the fused in-kernel-Philox product
// (cuda::gaussian_gemm, W never stored) and the m x n tokens kept on the GPU.  The
// m x m pieces (attention scores, softmax, V) come to the host and are computed
// by the CPU's own code.  Same streams as the CPU, so the two agree to rounding.
#include "explicit_cuda.hpp"

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <variant>

#include "cuda_api.hpp"
#include "shaped_transformer/exact_common.hpp"
#include "shaped_transformer/explicit.hpp"
#include "shaped_transformer/rng.hpp"

namespace shaped_transformer::cuda {

namespace {

bool is_pre(Norm k) { return k == Norm::PreRMS || k == Norm::PreLayer; }
bool is_post(Norm k) { return k == Norm::PostRMS || k == Norm::PostLayer; }
bool is_layer(Norm k) { return k == Norm::PreLayer || k == Norm::PostLayer; }

struct Attn {
  bool shaped = true;
  int heads = 1;
  double tau0 = 1.0, gamma = 0.5, lambda = 0.0, alpha = 1.0, beta = 1.0;
  bool causal = false;
  int key_dim = 0;
  bool concat = false;
  Norm norm = Norm::None;
};

/// Device buffers of one run, sized once for the widest product.
template <class S>
struct Buffers {
  int m = 0;
  std::int64_t n = 0;
  DeviceArray<S> X, Xn, B, Q, K, XV, P, O, ws;
};

template <class S>
class Runner {
 public:
  Runner(const Network& net, int m, std::int64_t n, std::uint64_t seed) : net_(net), m_(m), n_(n), seed_(seed) {
    std::int64_t nk_max;
    std::size_t ws;
    widest(net, m, n, nk_max, ws);
    const std::size_t mn = std::size_t(m) * std::size_t(n);
    b_.X.resize(mn);
    b_.Xn.resize(mn);
    b_.B.resize(mn);
    b_.P.resize(mn);
    b_.O.resize(mn);
    b_.XV.resize(mn);
    b_.Q.resize(std::size_t(m) * std::size_t(nk_max));
    b_.K.resize(std::size_t(m) * std::size_t(nk_max));
    b_.ws.resize(ws > 0 ? ws : 1);
  }

  /// Bytes of device memory a run needs (the buffers above).
  static std::size_t bytes(const Network& net, int m, std::int64_t n) {
    std::int64_t nk_max;
    std::size_t ws;
    widest(net, m, n, nk_max, ws);
    return sizeof(S) * (6 * std::size_t(m) * std::size_t(n) + 2 * std::size_t(m) * std::size_t(nk_max) + ws);
  }

  S* X() { return b_.X.data(); }

  /// V = X X^T / n (double), from the device tokens.
  Cov covariance() {
    Cov V(m_, m_);
    std::vector<double> h(std::size_t(m_) * m_);
    cross(b_.X.data(), n_, b_.X.data(), n_, m_, n_, h.data());
    for (int a = 0; a < m_; ++a)
      for (int c = 0; c < m_; ++c) V(a, c) = h[std::size_t(a) * m_ + c] / double(n_);
    return V;
  }

  void block(const Block& blk, std::uint32_t sample, std::uint32_t bi) {
    std::visit(
        [&](const auto& b) {
          using B = std::decay_t<decltype(b)>;
          if constexpr (std::is_same_v<B, ShapedAttention>) {
            Attn a;
            a.shaped = true;
            a.heads = b.heads;
            a.tau0 = b.tau0;
            a.gamma = b.gamma;
            a.lambda = b.lambda;
            a.alpha = b.alpha;
            a.beta = b.beta;
            a.causal = b.causal;
            a.key_dim = b.key_dim;
            a.concat = b.concat;
            attention(a, sample, bi);
          } else if constexpr (std::is_same_v<B, StandardAttention>) {
            Attn a;
            a.shaped = false;
            a.heads = b.heads;
            a.gamma = b.gamma;
            a.lambda = b.lambda;
            a.key_dim = b.key_dim;
            a.concat = b.concat;
            a.norm = b.norm;
            attention(a, sample, bi);
          } else if constexpr (std::is_same_v<B, ShapedMLP>) {
            const double rn = std::sqrt(double(n_));
            const double sp = 1.0 + b.c_plus / rn, sm = 1.0 + b.c_minus / rn;
            mlp(sp, sm, 2.0 / (sp * sp + sm * sm), b.gamma, b.lambda, Norm::None, sample, bi);
          } else {
            static_assert(std::is_same_v<B, ReluMLP>, "Runner::block: give every block kind its device forward");
            mlp(1.0, 0.0, 2.0, b.gamma, b.lambda, b.norm, sample, bi);
          }
        },
        blk);
  }

 private:
  template <class A>
  static void grow(const A& a, std::int64_t& nk_max, std::size_t& ws, int m, std::int64_t n) {
    const std::int64_t hd = a.concat ? n / a.heads : n;
    const std::int64_t nk = a.key_dim > 0 ? a.key_dim : hd;
    nk_max = std::max(nk_max, nk);
    ws = std::max(ws, gemm_workspace(m, n, nk));
    ws = std::max(ws, gemm_workspace(m, n, hd));
  }
  /// The widest query/key width and GEMM workspace over the blocks of `net`.
  static void widest(const Network& net, int m, std::int64_t n, std::int64_t& nk_max, std::size_t& ws) {
    nk_max = n;
    ws = gemm_workspace(m, n, n);
    for (const auto& blk : net.blocks)
      std::visit(
          [&](const auto& b) {
            using B = std::decay_t<decltype(b)>;
            if constexpr (std::is_same_v<B, ShapedAttention> || std::is_same_v<B, StandardAttention>) {
              grow(b, nk_max, ws, m, n);
            } else {  // the MLPs' products are n x n: the initial workspace covers them
              static_assert(std::is_same_v<B, ShapedMLP> || std::is_same_v<B, ReluMLP>,
                            "Runner::widest: size the device buffers of every block kind");
            }
          },
          blk);
  }

  device::Key key(std::uint32_t sample, std::uint32_t block, std::uint32_t id) const {
    return device::Key{seed_, sample, block, id};
  }

  /// Out (m x cols) = X (m x n_in) W / sqrt(n_in).
  void project(const device::Key& k, const S* Xin, std::int64_t n_in, std::int64_t cols, S* Out, std::int64_t ldo) {
    gaussian_gemm(k, m_, n_in, cols, Xin, n_in, Out, ldo, S(1.0 / std::sqrt(double(n_in))), b_.ws.data());
  }

  const S* prenorm(Norm norm) {
    if (!is_pre(norm)) return b_.X.data();
    dcopy(b_.Xn.data(), b_.X.data(), sizeof(S) * std::size_t(m_) * std::size_t(n_));
    normalize_rows(b_.Xn.data(), m_, n_, is_layer(norm));
    return b_.Xn.data();
  }

  void attention(const Attn& a, std::uint32_t sample, std::uint32_t bi) {
    const std::int64_t n = n_;
    const int m = m_, H = a.heads;
    const std::int64_t hd = a.concat ? n / H : n;
    const std::int64_t nk = a.key_dim > 0 ? a.key_dim : hd;
    if (a.gamma == 0.0 && !is_post(a.norm)) return;
    const S* Xin = prenorm(a.norm);
    const std::size_t mn = std::size_t(m) * std::size_t(n);
    if (!a.concat) dzero(b_.B.data(), sizeof(S) * mn);
    const double logit_scale =
        a.shaped ? 1.0 / (a.tau0 * std::sqrt(double(n) * double(nk))) : 1.0 / std::sqrt(double(nk));
    Cov C = Cov::Zero(m, m);
    if (a.shaped)
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < (a.causal ? i + 1 : m); ++j) C(i, j) = 1.0 / double(a.causal ? i + 1 : m);
    std::vector<double> y(std::size_t(m) * m);
    std::vector<S> As(std::size_t(m) * m);
    for (int h = 0; h < H; ++h) {
      project(key(sample, bi, matrix_id::head(matrix_id::kQuery, h)), Xin, n, nk, b_.Q.data(), nk);
      project(key(sample, bi, matrix_id::head(matrix_id::kKey, h)), Xin, n, nk, b_.K.data(), nk);
      cross(b_.Q.data(), nk, b_.K.data(), nk, m, nk, y.data());
      Cov A(m, m);
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < m; ++j) A(i, j) = S(y[std::size_t(i) * m + j]) * logit_scale;
      softmax_rows(A, a.shaped && a.causal);
      if (a.shaped) A = a.alpha * Cov::Identity(m, m) + a.beta * A - a.beta * C;
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < m; ++j) As[std::size_t(i) * m + j] = S(A(i, j));
      project(key(sample, bi, matrix_id::head(matrix_id::kValue, h)), Xin, n, hd, b_.XV.data(), hd);
      if (a.concat) left_mix(As.data(), b_.XV.data(), hd, m, hd, b_.B.data() + h * hd, n, false);
      else left_mix(As.data(), b_.XV.data(), hd, m, hd, b_.B.data(), n, true);
    }
    if (a.concat) {
      project(key(sample, bi, matrix_id::kOutput), b_.B.data(), n, n, b_.O.data(), n);
      axpby(S(a.lambda), b_.X.data(), S(a.gamma), b_.O.data(), mn);
    } else {
      axpby(S(a.lambda), b_.X.data(), S(a.gamma / std::sqrt(double(H))), b_.B.data(), mn);
    }
    if (is_post(a.norm)) normalize_rows(b_.X.data(), m, n, is_layer(a.norm));
  }

  void mlp(double s_plus, double s_minus, double c, double gamma, double lambda, Norm norm, std::uint32_t sample,
           std::uint32_t bi) {
    if (gamma == 0.0 && !is_post(norm)) return;
    const std::int64_t n = n_;
    const std::size_t mn = std::size_t(m_) * std::size_t(n);
    const S* Xin = prenorm(norm);
    project(key(sample, bi, matrix_id::kPre), Xin, n, n, b_.P.data(), n);
    leaky(b_.P.data(), mn, S(s_plus), S(s_minus));
    project(key(sample, bi, matrix_id::kPost), b_.P.data(), n, n, b_.O.data(), n);
    axpby(S(lambda), b_.X.data(), S(gamma * std::sqrt(c)), b_.O.data(), mn);
    if (is_post(norm)) normalize_rows(b_.X.data(), m_, n, is_layer(norm));
  }

  const Network& net_;
  int m_;
  std::int64_t n_;
  std::uint64_t seed_;
  Buffers<S> b_;
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
  Runner<S> r(net, m, n, seed);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<S> host(std::size_t(m) * std::size_t(n));
  for (int s = 0; s < samples; ++s) {
    for (int a = 0; a < m; ++a)
      for (std::int64_t j = 0; j < n; ++j) host[std::size_t(a) * n + j] = S(X0(a, j));
    to_device(r.X(), host.data(), sizeof(S) * host.size());
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
    Cov V = r.covariance();
    std::int64_t boom = -1;
    if (exploded(V)) boom = 0;
    else save(0, V);
    for (int l = 0; l < depth && boom < 0; ++l) {
      for (std::size_t b = 0; b < net.blocks.size(); ++b) {
        if (opts.poll && opts.poll()) throw Cancelled();
        r.block(net.blocks[b], std::uint32_t(s), net.block_index(std::size_t(l), b));
      }
      V = r.covariance();
      if (exploded(V)) boom = l + 1;
      else save(l + 1, V);
    }
    if (boom >= 0) {
      out.exploded[std::size_t(s)] = boom;
      for (; k < saved; ++k) std::fill(out.V_at(s, k), out.V_at(s, k) + m * m, nan);
    }
    if (opts.return_X) {
      to_host(host.data(), r.X(), sizeof(S) * host.size());
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
  if (std::uint64_t(depth) * net.blocks.size() > std::uint64_t(std::numeric_limits<std::uint32_t>::max()))
    throw std::invalid_argument("depth: depth * blocks must stay below 2^32 (the block counter word)");
}

std::size_t explicit_cuda_bytes(const Network& net, int m, std::int64_t n, bool float32) {
  return float32 ? Runner<float>::bytes(net, m, n) : Runner<double>::bytes(net, m, n);
}

Trajectories simulate_explicit_cuda(const Network& net, const MatD& X0, int depth, int samples, std::uint64_t seed,
                                    const std::vector<std::int64_t>& save_at, bool float32,
                                    const ExplicitCudaOptions& opts) {
  return float32 ? run<float>(net, X0, depth, samples, seed, save_at, opts)
                 : run<double>(net, X0, depth, samples, seed, save_at, opts);
}

}  // namespace shaped_transformer::cuda
