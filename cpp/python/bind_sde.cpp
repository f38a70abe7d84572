// Python entry of the covariance SDE integrator: _core.solve_sde (see sde.py).
#include "bindings.hpp"
#include "numpy_util.hpp"
#include "requests.hpp"
#include "shaped_transformer/detail/sde_impl.hpp"  // sde::drift, add_noise, batch_covers (test entries)

namespace shaped_transformer::python {

void register_sde(py::module_& m) {
  m.def(
      "solve_sde",
      [](const NetworkObject& network, const py::object& V0, const py::object& dt, const py::object& steps,
         const py::object& save_steps, const py::object& scheme, const py::object& psd, const py::object& paths,
         const py::object& seed, const py::object& threads, const py::object& blowup, const py::object& progress,
         const py::object& save, const std::string& kernel, const py::object& admit,
         const py::object& info) -> py::tuple {
        const SdeRequest r =
            sde_request(network, V0, dt, steps, save_steps, scheme, psd, paths, seed, threads, blowup, save, admit);
        const py::ssize_t mm = r.V0.rows(), ns = py::ssize_t(r.o.save_steps.size()), P = r.paths;
        report(info, "m", py::int_(mm));
        report(info, "seed", py::int_(r.seed));
        report(info, "blowup", py::float_(r.opts.blowup));
        report(info, "threads", py::int_(r.opts.threads));
        if (r.save == "summary") {
          SdeSummaryResult s = run_driver(r.opts, progress, [&](const RunOptions& op) {
            return solve_sde_summary(network.net, r.V0, r.o, r.paths, r.seed, op, kernel.c_str());
          });
          sde::SdeSummary& sum = s.summary;
          py::dict d;
          d["alive"] = to_numpy(std::move(sum.alive), {ns});
          d["moments"] = to_numpy(std::move(sum.mom), {ns, sde::kSummaryObs, sde::kSummaryMom});
          d["hist"] = to_numpy(std::move(sum.hist), {ns, sde::kSummaryObs, sde::kSummaryBins});
          py::list lo, hi;
          for (int i = 0; i < sde::kSummaryObs; ++i) {
            lo.append(sum.lo[i]);
            hi.append(sum.hi[i]);
          }
          d["lo"] = lo;
          d["hi"] = hi;
          d["kernel"] = s.kernel;
          report(info, "kernel", py::str(s.kernel));
          return py::make_tuple(d, to_numpy(std::move(s.exploded), {P}), to_numpy(std::move(s.projections), {P}));
        }
        // The output is np.empty (uninitialised; NumPy advises huge pages for it): the
        // workers write, and so first touch, the pages of their own paths in parallel.
        // A zero-filled std::vector faulted in and cleared all of it (1 GB for 20000
        // paths x 101 saves at m = 8) on one thread before the run.
        py::array_t<double> V({P, ns, mm, mm});
        py::array_t<std::int64_t> exploded(P), projections(P);
        double* Vp = V.mutable_data();
        std::int64_t *ep = exploded.mutable_data(), *pp = projections.mutable_data();
        const char* ran = run_driver(r.opts, progress, [&](const RunOptions& op) {
          return solve_sde_into(network.net, r.V0, r.o, r.paths, r.seed, op, kernel.c_str(), Vp, ep, pp);
        });
        report(info, "kernel", py::str(ran));
        return py::make_tuple(V, exploded, projections);
      },
      py::arg("network"), py::arg("V0"), py::arg("dt"), py::arg("steps"), py::arg("save_steps"), py::arg("scheme"),
      py::arg("psd"), py::arg("paths"), py::arg("seed"), py::arg("threads"), py::arg("blowup"),
      py::arg("progress") = py::none(), py::arg("save") = "paths", py::arg("kernel") = "", py::kw_only(),
      py::arg("admit") = py::none(), py::arg("info") = py::none(),
      "Covariance SDE over many paths (docs/model.md).  Every argument is checked here, once; admit(parts) is "
      "the memory check; `info` (a dict) receives the kernel that ran and the checked values.  save='paths' "
      "returns (V, exploded, projections); save='summary' returns (statistics dict, exploded, projections).  "
      "kernel: '' (automatic), 'generic', 'scalar', 'avx2', 'avx512'.");
  m.def(
      "sde_kernel",
      [](const NetworkObject& network, int m_tokens, const std::string& scheme) {
        if (scheme == "exact_chain" || !sde::batch_covers(network.net, m_tokens)) return std::string("generic");
        return std::string(sde::batch_kernel().name);
      },
      py::arg("network"), py::arg("m"), py::arg("scheme") = "euler",
      "Name of the integrator solve_sde uses by default for this network and m ('avx512', 'avx2', 'scalar' or "
      "'generic'); a run reports the one it used (info['kernel']).");
  m.def(
      "sde_terms",
      [](const NetworkObject& network, const py::object& V) {
        check_sde_covers(network.net);
        const Cov C = checked_cov("V", V);
        Cov b;
        sde::drift(network.net, C, b);
        return cov_to_numpy(b);
      },
      py::arg("network"), py::arg("V"), "Drift b(V) of one layer (sde_drift).");
  m.def(
      "sde_noise",
      [](const NetworkObject& network, const py::object& V, const CArray& dW) {
        check_sde_covers(network.net);
        const Cov C = checked_cov("V", V);
        const int mm = int(C.rows());
        std::size_t need = 0;
        for (const auto& blk : network.net.blocks) need += std::size_t(sde::noise_dim(blk, mm));
        if (std::size_t(dW.size()) != need)
          throw std::invalid_argument("dW: must hold " + std::to_string(need) + " numbers for this network and m=" +
                                      std::to_string(mm) + ", got " + std::to_string(dW.size()));
        Cov L, out = Cov::Zero(mm, mm);
        psd_root(C, L);
        const double* p = dW.data();
        for (const auto& blk : network.net.blocks) {
          sde::add_noise(blk, C, L, p, out);
          p += sde::noise_dim(blk, mm);
        }
        return cov_to_numpy(out);
      },
      py::arg("network"), py::arg("V"), py::arg("dW"),
      "Noise increment of one layer from given N(0, dt) numbers dW (sde_noise): Network.sde_noise_dim(m) of "
      "them, block by block.");
}

}  // namespace shaped_transformer::python
