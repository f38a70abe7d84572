#include "bindings.hpp"
#include "shaped_transformer/mutation.hpp"

namespace shaped_transformer::python {
void register_splitting(py::module_& m);
}  // namespace shaped_transformer::python
namespace shaped_transformer::python {
void register_info(py::module_& m);
}  // namespace shaped_transformer::python

PYBIND11_MODULE(_core, m) {
  m.doc() = "C++/Eigen core of shaped_transformer (use the Python package, not this module)";
  using namespace shaped_transformer::python;
  register_rng(m);
  register_blocks(m);
  register_network(m);  // before the drivers, whose signatures name _core.Network
  register_explicit(m);
  register_exact(m);
  register_sde(m);
  register_cuda(m);
  register_splitting(m);
  register_info(m);
#ifdef SHAPED_TRANSFORMER_MUTATIONS
  // Test-only (CMake option SHAPED_TRANSFORMER_MUTATIONS): tests/test_mutations.py.
  m.def(
      "_set_mutation",
      [](const std::string& name, double factor) {
        if (!shaped_transformer::mutation::set(name.c_str(), factor))
          throw std::invalid_argument("name: unknown mutation '" + name + "'");
      },
      py::arg("name"), py::arg("factor"));
#endif
}
