// Facts about the build that the Python package reads instead of repeating them:
// the version (one source, CMakeLists.txt's project(VERSION), passed in as
// SHAPED_TRANSFORMER_VERSION), the sizes of the core's work buffers and the memory
// estimates of the drivers (requests.hpp, from the blocks' own figures), for the
// memory check (python/shaped_transformer/_memory.py).
#include "bindings.hpp"
#include "requests.hpp"
#include "shaped_transformer/workspace.hpp"

#ifndef SHAPED_TRANSFORMER_VERSION
#error "SHAPED_TRANSFORMER_VERSION must be defined by the build (CMakeLists.txt)"
#endif

namespace shaped_transformer::python {

namespace {
constexpr const char* kPybind11Version = PYBIND11_TOSTRING(PYBIND11_VERSION_MAJOR) "." PYBIND11_TOSTRING(
    PYBIND11_VERSION_MINOR) "." PYBIND11_TOSTRING(PYBIND11_VERSION_PATCH);
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
  m.def(
      "simulate_bytes",
      [](const NetworkObject& network, const std::string& method, double m_tokens, double width, double samples,
         double saved, int threads, const std::string& dtype, bool return_X) -> py::typing::Dict<py::str, py::int_> {
        if (method != "explicit" && method != "law" && method != "exact")
          throw std::invalid_argument("method: must be 'explicit', 'law' or 'exact', got '" + method + "'");
        return simulate_parts(network.net, method, m_tokens, width, samples, saved, threads,
                              dtype_arg(py::str(dtype)) == "float32" ? 4 : 8, return_X);
      },
      py::arg("network"), py::arg("method"), py::arg("m"), py::arg("width"), py::arg("samples"), py::arg("saved"),
      py::arg("threads"), py::arg("dtype") = "float64", py::arg("return_X") = false,
      "Peak memory of simulate(method), by item (V, X0, X, workspace), in bytes: what the drivers' memory check "
      "counts.");
  m.def(
      "sde_bytes",
      [](const NetworkObject& network, double m_tokens, double paths, double saved, int threads,
         const std::string& scheme) -> py::typing::Dict<py::str, py::int_> {
        return sde_parts(network.net, m_tokens, paths, saved, threads,
                         scheme_arg(py::str(scheme)) == SdeScheme::ExactChain);
      },
      py::arg("network"), py::arg("m"), py::arg("paths"), py::arg("saved"), py::arg("threads"),
      py::arg("scheme") = "euler",
      "Peak memory of solve_sde, by item (V, paths, workspace), in bytes: what its memory check counts.");
  m.def("exact_mlp_workspace_bytes", &workspace::exact_mlp_workspace_bytes, py::arg("m"),
        "Bytes of the exact chain's MLP tiles (two m x tile float64 matrices) per worker.");
}

}  // namespace shaped_transformer::python
