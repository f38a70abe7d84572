// Python entry of the exact m x m chain: _core.simulate_exact (see simulate.py).
#include "bindings.hpp"
#include "numpy_util.hpp"
#include "shaped_transformer/exact.hpp"
#include "shaped_transformer/exact/batch.hpp"

namespace shaped_transformer::python {

void register_exact(py::module_& m) {
  m.def(
      "simulate_exact",
      [](const py::list& blocks, const CArray& V0a, long width, int depth, int samples, std::uint64_t seed,
         const std::vector<std::int64_t>& save_at, int threads, double blowup, const py::object& progress,
         const std::string& kernel) {
        const Network net = network_from_python(blocks);
        const Cov V0 = cov_from_numpy(V0a, "V0");
        Trajectories tr = run_driver(run_options(threads, blowup), progress, [&](const RunOptions& o) {
          return simulate_exact(net, V0, width, depth, samples, seed, save_at, o, kernel.c_str());
        });
        const py::ssize_t mm = V0.rows();
        return py::make_tuple(to_numpy(std::move(tr.V), {samples, py::ssize_t(save_at.size()), mm, mm}),
                              to_numpy(std::move(tr.exploded), {samples}));
      },
      py::arg("blocks"), py::arg("V0"), py::arg("width"), py::arg("depth"), py::arg("samples"), py::arg("seed"),
      py::arg("save_at"), py::arg("threads"), py::arg("blowup"), py::arg("progress") = py::none(),
      py::arg("kernel") = "",
      "Exact m x m covariance chain (docs/model.md section 4).  kernel: '' (the batched SIMD kernel when it "
      "covers the network), 'generic' (per-sample path), 'scalar', 'avx2', 'avx512'.");
  m.def(
      "exact_kernel",
      [](const py::list& blocks, int m_tokens, long width) -> std::string {
        const Network net = network_from_python(blocks);
        return exact_batch::covers(net, m_tokens, width) ? exact_batch::kernel().name : "generic";
      },
      py::arg("blocks"), py::arg("m"), py::arg("width"),
      "The kernel simulate_exact uses by default for this network, m and width.");
}

}  // namespace shaped_transformer::python
