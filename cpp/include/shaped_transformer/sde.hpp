// The neural covariance SDE (docs/model.md sections 5-6), integrated over many
// independent paths in parallel.  Layered like diffrax: terms (sde/terms.hpp and the
// block headers), solvers (sde/euler.hpp, sde/tamed_euler.hpp, sde/exact_chain.hpp),
// saving (sde/save_at.hpp).
#pragma once

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "exact.hpp"
#include "sde/euler.hpp"
#include "sde/exact_chain.hpp"
#include "sde/save_at.hpp"
#include "sde/tamed_euler.hpp"
#include "sde/terms.hpp"

namespace shaped_transformer {

enum class SdeScheme { Euler, TamedEuler, ExactChain };
enum class PsdRemedy { None, Clip };

struct SdeOptions {
  double dt = 1e-3;                      ///< step size
  std::int64_t steps = 1000;             ///< number of steps (T = steps * dt)
  std::vector<std::int64_t> save_steps;  ///< step indices at which V is recorded
  SdeScheme scheme = SdeScheme::Euler;
  PsdRemedy psd = PsdRemedy::Clip;       ///< Euler schemes: project onto the PSD cone after each step
};

namespace sde {

/// Width of the exact chain that stands for step dt (1/dt, which must be an integer).
inline long exact_width(double dt, int m) {
  const double w = 1.0 / dt;
  const long n = long(std::llround(w));
  if (std::abs(w - double(n)) > 1e-6 * w)
    throw std::invalid_argument("dt: scheme 'exact_chain' needs 1/dt to be an integer width, got 1/dt = " +
                                std::to_string(w));
  if (n < m) throw std::invalid_argument("dt: scheme 'exact_chain' needs 1/dt >= m (the width n_eff = 1/dt)");
  return n;
}

/// One path with matrices of type M; returns the step at which it blew up (-1:
/// never) and counts projections.
template <class M>
inline std::int64_t solve_path_t(const Network& net, const Cov& V0, const SdeOptions& o, std::uint64_t seed,
                                 std::uint32_t path, double blowup, double* out, std::int64_t& projections,
                                 const CancelToken* cancel) {
  const int m = int(V0.rows());
  SaveAt save(o.save_steps, out, m);
  Workspace<M> ws;
  M V = V0;
  projections = 0;
  save(0, V);
  const bool clip = o.psd == PsdRemedy::Clip;
  for (std::int64_t k = 0; k < o.steps; ++k) {
    if (cancel && cancel->stop_requested()) break;  // a relaxed atomic load: cheap every step
    if (o.scheme == SdeScheme::TamedEuler)
      tamed_euler_step(net, V, o.dt, seed, path, std::uint32_t(k), ws);
    else
      euler_step(net, V, o.dt, seed, path, std::uint32_t(k), ws);
    if (!V.allFinite() || V.diagonal().maxCoeff() > blowup) {
      save.fill_nan();
      return k + 1;
    }
    if (clip) {
      if (psd_clip_root(V, ws.L)) ++projections;
      ws.have_root = true;
    }
    save(k + 1, V);
  }
  save.fill_nan();  // only reached with missing saves when cancelled
  return -1;
}

/// The exact-chain scheme for one path (always Cov: it calls the exact block steps).
inline std::int64_t solve_path_exact(const Network& net, const Cov& V0, const SdeOptions& o, std::uint64_t seed,
                                     std::uint32_t path, double blowup, double* out, const CancelToken* cancel) {
  const int m = int(V0.rows());
  SaveAt save(o.save_steps, out, m);
  Cov V = V0;
  const long n_eff = exact_width(o.dt, m);
  save(0, V);
  for (std::int64_t k = 0; k < o.steps; ++k) {
    if (cancel && cancel->stop_requested()) break;
    exact_chain_step(net, V, n_eff, seed, path, std::uint32_t(k));
    if (!covariance_ok(V, blowup)) {
      save.fill_nan();
      return k + 1;
    }
    save(k + 1, V);
  }
  save.fill_nan();
  return -1;
}

/// One path: dispatches to fixed-size matrices for common m (no heap allocation,
/// unrolled 8 x 8 products) and to Cov otherwise.
inline std::int64_t solve_path(const Network& net, const Cov& V0, const SdeOptions& o, std::uint64_t seed,
                               std::uint32_t path, double blowup, double* out, std::int64_t& projections,
                               const CancelToken* cancel = nullptr) {
  projections = 0;
  if (o.scheme == SdeScheme::ExactChain) return solve_path_exact(net, V0, o, seed, path, blowup, out, cancel);
  switch (V0.rows()) {
    case 2: return solve_path_t<Eigen::Matrix<double, 2, 2>>(net, V0, o, seed, path, blowup, out, projections, cancel);
    case 4: return solve_path_t<Eigen::Matrix<double, 4, 4>>(net, V0, o, seed, path, blowup, out, projections, cancel);
    case 8: return solve_path_t<Eigen::Matrix<double, 8, 8>>(net, V0, o, seed, path, blowup, out, projections, cancel);
    default:
      if (V0.rows() <= 32)  // bounded size: stack storage, no heap allocation per step
        return solve_path_t<Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, 0, 32, 32>>(
            net, V0, o, seed, path, blowup, out, projections, cancel);
      return solve_path_t<Cov>(net, V0, o, seed, path, blowup, out, projections, cancel);
  }
}

inline void check_arguments(const Network& net, const Cov& V0, const SdeOptions& o, int paths) {
  check_has_sde(net);
  if (V0.rows() < 1 || V0.rows() != V0.cols() || !V0.allFinite())
    throw std::invalid_argument("V0: must be a finite, non-empty square matrix");
  if (!(o.dt > 0.0) || !std::isfinite(o.dt)) throw std::invalid_argument("dt: must be > 0");
  if (o.steps < 0 || o.steps > std::int64_t(0xFFFFFFFFu)) throw std::invalid_argument("steps: out of range");
  if (paths < 1) throw std::invalid_argument("paths: must be >= 1");
  SaveAt::check(o.save_steps, o.steps);
  if (o.scheme == SdeScheme::ExactChain) exact_width(o.dt, int(V0.rows()));
}

}  // namespace sde

/// Integrates the SDE of `net` from V0 for `paths` independent paths.
/// Trajectories.exploded holds the step of blow-up (-1: never); .projections the
/// number of PSD projections of each path.
inline Trajectories solve_sde(const Network& net, const Cov& V0, const SdeOptions& o, int paths,
                              std::uint64_t seed, const RunOptions& opt) {
  sde::check_arguments(net, V0, o, paths);
  Trajectories tr(paths, int(o.save_steps.size()), int(V0.rows()));
  tr.projections.assign(std::size_t(paths), 0);
  parallel_for(
      std::size_t(paths), opt.threads,
      [&](std::size_t p, const CancelToken& cancel) {
        tr.exploded[p] = sde::solve_path(net, V0, o, seed, std::uint32_t(p), opt.blowup, tr.V_at(int(p), 0),
                                         tr.projections[p], &cancel);
      },
      opt.poll, opt.progress);
  return tr;
}

}  // namespace shaped_transformer
