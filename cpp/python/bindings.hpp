// Shared pieces of the pybind11 layer: the network object every binding takes, and
// the one bridge between a C++ driver and Python (GIL released, Ctrl-C and the
// progress callback).  The bindings call exactly the drivers a C++ user calls.
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
void register_cuda(py::module_& m);     // bind_cuda.cpp (stubs without CUDA)
void register_blocks(py::module_& m);   // bind_blocks.cpp: the typed block classes
void register_network(py::module_& m);  // bind_network.cpp: _core.Network and the registry

/// The Python face of a network (_core.Network, subclassed by
/// shaped_transformer.Network): the C++ network the drivers run, converted once from
/// the typed block objects, and those objects themselves (so that Python gets back
/// its own subclasses).  Every binding takes it as is: no dictionary, no parsing.
struct NetworkObject {
  Network net;
  py::tuple blocks;
};

/// The network of `blocks`: one block object or a non-empty sequence of them, each
/// an instance of a kind of the registry (network.hpp).  TypeError / ValueError
/// naming `blocks`.
NetworkObject network_from_blocks(const py::handle& blocks);  // bind_network.cpp

}  // namespace shaped_transformer::python

namespace pybind11::detail {

/// A binding that takes the network also takes one block or a sequence of blocks,
/// converted by network_from_blocks (so that _core.simulate_exact([block], ...) works
/// and a wrong item is a TypeError naming blocks[i], not "incompatible arguments").
template <>
struct type_caster<shaped_transformer::python::NetworkObject>
    : type_caster_base<shaped_transformer::python::NetworkObject> {
  bool load(handle src, bool convert) {
    if (type_caster_base<shaped_transformer::python::NetworkObject>::load(src, convert)) return true;
    if (!convert) return false;
    converted_ = shaped_transformer::python::network_from_blocks(src);
    value = &converted_;
    return true;
  }

 private:
  shaped_transformer::python::NetworkObject converted_;
};

}  // namespace pybind11::detail

namespace shaped_transformer::python {

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

}  // namespace shaped_transformer::python
