// Cost of the exact chain's multi-head attention step against m, with the value
// part drawn two ways in the same process (docs/performance.md, "Multi-head exact
// step"): the m x m Wishart of wishart_quad.hpp (the core's value_mix today) and
// the Hm x Hm Bartlett factor of earlier versions (value_mix_hm below, a copy of
// the old code, kept here only to time it).  Run by bench_multihead_step.py, which
// compiles it against the core library and times NumPy's dgemm in the same run.
//
// Prints one line per m: seconds per call of the whole step (exact_block), of the
// value part alone (new and old) and of one m x m Eigen product.  One thread.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "shaped_transformer/blocks/shaped_attention.hpp"
#include "shaped_transformer/detail/exact_impl.hpp"
#include "shaped_transformer/exact_common.hpp"
#include "shaped_transformer/math/samplers.hpp"

namespace st = shaped_transformer;

// The earlier value part: R ~ Wishart_{Hm}(n - m) as an Hm x Hm Bartlett factor
// (right only for n - m >= Hm, which the sizes here keep only for m <= n / (H + 1)).
static void value_mix_hm(st::Cov& V, const st::Cov& L, const st::Cov& C, int H, double n, double lambda, double gamma,
                         const st::ExactKey& key) {
  const Eigen::Index m = V.rows();
  st::Cov P = st::Cov::Zero(m, m), Z;
  for (int h = 0; h < H; ++h) {
    st::gaussian_matrix(key.head_stream(h, st::ExactKey::kValueZ), m, m, Z);
    P.noalias() += C.middleCols(h * m, m) * Z;
  }
  st::MatrixRng r(key.stream(st::ExactKey::kR), key.stream(st::ExactKey::kRUniform));
  st::Cov B(H * m, H * m);
  st::wishart_factor(n - double(m), int(H * m), r, B);
  st::Cov CB(m, H * m);
  CB.noalias() = C * B.triangularView<Eigen::Lower>();
  const double HN = double(H) * n;
  st::Cov cross(m, m);
  cross.noalias() = L * P.transpose();
  st::Cov out = (lambda * lambda) * V;
  out += (lambda * gamma / std::sqrt(HN)) * (cross + cross.transpose());
  st::Cov quad(m, m);
  quad.noalias() = P * P.transpose();
  quad.noalias() += CB * CB.transpose();
  out += (gamma * gamma / HN) * quad;
  V = 0.5 * (out + out.transpose());
}

// The core's value part (exact_common.hpp's value_mix on the generic chain's host
// context): V, its root L and C copied in, the step's value mix run in place.
static void value_mix_core(st::exact_generic::HostCtx<0>& c, st::Cov& V, const st::Cov& L, const st::Cov& C, int H,
                           double lambda, double gamma) {
  const int m = int(V.rows());
  auto Lc = c.tmp(0), Cc = c.wide(0, H * m);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) {
      c.V(i, j) = V(i, j);
      Lc(i, j) = L(i, j);
    }
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < H * m; ++j) Cc(i, j) = C(i, j);
  st::value_mix(c, Lc, Cc, H, lambda, gamma, false);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) V(i, j) = c.V(i, j);
}

template <class F>
static double seconds_per_call(F&& f, double min_s) {
  using clk = std::chrono::steady_clock;
  int calls = 0;
  const auto t0 = clk::now();
  for (;;) {
    f(calls);
    ++calls;
    const double el = std::chrono::duration<double>(clk::now() - t0).count();
    if (el >= min_s) return el / calls;
  }
}

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s H n min_seconds m1 [m2 ...]\n", argv[0]);
    return 2;
  }
  const int H = std::atoi(argv[1]);
  const long n = std::atol(argv[2]);
  const double min_s = std::atof(argv[3]);
  st::ShapedAttention b;
  b.heads = H;
  b.tau0 = 1.0;
  b.gamma = 0.5;
  for (int a = 4; a < argc; ++a) {
    const int m = std::atoi(argv[a]);
    const st::Cov V0 = 0.7 * st::Cov::Identity(m, m) + 0.3 * st::Cov::Ones(m, m);
    // C = [A_1 L .. A_H L] from one step's heads: the value part's input.
    st::Cov L, C(m, H * m);
    st::psd_root(V0, L);
    for (int h = 0; h < H; ++h)
      C.middleCols(h * m, m) = (0.8 * st::Cov::Identity(m, m) + 0.2 / m * st::Cov::Ones(m, m)) * L;
    auto key = [](int i) { return st::ExactKey{1, std::uint32_t(i), 0, nullptr}; };
    const double t_step = seconds_per_call(
        [&](int i) {
          st::Cov V = V0;
          st::exact_block(st::Block(b), V, n, key(i));
        },
        min_s);
    st::exact_generic::HostCtx<0> ctx(m, H * m);
    ctx.n = n;
    const double t_new = seconds_per_call(
        [&](int i) {
          st::Cov V = V0;
          ctx.key = key(i);
          value_mix_core(ctx, V, L, C, H, b.lambda, b.gamma);
        },
        min_s);
    const double t_old = seconds_per_call(
        [&](int i) {
          st::Cov V = V0;
          value_mix_hm(V, L, C, H, double(n), b.lambda, b.gamma, key(i));
        },
        min_s);
    st::Cov X = st::Cov::Random(m, m), Y(m, m);
    const double t_gemm = seconds_per_call([&](int) { Y.noalias() = X * X; }, min_s / 4);
    std::printf("m=%d H=%d n=%ld step_new=%.6e value_new=%.6e value_old=%.6e eigen_gemm=%.6e\n", m, H, n, t_step, t_new,
                t_old, t_gemm);
    std::fflush(stdout);
  }
  return 0;
}
