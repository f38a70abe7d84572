// Python entry of the exact m x m chain: _core.simulate_exact (see simulate.py).
#include "bindings.hpp"
#include "numpy_util.hpp"
#include "requests.hpp"
#include "shaped_transformer/exact.hpp"
#include "shaped_transformer/exact/batch.hpp"
#include "shaped_transformer/gemm.hpp"
#include "shaped_transformer/math/matrix.hpp"

namespace shaped_transformer::python {

void register_exact(py::module_& m) {
  m.def(
      "simulate_exact",
      [](const NetworkObject& network, const py::object& V0, const py::object& width, const py::object& depth,
         const py::object& samples, const py::object& seed, const py::object& save_at, const py::object& threads,
         const py::object& blowup, const py::object& progress, const std::string& kernel, const py::object& save_every,
         const py::object& X0, const py::object& covariance, const py::object& dtype, const py::object& admit,
         const py::object& info) {
        // The chain computes in float64; a dtype given is still checked, and reported.
        const std::string dt = dtype_arg(dtype);
        const ExactRequest r = exact_request(network, X0, V0, width, depth, samples, seed, save_at, save_every, threads,
                                             blowup, admit, covariance);
        Trajectories tr = run_driver(r.opts, progress, [&](const RunOptions& o) {
          return simulate_exact(network.net, r.V0, r.width, r.depth, r.samples, r.seed, r.layers, o, kernel.c_str(),
                                r.s0.size() ? &r.s0 : nullptr);
        });
        const py::ssize_t mm = r.V0.rows(), K = py::ssize_t(r.layers.size());
        report(info, "kernel", py::str(tr.kernel));
        // The per-sample path's large products (m >= kGemmFrom) run in the build for
        // this CPU (gemm.hpp): reported, since its numbers differ at rounding level.
        if (tr.kernel == "generic" && mm >= kGemmFrom) report(info, "gemm", py::str(gemm_kernel()));
        report(info, "layers", to_numpy(std::vector<std::int64_t>(r.layers), {K}));
        report(info, "width", py::int_(r.width));
        report(info, "seed", py::int_(r.seed));
        report(info, "blowup", py::float_(r.opts.blowup));
        report(info, "threads", py::int_(r.opts.threads));
        report(info, "dtype", py::str(dt));
        return py::make_tuple(to_numpy(std::move(tr.V), {py::ssize_t(r.samples), K, mm, mm}),
                              to_numpy(std::move(tr.exploded), {py::ssize_t(r.samples)}));
      },
      py::arg("network"), py::arg("V0"), py::arg("width"), py::arg("depth"), py::arg("samples"), py::arg("seed"),
      py::arg("save_at"), py::arg("threads"), py::arg("blowup"), py::arg("progress") = py::none(),
      py::arg("kernel") = "", py::kw_only(), py::arg("save_every") = py::none(), py::arg("X0") = py::none(),
      py::arg("covariance") = py::none(), py::arg("dtype") = "float64", py::arg("admit") = py::none(),
      py::arg("info") = py::none(),
      "Exact m x m covariance chain (docs/model.md section 4); returns (V, exploded_layer).  Every argument is "
      "checked here, once.  V0 (m, m), or X0 (m, n) with V0 = covariance(X0) (and LayerNorm's s0 = X0 1 / sqrt(n); "
      "from V0, s0 = L0 1 of tokens_from_covariance); save_at (layer indices) or "
      "save_every (neither: every layer); admit(parts) is the memory check; `info` (a dict) receives the kernel "
      "that ran and the checked values.  kernel: '' (the batched SIMD kernel when it covers the network), "
      "'generic' (per-sample path), 'scalar', 'avx2', 'avx512'.");
  m.def(
      "exact_kernel",
      [](const NetworkObject& network, int m_tokens, long width) -> std::string {
        return exact_batch::covers(network.net, m_tokens, width) ? exact_batch::kernel().name : "generic";
      },
      py::arg("network"), py::arg("m"), py::arg("width"),
      "The kernel simulate_exact uses by default for this network, m and width.");
}

}  // namespace shaped_transformer::python
