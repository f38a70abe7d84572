// The drivers against each other: the exact chain has the law of the finite-width
// network (docs/model.md section 4), so the mean correlation after a few layers agrees
// between the exact chain, the explicit network and the law sampler up to Monte
// Carlo error.
#include <doctest/doctest.h>

#include <cmath>

#include <shaped_transformer/exact.hpp>
#include <shaped_transformer/explicit.hpp>

#include "driver_helpers.hpp"

namespace st = shaped_transformer;
using namespace st_test;

TEST_SUITE("drivers") {
  TEST_CASE("exact chain, explicit network and law sampler agree in mean correlation") {
    const int m = 3, depth = 8;
    const long n = 16;
    const st::Cov V0 = equicorrelated(m, 0.3);
    const st::MatD X0 = tokens(V0, n);
    st::RunOptions opt;
    opt.threads = 0;
    const auto ex = st::simulate_exact(shaped_net(), V0, n, depth, 2000, 3, {depth}, opt);
    const auto xp = st::simulate_explicit(shaped_net(), X0, depth, 400, 3, {depth}, false, opt);
    const auto lw = st::simulate_law(shaped_net(), X0, depth, 400, 3, {depth}, false, opt);
    double me, se_e, mx, se_x, ml, se_l;
    mean_rho(ex, 0, me, se_e);
    mean_rho(xp, 0, mx, se_x);
    mean_rho(lw, 0, ml, se_l);
    INFO("exact " << me << " +- " << se_e << ", explicit " << mx << " +- " << se_x << ", law " << ml << " +- " << se_l);
    // 5 combined standard errors: a false alarm has probability < 1e-6 per check.
    CHECK(std::abs(me - mx) < 5 * std::hypot(se_e, se_x));
    CHECK(std::abs(me - ml) < 5 * std::hypot(se_e, se_l));
  }
}
