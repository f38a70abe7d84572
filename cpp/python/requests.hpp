// A driver call from Python, checked once: every argument is converted (arguments.hpp),
// the memory the run needs is estimated from the blocks' own figures
// (blocks/resources.hpp) and handed to Python's memory check (`admit`, which raises
// ResourceError), then the core's check of the driver runs once (check_*_arguments)
// and the driver is called with RunOptions::checked, so that it does not check again.
//
// The order is the one a user needs: conversions (TypeError naming the parameter),
// the memory check before anything large is built (the list of saved layers, the
// tokens made from V0, the output), the core's checks, then the rules that only the
// Python API has (a positive diagonal, a threshold above the input).  The memory
// estimate clamps values the core is about to refuse, so that a bad value is
// reported by its check, not as a huge request.
//
// Used by the CPU bindings (bind_explicit.cpp, bind_exact.cpp, bind_sde.cpp) and the
// CUDA ones (bind_cuda.cpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <variant>
#include <vector>

#include "arguments.hpp"
#include "bindings.hpp"
#include "numpy_util.hpp"
#include "shaped_transformer/checks.hpp"
#include "shaped_transformer/detail/exact_impl.hpp"
#include "shaped_transformer/detail/explicit_impl.hpp"
#include "shaped_transformer/detail/sde_impl.hpp"
#include "shaped_transformer/workspace.hpp"

namespace shaped_transformer::python {

// ---- memory -----------------------------------------------------------------------

/// The largest per-block working memory of `net` (blocks run one after the other).
inline Workspace network_workspace(const Network& net, double m, double n, double itemsize) {
  Workspace w;
  for (const auto& b : net.blocks)
    std::visit(
        [&](const auto& blk) {
          const Workspace x = blk.workspace(m, n, itemsize);
          w.explicit_bytes = std::max(w.explicit_bytes, x.explicit_bytes);
          w.exact_bytes = std::max(w.exact_bytes, x.exact_bytes);
        },
        b);
  return w;
}

/// A byte count for Python (an int; doubles keep huge requests from wrapping around).
inline py::int_ bytes(double b) {
  return py::reinterpret_steal<py::int_>(PyLong_FromDouble(std::floor(std::max(b, 0.0))));
}

/// Peak memory of simulate(method), by item (docs/robustness.md): the saved
/// covariances, the input tokens and their copy (explicit, law), the final tokens
/// (return_X) and the workers' working memory (at most min(threads, samples) workers,
/// plus gaussian_gemm's tiles per thread for the explicit network).
inline py::dict simulate_parts(const Network& net, const std::string& method, double m, double n, double samples,
                               double saved, int threads, double itemsize, bool return_X) {
  const double workers = std::max(1.0, std::min(double(std::max(threads, 1)), samples));
  const Workspace w = network_workspace(net, m, n, itemsize);
  py::dict d;
  d["V"] = bytes(samples * saved * m * m * 8);
  if (method == "exact") {
    d["workspace"] = bytes(workers * w.exact_bytes);
    return d;
  }
  d["X0"] = bytes(2 * m * n * 8);
  if (return_X) d["X"] = bytes(samples * m * n * 8);
  const double tiles =
      double(std::max(threads, 1)) * double(workspace::gemm_workspace_bytes(std::size_t(m), std::size_t(itemsize)));
  d["workspace"] = bytes(workers * (w.explicit_bytes + m * n * 8) + tiles);
  return d;
}

/// Peak memory of solve_sde: the saved covariances, 16 bytes per path (blow-up step
/// and projections) and per worker an O(m^2) state (the exact chain's workspace with
/// that scheme).
inline py::dict sde_parts(const Network& net, double m, double paths, double saved, int threads, bool exact_chain) {
  const double workers = std::max(1.0, std::min(double(std::max(threads, 1)), paths));
  py::dict d;
  d["V"] = bytes(paths * saved * m * m * 8);
  d["paths"] = bytes(paths * 16);
  d["workspace"] = bytes(workers * (16 * m * m * 8 + (exact_chain ? network_workspace(net, m, 0, 8).exact_bytes : 0)));
  return d;
}

/// Python's memory check: admit(parts) raises ResourceError when the parts do not fit.
inline void admit(const py::object& admit_fn, const py::dict& parts) {
  if (!admit_fn.is_none()) admit_fn(parts);
}

inline double positive(double v) { return std::max(v, 0.0); }

// ---- rules of the Python API (the core leaves these to its callers) ----------------

/// A covariance with a positive diagonal (all-zero tokens have no correlations).
inline void check_positive_diagonal(const MatD& V, const char* name, const char* what) {
  if (!(V.diagonal().maxCoeff() > 0)) throw std::invalid_argument(std::string(name) + ": " + what);
}

/// The threshold must be finite and above the input's largest variance `start`
/// (a sample that starts above it would be stopped at t = 0); > 0 is the core's rule.
inline void check_blowup_above(double blowup, double start) {
  if (!std::isfinite(blowup)) throw std::invalid_argument("blowup: must be finite, got " + fmt("%g", blowup));
  if (blowup > 0 && !(start < blowup))
    throw std::invalid_argument(
        "blowup=" + fmt("%g", blowup) + " must exceed the largest diagonal entry of the input covariance (" +
        fmt("%.6g", start) + "): samples would stop at t = 0; raise blowup or rescale the input");
}

/// 0.5 (V + V^T), as the package has always passed V0 (the check allows rounding asymmetry).
inline Cov symmetrized(const Cov& V) { return (V + V.transpose()) * 0.5; }

// ---- the layers simulate() saves ----------------------------------------------------

/// save_at (layer indices, any order, repeats allowed) or save_every (every k-th layer
/// and the last), neither: every layer.  count() needs no list (depth 10^9 saved
/// every layer is 8 GB of indices); build() is called after the memory check.
struct Layers {
  bool every = true;
  std::int64_t k = 1;
  std::vector<std::int64_t> given;

  static Layers from(const py::object& save_at, const py::object& save_every) {
    Layers l;
    if (!save_at.is_none() && !save_every.is_none())
      throw std::invalid_argument("save_at: give save_at or save_every, not both");
    if (!save_at.is_none()) {
      l.every = false;
      l.given = index_array("save_at", save_at, "layer indices");
      std::sort(l.given.begin(), l.given.end());
      l.given.erase(std::unique(l.given.begin(), l.given.end()), l.given.end());
    } else if (!save_every.is_none()) {
      l.k = int_arg<std::int64_t>("save_every", save_every);
      if (l.k < 1) throw std::invalid_argument("save_every: must be >= 1, got " + std::to_string(l.k));
    }
    return l;
  }
  double count(std::int64_t depth) const {
    if (!every) return double(given.size());
    const double d = positive(double(depth));
    return std::floor(d / double(k)) + 1 + (std::fmod(d, double(k)) != 0 ? 1 : 0);
  }
  std::vector<std::int64_t> build(std::int64_t depth) const {
    if (!every || depth < 0) return given;
    std::vector<std::int64_t> out;
    for (std::int64_t l = 0; l <= depth; l += k) out.push_back(l);
    if (out.back() != depth) out.push_back(depth);
    return out;
  }
};

// ---- the inputs of simulate(): tokens X0 or their covariance V0 ---------------------

/// The input covariance V0 as float64; tokens (m x n) passed in its place are
/// refused saying where they go (`fix`).  Its values are the core's to check.
inline F64Array covariance_array(const py::object& V0, const char* fix) {
  F64Array a = real_array("V0", V0, 2);
  if (a.shape(0) != a.shape(1))
    throw std::invalid_argument("V0 must be the m x m covariance of the tokens, got shape " +
                                std::string(py::str(py::make_tuple(a.shape(0), a.shape(1)))) + "; " + fix);
  return a;
}

/// X0 (m x n tokens) or V0 (m x m) and the width, converted but not yet checked.
struct Inputs {
  bool from_tokens = false;
  F64Array array;  ///< X0 or V0 as given (float64)
  long width = 0;
  Eigen::Index m = 0;

  static Inputs from(const py::object& X0, const py::object& V0, const py::object& width) {
    if (X0.is_none() == V0.is_none())
      throw std::invalid_argument("X0: give exactly one of X0 (tokens, m x n) or V0 (covariance, m x m)");
    Inputs in;
    in.from_tokens = !X0.is_none();
    if (in.from_tokens) {
      in.array = real_array("X0", X0, 2);
      in.m = in.array.shape(0);
      in.width = long(in.array.shape(1));
      if (!width.is_none()) {
        const long w = int_arg<long>("width", width);
        if (w != in.width) {
          const std::string ms = std::to_string(in.m), ns = std::to_string(in.width), ws = std::to_string(w);
          // A square X0 with another width is likely the covariance, passed as the tokens.
          const std::string hint = in.m == in.width ? "; X0 is " + ms + " x " + ns +
                                                          ": if it is the covariance of the tokens, pass it as "
                                                          "V0= with width=" +
                                                          ws
                                                    : "";
          throw std::invalid_argument("width: width=" + ws + " does not match X0.shape[1]=" + ns +
                                      " (X0 holds the tokens, m x width)" + hint);
        }
      }
    } else {
      in.array = covariance_array(V0, "to start from tokens (m x n) pass them as X0=");
      in.m = in.array.shape(0);
      if (width.is_none())
        throw std::invalid_argument("width: must be given with V0 (the covariance does not say the width)");
      in.width = int_arg<long>("width", width);
    }
    // The core counts widths in 64-bit words and multiplies them by small factors.
    if (in.width >= (long(1) << 62))
      throw std::invalid_argument("width: must be < 2^62, got " + std::to_string(in.width));
    return in;
  }

  /// The largest diagonal entry of X X^T / n, refused when zero (all tokens zero).
  static double largest_variance(const MatD& X) {
    const double v = (X.rowwise().squaredNorm() / double(X.cols())).maxCoeff();
    if (!(v > 0)) throw std::invalid_argument("X0: must not be all zeros");
    return v;
  }
  /// X0 for the exact chain, which runs from its covariance: the core's token check
  /// and not all zeros.
  MatD checked_tokens() const {
    const MatD X = matrix_from(array);
    check_tokens(X, "X0");
    largest_variance(X);
    return X;
  }
  /// V0: the core's covariance check, a positive diagonal and width >= m; returns
  /// V0 symmetrized.
  Cov checked_covariance() const {
    const Cov V = matrix_from(array);
    check_covariance(V, "V0");
    check_positive_diagonal(V, "V0", "must have a positive diagonal (all tokens are zero)");
    if (width < V.rows())
      throw std::invalid_argument("width: must be >= the number of tokens m=" + std::to_string(V.rows()) + ", got " +
                                  std::to_string(width));
    return symmetrized(V);
  }
};

// ---- requests ----------------------------------------------------------------------

/// Arguments of the explicit network and the law sampler, checked.
struct ExplicitRequest {
  MatD X0;
  int depth = 0, samples = 0;
  std::uint64_t seed = 0;
  std::vector<std::int64_t> layers;
  std::string dtype;
  RunOptions opts;
};

/// `tokens(V0, width)` makes the tokens from a checked V0 (inputs.tokens_from_covariance's
/// construction, in NumPy), called after the memory check.
inline ExplicitRequest explicit_request(const NetworkObject& network, const py::object& X0, const py::object& V0,
                                        const py::object& width, const py::object& depth, const py::object& samples,
                                        const py::object& seed, const py::object& save_at, const py::object& save_every,
                                        const py::object& dtype, const py::object& threads, const py::object& return_X,
                                        const py::object& blowup, const py::object& admit_fn,
                                        const py::object& tokens) {
  ExplicitRequest r;
  const Inputs in = Inputs::from(X0, V0, width);
  r.depth = int_arg<int>("depth", depth);
  r.samples = int_arg<int>("samples", samples);
  r.seed = seed_arg(seed);
  const Layers layers = Layers::from(save_at, save_every);
  r.dtype = dtype_arg(dtype);
  r.opts.threads = threads_arg(threads);
  r.opts.return_X = flag_arg(return_X);
  r.opts.blowup = real_arg("blowup", blowup);
  admit(admit_fn, simulate_parts(network.net, "explicit", double(in.m), positive(double(in.width)), positive(r.samples),
                                 layers.count(r.depth), r.opts.threads, r.dtype == "float32" ? 4 : 8, r.opts.return_X));
  double start = 0;
  if (in.from_tokens) {
    r.X0 = matrix_from(in.array);  // checked below with the other arguments
  } else {
    const Cov V = in.checked_covariance();
    if (tokens.is_none()) throw std::invalid_argument("tokens: needed to run from V0");
    r.X0 = matrix_from(F64Array::ensure(tokens(cov_to_numpy(V), in.width)));
    start = V.diagonal().maxCoeff();
  }
  r.layers = layers.build(r.depth);
  check_explicit_arguments(network.net, r.X0, r.depth, r.samples, r.layers, r.opts);
  if (in.from_tokens) start = Inputs::largest_variance(r.X0);
  check_blowup_above(r.opts.blowup, start);
  r.opts.checked = true;
  return r;
}

/// Arguments of the exact chain, checked.
struct ExactRequest {
  Cov V0;
  Eigen::VectorXd s0;  ///< X0 1_n / sqrt(n) when run from X0 (LayerNorm's s_0); empty from V0
  long width = 0;
  int depth = 0, samples = 0;
  std::uint64_t seed = 0;
  std::vector<std::int64_t> layers;
  RunOptions opts;
};

/// `covariance(X0)` is X0 X0^T / n of checked tokens (inputs.covariance, in NumPy).
inline ExactRequest exact_request(const NetworkObject& network, const py::object& X0, const py::object& V0,
                                  const py::object& width, const py::object& depth, const py::object& samples,
                                  const py::object& seed, const py::object& save_at, const py::object& save_every,
                                  const py::object& threads, const py::object& blowup, const py::object& admit_fn,
                                  const py::object& covariance) {
  ExactRequest r;
  const Inputs in = Inputs::from(X0, V0, width);
  r.width = in.width;
  r.depth = int_arg<int>("depth", depth);
  r.samples = int_arg<int>("samples", samples);
  r.seed = seed_arg(seed);
  const Layers layers = Layers::from(save_at, save_every);
  r.opts.threads = threads_arg(threads);
  r.opts.blowup = real_arg("blowup", blowup);
  admit(admit_fn, simulate_parts(network.net, "exact", double(in.m), positive(double(in.width)), positive(r.samples),
                                 layers.count(r.depth), r.opts.threads, 8, false));
  if (in.from_tokens) {
    const MatD X = in.checked_tokens();
    if (covariance.is_none()) throw std::invalid_argument("covariance: needed to run from X0");
    r.s0 = X.rowwise().sum() / std::sqrt(double(X.cols()));  // read by LayerNorm's chain only
    r.V0 = matrix_from(F64Array::ensure(covariance(in.array)));
  } else {
    r.V0 = matrix_from(in.array);
  }
  r.layers = layers.build(r.depth);
  check_exact_arguments(network.net, r.V0, r.width, r.depth, r.samples, r.layers, r.opts);
  if (!in.from_tokens) {
    check_positive_diagonal(r.V0, "V0", "must have a positive diagonal (all tokens are zero)");
    r.V0 = symmetrized(r.V0);
  }
  check_blowup_above(r.opts.blowup, r.V0.diagonal().maxCoeff());
  r.opts.checked = true;
  return r;
}

/// Arguments of the SDE, checked.
struct SdeRequest {
  Cov V0;
  SdeOptions o;
  int paths = 0;
  std::uint64_t seed = 0;
  std::string save, kernel;
  RunOptions opts;
};

/// dt and steps come from shaped_transformer.sde's grid and save_steps from its
/// times; the rest as the user gave them.  `save` == "summary" stores no paths.
inline SdeRequest sde_request(const NetworkObject& network, const py::object& V0, const py::object& dt,
                              const py::object& steps, const py::object& save_steps, const py::object& scheme,
                              const py::object& psd, const py::object& paths, const py::object& seed,
                              const py::object& threads, const py::object& blowup, const py::object& save,
                              const py::object& admit_fn) {
  SdeRequest r;
  const F64Array a =
      covariance_array(V0, "from tokens X0 (m x n) it is shaped_transformer.inputs.covariance(X0) = X0 X0^T / n");
  r.o.dt = real_arg("dt", dt);
  r.o.steps = int_arg<std::int64_t>("steps", steps);
  r.o.save_steps = index_array("save_at", save_steps, "step indices");
  r.o.scheme = scheme_arg(scheme);
  r.o.psd = psd_arg(psd);
  r.paths = int_arg<int>("paths", paths);
  r.seed = seed_arg(seed);
  r.opts.threads = threads_arg(threads);
  r.opts.blowup = real_arg("blowup", blowup);
  r.save = choice_arg("save", save, {"paths", "summary"});
  admit(admit_fn, sde_parts(network.net, double(a.shape(0)), positive(r.paths),
                            r.save == "paths" ? double(r.o.save_steps.size()) : 0.0, r.opts.threads,
                            r.o.scheme == SdeScheme::ExactChain));
  const Cov V = matrix_from(a);
  sde::check_arguments(network.net, V, r.o, r.paths, r.opts);
  check_positive_diagonal(V, "V0", "must have a positive diagonal (all tokens are zero)");
  r.V0 = symmetrized(V);
  check_blowup_above(r.opts.blowup, r.V0.diagonal().maxCoeff());
  r.opts.checked = true;
  return r;
}

/// A covariance argument of the one-step SDE functions (sde_drift, sde_noise): the
/// core's check, a positive diagonal, symmetrized.
inline Cov checked_cov(const char* name, const py::object& V) {
  const Cov C = matrix_from(real_array(name, V, 2));
  check_covariance(C, name);
  check_positive_diagonal(C, name, "must have a positive diagonal (all tokens are zero)");
  return symmetrized(C);
}

/// Fills the caller's `info` dict (when one is given) with what the driver reports.
inline void report(const py::object& info, const char* key, const py::object& value) {
  if (!info.is_none()) info[key] = value;
}

}  // namespace shaped_transformer::python
