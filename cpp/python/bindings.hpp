// Shared pieces of the pybind11 layer: the block dictionaries made by
// shaped_transformer._blocks parsed generically from the kinds' field tables, and the
// one bridge between a C++ driver and Python (GIL released, Ctrl-C and the progress
// callback).  The bindings call exactly the drivers a C++ user calls.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <functional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "field_cast.hpp"
#include "shaped_transformer/network.hpp"
#include "shaped_transformer/parallel.hpp"
#include "shaped_transformer/result.hpp"
#include "shaped_transformer/sde.hpp"

namespace shaped_transformer::python {

namespace py = pybind11;

void register_rng(py::module_& m);
void register_explicit(py::module_& m);
void register_exact(py::module_& m);
void register_sde(py::module_& m);
void register_cuda(py::module_& m);  // bind_cuda.cpp (stubs without CUDA)
void register_blocks(py::module_& m);  // bind_blocks.cpp: the typed block classes

/// A block of kind B from its dict: every field of B's table must be present
/// (other keys are ignored); values are converted as the typed classes convert them
/// (field_cast.hpp), ranges are checked by the drivers.
template <class B>
B block_from_dict(const py::dict& d) {
  return block_from_python<B>([&](const char* name) -> py::handle {
    if (!d.contains(name)) throw std::invalid_argument(std::string("blocks: missing field '") + name + "'");
    return d[name];
  });
}

/// Converts a list of block dicts ({"kind": B::kind, field: value, ...}) into a network
/// of the kinds K.
template <class Net>
struct NetworkParser;
template <class... K>
struct NetworkParser<BasicNetwork<K...>> {
  static BasicNetwork<K...> parse(const py::list& blocks) {
    BasicNetwork<K...> net;
    for (const auto& item : blocks) {
      const py::dict d = item.cast<py::dict>();
      if (!d.contains("kind")) throw std::invalid_argument("blocks: missing field 'kind'");
      const std::string kind = d["kind"].cast<std::string>();
      const bool known = ((kind == K::kind ? (net.blocks.emplace_back(block_from_dict<K>(d)), true) : false) || ...);
      if (!known) throw std::invalid_argument("blocks: unknown block kind '" + kind + "'");
    }
    return net;
  }
};

inline Network network_from_python(const py::list& blocks) { return NetworkParser<Network>::parse(blocks); }

/// The one bridge from Python to a driver: runs fn(opts) with the GIL released,
/// opts.threads = threads and opts.poll / opts.progress wired to Python.  Ctrl-C (a
/// pending signal) cancels the run and raises KeyboardInterrupt; an exception raised
/// by `progress` (called with the number of finished samples, GIL held) cancels the
/// run and is re-raised.
template <class Fn>
auto run_driver(RunOptions opts, const py::object& progress, Fn&& fn) {
  using R = std::decay_t<decltype(fn(std::declval<const RunOptions&>()))>;
  // A Python exception raised by the progress callback is put back as the pending
  // Python error and the run is cancelled through poll (an exception must not
  // cross parallel_for's waiting loop while its workers still run).
  bool callback_failed = false;
  opts.poll = [&callback_failed] {
    if (callback_failed) return true;
    py::gil_scoped_acquire gil;
    return PyErr_CheckSignals() != 0;
  };
  if (!progress.is_none()) {
    opts.progress = [&progress, &callback_failed](std::size_t done) {
      if (callback_failed) return;
      py::gil_scoped_acquire gil;
      try {
        progress(done);
      } catch (py::error_already_set& e) {
        e.restore();
        callback_failed = true;
      }
    };
  }
  R result{};
  bool interrupted = false;
  {
    py::gil_scoped_release release;
    try {
      result = fn(static_cast<const RunOptions&>(opts));
    } catch (const Cancelled&) {
      interrupted = true;
    }
  }
  // The KeyboardInterrupt set by PyErr_CheckSignals, or the callback's exception.
  if (interrupted || callback_failed) throw py::error_already_set();
  return result;
}

/// RunOptions from the arguments every driver binding takes.
inline RunOptions run_options(int threads, double blowup, bool return_X = false) {
  RunOptions o;
  o.threads = threads;
  o.blowup = blowup;
  o.return_X = return_X;
  return o;
}

/// SdeOptions from the Python spelling of the scheme and the PSD remedy.
inline SdeOptions sde_options(double dt, std::int64_t steps, const std::string& scheme, const std::string& psd) {
  SdeOptions o;
  o.dt = dt;
  o.steps = steps;
  if (scheme == "euler") o.scheme = SdeScheme::Euler;
  else if (scheme == "tamed_euler") o.scheme = SdeScheme::TamedEuler;
  else if (scheme == "exact_chain") o.scheme = SdeScheme::ExactChain;
  else throw std::invalid_argument("scheme: unknown scheme '" + scheme + "'");
  if (psd == "clip") o.psd = PsdRemedy::Clip;
  else if (psd == "none") o.psd = PsdRemedy::None;
  else throw std::invalid_argument("psd: unknown remedy '" + psd + "'");
  return o;
}

}  // namespace shaped_transformer::python
