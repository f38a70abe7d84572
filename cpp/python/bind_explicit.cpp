#include "bindings.hpp"

namespace shaped_transformer::python {

void register_explicit(py::module_& m) { (void)m; }

}  // namespace shaped_transformer::python
