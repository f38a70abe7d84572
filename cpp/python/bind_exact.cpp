#include "bindings.hpp"

namespace shaped_transformer::python {

void register_exact(py::module_& m) { (void)m; }

}  // namespace shaped_transformer::python
