// Bindings of the explicit network and of the law-exact activation sampler, plus
// debug entries for the tests (the weights of one block, the normals of a named
// kernel).
#include <cmath>
#include <string>
#include <vector>

#include "bindings.hpp"
#include "shaped_transformer/explicit.hpp"
#include "shaped_transformer/normal_kernels.hpp"

namespace shaped_transformer::python {

namespace {

using F64Array = py::array_t<double, py::array::c_style | py::array::forcecast>;
using I64Array = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>;

template <class T>
py::array_t<T> vector_to_numpy(std::vector<T>&& v, std::vector<py::ssize_t> shape) {
  auto* owner = new std::vector<T>(std::move(v));
  py::capsule cap(owner, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return py::array_t<T>(shape, owner->data(), cap);
}

MatD tokens_from_numpy(const F64Array& a) {
  if (a.ndim() != 2) throw std::invalid_argument("X0: must be a 2-d array (m, n)");
  const Eigen::Index m = a.shape(0), n = a.shape(1);
  MatD X(m, n);
  std::copy(a.data(), a.data() + m * n, X.data());
  return X;
}

using Driver = Trajectories (*)(const Network&, const MatD&, int, int, std::uint64_t,
                                const std::vector<std::int64_t>&, bool, const RunOptions&);

py::tuple call(Driver driver, const py::list& blocks, const F64Array& X0, int depth, int samples, std::uint64_t seed,
               const I64Array& save_at, const std::string& dtype, int threads, bool return_X, double blowup,
               const py::object& progress) {
  const Network net = network_from_python(blocks);
  const MatD X = tokens_from_numpy(X0);
  if (dtype != "float64" && dtype != "float32")
    throw std::invalid_argument("dtype: must be 'float64' or 'float32', got '" + dtype + "'");
  if (save_at.ndim() != 1) throw std::invalid_argument("save_at: must be a 1-d array of layer indices");
  const std::vector<std::int64_t> layers(save_at.data(), save_at.data() + save_at.size());
  Trajectories tr = run_driver(run_options(threads, blowup, return_X), progress, [&](const RunOptions& o) {
    return driver(net, X, depth, samples, seed, layers, dtype == "float32", o);
  });
  const py::ssize_t S = tr.samples, K = tr.saved, m = tr.m, n = X.cols();
  py::object Xout = py::none();
  if (return_X) Xout = vector_to_numpy(std::move(tr.X), {S, m, n});
  return py::make_tuple(vector_to_numpy(std::move(tr.V), {S, K, m, m}), Xout,
                        vector_to_numpy(std::move(tr.exploded), {S}));
}

py::array_t<double> weight(const Stream& s, std::int64_t rows, std::int64_t cols) {
  py::array_t<double> out({py::ssize_t(rows), py::ssize_t(cols)});
  fill_normal(s, 0, std::size_t(rows * cols), out.mutable_data());
  return out;
}

}  // namespace

void register_explicit(py::module_& m) {
  m.def(
      "simulate_explicit",
      [](const py::list& blocks, const F64Array& X0, int depth, int samples, std::uint64_t seed,
         const I64Array& save_at, const std::string& dtype, int threads, bool return_X, double blowup,
         const py::object& progress) {
        return call(&simulate_explicit<Network>, blocks, X0, depth, samples, seed, save_at, dtype, threads,
                          return_X, blowup, progress);
      },
      py::arg("blocks"), py::arg("X0"), py::arg("depth"), py::arg("samples"), py::arg("seed"), py::arg("save_at"),
      py::arg("dtype"), py::arg("threads"), py::arg("return_X"), py::arg("blowup"), py::arg("progress"),
      "Explicit network with Gaussian weights; returns (V, X or None, exploded_layer).");
  m.def(
      "simulate_law",
      [](const py::list& blocks, const F64Array& X0, int depth, int samples, std::uint64_t seed,
         const I64Array& save_at, const std::string& dtype, int threads, bool return_X, double blowup,
         const py::object& progress) {
        return call(&simulate_law<Network>, blocks, X0, depth, samples, seed, save_at, dtype, threads, return_X,
                          blowup, progress);
      },
      py::arg("blocks"), py::arg("X0"), py::arg("depth"), py::arg("samples"), py::arg("seed"), py::arg("save_at"),
      py::arg("dtype"), py::arg("threads"), py::arg("return_X"), py::arg("blowup"), py::arg("progress"),
      "Law-exact activation sampler (docs/model.md section 4); returns (V, X or None, exploded_layer).");
  m.def(
      "block_weights",
      [](const py::list& blocks, long width, std::uint64_t seed, std::uint32_t sample, std::size_t layer,
         std::size_t b) {
        const Network net = network_from_python(blocks);
        if (b >= net.blocks.size()) throw std::invalid_argument("b: block index out of range");
        if (width < 1) throw std::invalid_argument("width: must be >= 1");
        validate_network(net, width);
        const std::uint32_t bi = net.block_index(layer, b);
        py::dict out;
        auto attn = [&](int heads, int key_dim, bool concat) {
          const std::int64_t hd = concat ? width / heads : width;
          const std::int64_t nk = key_dim > 0 ? key_dim : hd;
          for (int h = 0; h < heads; ++h) {
            const std::string k = std::to_string(h);
            out[py::str("W_Q_" + k)] = weight({seed, sample, bi, matrix_id::head(matrix_id::kQuery, h)}, width, nk);
            out[py::str("W_K_" + k)] = weight({seed, sample, bi, matrix_id::head(matrix_id::kKey, h)}, width, nk);
            out[py::str("W_V_" + k)] = weight({seed, sample, bi, matrix_id::head(matrix_id::kValue, h)}, width, hd);
          }
          if (concat) out["W_O"] = weight({seed, sample, bi, matrix_id::kOutput}, width, width);
        };
        std::visit(
            [&](const auto& blk) {
              using B = std::decay_t<decltype(blk)>;
              if constexpr (std::is_same_v<B, ShapedAttention> || std::is_same_v<B, StandardAttention>) {
                attn(blk.heads, blk.key_dim, blk.concat);
              } else {
                static_assert(std::is_same_v<B, ShapedMLP> || std::is_same_v<B, ReluMLP>,
                              "block_weights: name the weights of every block kind");
                out["W_pre"] = weight({seed, sample, bi, matrix_id::kPre}, width, width);
                out["W_post"] = weight({seed, sample, bi, matrix_id::kPost}, width, width);
              }
            },
            net.blocks[b]);
        return out;
      },
      py::arg("blocks"), py::arg("width"), py::arg("seed"), py::arg("sample"), py::arg("layer"), py::arg("b"),
      "Debug: the float64 weights (W_Q_h, W_K_h, W_V_h[, W_O] or W_pre, W_post) of block b of layer "
      "`layer` of one sample, as the explicit network draws them (use small widths).");
  m.def(
      "normals_kernel",
      [](const std::string& kernel, std::uint64_t seed, std::uint32_t sample, std::uint32_t block,
         std::uint32_t matrix, std::uint64_t first, std::size_t count) -> py::object {
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
