// Cost of one exact layer of the per-sample chain (shaped attention with H heads +
// shaped MLP, n = width) and of its parts, in CPU seconds per call on one thread:
// the whole attention and MLP steps (exact_block), one m x m product of full
// matrices and one with a lower-triangular factor, the m x (H m) product C C^T (detail::gemm_rowmajor, the build
// gemm_kernel() names), one root (the chain's: psd_root, with the Cholesky of this CPU's build from 33 tokens on), one
// m x m Bartlett factor, one m x m block of normals, one row softmax (the chain's) and the MLP's O(m^2 n) Gram.  Run by
// bench_exact_layer.py, which runs it once per build of the products (SHAPED_TRANSFORMER_KERNEL), costs the layer's
// products from these timings (its docstring gives the count of each kind) and prints the table
// of docs/performance.md.  It compiles against an older core too (no gemm.hpp), to time the layer before the SIMD
// builds of the products in the same run.
#include <time.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "shaped_transformer/blocks/shaped_attention.hpp"
#include "shaped_transformer/blocks/shaped_mlp.hpp"
#include "shaped_transformer/detail/exact_impl.hpp"
#include "shaped_transformer/exact_common.hpp"
#if __has_include("shaped_transformer/gemm.hpp")
#include "shaped_transformer/gemm.hpp"
#define PRODUCTS st::gemm_kernel()
#else  // a core from before the SIMD builds of the products (bench_exact_layer.py --baseline-build)
#define PRODUCTS "before-gemm.hpp"
#endif

namespace st = shaped_transformer;

// CPU time of this process: the machine is shared, and wall time counts the others.
static double cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

template <class F>
static double seconds_per_call(F&& f, double min_s) {
  int calls = 0;
  const double t0 = cpu_seconds();
  for (;;) {
    f(calls++);
    const double el = cpu_seconds() - t0;
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
  using Ln = st::ScalarLanes;
  using HostLn = st::exact_generic::HostCtx<0>::Ln;  // its softmax: SIMD rows from 33 tokens on (row_softmax.hpp)
  st::ShapedAttention att;
  att.heads = H;
  att.tau0 = 1.0;
  att.gamma = 0.5;
  att.lambda = std::sqrt(0.75);
  st::ShapedMLP mlp;
  mlp.gamma = 0.5;
  mlp.lambda = std::sqrt(0.75);
  auto key = [](int i) { return st::ExactKey{1, std::uint32_t(i), 0, nullptr}; };
  for (int a = 4; a < argc; ++a) {
    const int m = std::atoi(argv[a]);
    const st::Cov V0 = 0.7 * st::Cov::Identity(m, m) + 0.3 * st::Cov::Ones(m, m);
    const double t_att = seconds_per_call(
        [&](int i) {
          st::Cov V = V0;
          st::exact_block(st::Block(att), V, n, key(i));
        },
        min_s);
    const double t_mlp = seconds_per_call(
        [&](int i) {
          st::Cov V = V0;
          st::exact_block(st::Block(mlp), V, n, key(i));
        },
        min_s);
    st::exact_generic::HostCtx<0> c(m, H * m);
    c.n = n;
    c.key = key(0);
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < m; ++j) c.V(i, j) = V0(i, j);
    auto L = c.tmp(0), X = c.tmp(1), Y = c.tmp(2), B = c.tmp(3);
    c.root(c.V, L);
    c.gaussian(5, X);
    auto C = c.wide(0, H * m);
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < H * m; ++j) C(i, j) = 0.01 * double((i * 7 + j * 3) % 11);
    auto X2 = c.tmp(4);
    c.gaussian(6, X2);
    const double t_gemm = seconds_per_call([&](int) { st::mul<Ln>(Y, X2, X); }, min_s / 4);
    const double t_trmm = seconds_per_call([&](int) { st::mul<Ln>(Y, L, X, true); }, min_s / 4);
    const double t_cct = seconds_per_call([&](int) { st::mul_nt<Ln>(Y, C, C); }, min_s / 4);
    const double t_root = seconds_per_call([&](int) { c.root(c.V, L); }, min_s / 4);
    const double t_wishart = seconds_per_call(
        [&](int i) {
          c.key = key(i);
          c.wishart(double(n), m, 0, 1, B);
        },
        min_s / 4);
    const double t_normals = seconds_per_call(
        [&](int i) {
          c.key = key(i);
          c.gaussian(5, X);
        },
        min_s / 4);
    const double t_softmax = seconds_per_call(
        [&](int) {
          for (int i = 0; i < m; ++i)
            for (int j = 0; j < m; ++j) Y(i, j) = 0.001 * double(i - j);
          st::softmax_rows<HostLn>(Y, false);
        },
        min_s / 4);
    const double t_gram = seconds_per_call(
        [&](int i) {
          c.key = key(i);
          c.gram(L, 1.0, 0.5, Y);
        },
        min_s / 4);
    std::printf(
        "m=%d H=%d n=%ld products=%s attention=%.6e mlp=%.6e gemm=%.6e trmm=%.6e cct=%.6e root=%.6e wishart=%.6e "
        "normals=%.6e softmax=%.6e mlp_gram=%.6e\n",
        m, H, n, PRODUCTS, t_att, t_mlp, t_gemm, t_trmm, t_cct, t_root, t_wishart, t_normals, t_softmax, t_gram);
    std::fflush(stdout);
  }
  return 0;
}
