// Bindings of the explicit network and of the law-exact activation sampler, plus
// debug entries for the tests (the weights of one block, the normals of a named
// kernel).
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "bindings.hpp"
#include "numpy_util.hpp"
#include "requests.hpp"
#include "shaped_transformer/explicit.hpp"
#include "shaped_transformer/normal_kernels.hpp"

namespace shaped_transformer::python {

namespace {

/// (V, X or None, exploded_layer) of one explicit or law run; `info` gets "kernel"
/// (the normal generator), "layers", "width", "seed", "dtype", "blowup" and "threads".
template <class Driver>
py::tuple call(Driver driver, const NetworkObject& network, const py::object& X0, const py::object& depth,
               const py::object& samples, const py::object& seed, const py::object& save_at, const py::object& dtype,
               const py::object& threads, const py::object& return_X, const py::object& blowup,
               const py::object& progress, const py::object& save_every, const py::object& V0, const py::object& width,
               const py::object& tokens, const py::object& admit_fn, const py::object& info) {
  const ExplicitRequest r = explicit_request(network, X0, V0, width, depth, samples, seed, save_at, save_every, dtype,
                                             threads, return_X, blowup, admit_fn, tokens);
  Trajectories tr = run_driver(r.opts, progress, [&](const RunOptions& o) {
    return driver(network.net, r.X0, r.depth, r.samples, r.seed, r.layers, r.dtype == "float32", o);
  });
  const py::ssize_t S = tr.samples, K = tr.saved, m = tr.m, n = r.X0.cols();
  report(info, "kernel", py::str(tr.kernel));
  report(info, "layers", to_numpy(std::vector<std::int64_t>(r.layers), {K}));
  report(info, "width", py::int_(n));
  report(info, "seed", py::int_(r.seed));
  report(info, "dtype", py::str(r.dtype));
  report(info, "blowup", py::float_(r.opts.blowup));
  report(info, "threads", py::int_(r.opts.threads));
  py::object Xout = py::none();
  if (r.opts.return_X) Xout = to_numpy(std::move(tr.X), {S, m, n});
  return py::make_tuple(to_numpy(std::move(tr.V), {S, K, m, m}), Xout, to_numpy(std::move(tr.exploded), {S}));
}

py::array_t<double> weight(const Stream& s, std::int64_t rows, std::int64_t cols) {
  py::array_t<double> out({py::ssize_t(rows), py::ssize_t(cols)});
  fill_normal(s, 0, std::size_t(rows * cols), out.mutable_data());
  return out;
}

}  // namespace

void register_explicit(py::module_& m) {
  const char* args_doc =
      "X0 / V0: the tokens (m, n) or their covariance (m, m) with `width`; from V0 the tokens are "
      "tokens(V0, width) (called after the memory check).  save_at (layer indices) or save_every "
      "(neither: every layer).  admit(parts) is the memory check (raises to refuse); `info` (a dict) "
      "receives the kernel that ran and the checked values.";
  for (const auto& [name, law] : {std::pair<const char*, bool>{"simulate_explicit", false}, {"simulate_law", true}})
    m.def(
        name,
        [law = law](const NetworkObject& network, const py::object& X0, const py::object& depth,
                    const py::object& samples, const py::object& seed, const py::object& save_at,
                    const py::object& dtype, const py::object& threads, const py::object& return_X,
                    const py::object& blowup, const py::object& progress, const py::object& save_every,
                    const py::object& V0, const py::object& width, const py::object& tokens, const py::object& admit,
                    const py::object& info) {
          return law ? call(&simulate_law<Network>, network, X0, depth, samples, seed, save_at, dtype, threads,
                            return_X, blowup, progress, save_every, V0, width, tokens, admit, info)
                     : call(&simulate_explicit<Network>, network, X0, depth, samples, seed, save_at, dtype, threads,
                            return_X, blowup, progress, save_every, V0, width, tokens, admit, info);
        },
        py::arg("network"), py::arg("X0"), py::arg("depth"), py::arg("samples"), py::arg("seed"), py::arg("save_at"),
        py::arg("dtype"), py::arg("threads"), py::arg("return_X"), py::arg("blowup"), py::arg("progress") = py::none(),
        py::kw_only(), py::arg("save_every") = py::none(), py::arg("V0") = py::none(), py::arg("width") = py::none(),
        py::arg("tokens") = py::none(), py::arg("admit") = py::none(), py::arg("info") = py::none(),
        (std::string(law ? "Law-exact activation sampler (docs/model.md section 4)"
                         : "Explicit network with Gaussian weights") +
         "; returns (V, X or None, exploded_layer).  Every argument is checked here, once.\n" + args_doc)
            .c_str());
  m.def(
      "block_weights",
      [](const NetworkObject& network, long width, std::uint64_t seed, std::uint32_t sample, std::size_t layer,
         std::size_t b) {
        const Network& net = network.net;
        if (b >= net.blocks.size()) throw std::invalid_argument("b: block index out of range");
        if (width < 1) throw std::invalid_argument("width: must be >= 1");
        validate_network(net, width);
        const std::uint32_t bi = net.block_index(layer, b);
        py::dict out;
        std::visit(
            [&](const auto& blk) {
              blk.weights(width, [&](const WeightMatrix& w) {
                out[py::str(w.name)] = weight({seed, sample, bi, w.matrix}, w.rows, w.cols);
              });
            },
            net.blocks[b]);
        return out;
      },
      py::arg("network"), py::arg("width"), py::arg("seed"), py::arg("sample"), py::arg("layer"), py::arg("b"),
      "Debug: the float64 weights of block b of layer `layer` of one sample, named by the block's kind "
      "(W_Q_h, W_K_h, W_V_h[, W_O] for attention, W_pre, W_post for the MLPs), as the explicit network "
      "draws them (use small widths).");
  m.def(
      "normals_kernel",
      [](const std::string& kernel, std::uint64_t seed, std::uint32_t sample, std::uint32_t block, std::uint32_t matrix,
         std::uint64_t first, std::size_t count) -> py::object {
        py::array_t<float> out(static_cast<py::ssize_t>(count));
        bool ok;
        float* p = out.mutable_data();
        {
          py::gil_scoped_release release;
          ok = fill_normal_kernel(kernel.c_str(), Stream{seed, sample, block, matrix}, first, count, p);
        }
        if (!ok) return py::none();
        return std::move(out);
      },
      py::arg("kernel"), py::arg("seed"), py::arg("sample"), py::arg("block"), py::arg("matrix"), py::arg("first"),
      py::arg("count"),
      "Debug: normals from a named kernel ('scalar', 'avx2', 'avx512'); None when this CPU lacks it.");
}

}  // namespace shaped_transformer::python
