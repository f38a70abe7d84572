// Python values -> block field values, with the parameter's name first in every error.
//
// pybind11's own casters would accept True as an integer, and turn a complex number or
// a two-element array into "incompatible function arguments", an error that lists every
// parameter and explains none; these refuse each odd value with a TypeError that says
// what was wrong.  Ranges are not checked here: that is the field table's rule
// (fields.hpp), checked by the block's validate().
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <iterator>
#include <optional>
#include <stdexcept>
#include <limits>
#include <string>
#include <type_traits>

#include "shaped_transformer/blocks/fields.hpp"
#include "shaped_transformer/types.hpp"

namespace shaped_transformer::python {

namespace py = pybind11;

namespace detail {

inline std::string type_name(py::handle h) { return py::str(py::type::handle_of(h).attr("__name__")); }

/// Refuses arrays of more than one element and complex values; a 0-d array becomes its item.
inline py::object scalar_or_refuse(const char* name, py::handle h, const char* what) {
  py::object v = py::reinterpret_borrow<py::object>(h);
  if (py::isinstance<py::array>(v)) {
    const auto a = v.cast<py::array>();
    if (a.ndim() > 0)
      throw py::type_error(std::string(name) + ": must be a single " + what + ", got an array of shape " +
                           std::string(py::str(v.attr("shape"))));
    v = v.attr("item")();
  }
  static const py::handle complex_type = py::object(py::module_::import("numbers").attr("Complex")).release();
  static const py::handle real_type = py::object(py::module_::import("numbers").attr("Real")).release();
  if (py::isinstance(v, complex_type) && !py::isinstance(v, real_type))
    throw py::type_error(std::string(name) + ": must be a real " + what + ", got the complex value " +
                         std::string(py::repr(v)));
  return v;
}

/// Python's bool and NumPy's bool_ (neither is a number here).
inline bool is_boolean(py::handle h) {
  return PyBool_Check(h.ptr()) || type_name(h) == "bool" || type_name(h) == "bool_";
}

}  // namespace detail

/// A real number: int, float, NumPy scalars, 0-d arrays, anything with __float__.
inline double real_from_python(const char* name, py::handle h) {
  const py::object v = detail::scalar_or_refuse(name, h, "number");
  if (v.is_none() || detail::is_boolean(v) || !py::hasattr(v, "__float__"))
    throw py::type_error(std::string(name) + ": must be a real number, got " + detail::type_name(v));
  const double x = PyFloat_AsDouble(v.ptr());
  if (x == -1.0 && PyErr_Occurred()) {
    const py::error_already_set e;
    throw py::type_error(std::string(name) + ": must be a real number: " + e.what());
  }
  return x;
}

/// An integer: int, NumPy integers, 0-d integer arrays (anything with __index__), in
/// the range of T.
template <class T>
T integer_from_python(const char* name, py::handle h) {
  const py::object v = detail::scalar_or_refuse(name, h, "integer");
  if (v.is_none() || detail::is_boolean(v) || !py::hasattr(v, "__index__"))
    throw py::type_error(std::string(name) + ": must be an integer, got " + detail::type_name(v));
  const py::int_ i = py::reinterpret_steal<py::int_>(PyNumber_Index(v.ptr()));
  if (!i) throw py::error_already_set();
  int overflow = 0;
  const long long x = PyLong_AsLongLongAndOverflow(i.ptr(), &overflow);
  if (overflow != 0 || x < (long long)std::numeric_limits<T>::min() || x > (long long)std::numeric_limits<T>::max())
    throw std::invalid_argument(std::string(name) + ": must be at most " +
                                std::to_string(std::numeric_limits<T>::max()) + " in magnitude, got " +
                                std::string(py::str(i)));
  return T(x);
}

/// True or False (Python's or NumPy's); 0, 1 and strings are refused rather than guessed.
inline bool bool_from_python(const char* name, py::handle h) {
  if (!detail::is_boolean(h))
    throw py::type_error(std::string(name) + ": must be True or False, got " + detail::type_name(h));
  return PyObject_IsTrue(h.ptr()) == 1;
}

/// A per-token normalisation by its name ("none", "pre_rms", ...); None is "none".
inline Norm norm_from_python(const char* name, py::handle h) {
  if (h.is_none()) return Norm::None;
  if (py::isinstance<py::str>(h)) {
    const auto s = h.cast<std::string>();
    for (int i = 0; i < int(std::size(kNormNames)); ++i)
      if (s == kNormNames[i]) return Norm(i);
  }
  std::string choices;
  for (const char* n : kNormNames) choices += std::string(choices.empty() ? "" : ", ") + "'" + n + "'";
  throw std::invalid_argument(std::string(name) + ": must be one of " + choices + " or None, got " +
                              std::string(py::repr(h)));
}

/// A field of type T from Python, named `name` in every error.
template <class T>
T field_from_python(const char* name, py::handle h) {
  if constexpr (std::is_same_v<T, Norm>) return norm_from_python(name, h);
  else if constexpr (std::is_same_v<T, bool>) return bool_from_python(name, h);
  else if constexpr (std::is_integral_v<T>) return integer_from_python<T>(name, h);
  else return T(real_from_python(name, h));
}

/// The Python face of a field value: None for an unset one, a Norm by its name.
template <class T>
py::object field_to_python(T value, const Rule& rule) {
  if constexpr (std::is_same_v<T, Norm>) return py::str(norm_name(value));
  else {
    if (rule.none == Rule::Unset && double(value) == rule.unset) return py::none();
    return py::cast(value);
  }
}

/// A block of kind B from Python values: value(name) gives each field's value in
/// table order.  None is what the field's rule says it stands for (fields.hpp); ranges
/// are left to B::validate().
template <class B, class Value>
B block_from_python(Value&& value) {
  B b;
  bool lambda_from_gamma_wanted = false;
  for_each_field<B>([&](const auto& f) {
    using T = typename std::decay_t<decltype(f)>::value_type;
    const py::handle h = value(f.name);
    if (h.is_none() && f.rule.none == Rule::Unset) {
      b.*(f.member) = T(f.rule.unset);
    } else if (h.is_none() && f.rule.none == Rule::FromGamma) {
      lambda_from_gamma_wanted = true;
    } else {
      b.*(f.member) = field_from_python<T>(f.name, h);
      if constexpr (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
        // The unset value itself (key_dim = 0) is spelled None in Python.
        if (f.rule.none == Rule::Unset && double(b.*(f.member)) == f.rule.unset) {
          Rule given = f.rule;
          given.none = Rule::Refused;
          check_rule(f.name, b.*(f.member), given);
        }
      }
    }
  });
  if (lambda_from_gamma_wanted) {
    for_each_field<B>([&](const auto& f) {
      using T = typename std::decay_t<decltype(f)>::value_type;
      if constexpr (std::is_same_v<T, double>)
        if (f.rule.none == Rule::FromGamma) b.*(f.member) = lambda_from_gamma(b.gamma);
    });
  }
  return b;
}

}  // namespace shaped_transformer::python
