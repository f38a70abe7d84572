// Python entry of the exact m x m chain: _core.simulate_exact (see simulate.py).
#include "bindings.hpp"
#include "numpy_util.hpp"
#include "shaped_transformer/exact.hpp"

namespace shaped_transformer::python {

void register_exact(py::module_& m) {
  m.def(
      "simulate_exact",
      [](const py::list& blocks, const CArray& V0a, long width, int depth, int samples, std::uint64_t seed,
         const std::vector<std::int64_t>& save_at, int threads, double blowup, const py::object& progress) {
        const Network net = network_from_python(blocks);
        const Cov V0 = cov_from_numpy(V0a, "V0");
        Trajectories tr = run_driver(run_options(threads, blowup), progress, [&](const RunOptions& o) {
          return simulate_exact(net, V0, width, depth, samples, seed, save_at, o);
        });
        const py::ssize_t mm = V0.rows();
        return py::make_tuple(to_numpy(std::move(tr.V), {samples, py::ssize_t(save_at.size()), mm, mm}),
                              to_numpy(std::move(tr.exploded), {samples}));
      },
      py::arg("blocks"), py::arg("V0"), py::arg("width"), py::arg("depth"), py::arg("samples"), py::arg("seed"),
      py::arg("save_at"), py::arg("threads"), py::arg("blowup"), py::arg("progress") = py::none(),
      "Exact m x m covariance chain (docs/model.md section 4).");
}

}  // namespace shaped_transformer::python
