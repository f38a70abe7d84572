// The block kinds as typed Python classes, bound from their field tables: one keyword
// argument and one read-only property per row of B::fields(), in table order, with the
// table's default and doc; construction converts (field_cast.hpp) and calls
// B::validate(), so a parameter is declared once and checked once, here in C++.
// shaped_transformer._blocks subclasses these classes only to add the prose of their
// docstrings (and makes a plain subclass for a kind without prose).  Every kind of the
// registry (network.hpp) is bound; the drivers take the objects themselves, inside a
// _core.Network (bind_network.cpp).
#include <cstddef>
#include <iterator>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include <pybind11/typing.h>

#include "bindings.hpp"
#include "field_cast.hpp"

namespace shaped_transformer::python {

/// The argument type of field I of B: any Python object (converted and checked by
/// block_from_python, so that errors name the field), spelled in signatures and stubs
/// as the field's Python type.
template <class B, std::size_t I>
struct FieldArg {
  py::object value;
};

}  // namespace shaped_transformer::python

namespace pybind11::detail {

template <class B, std::size_t I>
struct type_caster<shaped_transformer::python::FieldArg<B, I>> {
  using F = std::tuple_element_t<I, decltype(B::fields())>;
  using T = typename F::value_type;
  static constexpr bool none_ok = std::get<I>(B::fields()).rule.none != shaped_transformer::Rule::Refused;
  static constexpr auto base_name() {
    if constexpr (std::is_same_v<T, shaped_transformer::Norm>)
      return const_name("typing.Literal['none', 'pre_rms', 'pre_layer', 'post_rms', 'post_layer'] | None");
    else if constexpr (std::is_same_v<T, bool>) return const_name("bool");
    else if constexpr (std::is_integral_v<T>) return const_name("int");
    else return const_name("float");
  }
  static constexpr auto type_name() {
    if constexpr (none_ok) return base_name() + const_name(" | None");
    else return base_name();
  }
  using Arg = shaped_transformer::python::FieldArg<B, I>;
  PYBIND11_TYPE_CASTER(Arg, type_name());
  bool load(handle src, bool) {
    value.value = reinterpret_borrow<object>(src);
    return true;
  }
  static handle cast(const shaped_transformer::python::FieldArg<B, I>& a, return_value_policy, handle) {
    return a.value.inc_ref();
  }
};

}  // namespace pybind11::detail

namespace shaped_transformer::python {
namespace {

/// The value a field's Python property returns: None for an unset field, a Norm by name.
template <class T, bool NoneOk>
using PropertyType =
    std::conditional_t<std::is_same_v<T, Norm>, std::string, std::conditional_t<NoneOk, std::optional<T>, T>>;

template <class B, std::size_t I>
auto field_property(const B& b) {
  constexpr auto f = std::get<I>(B::fields());
  using T = typename decltype(f)::value_type;
  constexpr bool unset_ok = f.rule.none == Rule::Unset;
  using P = PropertyType<T, unset_ok>;
  const T v = b.*(f.member);
  if constexpr (std::is_same_v<T, Norm>) return P(norm_name(v));
  else if constexpr (unset_ok) return double(v) == f.rule.unset ? P() : P(v);
  else return P(v);
}

/// The block's fields as the Python keywords that rebuild it (None for unset fields).
template <class B>
py::dict python_kwargs(const B& b) {
  py::dict d;
  for_each_field<B>([&](const auto& f) { d[f.name] = field_to_python(b.*(f.member), f.rule); });
  return d;
}

/// "name : type, rule" lines of the numpydoc Parameters section, from the table.
inline std::string rule_text(const Rule& r) {
  auto num = [](double v) { return shaped_transformer::detail::number(v); };
  switch (r.kind) {
    case Rule::Finite: return "finite";
    case Rule::AtLeast: return ">= " + num(r.lo);
    case Rule::Above: return "> " + num(r.lo);
    case Rule::Within: return "in [" + num(r.lo) + ", " + num(r.hi) + "]";
    default: return "";
  }
}

/// A field's default as Python sees it: None where None has a meaning (fields.hpp),
/// else the value of a default-constructed B.
template <class B, class F>
py::object field_default(const F& f) {
  if (f.rule.none != Rule::Refused) return py::none();
  return field_to_python(B{}.*(f.member), f.rule);
}

template <class B>
std::string parameters_doc() {
  std::string s = "Parameters\n----------\n";
  for_each_field<B>([&](const auto& f) {
    using T = typename std::decay_t<decltype(f)>::value_type;
    std::string type = std::is_same_v<T, Norm>   ? "str or None"
                       : std::is_same_v<T, bool> ? "bool"
                       : std::is_integral_v<T>   ? "int"
                                                 : "float";
    if (f.rule.none != Rule::Refused) type += " or None";
    const std::string rule = rule_text(f.rule);
    const std::string dflt = py::repr(field_default<B>(f));
    s += std::string(f.name) + " : " + type + (rule.empty() ? "" : ", " + rule) + ", default " + dflt + "\n    " +
         f.doc + "\n";
  });
  return s;
}

template <class B, std::size_t... I>
void bind_block(py::module_& m, std::index_sequence<I...>) {
  py::class_<B> cls(m, B::python_class, parameters_doc<B>().c_str());
  constexpr auto fields = B::fields();
  cls.def(py::init([](const FieldArg<B, I>&... args) {
            const py::handle values[] = {args.value...};
            std::size_t next = 0;
            const B b = block_from_python<B>([&](const char*) { return values[next++]; });
            b.validate();
            return b;
          }),
          py::arg_v(std::get<I>(fields).name, field_default<B>(std::get<I>(fields)))...);
  (cls.def_property_readonly(std::get<I>(fields).name, &field_property<B, I>, std::get<I>(fields).doc), ...);
  cls.attr("kind") = py::str(B::kind);
  // (name, default) per field, in table order: the Python classes' __signature__
  // (pybind11 gives builtin methods none that inspect can read).
  cls.attr("_parameters") =
      py::make_tuple(py::make_tuple(std::get<I>(fields).name, field_default<B>(std::get<I>(fields)))...);
  cls.def_property_readonly(
      "has_sde",
      [](const B& b) {
        if constexpr (B::has_sde) return b.sde_refusal() == nullptr;
        else return (void)b, false;
      },
      "Whether the block has a covariance SDE limit (docs/model.md section 5).");
  cls.def_property_readonly(
      "exact_chain",
      [](const B& b) {
        if constexpr (B::has_exact) return b.exact_refusal() == nullptr;
        else return (void)b, false;
      },
      "Whether the exact m x m chain of docs/model.md section 4 covers this block.");
  cls.def_property_readonly(
      "sde_refusal",
      [](const B& b) -> py::typing::Optional<py::str> {
        const char* why;
        if constexpr (B::has_sde) why = b.sde_refusal();
        else why = ((void)b, B::no_sde);
        return why ? py::object(py::str(why)) : py::object(py::none());
      },
      "Why the block has no covariance SDE limit (the core's reason); None when it has one.");
  cls.def_property_readonly(
      "exact_refusal",
      [](const B& b) -> py::typing::Optional<py::str> {
        const char* why;
        if constexpr (B::has_exact) why = b.exact_refusal();
        else why = ((void)b, "this kind has no exact chain");
        return why ? py::object(py::str(why)) : py::object(py::none());
      },
      "Why the exact chain cannot run the block (the core's reason); None when it can.");
  cls.def(
      "replace",
      [](const py::object& self, const py::kwargs& changes) {
        py::dict kw = python_kwargs(self.cast<const B&>());
        // A new gamma with no lam re-derives lam = sqrt(1 - gamma^2).
        if (changes.contains("gamma") && !changes.contains("lam")) kw["lam"] = py::none();
        for (const auto& item : changes) {
          if (!kw.contains(item.first))
            throw py::type_error(std::string(py::str(item.first)) + ": not a parameter of " + B::python_class);
          kw[item.first] = item.second;
        }
        return py::type::of(self)(**kw);
      },
      "A copy with some parameters changed (a new gamma without lam re-derives lam).");
  cls.def("__eq__", [](const py::object& self, const py::object& other) -> py::typing::Union<bool, py::object> {
    if (!py::type::of(self).is(py::type::of(other))) return py::reinterpret_borrow<py::object>(Py_NotImplemented);
    return py::bool_(python_kwargs(self.cast<const B&>()).equal(python_kwargs(other.cast<const B&>())));
  });
  cls.def("__hash__",
          [](const B& b) { return py::hash(py::make_tuple(B::kind, py::tuple(python_kwargs(b).attr("items")()))); });
  cls.def("__repr__", [](const py::object& self) {
    std::string s = std::string(py::str(py::type::of(self).attr("__name__"))) + "(";
    const char* sep = "";
    for (const auto& item : python_kwargs(self.cast<const B&>())) {
      s += sep + std::string(py::str(item.first)) + "=" + std::string(py::repr(item.second));
      sep = ", ";
    }
    return s + ")";
  });
  cls.def(py::pickle([](const B& b) -> py::typing::Dict<py::str, py::object> { return python_kwargs(b); },
                     [](const py::typing::Dict<py::str, py::object>& kw) {
                       const B b = block_from_python<B>([&](const char* name) { return kw[name]; });
                       b.validate();
                       return b;
                     }));
}

template <class Net>
struct BindKinds;
template <class... K>
struct BindKinds<BasicNetwork<K...>> {
  static void run(py::module_& m) {
    (bind_block<K>(m, std::make_index_sequence<std::tuple_size_v<decltype(K::fields())>>{}), ...);
  }
};

}  // namespace

void register_blocks(py::module_& m) { BindKinds<Network>::run(m); }

}  // namespace shaped_transformer::python
