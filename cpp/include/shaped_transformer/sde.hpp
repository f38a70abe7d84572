// The neural covariance SDE (docs/model.md sections 5-6), integrated over many
// independent paths in parallel.  Layered like diffrax: terms (sde/terms.hpp and the
// block headers), one step for every solver and backend (kernels/sde_step.hpp),
// solvers (sde/euler.hpp, sde/exact_chain.hpp), saving (save_at.hpp, sde/summary.hpp).
// Every network with an SDE limit runs through the batched SIMD kernel (sde/batch.hpp,
// one path per lane) at m <= 32 with the Euler schemes; the rest through the generic
// per-path solver (detail/sde_impl.hpp).
//
// Definitions in detail/sde_impl.hpp; the library holds the instantiations for
// Network, so including this header costs a consumer no template instantiation.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "network.hpp"
#include "result.hpp"
#include "sde/summary.hpp"
#include "types.hpp"

namespace shaped_transformer {

enum class SdeScheme { Euler, TamedEuler, ExactChain };
enum class PsdRemedy { None, Clip };

struct SdeOptions {
  double dt = 1e-3;                      ///< step size (never changed: exact_chain needs 1/dt to be an integer)
  std::int64_t steps = 1000;             ///< number of steps (T = steps * dt)
  std::vector<std::int64_t> save_steps;  ///< step indices at which V is recorded
  SdeScheme scheme = SdeScheme::Euler;
  PsdRemedy psd = PsdRemedy::Clip;  ///< Euler schemes: project onto the PSD cone after each step
};

/// Integrates the SDE of `net` from V0 (symmetric PSD) for `paths` independent paths.
/// Trajectories.exploded holds the step of blow-up (-1: never); .projections the
/// number of PSD projections of each path.  `kernel`: null or "" (the batch kernel
/// when it covers the network), "generic", "scalar", "avx2" or "avx512".  Throws
/// std::invalid_argument naming the parameter, Cancelled when opt.poll asked to stop.
template <class Net>
Trajectories solve_sde(const Net& net, const Cov& V0, const SdeOptions& o, int paths, std::uint64_t seed,
                       const RunOptions& opt, const char* kernel = nullptr);

/// solve_sde into caller-owned storage: V (paths x save_steps x m x m, row-major),
/// exploded and projections (paths each).  V need not be initialised: every entry is
/// written by the worker thread that integrates its path, so a fresh buffer is
/// first touched in parallel (the Python binding hands it an np.empty array).
/// Returns the integrator that ran ("avx512", "avx2", "scalar" or "generic").
template <class Net>
const char* solve_sde_into(const Net& net, const Cov& V0, const SdeOptions& o, int paths, std::uint64_t seed,
                           const RunOptions& opt, const char* kernel, double* V, std::int64_t* exploded,
                           std::int64_t* projections);

/// What solve_sde_summary returns: the statistics of all paths (sde/summary.hpp)
/// without storing them, the step of blow-up and the PSD projections per path, and
/// the integrator used ("avx512", "avx2", "scalar" or "generic").
struct SdeSummaryResult {
  sde::SdeSummary summary;
  std::vector<std::int64_t> exploded, projections;
  std::string kernel;
};

/// Same contract as solve_sde; per-time summary statistics instead of the paths.
template <class Net>
SdeSummaryResult solve_sde_summary(const Net& net, const Cov& V0, const SdeOptions& o, int paths, std::uint64_t seed,
                                   const RunOptions& opt, const char* kernel = nullptr);

extern template Trajectories solve_sde<Network>(const Network&, const Cov&, const SdeOptions&, int, std::uint64_t,
                                                const RunOptions&, const char*);
extern template const char* solve_sde_into<Network>(const Network&, const Cov&, const SdeOptions&, int, std::uint64_t,
                                                    const RunOptions&, const char*, double*, std::int64_t*,
                                                    std::int64_t*);
extern template SdeSummaryResult solve_sde_summary<Network>(const Network&, const Cov&, const SdeOptions&, int,
                                                            std::uint64_t, const RunOptions&, const char*);

}  // namespace shaped_transformer
