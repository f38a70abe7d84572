// Definitions of the SDE drivers (sde.hpp) for any network type: the per-path
// solver over the schemes (sde/euler.hpp: Euler and tamed Euler, sde/exact_chain.hpp),
// the batch kernels' glue (sde/batch.hpp, kernels/sde_batch.hpp) and the two ways of
// saving (paths through SaveAt, or summary statistics, sde/summary.hpp).  The library
// instantiates them for Network (cpp/src/sde.cpp); include this header only to run
// other block kinds (they get the portable batch kernel; kernels/instantiate.hpp adds
// the SIMD ones).
#pragma once

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "../checks.hpp"
#include "../mutation.hpp"
#include "../kernels/sde_batch.hpp"
#include "../sde.hpp"
#include "../sde/batch.hpp"
#include "../sde/euler.hpp"
#include "../sde/exact_chain.hpp"
#include "../sde/summary.hpp"
#include "../sde/terms.hpp"
#include "driver_loop.hpp"
#include "exact_impl.hpp"

namespace shaped_transformer {

namespace sde {

/// Width of the exact chain that stands for step dt (1/dt, which must be an integer).
inline long exact_width(double dt, int m) {
  const double w = 1.0 / dt ST_MUTATE(kExactChainWidth);
  const long n = long(std::llround(w));
  if (std::abs(w - double(n)) > 1e-6 * w)
    throw std::invalid_argument("dt: scheme 'exact_chain' needs 1/dt to be an integer width, got 1/dt = " +
                                std::to_string(w));
  if (n < m) throw std::invalid_argument("dt: scheme 'exact_chain' needs 1/dt >= m (the width n_eff = 1/dt)");
  return n;
}

/// One Euler or tamed Euler path of the blocks `blocks` (m = MC when MC > 0); returns
/// the step at which it blew up (-1: never) and counts projections.
template <int MC, class Block>
inline std::int64_t solve_path_t(const std::vector<Block>& blocks, const Cov& V0, const SdeOptions& o,
                                 std::uint64_t seed, std::uint32_t path, double blowup, double* out,
                                 std::int64_t& projections, const CancelToken* cancel) {
  const int m = int(V0.rows());
  SaveAt save(o.save_steps, out, m);
  PathStepper<Block, MC> ps(blocks.data(), int(blocks.size()), m);
  ps.set(V0);
  projections = 0;
  save(0, ps.V());
  const bool clip = o.psd == PsdRemedy::Clip;
  for (std::int64_t k = 0; k < o.steps; ++k) {
    if (cancel && cancel->stop_requested()) break;  // a relaxed atomic load: cheap every step
    if (ps.step(o, seed, path, std::uint32_t(k), blowup)) {
      save.fill_nan();
      return k + 1;
    }
    if (clip && ps.clip()) ++projections;
    save(k + 1, ps.V());
  }
  save.fill_nan();  // only reached with missing saves when cancelled
  return -1;
}

/// The exact-chain scheme for one path (always Cov: it calls the exact block steps).
template <class Net>
inline std::int64_t solve_path_exact(const Net& net, const Cov& V0, const SdeOptions& o, std::uint64_t seed,
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

/// One path: the exact-chain scheme on the network's exact steps, or the Euler
/// schemes on its SDE terms `blocks` (sde_blocks) with compile-time sizes for m = 2,
/// 4, 8 (the loops unroll).
template <class Net>
inline std::int64_t solve_path(const Net& net, const std::vector<SdeBlockOf<Net>>& blocks, const Cov& V0,
                               const SdeOptions& o, std::uint64_t seed, std::uint32_t path, double blowup, double* out,
                               std::int64_t& projections, const CancelToken* cancel = nullptr) {
  projections = 0;
  if (o.scheme == SdeScheme::ExactChain) return solve_path_exact(net, V0, o, seed, path, blowup, out, cancel);
  switch (V0.rows()) {
    case 2: return solve_path_t<2>(blocks, V0, o, seed, path, blowup, out, projections, cancel);
    case 4: return solve_path_t<4>(blocks, V0, o, seed, path, blowup, out, projections, cancel);
    case 8: return solve_path_t<8>(blocks, V0, o, seed, path, blowup, out, projections, cancel);
    default: return solve_path_t<0>(blocks, V0, o, seed, path, blowup, out, projections, cancel);
  }
}

/// The SDE terms of `net` for the Euler schemes (none for the exact-chain scheme,
/// which runs the blocks' exact steps).
template <class Net>
inline std::vector<SdeBlockOf<Net>> euler_blocks(const Net& net, const Cov& V0, const SdeOptions& o) {
  if (o.scheme == SdeScheme::ExactChain) return {};
  return sde_blocks(net, int(V0.rows()));
}

/// The state the Euler schemes start from: V0, or for normalized blocks corr(V0)
/// (post-norm) or pre-norm's initial layer (sde_start); the exact-chain scheme runs the
/// blocks' own normalized steps from V0.
template <class Net>
inline Cov euler_start(const Net& net, const Cov& V0, const SdeOptions& o) {
  return o.scheme == SdeScheme::ExactChain ? V0 : sde_start(net, V0);
}

template <class Net>
inline void check_arguments(const Net& net, const Cov& V0, const SdeOptions& o, int paths, const RunOptions& opt) {
  validate_network(net, 0);
  check_sde_covers(net);
  check_covariance(V0, "V0");
  if (o.scheme != SdeScheme::ExactChain) check_sde_start(net, V0);
  if (!(o.dt > 0.0) || !std::isfinite(o.dt)) throw std::invalid_argument("dt: must be > 0");
  if (o.steps < 0 || o.steps > std::int64_t(0xFFFFFFFFu)) throw std::invalid_argument("steps: out of range");
  if (paths < 1) throw std::invalid_argument("paths: must be >= 1");
  check_save_at(o.save_steps, o.steps, "step");
  check_run_options(opt);
  if (o.scheme == SdeScheme::ExactChain) {
    exact_width(o.dt, int(V0.rows()));
    check_exact_covers(net);
    if (exact_carries_s(net))  // refused before any path runs, on every device (exact_block's reason)
      throw std::invalid_argument(
          "norm: the scheme 'exact_chain' steps V alone, and a LayerNorm block's exact step needs the state s "
          "(docs/norms.md section 6); run the chain (simulate(method='exact')) or scheme='euler'");
  }
}

/// The integrator a run uses: a batch kernel (run != null) or the generic
/// per-path solver (run == null).  kernel: null or "" picks the batch kernel when
/// it covers the network, "generic" forces the per-path solver, "scalar", "avx2"
/// or "avx512" a given batch kernel (for tests and benchmarks).
template <class Net>
inline BatchKernel<Net> choose_kernel(const Net& net, const Cov& V0, const SdeOptions& o, const char* kernel) {
  if (kernel && std::strcmp(kernel, "generic") == 0) return {};
  const bool covered = o.scheme != SdeScheme::ExactChain && batch_covers(net, int(V0.rows()));
  if (!kernel || !*kernel) return covered ? batch_kernel<Net>(nullptr) : BatchKernel<Net>{};
  if (!covered)
    throw std::invalid_argument("kernel: the batch kernels cover the euler and tamed_euler schemes, m <= 32");
  const BatchKernel<Net> k = batch_kernel<Net>(kernel);
  if (!k.run) throw std::invalid_argument(std::string("kernel: '") + kernel + "' is not available on this CPU");
  return k;
}

template <class Net>
inline BatchParams<Net> batch_params(const Net& net, const Cov& V0, const SdeOptions& o, std::uint64_t seed,
                                     double blowup) {
  BatchParams<Net> p;
  p.m = int(V0.rows());
  p.dt = o.dt;
  p.steps = o.steps;
  p.tamed = o.scheme == SdeScheme::TamedEuler;
  p.clip = o.psd == PsdRemedy::Clip;
  p.blowup = blowup;
  p.seed = seed;
  p.save_steps = o.save_steps.data();
  p.nsave = o.save_steps.size();
  p.blocks = sde_blocks(net, p.m);
  for (const auto& b : p.blocks)
    b.visit([&](const auto& t) { p.noise_dim = std::max(p.noise_dim, std::decay_t<decltype(t)>::noise_dim(p.m)); });
  return p;
}

inline std::vector<double> row_major(const Cov& V) {
  const int m = int(V.rows());
  std::vector<double> out(std::size_t(m) * std::size_t(m));
  for (int a = 0; a < m; ++a)
    for (int b = 0; b < m; ++b) out[std::size_t(a * m + b)] = V(a, b);
  return out;
}

/// Stores every path's V at the saved steps in V (paths x nsave x m x m, row-major),
/// and its blow-up step and projections.  Every entry of V is written by the worker
/// that integrates the path (NaN after a blow-up), so V may come uninitialised: its
/// pages are then first touched by the workers, in parallel, not zeroed up front by
/// one thread.  for_each(items, paths_per_item, fn(item, cancel)) runs the work
/// items (e.g. parallel_for); results do not depend on how it schedules them.
template <class Net, class ForEach>
inline void solve_store(const Net& net, const Cov& V0_in, const SdeOptions& o, int paths, std::uint64_t seed,
                        double blowup, const BatchKernel<Net>& k, double* V, std::int64_t* exploded,
                        std::int64_t* projections, ForEach&& for_each) {
  const Cov V0 = euler_start(net, V0_in, o);
  const std::size_t nsave = o.save_steps.size(), mm = std::size_t(V0.rows()) * std::size_t(V0.rows());
  if (!k.run) {
    const auto blocks = euler_blocks(net, V0, o);
    for_each(std::size_t(paths), 1, [&](std::size_t p, const CancelToken& cancel) {
      exploded[p] =
          solve_path(net, blocks, V0, o, seed, std::uint32_t(p), blowup, V + p * nsave * mm, projections[p], &cancel);
    });
    return;
  }
  const BatchParams<Net> bp = batch_params(net, V0, o, seed, blowup);
  const std::vector<double> v0 = row_major(V0);
  const std::size_t W = std::size_t(k.width), items = (std::size_t(paths) + W - 1) / W;
  for_each(items, W, [&](std::size_t i, const CancelToken& cancel) {
    const std::size_t p0 = i * W;
    const int count = int(std::min(W, std::size_t(paths) - p0));
    StoreSink sink(V, p0, count, nsave, int(V0.rows()));
    k.run(bp, v0.data(), std::uint32_t(p0), count, sink, &exploded[p0], &projections[p0], &cancel);
  });
}

/// Accumulates the summary statistics (sde/summary.hpp) of all paths into `total`
/// (constructed with m and the number of saves) without storing paths; exploded
/// and projections are filled per path.
template <class Net, class ForEach>
inline void solve_summary(const Net& net, const Cov& V0_in, const SdeOptions& o, int paths, std::uint64_t seed,
                          double blowup, const BatchKernel<Net>& k, SdeSummary& total,
                          std::vector<std::int64_t>& exploded, std::vector<std::int64_t>& projections, int threads,
                          ForEach&& for_each) {
  const Cov V0 = euler_start(net, V0_in, o);
  const int m = int(V0.rows());
  const std::size_t nsave = o.save_steps.size(), mm = std::size_t(m) * std::size_t(m);
  exploded.assign(std::size_t(paths), -1);
  projections.assign(std::size_t(paths), 0);
  const BatchParams<Net> bp = k.run ? batch_params(net, V0, o, seed, blowup) : BatchParams<Net>{};
  const auto blocks = k.run ? std::vector<SdeBlockOf<Net>>{} : euler_blocks(net, V0, o);
  const std::vector<double> v0 = row_major(V0);
  const std::size_t C = std::size_t(kSummaryChunk), chunks = (std::size_t(paths) + C - 1) / C;
  // Chunks finish in any order; they are merged in chunk order (same sums for any
  // thread count), holding at most `window` finished chunks back.
  std::mutex mu;
  std::condition_variable cv;
  std::map<std::size_t, std::unique_ptr<SdeSummary>> pending;
  std::size_t next = 0;
  const std::size_t window = 4 + 2 * std::size_t(threads > 0 ? threads : 1);
  for_each(chunks, C, [&](std::size_t c, const CancelToken& cancel) {
    auto part = std::make_unique<SdeSummary>(m, nsave);
    const std::size_t first = c * C, last = std::min(std::size_t(paths), first + C);
    if (k.run) {
      SummarySink sink(*part);
      const std::size_t W = std::size_t(k.width);
      for (std::size_t p0 = first; p0 < last && !cancel.stop_requested(); p0 += W)
        k.run(bp, v0.data(), std::uint32_t(p0), int(std::min(W, last - p0)), sink, &exploded[p0], &projections[p0],
              &cancel);
    } else {
      std::vector<double> buf(nsave * mm);
      for (std::size_t p = first; p < last && !cancel.stop_requested(); ++p) {
        exploded[p] =
            solve_path(net, blocks, V0, o, seed, std::uint32_t(p), blowup, buf.data(), projections[p], &cancel);
        for (std::size_t s = 0; s < nsave; ++s)
          if (exploded[p] < 0 || o.save_steps[s] < exploded[p]) part->add_path(s, buf.data() + s * mm, 1);
      }
    }
    std::unique_lock<std::mutex> lock(mu);
    while (c >= next + window && !cancel.stop_requested()) cv.wait_for(lock, std::chrono::milliseconds(20));
    pending[c] = std::move(part);
    for (auto it = pending.find(next); it != pending.end(); it = pending.find(next)) {
      total.merge(*it->second);
      pending.erase(it);
      ++next;
    }
    cv.notify_all();
  });
}

}  // namespace sde

template <class Net>
const char* solve_sde_into(const Net& net, const Cov& V0, const SdeOptions& o, int paths, std::uint64_t seed,
                           const RunOptions& opt, const char* kernel, double* V, std::int64_t* exploded,
                           std::int64_t* projections) {
  if (!opt.checked) sde::check_arguments(net, V0, o, paths, opt);
  std::fill(exploded, exploded + paths, std::int64_t(-1));
  std::fill(projections, projections + paths, std::int64_t(0));
  const sde::BatchKernel<Net> k = sde::choose_kernel(net, V0, o, kernel);
  sde::solve_store(net, V0, o, paths, seed, opt.blowup, k, V, exploded, projections,
                   [&](std::size_t items, std::size_t per, auto&& fn) {
                     detail::for_each_item(items, per, std::size_t(paths), opt, fn);
                   });
  return k.run ? k.name : "generic";
}

template <class Net>
Trajectories solve_sde(const Net& net, const Cov& V0, const SdeOptions& o, int paths, std::uint64_t seed,
                       const RunOptions& opt, const char* kernel) {
  if (!opt.checked) sde::check_arguments(net, V0, o, paths, opt);  // before sizing tr from the arguments
  Trajectories tr(paths, int(o.save_steps.size()), int(V0.rows()));
  tr.projections.assign(std::size_t(paths), 0);
  RunOptions checked = opt;
  checked.checked = true;
  tr.kernel =
      solve_sde_into(net, V0, o, paths, seed, checked, kernel, tr.V.data(), tr.exploded.data(), tr.projections.data());
  return tr;
}

template <class Net>
SdeSummaryResult solve_sde_summary(const Net& net, const Cov& V0, const SdeOptions& o, int paths, std::uint64_t seed,
                                   const RunOptions& opt, const char* kernel) {
  if (!opt.checked) sde::check_arguments(net, V0, o, paths, opt);
  const sde::BatchKernel<Net> k = sde::choose_kernel(net, V0, o, kernel);
  SdeSummaryResult r{sde::SdeSummary(int(V0.rows()), o.save_steps.size()), {}, {}, k.run ? k.name : "generic"};
  sde::solve_summary(net, V0, o, paths, seed, opt.blowup, k, r.summary, r.exploded, r.projections, opt.threads,
                     [&](std::size_t items, std::size_t per, auto&& fn) {
                       detail::for_each_item(items, per, std::size_t(paths), opt, fn);
                     });
  return r;
}

}  // namespace shaped_transformer
