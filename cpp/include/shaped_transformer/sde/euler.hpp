// The generic per-path solver's Euler and tamed Euler step: kernels/sde_step.hpp on
// the scalar lanes (math/lane.hpp), one path's V in row-major storage, its root
// L L^T = V from linalg.hpp (Cholesky when V is safely definite, the root of the
// clipped spectrum otherwise; psd_clip_root for the PSD remedy; from 33 tokens on with
// the Cholesky of the build for this CPU, large_root.hpp).  The batched SIMD
// kernels and the CUDA threads run the same step on their own lanes and roots.
#pragma once

#include <cstdint>
#include <vector>

#include "../kernels/sde_step.hpp"
#include "../large_root.hpp"
#include "../linalg.hpp"
#include "../math/lane.hpp"
#include "../sde.hpp"
#include "brownian.hpp"
#include "terms.hpp"

namespace shaped_transformer::sde {

/// One path of the SDE of the blocks `blocks` (SdeBlock terms), stepped in place.
/// MC > 0: m = MC known at compile time.
template <class Block, int MC>
class PathStepper {
 public:
  PathStepper(const Block* blocks, int nblocks, int m)
      : blocks_(blocks), nblocks_(nblocks), m_(m), v_(std::size_t(m) * m), buf_(std::size_t(sde_state_lanes(m))) {
    int dim = 0;
    for (int b = 0; b < nblocks; ++b)
      blocks[b].visit([&](const auto& t) { dim = std::max(dim, std::decay_t<decltype(t)>::noise_dim(m)); });
    dw_.resize(std::size_t(dim > 0 ? dim : 1));
    sde_state_layout(s_, v_.data(), buf_.data(), m, m, drift_, incr_);
    normalize_ = sde_normalizes(blocks, nblocks);
    r_.resize(std::size_t(m));
  }

  /// V, row-major m x m.
  MatRef<double, MC> V() const { return s_.V; }
  /// Sets V = (V0 + V0^T) / 2 (V0 itself when symmetric).
  template <class M>
  void set(const M& V0) {
    for (int a = 0; a < m_; ++a)
      for (int b = 0; b < m_; ++b) s_.V(a, b) = 0.5 * (V0(a, b) + V0(b, a));
    have_root_ = false;
  }

  /// One step with the Brownian increments of (seed, path, step k).  Returns true when
  /// the path blew up: V not finite or a diagonal entry above `blowup` (normalized
  /// blocks: or a diagonal entry <= 0 before V is mapped to its correlation matrix).
  bool step(const SdeOptions& o, std::uint64_t seed, std::uint32_t path, std::uint32_t k, double blowup) {
    if (!have_root_) root();
    have_root_ = false;
    auto normals = [&](int b, int dim, double* dW) {
      brownian_increment(seed, path, k, std::uint32_t(b), o.dt, dim, dW);
    };
    sde_increment<ScalarLanes, MC>(blocks_, nblocks_, s_, o.dt, o.scheme == SdeScheme::TamedEuler, normals, dw_.data(),
                                   drift_, incr_);
    return apply_increment<ScalarLanes, MC>(s_.V, incr_, blowup, normalize_, r_.data());
  }

  /// The PSD remedy after a step: projects V onto the PSD cone when it left it
  /// (returns true then; normalized blocks: and back to unit diagonal, with its root)
  /// and keeps the root for the next step.
  bool clip() {
    bool projected = false;  // large V: psd_clip_root's Cholesky branch in this CPU's build (large_root.hpp)
    if (m_ <= 32) projected = clip_as<typename RootMatrix<MC>::type>();
    else if (!(s_.V.ld() == m_ && s_.L.ld() == m_ && safe_cholesky_rowmajor(m_, s_.V.data(), s_.L.data())))
      projected = clip_as<Cov>();
    if (projected && normalize_) {
      MatRef<double, MC> L = s_.L;
      normalize_to_correlation<ScalarLanes, MC>(s_.V, r_.data(), &L);
    }
    s_.tri = is_lower(s_.L);
    have_root_ = true;
    return projected;
  }

 private:
  template <class R>
  bool clip_as() {
    R v = R::Zero(m_, m_), l;
    for (int a = 0; a < m_; ++a)
      for (int b = 0; b < m_; ++b) v(a, b) = s_.V(a, b);
    const bool projected = psd_clip_root(v, l);
    for (int a = 0; a < m_; ++a)
      for (int b = 0; b < m_; ++b) {
        s_.V(a, b) = v(a, b);
        s_.L(a, b) = l(a, b);
      }
    return projected;
  }
  template <class R>
  void root_as() {
    R v = R::Zero(m_, m_), l;
    for (int a = 0; a < m_; ++a)
      for (int b = 0; b < m_; ++b) v(a, b) = s_.V(a, b);
    psd_root(v, l);
    for (int a = 0; a < m_; ++a)
      for (int b = 0; b < m_; ++b) s_.L(a, b) = l(a, b);
  }
  void root() {
    if (m_ <= 32) root_as<typename RootMatrix<MC>::type>();
    else if (s_.V.ld() == m_ && s_.L.ld() == m_) psd_root_rowmajor(m_, s_.V.data(), s_.L.data());  // large_root.hpp
    else root_as<Cov>();
    s_.tri = is_lower(s_.L);
  }
  const Block* blocks_;
  int nblocks_, m_;
  std::vector<double> v_, buf_, dw_, r_;
  SdeState<ScalarLanes, MC> s_;
  MatRef<double, MC> drift_, incr_;
  bool have_root_ = false;
  bool normalize_ = false;  ///< normalized blocks: V is a correlation matrix (kernels/sde_step.hpp)
};

}  // namespace shaped_transformer::sde
