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
         std::uint64_t seed, int threads, double blowup, const py::object& progress) {
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
        sde::check_arguments(net, V0, o, paths);
        Trajectories tr(paths, int(save_steps.size()), int(V0.rows()));
        tr.projections.assign(std::size_t(paths), 0);
        run_samples(
            std::size_t(paths), threads,
            [&](std::size_t p, const CancelToken& cancel) {
              tr.exploded[p] = sde::solve_path(net, V0, o, seed, std::uint32_t(p), blowup, tr.V_at(int(p), 0),
                                               tr.projections[p], &cancel);
            },
            progress);
        const py::ssize_t mm = V0.rows();
        return py::make_tuple(to_numpy(std::move(tr.V), {paths, py::ssize_t(save_steps.size()), mm, mm}),
                              to_numpy(std::move(tr.exploded), {paths}),
                              to_numpy(std::move(tr.projections), {paths}));
      },
      py::arg("blocks"), py::arg("V0"), py::arg("dt"), py::arg("steps"), py::arg("save_steps"), py::arg("scheme"),
      py::arg("psd"), py::arg("paths"), py::arg("seed"), py::arg("threads"), py::arg("blowup"),
      py::arg("progress") = py::none(),
      "Covariance SDE over many paths (docs/model.md sections 5-6).");
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
