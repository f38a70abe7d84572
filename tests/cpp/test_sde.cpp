// The SDE integrator (sde.hpp): every scheme runs, saves where asked, is independent
// of the thread count, and refuses networks and arguments it cannot handle.
#include <doctest/doctest.h>

#include <cmath>
#include <stdexcept>

#include <shaped_transformer/sde.hpp>

#include "driver_helpers.hpp"

namespace st = shaped_transformer;
using namespace st_test;

TEST_SUITE("sde") {
  TEST_CASE("every scheme: shapes, saved input, finite and thread-count independent") {
    const st::Cov V0 = equicorrelated(3, 0.3);
    for (st::SdeScheme scheme : {st::SdeScheme::Euler, st::SdeScheme::TamedEuler, st::SdeScheme::ExactChain}) {
      CAPTURE(int(scheme));
      st::SdeOptions o;
      o.dt = 1.0 / 64;
      o.steps = 32;
      o.save_steps = {0, 16, 32};
      o.scheme = scheme;
      st::RunOptions one, many;
      one.threads = 1;
      many.threads = 3;
      const auto a = st::solve_sde(shaped_net(), V0, o, 6, 5, one);
      const auto b = st::solve_sde(shaped_net(), V0, o, 6, 5, many);
      CHECK(a.samples == 6);
      CHECK(a.saved == 3);
      CHECK(a.m == 3);
      CHECK(a.V == b.V);
      REQUIRE(a.projections.size() == 6u);
      for (int p = 0; p < 6; ++p) {
        CHECK(a.exploded[p] == -1);
        for (int i = 0; i < 9; ++i) CHECK(a.V_at(p, 0)[i] == doctest::Approx(V0.data()[i]).epsilon(1e-14));
        for (int k = 1; k < 3; ++k)
          for (int i = 0; i < 9; ++i) CHECK(std::isfinite(a.V_at(p, k)[i]));
      }
      const auto c = st::solve_sde(shaped_net(), V0, o, 6, 6, many);
      CHECK(a.V != c.V);
    }
  }

  TEST_CASE("blocks without an SDE limit and bad arguments throw std::invalid_argument") {
    const st::Cov V0 = equicorrelated(3, 0.3);
    const st::RunOptions opt;
    st::SdeOptions o;
    o.dt = 0.01;
    o.steps = 10;
    o.save_steps = {0, 10};
    const st::Network standard{{st::StandardAttention{}, st::ReluMLP{}}};
    CHECK_THROWS_AS(st::solve_sde(standard, V0, o, 2, 0, opt), std::invalid_argument);
    CHECK_THROWS_AS(st::solve_sde(shaped_net(), V0, o, 0, 0, opt), std::invalid_argument);
    st::SdeOptions bad = o;
    bad.dt = -1;
    CHECK_THROWS_AS(st::solve_sde(shaped_net(), V0, bad, 2, 0, opt), std::invalid_argument);
    bad = o;
    bad.save_steps = {0, 11};
    CHECK_THROWS_AS(st::solve_sde(shaped_net(), V0, bad, 2, 0, opt), std::invalid_argument);
  }
}
