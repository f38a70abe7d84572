// The SDE integrator (sde.hpp): every scheme runs, saves where asked, is independent
// of the thread count, and refuses networks and arguments it cannot handle.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#include <shaped_transformer/detail/sde_impl.hpp>  // sde::drift, add_noise (white-box)
#include <shaped_transformer/sde.hpp>
#include <shaped_transformer/simd/lanes.hpp>  // acos_lanes on the portable SIMD lanes

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

  TEST_CASE("one Euler step is V0 + b(V0) dt + noise(V0, dW), m = 2..8 (numbers)") {
    for (int m = 2; m <= 8; ++m) {
      CAPTURE(m);
      const st::Cov V0 = spd(m);
      st::Network net = shaped_net();
      std::get<st::ShapedAttention>(net.blocks[0]).tau0 = 0.8;
      std::get<st::ShapedMLP>(net.blocks[1]).c_plus = 0.5;
      st::SdeOptions o;
      o.dt = 0.3;
      o.steps = 1;
      o.save_steps = {1};
      o.psd = st::PsdRemedy::None;
      st::RunOptions opt;
      opt.blowup = 1e30;
      const std::uint64_t seed = 17;
      const auto r = st::solve_sde(net, V0, o, 2, seed, opt);
      st::Cov b;
      st::sde::drift(net, V0, b);
      CHECK(b.cwiseAbs().maxCoeff() > 0.05);
      st::Cov L;
      st::psd_root(V0, L);
      for (int p = 0; p < 2; ++p) {
        st::Cov expect = V0 + o.dt * b;
        for (std::size_t k = 0; k < net.blocks.size(); ++k) {
          std::vector<double> dW(std::size_t(st::sde::noise_dim(net.blocks[k], m)));
          st::sde::brownian_increment(seed, std::uint32_t(p), 0, std::uint32_t(k), o.dt, int(dW.size()), dW.data());
          st::sde::add_noise(net.blocks[k], V0, L, dW.data(), expect);
        }
        expect = (0.5 * (expect + expect.transpose())).eval();
        for (int i = 0; i < m * m; ++i)
          CHECK(r.V_at(p, 0)[i] == doctest::Approx(expect.data()[i]).epsilon(1e-10).scale(V0.cwiseAbs().maxCoeff()));
      }
    }
  }

  TEST_CASE("drift numbers: m = 2 attention and the MLP's nu(rho) (closed forms)") {
    // m = 2: (P V P)_00 = (P V P)_11, so w = 0 and b = gamma^2/tau0^2 tr(VPVP)/4 V.
    st::Cov V(2, 2);
    V << 1.5, 0.3, 0.3, 0.8;
    st::ShapedAttention a;
    a.tau0 = 0.7;
    a.gamma = 0.6;
    const st::Network att{{a}};
    st::Cov b;
    st::sde::drift(att, V, b);
    const double s = (V(0, 0) + V(1, 1) - 2 * V(0, 1)) / 4;  // P V P = s [[1,-1],[-1,1]]
    st::Cov P(2, 2);
    P << 0.5, -0.5, -0.5, 0.5;
    const double tr = (V * P * V * P).trace();
    CHECK(s > 0);
    for (int i = 0; i < 4; ++i)
      CHECK(b.data()[i] == doctest::Approx(0.36 / 0.49 * tr / 4 * V.data()[i]).epsilon(1e-12));
    st::ShapedMLP mlp;
    mlp.c_plus = 0.5;
    mlp.c_minus = -1.5;
    mlp.gamma = 0.6;
    const st::Network ml{{mlp}};
    st::sde::drift(ml, V, b);
    const double rho = 0.3 / std::sqrt(1.5 * 0.8);
    const double nu = 4.0 / (2 * M_PI) * (std::sqrt(1 - rho * rho) - rho * std::acos(rho));
    CHECK(b(0, 0) == 0.0);
    CHECK(b(1, 1) == 0.0);
    CHECK(b(0, 1) == doctest::Approx(0.36 * nu * std::sqrt(1.5 * 0.8)).epsilon(1e-12));
  }

  TEST_CASE("acos_lanes (the MLP drift's arccos, every backend) is within 2 ulp of libm's on [-1, 1]") {
    // ulp distance: |a - b| in units of the spacing of doubles at b.
    auto ulps = [](double a, double b) {
      const double u = std::nextafter(std::abs(b), HUGE_VAL) - std::abs(b);
      return std::abs(a - b) / u;
    };
    std::vector<double> xs = {-1.0,
                              1.0,
                              0.0,
                              -0.0,
                              0.5,
                              -0.5,
                              std::nextafter(0.5, 0.0),
                              std::nextafter(-0.5, 0.0),
                              std::nextafter(1.0, 0.0),
                              std::nextafter(-1.0, 0.0),
                              1e-300,
                              -1e-20,
                              1e-9};
    const int n = 400000;
    for (int i = 0; i <= n; ++i) xs.push_back(-1.0 + 2.0 * i / n);
    for (int i = 1; i <= 2000; ++i) {  // near +-1, where acos ~ sqrt(2 (1 - |x|))
      xs.push_back(1.0 - std::ldexp(double(i), -40));
      xs.push_back(-1.0 + std::ldexp(double(i), -30));
    }
    double worst_scalar = 0.0, worst_simd = 0.0;
    for (double x : xs) {
      const double ref = std::acos(x);
      worst_scalar = std::max(worst_scalar, ulps(st::acos_lanes<st::ScalarLanes>(x), ref));
      const auto v = st::acos_lanes<st::simd::portable::Lanes>(st::simd::portable::Lanes::splat(x));
      worst_simd = std::max(worst_simd, ulps(v[0], ref));
    }
    MESSAGE("acos_lanes: worst ", worst_scalar, " ulp (scalar lanes), ", worst_simd, " ulp (fused lanes)");
    CHECK(worst_scalar <= 2.0);
    CHECK(worst_simd <= 2.0);
    CHECK(st::acos_lanes<st::ScalarLanes>(1.0) == 0.0);
    CHECK(st::acos_lanes<st::ScalarLanes>(-1.0) == std::acos(-1.0));
    CHECK(std::isnan(st::acos_lanes<st::ScalarLanes>(std::nan(""))));
  }

  TEST_CASE("gamma = 0 keeps V exactly; m = 1 mean is a martingale (E[V_T] = V_0 within 5 se)") {
    st::ShapedAttention a;
    a.gamma = 0.0;
    a.lambda = 1.0;
    st::SdeOptions o;
    o.dt = 1.0 / 16;
    o.steps = 16;
    o.save_steps = {16};
    const st::Cov V0 = spd(3);
    const auto r = st::solve_sde(st::Network{{a}}, V0, o, 3, 0, st::RunOptions{});
    for (int p = 0; p < 3; ++p)
      for (int i = 0; i < 9; ++i) CHECK(r.V_at(p, 0)[i] == doctest::Approx(V0.data()[i]).epsilon(1e-14));
    const st::Cov one = st::Cov::Constant(1, 1, 1.5);
    const auto g = st::solve_sde(shaped_net(1), one, o, 20000, 3, st::RunOptions{});
    double mean, se;
    mean_entry(g, 0, 0, 0, mean, se);
    CHECK(std::abs(mean - 1.5) < 5 * se);
    CHECK(se < 0.03);  // measured 0.023: the check has power
  }
}
