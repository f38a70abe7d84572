#include "bindings.hpp"

PYBIND11_MODULE(_core, m) {
  m.doc() = "C++/Eigen core of shaped_transformer (use the Python package, not this module)";
  using namespace shaped_transformer::python;
  register_rng(m);
  register_explicit(m);
  register_exact(m);
  register_sde(m);
  register_cuda(m);
}
