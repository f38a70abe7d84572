// Must-show of issues #12 and #22: a block kind defined in one header
// (scaled_identity_block.hpp) runs through the explicit network, the law sampler, the
// exact chain and the SDE, each on the generic path and on the batched SIMD kernels,
// with one registry line and nothing else.  The SIMD kernels for the test network are
// compiled by block_kind_kernels_avx2.cpp / _avx512.cpp exactly as the library's
// kernels are for its own network; tests/test_cuda.py compiles the CUDA kernels for it.
#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include <shaped_transformer/detail/exact_impl.hpp>
#include <shaped_transformer/detail/explicit_impl.hpp>
#include <shaped_transformer/detail/sde_impl.hpp>

#include "driver_helpers.hpp"
#include "scaled_identity_block.hpp"

namespace st = shaped_transformer;
using namespace st_test;

#if defined(ST_TEST_SIMD_KERNELS)
// The SIMD builds of the batched kernels for TestNetwork (block_kind_kernels_*.cpp).
namespace st_test {
st::sde::BatchFn<TestNetwork> sde_kernel_avx2();
st::sde::BatchFn<TestNetwork> sde_kernel_avx512();
st::exact_batch::BatchFn<TestNetwork> exact_kernel_avx2();
st::exact_batch::BatchFn<TestNetwork> exact_kernel_avx512();
}  // namespace st_test
template <>
struct st::sde::SimdBatch<TestNetwork> {
  static BatchFn<TestNetwork> get(SimdLevel l) {
    return l == SimdLevel::Avx512 ? sde_kernel_avx512() : l == SimdLevel::Avx2 ? sde_kernel_avx2() : nullptr;
  }
};
template <>
struct st::exact_batch::SimdBatch<TestNetwork> {
  static BatchFn<TestNetwork> get(SimdLevel l) {
    return l == SimdLevel::Avx512 ? exact_kernel_avx512() : l == SimdLevel::Avx2 ? exact_kernel_avx2() : nullptr;
  }
};
#endif

namespace {

double max_rel(const double* got, const st::Cov& want) {
  double e = 0.0;
  const int m = int(want.rows());
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) e = std::max(e, std::abs(got[i * m + j] - want(i, j)) / want.cwiseAbs().maxCoeff());
  return e;
}

/// The kernels this CPU and build have for the test network ("scalar" always).
std::vector<std::string> batch_kernels() {
  std::vector<std::string> k;
  for (const char* name : {"scalar", "avx2", "avx512"})
    if (st::sde::batch_kernel<TestNetwork>(name).run) k.push_back(name);
  return k;
}

}  // namespace

TEST_SUITE("block_kind") {
  TEST_CASE("a test-only kind runs through every driver with one registry line") {
    const double a = 0.7;
    const long n = 200;
    const int depth = 200, m = 3;  // T = depth / n = 1
    const st::Cov V0 = spd(m);
    const st::Cov VT = std::pow(1.0 + a / double(n), depth) * V0;  // the chain's exact value
    const st::Cov Vlim = std::exp(a) * V0;                         // the SDE limit e^{aT} V0
    TestNetwork net{{ScaledIdentity{a}}};
    st::RunOptions opt;
    opt.threads = 2;

    SUBCASE("exact chain: V(depth) = (1 + a/n)^depth V0, generic path and every batched kernel") {
      for (const char* k : {"generic", ""}) {
        CAPTURE(k);
        const auto r = st::simulate_exact(net, V0, n, depth, 2, 1, {0, depth}, opt, k);
        CHECK(max_rel(r.V_at(0, 0), V0) == 0.0);
        CHECK(max_rel(r.V_at(1, 1), VT) < 1e-12);
        CHECK(max_rel(r.V_at(0, 1), Vlim) < a * a / double(n));  // (1 + a/n)^n vs e^a: O(a^2/n)
      }
      REQUIRE(st::exact_batch::covers(net, m, n));
      for (const std::string& k : batch_kernels()) {
        CAPTURE(k);
        const auto r = st::simulate_exact(net, V0, n, depth, 9, 1, {0, depth}, opt, k.c_str());
        for (int s = 0; s < 9; ++s) CHECK(max_rel(r.V_at(s, 1), VT) < 1e-12);
      }
    }
    SUBCASE("explicit network and law sampler equal the exact chain (deterministic block)") {
      const st::MatD X0 = tokens(V0, n);
      const auto ex = st::simulate_exact(net, V0, n, depth, 1, 1, {0, depth}, opt);
      for (bool law : {false, true}) {
        CAPTURE(law);
        const auto r = law ? st::simulate_law(net, X0, depth, 1, 1, {0, depth}, false, opt)
                           : st::simulate_explicit(net, X0, depth, 1, 1, {0, depth}, false, opt);
        st::Cov Vex(m, m);
        for (int i = 0; i < m * m; ++i) Vex(i / m, i % m) = ex.V_at(0, 1)[i];
        CHECK(max_rel(r.V_at(0, 1), Vex) < 1e-10);
        CHECK(r.exploded[0] == -1);
      }
    }
    SUBCASE("SDE: Euler gives (1 + a dt)^steps V0 -> e^{aT} V0, generic and batched; exact_chain equals the chain") {
      st::SdeOptions o;
      o.dt = 1.0 / double(n);
      o.steps = depth;
      o.save_steps = {0, depth};
      REQUIRE(st::sde::batch_covers(net, m));
      std::vector<std::string> kernels = batch_kernels();
      kernels.push_back("generic");
      for (const std::string& k : kernels) {
        CAPTURE(k);
        const auto r = st::solve_sde(net, V0, o, 3, 5, opt, k.c_str());
        CHECK(max_rel(r.V_at(2, 1), VT) < 1e-12);  // Euler on dV = a V dt: the same product
        CHECK(r.projections[2] == 0);
        CHECK(max_rel(r.V_at(0, 1), Vlim) < a * a / double(n));
      }
      // with the library's kinds in the same layer, every batched kernel equals the generic path to rounding
      TestNetwork mixed{{st::ShapedAttention{}, ScaledIdentity{a}, st::ShapedMLP{}}};
      const st::Cov W0 = equicorrelated(4, 0.3);
      o.steps = 20;
      o.save_steps = {0, 10, 20};
      const auto g = st::solve_sde(mixed, W0, o, 7, 3, opt, "generic");
      for (const std::string& k : batch_kernels()) {
        CAPTURE(k);
        const auto b = st::solve_sde(mixed, W0, o, 7, 3, opt, k.c_str());
        CHECK(b.exploded == g.exploded);
        double scale = 0.0, diff = 0.0;
        for (std::size_t i = 0; i < g.V.size(); ++i) {
          scale = std::max(scale, std::abs(g.V[i]));
          diff = std::max(diff, std::abs(g.V[i] - b.V[i]));
        }
        CHECK(diff <= 1e-12 * scale);
      }
      o.scheme = st::SdeScheme::ExactChain;
      o.steps = depth;
      o.save_steps = {0, depth};
      const auto c = st::solve_sde(net, V0, o, 1, 5, opt);
      CHECK(max_rel(c.V_at(0, 1), VT) < 1e-12);
      // the summary driver runs it too
      const auto s = st::solve_sde_summary(net, V0, o, 4, 5, opt);
      CHECK(s.summary.alive[1] == 4);
      CHECK(s.kernel == "generic");
    }
    SUBCASE("its parameter is validated from its field table") {
      TestNetwork bad{{ScaledIdentity{std::nan("")}}};
      CHECK_THROWS_WITH_AS(st::simulate_exact(bad, V0, n, 1, 1, 0, {0}, opt), doctest::Contains("a: must be finite"),
                           std::invalid_argument);
    }
    SUBCASE("a kind without norm cannot share the exact chain with a LayerNorm block") {
      // LayerNorm carries the state s, which only kinds with a norm (with_norm) update.
      st::ShapedAttention ln;
      ln.norm = st::Norm::PreLayer;
      TestNetwork mixed{{ln, ScaledIdentity{0.5}}};
      CHECK_THROWS_WITH_AS(
          st::simulate_exact(mixed, V0, n, 1, 1, 0, {0}, opt),
          doctest::Contains("scaled_identity has no norm, so its exact step does not carry LayerNorm's "
                            "state s"),
          std::invalid_argument);
      TestNetwork alone{{ln}};
      CHECK(st::simulate_exact(alone, V0, n, 1, 2, 0, {0, 1}, opt).kernel != "generic");  // the kernels carry s
    }
  }
}
