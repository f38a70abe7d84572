// NumPy <-> Eigen helpers for the exact-chain and SDE bindings.
#pragma once

#include <string>
#include <vector>

#include "bindings.hpp"

namespace shaped_transformer::python {

using CArray = py::array_t<double, py::array::c_style | py::array::forcecast>;

/// Copies a (m, m) float64 NumPy array into a Cov.
inline Cov cov_from_numpy(const CArray& a, const char* name) {
  if (a.ndim() != 2 || a.shape(0) != a.shape(1) || a.shape(0) < 1)
    throw std::invalid_argument(std::string(name) + ": must be a non-empty square matrix");
  const Eigen::Index m = a.shape(0);
  Cov V(m, m);
  for (Eigen::Index i = 0; i < m; ++i)
    for (Eigen::Index j = 0; j < m; ++j) V(i, j) = a.at(i, j);
  return V;
}

/// Copies a Cov into a new (m, m) NumPy array.
inline py::array_t<double> cov_to_numpy(const Cov& V) {
  py::array_t<double> out({py::ssize_t(V.rows()), py::ssize_t(V.cols())});
  auto r = out.mutable_unchecked<2>();
  for (Eigen::Index i = 0; i < V.rows(); ++i)
    for (Eigen::Index j = 0; j < V.cols(); ++j) r(i, j) = V(i, j);
  return out;
}

/// Moves a vector into a NumPy array of the given shape without copying.
template <class T>
py::array_t<T> to_numpy(std::vector<T>&& v, std::vector<py::ssize_t> shape) {
  auto* owner = new std::vector<T>(std::move(v));
  py::capsule cap(owner, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return py::array_t<T>(shape, owner->data(), cap);
}

}  // namespace shaped_transformer::python
