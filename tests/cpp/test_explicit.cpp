// The explicit network and the law-exact activation sampler (explicit.hpp).
#include <doctest/doctest.h>

#include <cmath>
#include <stdexcept>

#include <shaped_transformer/explicit.hpp>

#include "driver_helpers.hpp"

namespace st = shaped_transformer;
using namespace st_test;

namespace {

using Driver = st::Trajectories (*)(const st::Network&, const st::MatD&, int, int, std::uint64_t,
                                    const std::vector<std::int64_t>&, bool, const st::RunOptions&);

void check_driver(Driver run, const char* name) {
  CAPTURE(name);
  const st::Cov V0 = equicorrelated(3, 0.4);
  const st::MatD X0 = tokens(V0, 32);
  st::RunOptions one, many;
  one.threads = 1;
  many.threads = 3;
  for (bool f32 : {false, true}) {
    CAPTURE(f32);
    const auto a = run(shaped_net(), X0, 4, 5, 9, {0, 2, 4}, f32, one);
    const auto b = run(shaped_net(), X0, 4, 5, 9, {0, 2, 4}, f32, many);
    CHECK(a.samples == 5);
    CHECK(a.saved == 3);
    CHECK(a.m == 3);
    CHECK(a.V == b.V);  // thread count never changes results
    for (int s = 0; s < 5; ++s) {
      CHECK(a.exploded[s] == -1);
      for (int i = 0; i < 9; ++i) CHECK(a.V_at(s, 0)[i] == doctest::Approx(V0.data()[i]).epsilon(f32 ? 1e-6 : 1e-12));
      for (int i = 0; i < 9; ++i) CHECK(std::isfinite(a.V_at(s, 2)[i]));
    }
    const auto c = run(shaped_net(), X0, 4, 5, 10, {0, 2, 4}, f32, many);
    CHECK(a.V != c.V);
  }
  // return_X keeps the final tokens, whose Gram matrix is the last saved V.
  st::RunOptions keep;
  keep.return_X = true;
  const auto r = run(shaped_net(), X0, 3, 2, 1, {3}, false, keep);
  REQUIRE(r.X.size() == std::size_t(2 * 3 * 32));
  for (int s = 0; s < 2; ++s) {
    Eigen::Map<const st::MatD> X(r.X.data() + s * 3 * 32, 3, 32);
    const st::Cov V = X * X.transpose() / 32.0;
    for (int a = 0; a < 3; ++a)
      for (int b = 0; b < 3; ++b) CHECK(V(a, b) == doctest::Approx(r.V_at(s, 0)[a * 3 + b]).epsilon(1e-10));
  }
  const st::RunOptions opt;
  CHECK_THROWS_AS(run(shaped_net(), X0, -1, 1, 0, {0}, false, opt), std::invalid_argument);
  CHECK_THROWS_AS(run(shaped_net(), X0, 2, 0, 0, {0}, false, opt), std::invalid_argument);
  CHECK_THROWS_AS(run(shaped_net(), X0, 2, 1, 0, {0, 5}, false, opt), std::invalid_argument);
  CHECK_THROWS_AS(run(st::Network{}, X0, 2, 1, 0, {0}, false, opt), std::invalid_argument);
}

}  // namespace

TEST_SUITE("explicit") {
  TEST_CASE("simulate_explicit") { check_driver(&st::simulate_explicit, "explicit"); }
  TEST_CASE("simulate_law") { check_driver(&st::simulate_law, "law"); }

  TEST_CASE("numbers: E[V'] = V for A = I (tau0 = 1e9) and the identity MLP, both drivers; gamma = 0 keeps V") {
    // identity MLP (c_+ = c_- = 0, c = 1): X' = lambda X + gamma X W1 W2 / n, E[V'] = V at any n;
    // shaped attention at tau0 = 1e9: A = I up to 1e-9, E[V'] = V.
    const st::Cov V0 = spd(3);
    const st::MatD X0 = tokens(V0, 16);
    st::ShapedMLP id;
    id.c_plus = 0.0;
    id.c_minus = 0.0;
    id.gamma = 0.8;
    id.lambda = 0.6;
    st::ShapedAttention a;
    a.tau0 = 1e9;
    a.heads = 2;
    a.gamma = 0.8;
    a.lambda = 0.6;
    st::RunOptions opt;
    for (Driver run : {Driver(&st::simulate_explicit), Driver(&st::simulate_law)})
      for (const st::Network& net : {st::Network{{id}}, st::Network{{a}}}) {
        const auto r = run(net, X0, 1, 8000, 3, {1}, false, opt);
        for (int i = 0; i < 3; ++i)
          for (int j = 0; j < 3; ++j) {
            CAPTURE(i);
            CAPTURE(j);
            double mean, se;
            mean_entry(r, 0, i, j, mean, se);
            CHECK(std::abs(mean - V0(i, j)) < 5 * se);
            CHECK(se < 0.05 * V0.cwiseAbs().maxCoeff());
          }
      }
    st::ShapedAttention zero;
    zero.gamma = 0.0;
    zero.lambda = 1.0;
    const auto z = st::simulate_explicit(st::Network{{zero}}, X0, 3, 2, 0, {3}, false, opt);
    for (int i = 0; i < 9; ++i) CHECK(z.V_at(0, 0)[i] == doctest::Approx(V0.data()[i]).epsilon(1e-12));
  }
}
