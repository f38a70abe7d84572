// Shared pieces of the pybind11 layer.  The Python package validates arguments and
// builds the block dictionaries; this layer converts them, releases the GIL and runs
// the C++ core, polling for Ctrl-C while it runs.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <functional>
#include <stdexcept>
#include <string>

#include "shaped_transformer/network.hpp"
#include "shaped_transformer/parallel.hpp"

namespace shaped_transformer::python {

namespace py = pybind11;

void register_rng(py::module_& m);
void register_explicit(py::module_& m);
void register_exact(py::module_& m);
void register_sde(py::module_& m);
void register_cuda(py::module_& m);  // bind_cuda.cpp (stubs without CUDA)

inline Norm norm_from_string(const std::string& s) {
  if (s == "none") return Norm::None;
  if (s == "pre_rms") return Norm::PreRMS;
  if (s == "pre_layer") return Norm::PreLayer;
  if (s == "post_rms") return Norm::PostRMS;
  if (s == "post_layer") return Norm::PostLayer;
  throw std::invalid_argument("norm: unknown normalisation '" + s + "'");
}

template <class T>
T get(const py::dict& d, const char* key) {
  if (!d.contains(key)) throw std::invalid_argument(std::string("blocks: missing field '") + key + "'");
  return d[key].cast<T>();
}

/// Converts the list of block dicts made by shaped_transformer._blocks into a Network.
inline Network network_from_python(const py::list& blocks) {
  Network net;
  for (const auto& item : blocks) {
    const py::dict d = item.cast<py::dict>();
    const std::string kind = get<std::string>(d, "kind");
    if (kind == "shaped_attention") {
      ShapedAttention b;
      b.heads = get<int>(d, "heads");
      b.tau0 = get<double>(d, "tau0");
      b.gamma = get<double>(d, "gamma");
      b.lambda = get<double>(d, "lam");
      b.alpha = get<double>(d, "alpha");
      b.beta = get<double>(d, "beta");
      b.causal = get<bool>(d, "causal");
      b.key_dim = get<int>(d, "key_dim");
      b.concat = get<bool>(d, "concat");
      net.blocks.emplace_back(b);
    } else if (kind == "standard_attention") {
      StandardAttention b;
      b.heads = get<int>(d, "heads");
      b.gamma = get<double>(d, "gamma");
      b.lambda = get<double>(d, "lam");
      b.key_dim = get<int>(d, "key_dim");
      b.norm = norm_from_string(get<std::string>(d, "norm"));
      b.concat = get<bool>(d, "concat");
      net.blocks.emplace_back(b);
    } else if (kind == "shaped_mlp") {
      ShapedMLP b;
      b.c_plus = get<double>(d, "c_plus");
      b.c_minus = get<double>(d, "c_minus");
      b.gamma = get<double>(d, "gamma");
      b.lambda = get<double>(d, "lam");
      net.blocks.emplace_back(b);
    } else if (kind == "relu_mlp") {
      ReluMLP b;
      b.gamma = get<double>(d, "gamma");
      b.lambda = get<double>(d, "lam");
      b.norm = norm_from_string(get<std::string>(d, "norm"));
      net.blocks.emplace_back(b);
    } else {
      throw std::invalid_argument("blocks: unknown block kind '" + kind + "'");
    }
  }
  return net;
}

/// Runs fn(i, cancel) over `count` samples on `threads` threads with the GIL
/// released; Ctrl-C (a pending Python signal) stops the workers within one block
/// and raises KeyboardInterrupt.  `progress`, if not None, is called with the
/// number of finished samples (with the GIL held).
template <class Fn>
void run_samples(std::size_t count, int threads, Fn&& fn, const py::object& progress = py::none()) {
  std::function<bool()> poll = [] {
    py::gil_scoped_acquire gil;
    return PyErr_CheckSignals() != 0;
  };
  std::function<void(std::size_t)> report;
  if (!progress.is_none()) {
    report = [&progress](std::size_t done) {
      py::gil_scoped_acquire gil;
      progress(done);
    };
  }
  bool interrupted = false;
  {
    py::gil_scoped_release release;
    try {
      parallel_for(count, threads, std::forward<Fn>(fn), poll, report);
    } catch (const Cancelled&) {
      interrupted = true;
    }
  }
  if (interrupted) throw py::error_already_set();  // the KeyboardInterrupt set by PyErr_CheckSignals
}

}  // namespace shaped_transformer::python
