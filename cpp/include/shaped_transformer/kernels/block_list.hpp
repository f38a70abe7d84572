// The faces of a network's blocks as plain data, for the code that cannot hold a
// std::variant of block structs: the batched SIMD kernels, the CUDA threads (which
// copy it by value) and the generic per-path solver, which all run the same step.
// FaceBlock<Face, Kinds...> holds the index of a block's kind and that kind's terms
// of one face (Face<K>::type, e.g. K::Sde, the SDE drift and noise coefficients),
// and visit() calls a function with those terms: the face functions of each kind
// are then found by argument-dependent lookup (sde_drift(const K::Sde&, ...) in
// the kind's header).  A kind without the face has the empty NoFace in its place.
#pragma once

#include <type_traits>

#include "../device/hd.hpp"

namespace shaped_transformer {

/// The terms of a kind that lacks a face.
struct NoFace {};

/// Index of kind B in Kinds... (-1: not there).
template <class B, class... Kinds>
constexpr int kind_index() {
  int i = 0, found = -1;
  ((std::is_same_v<B, Kinds> ? (found = i, ++i) : ++i), ...);
  return found;
}

/// A union of the terms types T... (all trivially copyable) with typed access by index.
template <class... T>
union TermsUnion;
template <>
union TermsUnion<> {};
template <class H, class... T>
union TermsUnion<H, T...> {
  H head;
  TermsUnion<T...> tail;
  ST_HD TermsUnion() : head() {}
};

namespace detail {
template <int I, class U>
ST_HD inline const auto& terms_at(const U& u) {
  if constexpr (I == 0) return u.head;
  else return terms_at<I - 1>(u.tail);
}
template <int I, class U>
ST_HD inline auto& terms_at(U& u) {
  if constexpr (I == 0) return u.head;
  else return terms_at<I - 1>(u.tail);
}
}  // namespace detail

/// One block of a network of kinds Kinds... seen through one face.
template <template <class> class Face, class... Kinds>
struct FaceBlock {
  int kind = -1;  ///< index of the block's kind in Kinds...
  TermsUnion<typename Face<Kinds>::type...> terms;

  /// The block of kind number I with terms t.
  template <int I, class T>
  static FaceBlock make(const T& t) {
    FaceBlock b;
    b.kind = I;
    detail::terms_at<I>(b.terms) = t;
    return b;
  }

  /// fn(terms) for the kind of this block (not called for a kind without the face).
  template <class Fn>
  ST_HD void visit(Fn&& fn) const {
    visit_from<0>(fn);
  }
  /// fn(terms) with the terms writable (the host setting a coefficient after make).
  template <class Fn>
  void update(Fn&& fn) {
    update_from<0>(fn);
  }

 private:
  template <int I, class Fn>
  ST_HD void visit_from(Fn& fn) const {
    if constexpr (I < int(sizeof...(Kinds))) {
      if (kind == I) {
        const auto& t = detail::terms_at<I>(terms);
        if constexpr (!std::is_same_v<std::decay_t<decltype(t)>, NoFace>) fn(t);
        return;
      }
      visit_from<I + 1>(fn);
    }
  }
  template <int I, class Fn>
  void update_from(Fn& fn) {
    if constexpr (I < int(sizeof...(Kinds))) {
      if (kind == I) {
        auto& t = detail::terms_at<I>(terms);
        if constexpr (!std::is_same_v<std::decay_t<decltype(t)>, NoFace>) fn(t);
        return;
      }
      update_from<I + 1>(fn);
    }
  }
};

}  // namespace shaped_transformer
