// Python entries of the CUDA backend (device="cuda" in simulate.py and sde.py).
//
// Always compiled: cuda_available() / cuda_reason() (False and a reason without a
// CUDA build or without a GPU), and the per-thread device code run on the CPU
// (device_host_*), which the tests compare with the CPU solvers.  With
// SHAPED_TRANSFORMER_HAVE_CUDA (CMake option SHAPED_TRANSFORMER_CUDA=ON): the GPU
// drivers cuda_simulate_explicit, cuda_simulate_exact, cuda_solve_sde.
#include <cstdint>
#include <string>
#include <vector>

#include "bindings.hpp"
#include "numpy_util.hpp"
#include "requests.hpp"
#include "shaped_transformer/device/from_network.hpp"
#include "shaped_transformer/device/philox.hpp"
#include "shaped_transformer/detail/exact_impl.hpp"
#include "shaped_transformer/result.hpp"
#include "shaped_transformer/detail/sde_impl.hpp"

#if defined(SHAPED_TRANSFORMER_HAVE_CUDA)
#include "../cuda/cuda_api.hpp"
#include "../cuda/explicit_cuda.hpp"
#endif

namespace shaped_transformer::python {

namespace {

using I64Array = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>;
using F64Array = py::array_t<double, py::array::c_style | py::array::forcecast>;

std::vector<std::int64_t> steps_vector(const I64Array& a, const char* name) {
  if (a.ndim() != 1) throw std::invalid_argument(std::string(name) + " must be a 1-d array of indices");
  return std::vector<std::int64_t>(a.data(), a.data() + a.size());
}

/// The CPU solver's argument checks (sde.hpp), then the per-thread problem.
void check_sde_arguments(const Network& net, const Cov& V0, double dt, std::int64_t steps,
                         const std::vector<std::int64_t>& save, const std::string& scheme, std::int64_t paths) {
  SdeOptions o;
  o.dt = dt;
  o.steps = steps;
  o.save_steps = save;
  o.scheme = scheme == "exact_chain" ? SdeScheme::ExactChain : SdeScheme::Euler;
  if (paths < 1) throw std::invalid_argument("paths: must be >= 1");
  sde::check_arguments(net, V0, o, 1, RunOptions{});
}

device::SdeProblem sde_problem_from(const Network& net, const Cov& V0, double dt, std::int64_t steps,
                                    const std::string& scheme, const std::string& psd, double blowup,
                                    std::uint64_t seed) {
  if (scheme != "euler" && scheme != "tamed_euler")
    throw std::invalid_argument("scheme: unknown scheme '" + scheme + "'");
  if (psd != "clip" && psd != "none") throw std::invalid_argument("psd: unknown remedy '" + psd + "'");
  return device::sde_problem(net, V0, dt, steps, scheme == "tamed_euler", psd == "clip", blowup, seed);
}

std::string reason_text() {
#if defined(SHAPED_TRANSFORMER_HAVE_CUDA)
  std::string reason;
  if (cuda::available(reason)) return "";
  return reason;
#else
  return "this build of shaped_transformer has no CUDA backend (rebuild with "
         "pip install . -C cmake.define.SHAPED_TRANSFORMER_CUDA=ON on a machine with nvcc)";
#endif
}

#if defined(SHAPED_TRANSFORMER_HAVE_CUDA)
/// What a GPU run of simulate() reports in `info` (the CPU bindings report the same keys).
void report_simulate(const py::object& info, const std::vector<std::int64_t>& layers, long width, std::uint64_t seed,
                     double blowup) {
  report(info, "kernel", py::str("cuda"));
  report(info, "layers", to_numpy(std::vector<std::int64_t>(layers), {py::ssize_t(layers.size())}));
  report(info, "width", py::int_(width));
  report(info, "seed", py::int_(seed));
  report(info, "blowup", py::float_(blowup));
}

/// poll/progress hooks for the GPU drivers (the GIL is released while they run).
struct PyHooks {
  const py::object& progress;
  bool interrupted = false;
  cuda::Hooks hooks() {
    cuda::Hooks h;
    h.poll = [this] {
      py::gil_scoped_acquire gil;
      if (PyErr_CheckSignals() != 0) interrupted = true;
      return interrupted;
    };
    if (!progress.is_none())
      h.progress = [this](std::size_t done) {
        py::gil_scoped_acquire gil;
        progress(done);
      };
    return h;
  }
};
#endif

}  // namespace

void register_cuda(py::module_& m) {
  m.def(
      "cuda_built",
      [] {
#if defined(SHAPED_TRANSFORMER_HAVE_CUDA)
        return true;
#else
        return false;
#endif
      },
      "True when this build has the CUDA backend (SHAPED_TRANSFORMER_CUDA=ON).");
  m.def(
      "cuda_available", [] { return reason_text().empty(); },
      "True when the CUDA backend is built and a GPU is present.");
  m.def("cuda_reason", &reason_text, "Why cuda_available() is False ('' when it is True).");

  // ---- the per-thread device code, run on the CPU (tests) -----------------------
  m.def(
      "device_host_normals",
      [](std::uint64_t seed, std::uint32_t sample, std::uint32_t block, std::uint32_t matrix, std::uint64_t first,
         std::int64_t count) {
        if (count < 0) throw std::invalid_argument("count must be >= 0");
        std::vector<float> out(std::size_t(count), 0.0f);
        const device::Key k{seed, sample, block, matrix};
        for (std::int64_t i = 0; i < count; ++i) {
          float z[4];
          const std::uint64_t idx = first + std::uint64_t(i);
          device::normal4(k, idx / 4, z);
          out[std::size_t(i)] = z[idx % 4];
        }
        return to_numpy(std::move(out), {py::ssize_t(count)});
      },
      py::arg("seed"), py::arg("sample"), py::arg("block"), py::arg("matrix"), py::arg("first"), py::arg("count"),
      "Normals first..first+count-1 of a stream from the device code, run on the CPU (tests).");
  m.def(
      "device_host_solve_sde",
      [](const NetworkObject& network, const CArray& V0a, double dt, std::int64_t steps, const I64Array& save_steps,
         const std::string& scheme, const std::string& psd, int paths, std::uint64_t seed, double blowup) {
        const Network& net = network.net;
        const Cov V0 = cov_from_numpy(V0a, "V0");
        const auto save = steps_vector(save_steps, "save_steps");
        check_sde_arguments(net, V0, dt, steps, save, scheme, paths);
        const device::SdeProblem p = sde_problem_from(net, V0, dt, steps, scheme, psd, blowup, seed);
        const int mm = int(V0.rows() * V0.rows());
        std::vector<double> V(std::size_t(paths) * save.size() * std::size_t(mm));
        std::vector<std::int64_t> exploded(static_cast<std::size_t>(paths)), proj(static_cast<std::size_t>(paths));
        {
          py::gil_scoped_release release;
          for (int i = 0; i < paths; ++i)
            exploded[std::size_t(i)] =
                device::host_solve_path(p, save.data(), int(save.size()), std::uint32_t(i),
                                        V.data() + std::size_t(i) * save.size() * mm, proj[std::size_t(i)]);
        }
        const py::ssize_t md = V0.rows();
        return py::make_tuple(to_numpy(std::move(V), {paths, py::ssize_t(save.size()), md, md}),
                              to_numpy(std::move(exploded), {paths}), to_numpy(std::move(proj), {paths}));
      },
      py::arg("network"), py::arg("V0"), py::arg("dt"), py::arg("steps"), py::arg("save_steps"), py::arg("scheme"),
      py::arg("psd"), py::arg("paths"), py::arg("seed"), py::arg("blowup"),
      "The GPU's per-path SDE code run on the CPU (tests).");
  m.def(
      "device_host_exact",
      [](const NetworkObject& network, const CArray& V0a, std::int64_t width, std::int64_t depth, int samples,
         std::uint64_t seed, const I64Array& save_at, double blowup) {
        const Network& net = network.net;
        const Cov V0 = cov_from_numpy(V0a, "V0");
        const auto save = steps_vector(save_at, "save_at");
        RunOptions opts;
        opts.blowup = blowup;
        check_exact_arguments(net, V0, long(width), int(depth), samples, save, opts);
        const device::ExactProblem p = device::exact_problem(net, V0, width, depth, blowup, seed);
        const int mm = int(V0.rows() * V0.rows());
        std::vector<double> V(std::size_t(samples) * save.size() * std::size_t(mm));
        std::vector<std::int64_t> exploded(static_cast<std::size_t>(samples));
        {
          py::gil_scoped_release release;
          for (int i = 0; i < samples; ++i)
            exploded[std::size_t(i)] = device::host_exact_sample(p, save.data(), int(save.size()), std::uint32_t(i),
                                                                 V.data() + std::size_t(i) * save.size() * mm);
        }
        const py::ssize_t md = V0.rows();
        return py::make_tuple(to_numpy(std::move(V), {samples, py::ssize_t(save.size()), md, md}),
                              to_numpy(std::move(exploded), {samples}));
      },
      py::arg("network"), py::arg("V0"), py::arg("width"), py::arg("depth"), py::arg("samples"), py::arg("seed"),
      py::arg("save_at"), py::arg("blowup"), "The GPU's per-sample exact-chain code run on the CPU (tests).");

#if defined(SHAPED_TRANSFORMER_HAVE_CUDA)
  m.def(
      "cuda_device_info",
      [] {
        std::size_t free_b = 0, total_b = 0;
        cuda::mem_info(free_b, total_b);
        py::dict d;
        d["name"] = cuda::device_name();
        d["free_bytes"] = free_b;
        d["total_bytes"] = total_b;
        return d;
      },
      "Name and memory (free, total bytes) of GPU 0.");
  m.def(
      "cuda_normals",
      [](std::uint64_t seed, std::uint32_t sample, std::uint32_t block, std::uint32_t matrix, std::uint64_t first,
         std::int64_t count) {
        if (count < 0) throw std::invalid_argument("count must be >= 0");
        std::vector<float> out(std::size_t(count), 0.0f);
        cuda::normals(device::Key{seed, sample, block, matrix}, first, std::size_t(count), out.data());
        return to_numpy(std::move(out), {py::ssize_t(count)});
      },
      py::arg("seed"), py::arg("sample"), py::arg("block"), py::arg("matrix"), py::arg("first"), py::arg("count"),
      "Normals of a stream generated on the GPU (tests).");
  m.def(
      "cuda_solve_sde",
      [](const NetworkObject& network, const py::object& V0, const py::object& dt, const py::object& steps,
         const py::object& save_steps, const py::object& scheme, const py::object& psd, const py::object& paths,
         const py::object& seed, const py::object& blowup, const py::object& progress, const py::object& admit,
         const py::object& info) {
        const SdeRequest r = sde_request(network, V0, dt, steps, save_steps, scheme, psd, paths, seed, py::none(),
                                         blowup, py::str("paths"), admit);
        const Network& net = network.net;
        const auto& save = r.o.save_steps;
        const int mm = int(r.V0.rows() * r.V0.rows());
        const std::size_t P = std::size_t(r.paths);
        std::vector<double> V(P * save.size() * std::size_t(mm));
        std::vector<std::int64_t> exploded(P), proj(P, 0);
        PyHooks hk{progress};
        bool done = false;
        if (r.o.scheme == SdeScheme::ExactChain) {
          const long n_eff = long(std::llround(1.0 / r.o.dt));
          const device::ExactProblem p = device::exact_problem(net, r.V0, n_eff, r.o.steps, r.opts.blowup, r.seed);
          py::gil_scoped_release release;
          done = cuda::exact_chain(p, save, r.paths, V.data(), exploded.data(), hk.hooks());
        } else {
          const device::SdeProblem p =
              device::sde_problem(net, r.V0, r.o.dt, r.o.steps, r.o.scheme == SdeScheme::TamedEuler,
                                  r.o.psd == PsdRemedy::Clip, r.opts.blowup, r.seed);
          py::gil_scoped_release release;
          done = cuda::solve_sde(p, save, r.paths, V.data(), exploded.data(), proj.data(), hk.hooks());
        }
        if (!done) throw py::error_already_set();
        report(info, "kernel", py::str("cuda"));
        report(info, "m", py::int_(r.V0.rows()));
        report(info, "seed", py::int_(r.seed));
        report(info, "blowup", py::float_(r.opts.blowup));
        const py::ssize_t md = r.V0.rows();
        return py::make_tuple(to_numpy(std::move(V), {py::ssize_t(P), py::ssize_t(save.size()), md, md}),
                              to_numpy(std::move(exploded), {py::ssize_t(P)}),
                              to_numpy(std::move(proj), {py::ssize_t(P)}));
      },
      py::arg("network"), py::arg("V0"), py::arg("dt"), py::arg("steps"), py::arg("save_steps"), py::arg("scheme"),
      py::arg("psd"), py::arg("paths"), py::arg("seed"), py::arg("blowup"), py::arg("progress") = py::none(),
      py::kw_only(), py::arg("admit") = py::none(), py::arg("info") = py::none(),
      "Covariance SDE on the GPU, one thread per path (arguments as _core.solve_sde's, checked once).");
  m.def(
      "cuda_simulate_exact",
      [](const NetworkObject& network, const py::object& V0, const py::object& width, const py::object& depth,
         const py::object& samples, const py::object& seed, const py::object& save_at, const py::object& blowup,
         const py::object& progress, const py::object& save_every, const py::object& X0, const py::object& covariance,
         const py::object& dtype, const py::object& admit, const py::object& info) {
        const std::string dt = dtype_arg(dtype);  // checked, reported (float64 chain)
        const ExactRequest r = exact_request(network, X0, V0, width, depth, samples, seed, save_at, save_every,
                                             py::none(), blowup, admit, covariance);
        const device::ExactProblem p = device::exact_problem(network.net, r.V0, r.width, r.depth, r.opts.blowup, r.seed,
                                                             r.s0.size() ? &r.s0 : nullptr);
        const int mm = int(r.V0.rows() * r.V0.rows());
        const std::size_t S = std::size_t(r.samples);
        std::vector<double> V(S * r.layers.size() * std::size_t(mm));
        std::vector<std::int64_t> exploded(S);
        PyHooks hk{progress};
        bool done = false;
        {
          py::gil_scoped_release release;
          done = cuda::exact_chain(p, r.layers, r.samples, V.data(), exploded.data(), hk.hooks());
        }
        if (!done) throw py::error_already_set();
        report_simulate(info, r.layers, r.width, r.seed, r.opts.blowup);
        report(info, "dtype", py::str(dt));
        const py::ssize_t md = r.V0.rows();
        return py::make_tuple(to_numpy(std::move(V), {py::ssize_t(S), py::ssize_t(r.layers.size()), md, md}),
                              to_numpy(std::move(exploded), {py::ssize_t(S)}));
      },
      py::arg("network"), py::arg("V0"), py::arg("width"), py::arg("depth"), py::arg("samples"), py::arg("seed"),
      py::arg("save_at"), py::arg("blowup"), py::arg("progress") = py::none(), py::kw_only(),
      py::arg("save_every") = py::none(), py::arg("X0") = py::none(), py::arg("covariance") = py::none(),
      py::arg("dtype") = "float64", py::arg("admit") = py::none(), py::arg("info") = py::none(),
      "Exact chain (attention-only networks) on the GPU, one thread per sample (arguments as "
      "_core.simulate_exact's, checked once).");
  m.def(
      "cuda_simulate_explicit",
      [](const NetworkObject& network, const py::object& X0, const py::object& depth, const py::object& samples,
         const py::object& seed, const py::object& save_at, const py::object& dtype, const py::object& return_X,
         const py::object& blowup, const py::object& progress, const py::object& save_every, const py::object& V0,
         const py::object& width, const py::object& tokens, const py::object& admit, const py::object& admit_gpu,
         const py::object& info) {
        const ExplicitRequest r = explicit_request(network, X0, V0, width, depth, samples, seed, save_at, save_every,
                                                   dtype, py::none(), return_X, blowup, admit, tokens);
        const bool f32 = r.dtype == "float32";
        const std::size_t gpu = cuda::explicit_cuda_bytes(network.net, int(r.X0.rows()), r.X0.cols(), f32);
        if (!admit_gpu.is_none()) admit_gpu(gpu);
        cuda::ExplicitCudaOptions o;
        o.blowup = r.opts.blowup;
        o.return_X = r.opts.return_X;
        bool interrupted = false;
        o.poll = [&interrupted] {
          py::gil_scoped_acquire gil;
          if (PyErr_CheckSignals() != 0) interrupted = true;
          return interrupted;
        };
        if (!progress.is_none())
          o.progress = [&progress](std::size_t done) {
            py::gil_scoped_acquire gil;
            progress(done);
          };
        Trajectories tr(1, 1, 1);
        try {
          py::gil_scoped_release release;
          tr = cuda::simulate_explicit_cuda(network.net, r.X0, r.depth, r.samples, r.seed, r.layers, f32, o);
        } catch (const Cancelled&) {
          throw py::error_already_set();
        }
        report_simulate(info, r.layers, r.X0.cols(), r.seed, r.opts.blowup);
        report(info, "dtype", py::str(r.dtype));
        const py::ssize_t md = r.X0.rows(), n = r.X0.cols(), S = r.samples;
        py::object Xout = py::none();
        if (r.opts.return_X) Xout = to_numpy(std::move(tr.X), {S, md, n});
        return py::make_tuple(to_numpy(std::move(tr.V), {S, py::ssize_t(r.layers.size()), md, md}), Xout,
                              to_numpy(std::move(tr.exploded), {S}));
      },
      py::arg("network"), py::arg("X0"), py::arg("depth"), py::arg("samples"), py::arg("seed"), py::arg("save_at"),
      py::arg("dtype"), py::arg("return_X"), py::arg("blowup"), py::arg("progress") = py::none(), py::kw_only(),
      py::arg("save_every") = py::none(), py::arg("V0") = py::none(), py::arg("width") = py::none(),
      py::arg("tokens") = py::none(), py::arg("admit") = py::none(), py::arg("admit_gpu") = py::none(),
      py::arg("info") = py::none(),
      "Explicit network on the GPU: weights generated inside the products, never stored (arguments as "
      "_core.simulate_explicit's, checked once; admit_gpu(bytes) is the GPU memory check).");
#endif
}

}  // namespace shaped_transformer::python
