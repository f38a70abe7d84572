// Every C++ driver refuses each out-of-range block parameter and each malformed V0 / X0
// with std::invalid_argument whose message starts with the parameter's name: one
// SUBCASE per (driver, parameter), the bad values generated from the field tables.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include <shaped_transformer/exact.hpp>
#include <shaped_transformer/explicit.hpp>
#include <shaped_transformer/sde.hpp>

#include "driver_helpers.hpp"

namespace st = shaped_transformer;
using namespace st_test;

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

/// A value that breaks `rule` (NaN for a finiteness rule).
double bad_value(const st::Rule& r) {
  switch (r.kind) {
    case st::Rule::Finite: return kNaN;
    case st::Rule::AtLeast: return r.lo - 1.0 == r.unset && r.none == st::Rule::Unset ? r.lo - 2.0 : r.lo - 1.0;
    case st::Rule::Above: return r.lo;
    case st::Rule::Within: return r.hi + 0.5;
    default: return 0.0;
  }
}

/// One network per (kind, numeric field) with that field out of range, plus the
/// cross-field rules (stale lambda, concat heads not dividing the width).
struct BadCase {
  std::string name;   ///< subcase label
  std::string param;  ///< the message must start with this
  st::Network net;
};

template <class B>
void add_field_cases(std::vector<BadCase>& out) {
  st::for_each_field<B>([&](const auto& f) {
    using T = typename std::decay_t<decltype(f)>::value_type;
    if constexpr (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
      if (f.rule.kind == st::Rule::Any) return;
      B b;
      b.*(f.member) = T(bad_value(f.rule));
      out.push_back({std::string(B::kind) + "." + f.name, f.name, st::Network{{b}}});
    }
  });
  if constexpr (std::is_same_v<B, st::ShapedAttention> || std::is_same_v<B, st::StandardAttention> ||
                std::is_same_v<B, st::ShapedMLP> || std::is_same_v<B, st::ReluMLP>) {
    B b;
    b.gamma = 0.8;  // lambda left at sqrt(1 - 0.25): stale
    out.push_back({std::string(B::kind) + ".stale_lam", "lam", st::Network{{b}}});
  }
}

std::vector<BadCase> bad_networks() {
  std::vector<BadCase> v;
  add_field_cases<st::ShapedAttention>(v);
  add_field_cases<st::StandardAttention>(v);
  add_field_cases<st::ShapedMLP>(v);
  add_field_cases<st::ReluMLP>(v);
  return v;
}

bool covers_sde(const st::Network& net) {
  return std::visit([](const auto& b) { return std::decay_t<decltype(b)>::has_sde; }, net.blocks[0]);
}

using Driver = std::function<void(const st::Network&, const st::Cov& V0, const st::MatD& X0)>;

struct NamedDriver {
  const char* name;
  bool takes_tokens, sde;
  Driver run;
};

st::SdeOptions two_steps() {
  st::SdeOptions o;
  o.dt = 0.01;
  o.steps = 2;
  o.save_steps = {0, 2};
  return o;
}

std::vector<NamedDriver> drivers() {
  const st::RunOptions opt;
  return {
      {"simulate_explicit", true, false,
       [opt](const st::Network& n, const st::Cov&, const st::MatD& X) {
         st::simulate_explicit(n, X, 1, 1, 0, {0, 1}, false, opt);
       }},
      {"simulate_law", true, false,
       [opt](const st::Network& n, const st::Cov&, const st::MatD& X) {
         st::simulate_law(n, X, 1, 1, 0, {0, 1}, false, opt);
       }},
      {"simulate_exact", false, false,
       [opt](const st::Network& n, const st::Cov& V, const st::MatD&) {
         st::simulate_exact(n, V, 16, 1, 1, 0, {0, 1}, opt);
       }},
      {"solve_sde", false, true,
       [opt](const st::Network& n, const st::Cov& V, const st::MatD&) { st::solve_sde(n, V, two_steps(), 1, 0, opt); }},
      {"solve_sde_summary", false, true,
       [opt](const st::Network& n, const st::Cov& V, const st::MatD&) {
         st::solve_sde_summary(n, V, two_steps(), 1, 0, opt);
       }},
  };
}

/// Runs the driver and checks that it throws std::invalid_argument starting with `param`.
void check_refuses(const NamedDriver& d, const st::Network& net, const st::Cov& V0, const st::MatD& X0,
                   const std::string& param) {
  std::string msg;
  try {
    d.run(net, V0, X0);
  } catch (const std::invalid_argument& e) {
    msg = e.what();
  }
  CAPTURE(msg);
  CHECK(msg.rfind(param + ":", 0) == 0);
}

}  // namespace

TEST_SUITE("validation") {
  TEST_CASE("every driver refuses each out-of-range block parameter, naming it") {
    const st::Cov V0 = equicorrelated(3, 0.2);
    const st::MatD X0 = tokens(V0, 16);
    for (const auto& d : drivers())
      for (const auto& c : bad_networks()) {
        if (d.sde && !covers_sde(c.net)) continue;  // refused as a kind (next test case)
        SUBCASE((std::string(d.name) + " " + c.name).c_str()) { check_refuses(d, c.net, V0, X0, c.param); }
      }
  }

  TEST_CASE("concatenated heads must divide the width (explicit drivers)") {
    const st::Cov V0 = equicorrelated(3, 0.2);
    const st::MatD X0 = tokens(V0, 16);
    st::ShapedAttention a;
    a.heads = 3;
    a.concat = true;
    for (const auto& d : drivers())
      if (d.takes_tokens) SUBCASE(d.name) {
          check_refuses(d, st::Network{{a}}, V0, X0, "heads");
        }
  }

  TEST_CASE("the SDE drivers refuse kinds and heads without an SDE limit, naming the block") {
    const st::Cov V0 = equicorrelated(3, 0.2);
    st::ShapedAttention general;
    general.alpha = 0.5;
    for (const auto& d : drivers())
      if (d.sde) {
        SUBCASE((std::string(d.name) + " standard").c_str()) {
          check_refuses(d, st::Network{{st::StandardAttention{}}}, V0, st::MatD(), "network");
        }
        SUBCASE((std::string(d.name) + " alpha").c_str()) {
          check_refuses(d, st::Network{{general}}, V0, st::MatD(), "network");
        }
      }
  }

  TEST_CASE("every driver refuses a malformed V0 or X0, naming it") {
    const st::Network net = shaped_net();
    const st::Cov good = equicorrelated(3, 0.2);
    const st::MatD X0 = tokens(good, 16);
    st::Cov nan = good, asym = good, indefinite = good;
    nan(0, 1) = nan(1, 0) = kNaN;
    asym(0, 1) += 0.1;
    indefinite(0, 1) = indefinite(1, 0) = 2.0;  // |rho| > 1: a negative eigenvalue
    const st::Cov nonsquare = st::Cov::Identity(3, 2), empty(0, 0);
    st::MatD Xnan = X0, Xnarrow = st::MatD::Identity(3, 2);
    Xnan(1, 1) = kNaN;
    for (const auto& d : drivers()) {
      if (d.takes_tokens) {
        SUBCASE((std::string(d.name) + " X0 NaN").c_str()) { check_refuses(d, net, good, Xnan, "X0"); }
        SUBCASE((std::string(d.name) + " X0 empty").c_str()) { check_refuses(d, net, good, st::MatD(), "X0"); }
        SUBCASE((std::string(d.name) + " X0 n < m").c_str()) { check_refuses(d, net, good, Xnarrow, "width"); }
      } else {
        const struct {
          const char* what;
          const st::Cov& V;
        } bad[] = {{"NaN", nan},
                   {"non-symmetric", asym},
                   {"not PSD", indefinite},
                   {"non-square", nonsquare},
                   {"empty", empty}};
        for (const auto& b : bad) SUBCASE((std::string(d.name) + " V0 " + b.what).c_str()) {
            check_refuses(d, net, b.V, X0, "V0");
          }
      }
    }
  }

  TEST_CASE("rounding-level asymmetry and negative eigenvalues are accepted (as in Python)") {
    st::Cov V = equicorrelated(3, 0.2);
    V(0, 1) += 1e-14;
    st::RunOptions opt;
    CHECK_NOTHROW(st::simulate_exact(shaped_net(), V, 16, 1, 1, 0, {0, 1}, opt));
  }
}
