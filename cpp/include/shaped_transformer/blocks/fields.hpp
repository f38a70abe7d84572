// The field table of a block kind: each parameter once, with its name (the Python
// keyword, also the first word of every error message about it), its member and the
// values it accepts.  validate(), the Python dict parser (cpp/python/bindings.hpp)
// and the typed Python classes are all built from it, so a parameter is declared once.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "../norm.hpp"

namespace shaped_transformer {

/// The values a numeric field accepts (bool and Norm fields: any), and what Python's
/// None stands for in it.
struct Rule {
  enum Kind { Any, Finite, AtLeast, Above, Within } kind = Any;
  double lo = 0.0, hi = 0.0;
  /// None is refused; None is stored as `unset` (and `unset` passes every check: it
  /// means "the default", e.g. key_dim = 0 is n_k = the width); or None derives the
  /// residual weight from gamma, lambda = sqrt(1 - gamma^2).
  enum NoneMeans { Refused, Unset, FromGamma } none = Refused;
  double unset = 0.0;
};
constexpr Rule any_value() { return {Rule::Any, 0.0, 0.0}; }
constexpr Rule finite() { return {Rule::Finite, 0.0, 0.0}; }
constexpr Rule at_least(double lo) { return {Rule::AtLeast, lo, 0.0}; }
constexpr Rule above(double lo) { return {Rule::Above, lo, 0.0}; }
constexpr Rule within(double lo, double hi) { return {Rule::Within, lo, hi}; }
/// `rule`, or the value `unset`, which Python spells None.
constexpr Rule or_unset(Rule rule, double unset) {
  rule.none = Rule::Unset;
  rule.unset = unset;
  return rule;
}
/// The residual weight lambda: finite; None in Python means sqrt(1 - gamma^2).
constexpr Rule residual_weight() {
  Rule r = finite();
  r.none = Rule::FromGamma;
  return r;
}
/// lambda = sqrt(1 - gamma^2), the residual weight that None stands for (0 when gamma > 1,
/// which validate() refuses naming gamma).
inline double lambda_from_gamma(double gamma) { return std::sqrt(std::max(0.0, 1.0 - gamma * gamma)); }

/// One row of a field table: the parameter `name` is the member `member` of B.
template <class B, class T>
struct Field {
  using block_type = B;
  using value_type = T;
  const char* name;
  T B::*member;
  Rule rule;
  const char* doc;
};

template <class B, class T>
constexpr Field<B, T> field(const char* name, T B::*member, Rule rule, const char* doc) {
  return Field<B, T>{name, member, rule, doc};
}

namespace detail {
inline std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}
}  // namespace detail

/// Throws std::invalid_argument "name: must ..." when `value` breaks `rule`.
template <class T>
void check_rule(const char* name, T value, Rule rule) {
  if constexpr (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
    const double v = double(value);
    if (rule.none == Rule::Unset && v == rule.unset) return;
    const std::string got = ", got " + detail::number(v);
    switch (rule.kind) {
      case Rule::Any: return;
      case Rule::Finite:
        if (!std::isfinite(v)) throw std::invalid_argument(std::string(name) + ": must be finite" + got);
        return;
      case Rule::AtLeast:
        if (!(v >= rule.lo) || !std::isfinite(v))
          throw std::invalid_argument(std::string(name) + ": must be >= " + detail::number(rule.lo) + got);
        return;
      case Rule::Above:
        if (!(v > rule.lo) || !std::isfinite(v))
          throw std::invalid_argument(std::string(name) + ": must be > " + detail::number(rule.lo) + got);
        return;
      case Rule::Within:
        if (!(v >= rule.lo && v <= rule.hi))
          throw std::invalid_argument(std::string(name) + ": must lie in [" + detail::number(rule.lo) + ", " +
                                      detail::number(rule.hi) + "]" + got);
        return;
    }
  } else {
    (void)name, (void)value, (void)rule;
  }
}

/// Calls fn(field) for every row of B's field table, in order.
template <class B, class Fn>
void for_each_field(Fn&& fn) {
  std::apply([&](const auto&... f) { (fn(f), ...); }, B::fields());
}

/// Checks every field of b against its rule (the first failure throws).
template <class B>
void check_fields(const B& b) {
  for_each_field<B>([&](const auto& f) { check_rule(f.name, b.*(f.member), f.rule); });
}

/// The residual rule shared by every block: lambda^2 + gamma^2 = 1 (lambda's Python name is `lam`).
inline void check_residual(double gamma, double lambda) {
  if (!(std::abs(lambda * lambda + gamma * gamma - 1.0) <= 1e-9))
    throw std::invalid_argument("lam: lambda^2 + gamma^2 must equal 1, got lambda = " + detail::number(lambda) +
                                ", gamma = " + detail::number(gamma));
}

/// Heads with concat: the width must split into H heads.
inline void check_concat_width(bool concat, int heads, long width) {
  if (concat && width > 0 && width % heads != 0)
    throw std::invalid_argument("heads: with concat the width " + std::to_string(width) +
                                " must be divisible by the number of heads " + std::to_string(heads));
}

}  // namespace shaped_transformer
