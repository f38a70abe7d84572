// Continuing a batch of SDE (or exact-chain) paths from given states: the inner
// loop of the rare-event splitting estimator (python/shaped_transformer/splitting.py).
//
// Each path starts from its own state V at its own step index, draws its noise from
// its own stream id (the `path` argument of the per-step functions, so the noise of
// step k depends only on (seed, stream, k)) and runs until the first of
//   * the last step `steps`                               -> status Reached,
//   * a state whose largest diagonal entry exceeds `stop` -> status Crossed,
//   * a blow-up (max diag V > blowup or non-finite)       -> status BlownUp
// (the start state is checked first).  It reports the state where it stopped, the
// step index, and the largest score seen on the way.  The score of the state V at
// step k is  max diag V * ((steps - k + 1) / (steps + 1))^a  (a = time_exponent >= 0;
// a = 0: max diag V itself; a > 0 ranks a large V early above the same V late),
// +inf after a blow-up; `stop` applies to the score.
// The same (state, step, stream) always gives the same numbers, so a segment can be
// replayed up to the first crossing of a higher level.  The steps themselves are the
// solver's (PathStepper of sde/euler.hpp, exact_chain_step): this file holds only the
// loop.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "../detail/sde_impl.hpp"

namespace shaped_transformer::sde {

enum class SegmentStatus : int { Reached = 0, Crossed = 1, BlownUp = 2 };

struct Segment {
  std::int64_t step = 0;  ///< in: start step; out: step at which the segment stopped
  double peak = 0.0;      ///< out: largest score on the segment (+inf after a blow-up)
  SegmentStatus status = SegmentStatus::Reached;
};

namespace detail {

/// Largest diagonal entry of the m x m V, +inf when V is not finite or it exceeds `blowup`.
template <class M>
inline double level_of(const M& V, int m, double blowup) {
  double d = -std::numeric_limits<double>::infinity();
  for (int a = 0; a < m; ++a) {
    for (int b = 0; b < m; ++b)
      if (!std::isfinite(V(a, b))) return std::numeric_limits<double>::infinity();
    d = std::max(d, V(a, a));
  }
  return d > blowup ? std::numeric_limits<double>::infinity() : d;
}

/// Time factor of the score at step k: ((steps - k + 1) / (steps + 1))^a.
inline double time_factor(std::int64_t k, std::int64_t steps, double a) {
  return a == 0.0 ? 1.0 : std::pow(double(steps - k + 1) / double(steps + 1), a);
}

/// Checks the state after a step (or at the start); true when the segment ends here.
template <class M>
inline bool check_stop(const M& V, int m, double stop, double blowup, double factor, Segment& seg) {
  const double lv = level_of(V, m, blowup) * factor;
  if (lv > seg.peak) seg.peak = lv;
  if (std::isinf(lv)) {
    seg.status = SegmentStatus::BlownUp;
    return true;
  }
  if (lv > stop) {
    seg.status = SegmentStatus::Crossed;
    return true;
  }
  return false;
}

/// The Euler schemes on the generic solver's stepper (sde/euler.hpp); Vio in and out.
template <int MC, class Net>
inline void continue_euler(const Net& net, double* Vio, int m, const SdeOptions& o, std::uint64_t seed,
                           std::uint32_t stream, double stop, double blowup, double a, Segment& seg) {
  seg.peak = -std::numeric_limits<double>::infinity();
  seg.status = SegmentStatus::Reached;
  const MatRef<double> Vin(Vio, m);
  if (check_stop(Vin, m, stop, blowup, time_factor(seg.step, o.steps, a), seg)) return;
  const auto blocks = sde_blocks(net, m);
  PathStepper<SdeBlockOf<Net>, MC> ps(blocks.data(), int(blocks.size()), m);
  if (normalized(net)) {  // the correlation SDE's start (identity on a state it reached)
    Cov V(m, m);
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < m; ++j) V(i, j) = Vin(i, j);
    check_sde_start(net, V, "V");
    ps.set(sde_start(net, V));
  } else {
    ps.set(Vin);
  }
  auto write_back = [&] {
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < m; ++j) Vio[i * m + j] = ps.V()(i, j);
  };
  const bool clip = o.psd == PsdRemedy::Clip;
  for (std::int64_t k = seg.step; k < o.steps; ++k) {
    const bool blown = ps.step(o, seed, stream, std::uint32_t(k), blowup);
    seg.step = k + 1;
    // Blow-up is checked before the PSD projection, as in the solver.
    if (blown) {
      seg.peak = std::numeric_limits<double>::infinity();
      seg.status = SegmentStatus::BlownUp;
      return write_back();
    }
    if (clip) ps.clip();
    if (check_stop(ps.V(), m, stop, blowup, time_factor(seg.step, o.steps, a), seg)) return write_back();
  }
  write_back();
}

template <class Net>
inline void continue_exact(const Net& net, Cov& V, const SdeOptions& o, std::uint64_t seed, std::uint32_t stream,
                           double stop, double blowup, double a, Segment& seg) {
  seg.peak = -std::numeric_limits<double>::infinity();
  seg.status = SegmentStatus::Reached;
  const int m = int(V.rows());
  if (check_stop(V, m, stop, blowup, time_factor(seg.step, o.steps, a), seg)) return;
  const long n_eff = exact_width(o.dt, m);
  for (std::int64_t k = seg.step; k < o.steps; ++k) {
    exact_chain_step(net, V, n_eff, seed, stream, std::uint32_t(k));
    seg.step = k + 1;
    if (check_stop(V, m, stop, blowup, time_factor(seg.step, o.steps, a), seg)) return;
  }
}

}  // namespace detail

/// Continues one path whose row-major m x m state is `Vio` (overwritten with the
/// state where it stopped) from step seg.step.  Scheme, step size and the last step
/// come from `o` (its save_steps are not used).
template <class Net>
inline void continue_path(const Net& net, double* Vio, int m, const SdeOptions& o, std::uint64_t seed,
                          std::uint32_t stream, double stop, double blowup, double a, Segment& seg) {
  if (o.scheme == SdeScheme::ExactChain) {
    Cov V(m, m);
    for (int a = 0; a < m; ++a)
      for (int b = 0; b < m; ++b) V(a, b) = Vio[a * m + b];
    detail::continue_exact(net, V, o, seed, stream, stop, blowup, a, seg);
    for (int a = 0; a < m; ++a)
      for (int b = 0; b < m; ++b) Vio[a * m + b] = V(a, b);
    return;
  }
  switch (m) {
    case 2: return detail::continue_euler<2>(net, Vio, m, o, seed, stream, stop, blowup, a, seg);
    case 4: return detail::continue_euler<4>(net, Vio, m, o, seed, stream, stop, blowup, a, seg);
    case 8: return detail::continue_euler<8>(net, Vio, m, o, seed, stream, stop, blowup, a, seg);
    default: return detail::continue_euler<0>(net, Vio, m, o, seed, stream, stop, blowup, a, seg);
  }
}

}  // namespace shaped_transformer::sde
