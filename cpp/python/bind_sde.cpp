// Python entry of the covariance SDE integrator: _core.solve_sde (see sde.py).
#include "bindings.hpp"
#include "numpy_util.hpp"
#include "shaped_transformer/sde.hpp"

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
        SdeOptions o;
        o.dt = dt;
        o.steps = steps;
        o.save_steps = save_steps;
        if (scheme == "euler") o.scheme = SdeScheme::Euler;
        else if (scheme == "tamed_euler") o.scheme = SdeScheme::TamedEuler;
        else if (scheme == "exact_chain") o.scheme = SdeScheme::ExactChain;
        else throw std::invalid_argument("scheme: unknown scheme '" + scheme + "'");
        if (psd == "clip") o.psd = PsdRemedy::Clip;
        else if (psd == "none") o.psd = PsdRemedy::None;
        else throw std::invalid_argument("psd: unknown remedy '" + psd + "'");
        if (save != "paths" && save != "summary")
          throw std::invalid_argument("save: must be 'paths' or 'summary', got '" + save + "'");
        sde::check_arguments(net, V0, o, paths);
        const sde::BatchKernel k = sde::choose_kernel(net, V0, o, kernel.c_str());
        // The work items cover `per` paths each; the progress bar counts paths.
        auto for_each = [&](std::size_t items, std::size_t per, auto&& fn) {
          py::object prog = progress;
          if (!progress.is_none() && per != 1)
            prog = py::cpp_function([progress, per, paths](std::size_t done) {
              progress(std::min(done * per, std::size_t(paths)));
            });
          run_samples(items, threads, fn, prog);
        };
        const py::ssize_t mm = V0.rows();
        if (save == "summary") {
          sde::SdeSummary sum(int(V0.rows()), save_steps.size());
          std::vector<std::int64_t> exploded, projections;
          sde::solve_summary(net, V0, o, paths, seed, blowup, k, sum, exploded, projections, threads, for_each);
          const py::ssize_t ns = py::ssize_t(save_steps.size());
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
          d["kernel"] = k.run ? k.name : "generic";
          return py::make_tuple(d, to_numpy(std::move(exploded), {paths}), to_numpy(std::move(projections), {paths}));
        }
        Trajectories tr(paths, int(save_steps.size()), int(V0.rows()));
        sde::solve_store(net, V0, o, paths, seed, blowup, k, tr, for_each);
        return py::make_tuple(to_numpy(std::move(tr.V), {paths, py::ssize_t(save_steps.size()), mm, mm}),
                              to_numpy(std::move(tr.exploded), {paths}),
                              to_numpy(std::move(tr.projections), {paths}));
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
