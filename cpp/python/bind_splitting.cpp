// Python entry of the batch continuation used by the splitting estimator:
// _core.continue_paths (see python/shaped_transformer/splitting.py).
#include <cstdint>
#include <string>
#include <vector>

#include "bindings.hpp"
#include "numpy_util.hpp"
#include "arguments.hpp"
#include "shaped_transformer/checks.hpp"
#include "shaped_transformer/sde/continue.hpp"

namespace shaped_transformer::python {

void register_splitting(py::module_& m) {
  m.def(
      "continue_paths",
      [](const NetworkObject& network, const CArray& Va,
         const py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>& start,
         const py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>& stream, const CArray& stop,
         double dt, std::int64_t steps, const std::string& scheme, const std::string& psd, std::uint64_t seed,
         double blowup, double time_exponent, int threads) {
        const Network& net = network.net;
        if (Va.ndim() != 3 || Va.shape(1) != Va.shape(2) || Va.shape(1) < 1)
          throw std::invalid_argument("V: must have shape (paths, m, m)");
        const py::ssize_t P = Va.shape(0);
        const int mm = int(Va.shape(1));
        if (start.ndim() != 1 || start.shape(0) != P) throw std::invalid_argument("start: must have shape (paths,)");
        if (stream.ndim() != 1 || stream.shape(0) != P) throw std::invalid_argument("stream: must have shape (paths,)");
        if (stop.ndim() != 1 || stop.shape(0) != P) throw std::invalid_argument("stop: must have shape (paths,)");
        SdeOptions o;
        o.dt = dt;
        o.steps = steps;
        o.scheme = scheme_arg(py::str(scheme));
        o.psd = psd_arg(py::str(psd));
        check_sde_covers(net);
        validate_network(net, 0);
        if (!(dt > 0.0) || !std::isfinite(dt)) throw std::invalid_argument("dt: must be > 0");
        if (steps < 0 || steps > std::int64_t(0xFFFFFFFFu)) throw std::invalid_argument("steps: out of range");
        if (!(time_exponent >= 0.0) || !std::isfinite(time_exponent))
          throw std::invalid_argument("time_exponent: must be a finite number >= 0");
        if (!(blowup > 0.0)) throw std::invalid_argument("blowup: must be > 0");
        if (o.scheme == SdeScheme::ExactChain) sde::exact_width(dt, mm);
        const auto* st = start.data();
        const auto* sid = stream.data();
        for (py::ssize_t p = 0; p < P; ++p) {
          if (st[p] < 0 || st[p] > steps) throw std::invalid_argument("start: step indices must lie in [0, steps]");
          if (sid[p] < 0 || sid[p] > std::int64_t(0xFFFFFFFFu))
            throw std::invalid_argument("stream: ids must lie in [0, 2^32)");
        }
        std::vector<double> V(Va.data(), Va.data() + Va.size());
        std::vector<std::int64_t> step_out(std::size_t(P), 0);
        std::vector<double> peak(std::size_t(P), 0.0);
        std::vector<std::int32_t> status(std::size_t(P), 0);
        const double* stp = stop.data();
        auto work = [&](std::size_t p, const CancelToken&) {
          sde::Segment seg;
          seg.step = st[p];
          sde::continue_path(net, V.data() + p * std::size_t(mm) * std::size_t(mm), mm, o, seed, std::uint32_t(sid[p]),
                             stp[p], blowup, time_exponent, seg);
          step_out[p] = seg.step;
          peak[p] = seg.peak;
          status[p] = int(seg.status);
        };
        RunOptions opts;
        opts.threads = threads;
        opts.blowup = blowup;
        run_driver(opts, py::none(), [&](const RunOptions& op) {
          parallel_for(std::size_t(P), op.threads, work, op.poll, op.progress);
          return 0;
        });
        return py::make_tuple(to_numpy(std::move(V), {P, py::ssize_t(mm), py::ssize_t(mm)}),
                              to_numpy(std::move(step_out), {P}), to_numpy(std::move(peak), {P}),
                              to_numpy(std::move(status), {P}));
      },
      py::arg("network"), py::arg("V"), py::arg("start"), py::arg("stream"), py::arg("stop"), py::arg("dt"),
      py::arg("steps"), py::arg("scheme"), py::arg("psd"), py::arg("seed"), py::arg("blowup"), py::arg("time_exponent"),
      py::arg("threads"), "Continues paths from given states (splitting estimator): returns (V, step, peak, status).");
}

}  // namespace shaped_transformer::python
