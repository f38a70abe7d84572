// Debug access to the counter-based normals, so tests can check their moments,
// their independence of the kernel and their keying.
#include "bindings.hpp"
#include "shaped_transformer/normal_kernels.hpp"

namespace shaped_transformer::python {

void register_rng(py::module_& m) {
  m.def(
      "normals",
      [](std::uint64_t seed, std::uint32_t sample, std::uint32_t block, std::uint32_t matrix, std::uint64_t first,
         std::size_t count, bool reference) {
        py::array_t<float> out(static_cast<py::ssize_t>(count));
        float* p = out.mutable_data();
        const Stream s{seed, sample, block, matrix};
        {
          py::gil_scoped_release release;
          if (reference) fill_normal_reference(s, first, count, p);
          else fill_normal(s, first, count, p);
        }
        return out;
      },
      py::arg("seed"), py::arg("sample"), py::arg("block"), py::arg("matrix"), py::arg("first"), py::arg("count"),
      py::arg("reference") = false, "Normals first..first+count-1 of the stream (seed, sample, block, matrix).");
  m.def("normal_kernel_name", &normal_kernel_name);
}

}  // namespace shaped_transformer::python
