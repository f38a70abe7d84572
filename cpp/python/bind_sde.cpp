// Python entry of the covariance SDE integrator: _core.solve_sde (see sde.py).
#include "bindings.hpp"
#include "numpy_util.hpp"
#include "shaped_transformer/detail/sde_impl.hpp"  // sde::drift, add_noise, batch_covers (test entries)

namespace shaped_transformer::python {

void register_sde(py::module_& m) {
  m.def(
      "solve_sde",
      [](const py::list& blocks, const CArray& V0a, double dt, std::int64_t steps,
         const std::vector<std::int64_t>& save_steps, const std::string& scheme, const std::string& psd, int paths,
         std::uint64_t seed, int threads, double blowup, const py::object& progress, const std::string& save,
         const std::string& kernel) -> py::tuple {
        const Network net = network_from_python(blocks);
        const Cov V0 = cov_from_numpy(V0a, "V0");
        SdeOptions o = sde_options(dt, steps, scheme, psd);
        o.save_steps = save_steps;
        if (save != "paths" && save != "summary")
          throw std::invalid_argument("save: must be 'paths' or 'summary', got '" + save + "'");
        const RunOptions opts = run_options(threads, blowup);
        const py::ssize_t mm = V0.rows(), ns = py::ssize_t(save_steps.size());
        if (save == "summary") {
          SdeSummaryResult r = run_driver(opts, progress, [&](const RunOptions& op) {
            return solve_sde_summary(net, V0, o, paths, seed, op, kernel.c_str());
          });
          sde::SdeSummary& sum = r.summary;
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
          d["kernel"] = r.kernel;
          return py::make_tuple(d, to_numpy(std::move(r.exploded), {paths}), to_numpy(std::move(r.projections), {paths}));
        }
        // The output is np.empty (uninitialised; NumPy advises huge pages for it): the
        // workers write, and so first touch, the pages of their own paths in parallel.
        // A zero-filled std::vector faulted in and cleared all of it (1 GB for 20000
        // paths x 101 saves at m = 8) on one thread before the run.
        sde::check_arguments(net, V0, o, paths, opts);  // before sizing the output from them
        py::array_t<double> V({py::ssize_t(paths), ns, mm, mm});
        py::array_t<std::int64_t> exploded(paths), projections(paths);
        double* Vp = V.mutable_data();
        std::int64_t *ep = exploded.mutable_data(), *pp = projections.mutable_data();
        run_driver(opts, progress, [&](const RunOptions& op) {
          solve_sde_into(net, V0, o, paths, seed, op, kernel.c_str(), Vp, ep, pp);
          return 0;
        });
        return py::make_tuple(V, exploded, projections);
      },
      py::arg("blocks"), py::arg("V0"), py::arg("dt"), py::arg("steps"), py::arg("save_steps"), py::arg("scheme"),
      py::arg("psd"), py::arg("paths"), py::arg("seed"), py::arg("threads"), py::arg("blowup"),
      py::arg("progress") = py::none(), py::arg("save") = "paths", py::arg("kernel") = "",
      "Covariance SDE over many paths (docs/model.md).  save='paths' returns (V, exploded, projections); "
      "save='summary' returns (statistics dict, exploded, projections).  kernel: '' (automatic), 'generic', "
      "'scalar', 'avx2', 'avx512'.");
  m.def(
      "sde_kernel",
      [](const py::list& blocks, int m_tokens, const std::string& scheme) {
        const Network net = network_from_python(blocks);
        if (scheme == "exact_chain" || !sde::batch_covers(net, m_tokens)) return std::string("generic");
        return std::string(sde::batch_kernel().name);
      },
      py::arg("blocks"), py::arg("m"), py::arg("scheme") = "euler",
      "Name of the integrator solve_sde uses for this network and m ('avx512', 'avx2', 'scalar' or 'generic').");
  m.def(
      "sde_terms",
      [](const py::list& blocks, const CArray& V0a) {
        const Network net = network_from_python(blocks);
        const Cov V = cov_from_numpy(V0a, "V");
        Cov b;
        sde::drift(net, V, b);
        return cov_to_numpy(b);
      },
      py::arg("blocks"), py::arg("V"), "Drift b(V) of one layer (for tests).");
  m.def(
      "sde_noise",
      [](const py::list& blocks, const CArray& V0a, const CArray& dW) {
        const Network net = network_from_python(blocks);
        const Cov V = cov_from_numpy(V0a, "V");
        Cov L, out = Cov::Zero(V.rows(), V.cols());
        psd_root(V, L);
        const double* p = dW.data();
        std::size_t used = 0;
        for (const auto& blk : net.blocks) {
          const int k = sde::noise_dim(blk, int(V.rows()));
          if (used + std::size_t(k) > std::size_t(dW.size())) throw std::invalid_argument("dW: too short");
          sde::add_noise(blk, V, L, p + used, out);
          used += std::size_t(k);
        }
        return cov_to_numpy(out);
      },
      py::arg("blocks"), py::arg("V"), py::arg("dW"), "Noise increment of one layer from given N(0, dt) numbers (for tests).");
}

}  // namespace shaped_transformer::python
