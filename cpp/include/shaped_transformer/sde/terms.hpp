// The terms of the covariance SDE dV = b(V) dt + noise (docs/model.md section 5) of a
// network: the SDE face of each block (its K::Sde terms, whose drift and noise live
// in the "SDE drift and noise" sections of the block headers) as the plain data the
// step of kernels/sde_step.hpp sums over the blocks, for every backend.  The drivers
// check first (check_sde_covers, network.hpp) that every block has an SDE limit; a
// kind without one is refused here too, never skipped.
#pragma once

#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include "../kernels/sde_step.hpp"
#include "../math/lane.hpp"
#include "../network.hpp"

namespace shaped_transformer::sde {

namespace detail {
template <class Net>
struct sde_block_of;
template <class... K>
struct sde_block_of<BasicNetwork<K...>> {
  using type = SdeBlock<K...>;
};
}  // namespace detail

/// The SDE terms of one block of Net.
template <class Net>
using SdeBlockOf = typename detail::sde_block_of<Net>::type;

/// The SDE terms of one block at m tokens (std::invalid_argument for a kind without an SDE limit).
template <class... K>
inline SdeBlock<K...> sde_block(const std::variant<K...>& blk, int m) {
  return std::visit(
      [&](const auto& b) -> SdeBlock<K...> {
        using B = block_kind_t<decltype(b)>;
        if constexpr (B::has_sde) return SdeBlock<K...>::template make<kind_index<B, K...>()>(b.sde_terms(m));
        else throw std::invalid_argument(std::string("network: ") + B::no_sde);
      },
      blk);
}

/// The SDE terms of every block of one layer of `net` at m tokens.
template <class... K>
inline std::vector<SdeBlock<K...>> sde_blocks(const BasicNetwork<K...>& net, int m) {
  std::vector<SdeBlock<K...>> out;
  for (const auto& blk : net.blocks) out.push_back(sde_block(blk, m));
  return out;
}

/// Number of N(0, dt) normals block b's noise uses per step.
template <class... K>
inline int noise_dim(const std::variant<K...>& blk, int m) {
  int k = 0;
  sde_block(blk, m).visit([&](const auto& t) { k = std::decay_t<decltype(t)>::noise_dim(m); });
  return k;
}

namespace detail {
/// Storage and state for one evaluation of the faces on the scalar lanes (m x m, dense).
struct ScalarFaces {
  std::vector<double> v, buf;
  SdeState<ScalarLanes, 0> s;
  MatRef<double> drift, incr;
  explicit ScalarFaces(int m) : v(std::size_t(m) * m), buf(std::size_t(sde_state_lanes(m))) {
    sde_state_layout(s, v.data(), buf.data(), m, m, drift, incr);
  }
  template <class M>
  void load(const M& V) {
    for (int a = 0; a < s.m(); ++a)
      for (int b = 0; b < s.m(); ++b) s.V(a, b) = V(a, b);
  }
  /// out (resized to m x m) gets the upper triangle of u, mirrored.
  template <class M>
  static void store_symmetric(MatRef<double> u, M& out) {
    const int m = u.rows();
    for (int a = 0; a < m; ++a)
      for (int b = a; b < m; ++b) out(a, b) = out(b, a) = u(a, b);
  }
};
}  // namespace detail

/// The drift of one layer at V: out = sum over blocks of b_block(V) (Eigen matrices).
template <class Net, class M>
inline void drift(const Net& net, const M& V, M& out) {
  const int m = int(V.rows());
  const auto blocks = sde_blocks(net, m);
  detail::ScalarFaces f(m);
  f.load(V);
  for (int a = 0; a < m; ++a)
    for (int b = a; b < m; ++b) f.drift(a, b) = 0.0;
  for (const auto& blk : blocks) blk.visit([&](const auto& t) { sde_drift(t, f.s, f.drift); });
  out.resize(m, m);
  detail::ScalarFaces::store_symmetric(f.drift, out);
}

/// Adds block b's noise increment (from its N(0, dt) numbers dW, L a root of V) to out.
template <class M, class... K>
inline void add_noise(const std::variant<K...>& blk, const M& V, const M& L, const double* dW, M& out) {
  const int m = int(V.rows());
  detail::ScalarFaces f(m);
  f.load(V);
  for (int a = 0; a < m; ++a)
    for (int b = 0; b < m; ++b) f.s.L(a, b) = L(a, b);
  f.s.tri = is_lower(f.s.L);
  for (int a = 0; a < m; ++a)
    for (int b = a; b < m; ++b) f.incr(a, b) = 0.0;
  sde_block(blk, m).visit([&](const auto& t) { sde_noise(t, f.s, dW, f.incr); });
  for (int a = 0; a < m; ++a)
    for (int b = a; b < m; ++b) {
      out(a, b) += f.incr(a, b);
      if (b != a) out(b, a) += f.incr(a, b);
    }
}

}  // namespace shaped_transformer::sde
