// _core.Network, the network object every driver binding takes, and _core.kinds(),
// the registry as Python sees it.  shaped_transformer.Network subclasses the class
// only to add its prose and repr; what a network covers (SDE, exact chain), why not,
// and its SDE noise dimension are the core's answers (network.hpp, sde/terms.hpp),
// so Python keeps no table of kinds.
#include <string>
#include <tuple>
#include <type_traits>
#include <variant>

#include "bindings.hpp"
#include "shaped_transformer/sde/terms.hpp"

namespace shaped_transformer::python {

namespace {

template <class Net>
struct Kinds;
template <class... K>
struct Kinds<BasicNetwork<K...>> {
  /// Appends `item` to `net` when it is an instance of one of the kinds.
  static bool append(Network& net, const py::handle& item) {
    return ((py::isinstance<K>(item) ? (net.blocks.emplace_back(item.cast<const K&>()), true) : false) || ...);
  }
  static bool is_block(const py::handle& item) { return (py::isinstance<K>(item) || ...); }
  /// "ShapedAttention, StandardAttention, ShapedMLP or ReluMLP".
  static std::string names() {
    const char* all[] = {K::python_class...};
    std::string s;
    for (std::size_t i = 0; i < sizeof...(K); ++i)
      s += std::string(i == 0 ? "" : i + 1 == sizeof...(K) ? " or " : ", ") + all[i];
    return s;
  }
  /// kind name -> bound class, in registry order.
  static py::dict classes(const py::module_& m) {
    py::dict d;
    ((d[K::kind] = m.attr(K::python_class)), ...);
    return d;
  }
};

using Registry = Kinds<Network>;

py::object text_or_none(const std::string& s) { return s.empty() ? py::object(py::none()) : py::object(py::str(s)); }

/// Why the exact chain cannot run `net` (check_exact_covers's message), "" if it can.
std::string exact_refusal_text(const Network& net) {
  try {
    check_exact_covers(net);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

}  // namespace

NetworkObject network_from_blocks(const py::handle& blocks) {
  NetworkObject out;
  if (Registry::is_block(blocks)) {
    out.blocks = py::make_tuple(blocks);
  } else {
    if (py::isinstance<py::str>(blocks) || !py::isinstance<py::iterable>(blocks))
      throw py::type_error("blocks: must be a Block or a sequence of Blocks, got " + detail::type_name(blocks));
    out.blocks = py::tuple(py::reinterpret_borrow<py::iterable>(blocks));
  }
  if (out.blocks.empty()) throw std::invalid_argument("blocks: must contain at least one block");
  for (std::size_t i = 0; i < out.blocks.size(); ++i)
    if (!Registry::append(out.net, out.blocks[i]))
      throw py::type_error("blocks[" + std::to_string(i) + "]: must be a Block (" + Registry::names() + "), got " +
                           detail::type_name(out.blocks[i]));
  return out;
}

void register_network(py::module_& m) {
  py::class_<NetworkObject> cls(m, "Network",
                                "A sequence of blocks forming one layer (the C++ network every driver takes).");
  cls.def(py::init([](const py::object& blocks) { return network_from_blocks(blocks); }), py::arg("blocks"),
          "The network of one block or a non-empty sequence of blocks (TypeError / ValueError naming blocks).");
  cls.def_property_readonly(
      "blocks", [](const NetworkObject& n) -> py::typing::Tuple<py::object, py::ellipsis> { return n.blocks; },
      "The blocks of one layer, as given.");
  cls.def("__len__", [](const NetworkObject& n) { return n.net.blocks.size(); });
  cls.def("__iter__", [](const NetworkObject& n) -> py::typing::Iterator<py::object> { return py::iter(n.blocks); });
  cls.def_property_readonly(
      "has_sde", [](const NetworkObject& n) { return sde_refusal_text(n.net).empty(); },
      "Whether every block has a covariance SDE limit (docs/model.md section 5).");
  cls.def_property_readonly(
      "sde_refusal",
      [](const NetworkObject& n) -> py::typing::Optional<py::str> { return text_or_none(sde_refusal_text(n.net)); },
      "Why the network has no covariance SDE limit, naming the first block without one; None when it has one.");
  cls.def_property_readonly(
      "exact_chain", [](const NetworkObject& n) { return exact_refusal_text(n.net).empty(); },
      "Whether the exact m x m chain of docs/model.md section 4 covers every block.");
  cls.def_property_readonly(
      "exact_refusal",
      [](const NetworkObject& n) -> py::typing::Optional<py::str> { return text_or_none(exact_refusal_text(n.net)); },
      "Why the exact chain cannot run the network, naming the block; None when it can.");
  cls.def(
      "sde_noise_dim",
      [](const NetworkObject& n, int m) {
        check_sde_covers(n.net);
        if (m < 1) throw std::invalid_argument("m: must be >= 1");
        int k = 0;
        for (const auto& b : n.net.blocks) k += sde::noise_dim(b, m);
        return k;
      },
      py::arg("m"),
      "How many N(0, dt) numbers one SDE step of this network draws at m tokens (the blocks' noise "
      "dimensions in order, e.g. 2 m^2 for a shaped attention head, m^2 for the shaped MLP).");
  cls.def(py::pickle([](const NetworkObject& n) -> py::typing::Tuple<py::object, py::ellipsis> { return n.blocks; },
                     [](const py::tuple& blocks) { return network_from_blocks(blocks); }));

  m.def(
      "kinds", [m]() -> py::typing::Dict<py::str, py::type> { return Registry::classes(m); },
      "The block kinds of the registry (cpp/include/shaped_transformer/network.hpp): kind name -> class.");
}

}  // namespace shaped_transformer::python
