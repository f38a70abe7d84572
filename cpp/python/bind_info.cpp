// Facts about the build that the Python package reads instead of repeating them:
// the version (one source, CMakeLists.txt's project(VERSION), passed in as
// SHAPED_TRANSFORMER_VERSION) and the sizes of the core's work buffers, for the
// memory check (python/shaped_transformer/_memory.py).
#include "bindings.hpp"
#include "shaped_transformer/workspace.hpp"

#ifndef SHAPED_TRANSFORMER_VERSION
#error "SHAPED_TRANSFORMER_VERSION must be defined by the build (CMakeLists.txt)"
#endif

namespace shaped_transformer::python {

namespace {
constexpr const char* kPybind11Version =
    PYBIND11_TOSTRING(PYBIND11_VERSION_MAJOR) "." PYBIND11_TOSTRING(PYBIND11_VERSION_MINOR) "." PYBIND11_TOSTRING(
        PYBIND11_VERSION_PATCH);
}

void register_info(py::module_& m) {
  m.attr("__version__") = SHAPED_TRANSFORMER_VERSION;
  // The pybind11 this module was built with: the spelling of the signatures in the
  // type stub depends on it (tests/test_stubs.py).
  m.attr("_pybind11_version") = kPybind11Version;
  m.def(
      "workspace_sizes",
      [] {
        py::dict d;
        d["exact_mlp_tile"] = workspace::kExactMlpTile;
        d["gemm_tile_cols"] = workspace::kGemmTileCols;
        d["gemm_tile_rows_float32"] = workspace::kGemmTileRowsFloat;
        d["gemm_tile_rows_float64"] = workspace::kGemmTileRowsDouble;
        return d;
      },
      "The constants that size the core's fixed work buffers (cpp/include/shaped_transformer/workspace.hpp).");
  m.def(
      "gemm_workspace_bytes",
      [](std::size_t m, std::size_t itemsize) {
        if (itemsize != 4 && itemsize != 8) throw std::invalid_argument("itemsize must be 4 or 8");
        return workspace::gemm_workspace_bytes(m, itemsize);
      },
      py::arg("m"), py::arg("itemsize"),
      "Bytes of one gaussian_gemm thread's buffers for m tokens and elements of itemsize bytes (4 or 8).");
  m.def("exact_mlp_workspace_bytes", &workspace::exact_mlp_workspace_bytes, py::arg("m"),
        "Bytes of the exact chain's MLP tiles (two m x tile float64 matrices) per worker.");
}

}  // namespace shaped_transformer::python
