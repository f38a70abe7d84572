// The drivers' arguments from Python values, each error naming the parameter first.
//
// These only convert (a TypeError for a value of the wrong kind, a ValueError for an
// integer beyond the C type or a string that is not one of the choices); the ranges
// are the core's checks (checks.hpp, the drivers' check_* functions), run once by the
// request builders of requests.hpp.  Arrays are converted as the Python package
// used to: through numpy.asarray, refusing complex, object and string arrays.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#endif

#include "field_cast.hpp"
#include "shaped_transformer/sde.hpp"
#include "shaped_transformer/types.hpp"

namespace shaped_transformer::python {

namespace py = pybind11;

using F64Array = py::array_t<double, py::array::c_style | py::array::forcecast>;

/// "%g" of a number, as Python's f"{x:g}" writes it in the messages.
inline std::string fmt(const char* spec, double v) {
  char buf[48];
  std::snprintf(buf, sizeof buf, spec, v);
  return buf;
}

/// An integer argument of type T (TypeError for non-integers, bools included).
template <class T>
T int_arg(const char* name, py::handle h) {
  return integer_from_python<T>(name, h);
}

/// A real argument (TypeError for non-numbers, bools, complex values and arrays).
inline double real_arg(const char* name, py::handle h) { return real_from_python(name, h); }

/// The Philox key: an integer in [0, 2^64), given explicitly.  The messages are the
/// ones of every other entry point that takes a seed (the report's and the atlas's
/// study.seed, the splitting estimator: _validate.check_seed), word for word.
inline std::uint64_t seed_arg(py::handle h, const char* name = "seed") {
  if (h.is_none())
    throw std::invalid_argument(std::string(name) +
                                " must be given explicitly (an integer in [0, 2^64)) for reproducible results");
  if (detail::is_boolean(h) || !py::hasattr(h, "__index__"))
    throw py::type_error(std::string(name) + " must be an integer in [0, 2^64), got " + detail::type_name(h));
  const py::int_ i = py::reinterpret_steal<py::int_>(PyNumber_Index(h.ptr()));
  if (!i) throw py::error_already_set();
  const unsigned long long v = PyLong_AsUnsignedLongLong(i.ptr());
  if (v == static_cast<unsigned long long>(-1) && PyErr_Occurred()) {
    PyErr_Clear();
    throw std::invalid_argument(std::string(name) + " must lie in [0, 2^64), got " + std::string(py::str(i)));
  }
  return std::uint64_t(v);
}

/// The cores this process may run on (its CPU affinity, as Python's os.sched_getaffinity).
inline int all_cores() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
  return int(std::max(1u, std::thread::hardware_concurrency()));
}

/// Worker threads: None or 0 mean all cores; a negative count is left to the core's
/// check (check_run_options), which names `threads`.
inline int threads_arg(py::handle h) {
  if (h.is_none()) return all_cores();
  const int t = int_arg<int>("threads", h);
  return t == 0 ? all_cores() : t;
}

/// True or False, as Python's truth value (the package's flags never refused 0 / 1).
inline bool flag_arg(py::handle h) { return PyObject_IsTrue(h.ptr()) == 1; }

/// One of `choices`; anything else (another string, None, a number) is a ValueError.
inline std::string choice_arg(const char* name, py::handle h, std::initializer_list<const char*> choices) {
  if (py::isinstance<py::str>(h)) {
    const auto s = h.cast<std::string>();
    for (const char* c : choices)
      if (s == c) return s;
  }
  std::string list;
  for (const char* c : choices) list += std::string(list.empty() ? "" : ", ") + "'" + c + "'";
  throw std::invalid_argument(std::string(name) + ": must be one of (" + list + "), got " + std::string(py::repr(h)));
}

/// The SDE scheme and PSD remedy by their Python names.
inline SdeScheme scheme_arg(py::handle h) {
  const std::string s = choice_arg("scheme", h, {"euler", "tamed_euler", "exact_chain"});
  return s == "euler" ? SdeScheme::Euler : s == "tamed_euler" ? SdeScheme::TamedEuler : SdeScheme::ExactChain;
}
inline PsdRemedy psd_arg(py::handle h) {
  return choice_arg("psd", h, {"clip", "none"}) == "clip" ? PsdRemedy::Clip : PsdRemedy::None;
}

/// "float64" or "float32": those strings, NumPy's float64 / float32 types or dtypes.
inline std::string dtype_arg(py::handle h) {
  if (py::isinstance<py::str>(h)) {
    const auto s = h.cast<std::string>();
    if (s == "float64" || s == "float32") return s;
  } else {
    const py::module_ np = py::module_::import("numpy");
    for (const char* t : {"float64", "float32"})
      if (h.is(np.attr(t)) || (py::isinstance(h, np.attr("dtype")) && std::string(py::str(h.attr("name"))) == t))
        return t;
  }
  throw std::invalid_argument("dtype: must be 'float64' or 'float32', got " + std::string(py::repr(h)));
}

/// A `ndim`-d array of real numbers (booleans and integers included) as C-ordered
/// float64; the values themselves (finite, shape) are the core's to check.
inline F64Array real_array(const char* name, py::handle h, int ndim) {
  const std::string n(name);
  py::object a;
  try {
    a = py::module_::import("numpy").attr("asarray")(h);
  } catch (py::error_already_set& e) {  // ragged lists and the like
    throw std::invalid_argument(n + ": must be a " + std::to_string(ndim) + "-d array of real numbers: " + e.what());
  }
  const auto kind = std::string(py::str(a.attr("dtype").attr("kind")));
  if (kind == "c") throw py::type_error(n + ": must be real, got a complex array");
  if (kind != "b" && kind != "i" && kind != "u" && kind != "f")
    throw py::type_error(n + ": must be an array of real numbers, got dtype " + std::string(py::str(a.attr("dtype"))));
  if (a.attr("ndim").cast<int>() != ndim)
    throw std::invalid_argument(n + ": must be a " + std::to_string(ndim) + "-d array, got shape " +
                                std::string(py::str(a.attr("shape"))));
  return F64Array::ensure(a);
}

/// A 2-d float64 array as an Eigen matrix (row-major values, column-major storage).
inline MatD matrix_from(const F64Array& a) {
  MatD M(a.shape(0), a.shape(1));
  const auto r = a.unchecked<2>();
  for (py::ssize_t i = 0; i < a.shape(0); ++i)
    for (py::ssize_t j = 0; j < a.shape(1); ++j) M(i, j) = r(i, j);
  return M;
}

/// A non-empty 1-d array of integers (e.g. saved layer or step indices), as given.
inline std::vector<std::int64_t> index_array(const char* name, py::handle h, const char* what) {
  const std::string err = std::string(name) + ": must be a non-empty 1-d array of " + what + " (integers)";
  py::object a;
  try {
    a = py::module_::import("numpy").attr("asarray")(h);
  } catch (py::error_already_set&) {
    throw std::invalid_argument(err);
  }
  const auto kind = std::string(py::str(a.attr("dtype").attr("kind")));
  if (a.attr("ndim").cast<int>() != 1 || a.attr("size").cast<py::ssize_t>() == 0 || (kind != "i" && kind != "u"))
    throw std::invalid_argument(err);
  const auto v = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(a);
  return std::vector<std::int64_t>(v.data(), v.data() + v.size());
}

}  // namespace shaped_transformer::python
