// The exact chain for one sample (exact.hpp's exact_sample) as ST_HD code on plain
// arrays: every block's own exact step (the face of its header, exact_common.hpp) on
// the scalar lanes, with the context below (small_linalg.hpp's roots, the sequential
// samplers of math/samplers.hpp).  Same streams and the same draws in the same order
// as the CPU (ExactKey ids), so on the CPU the two agree to rounding
// (tests/cpp/test_device.cpp); on the GPU the exp / log / pow of libdevice may differ
// from glibc's by an ulp, which can flip a gamma rejection decision only with
// probability ~1e-16 per draw.  Kinds whose step needs a host kernel (the MLPs'
// O(m^2 n) Gram) have no device face (exact_on_device = false) and are refused by
// the problem builder (from_network.hpp).
#pragma once

#include <cstdint>

#include "../exact_common.hpp"
#include "../math/lane.hpp"
#include "../math/matrix.hpp"
#include "../math/samplers.hpp"
#include "philox.hpp"
#include "small_linalg.hpp"

namespace shaped_transformer::device {

inline constexpr int kMaxExactBlocks = 16;

/// Everything one sample needs besides its index: the exact terms of the blocks of one
/// layer of a network of kinds Kinds...
template <class Block>
struct ExactProblemOf {
  int m = 0;
  int nblocks = 0;
  Block blocks[kMaxExactBlocks];
  std::int64_t width = 0;
  std::int64_t depth = 0;  ///< layers (steps for the SDE's exact_chain scheme)
  double blowup = 1e4;
  std::uint64_t seed = 0;
  double V0[16 * 16];  ///< row-major m x m (m <= 16)
  int carries_s = 0;   ///< 1: the network has a LayerNorm block, the chain carries s from s0
  double s0[16];       ///< LayerNorm's s_0 (m numbers; exact/start.hpp)
};

/// The exact faces' context (exact_common.hpp) of one CUDA thread: MM bounds m, HM the
/// widest scratch (heads * m).
template <int MM, int HM>
class DeviceCtx {
 public:
  using Ln = ScalarLanes;
  using D = double;
  static constexpr int MC = 0;
  using Mat = MatRef<double, 0>;

  int m;
  long n;
  ExactKey key;
  Mat V;
  double* s = nullptr;  ///< LayerNorm's state s (m numbers: carry_s), when the network carries it

  ST_HD DeviceCtx(int m_, long n_, double* v) : m(m_), n(n_), V(v, m_, m_, MM) {}
  ST_HD Mat tmp(int i) { return Mat(t_[i], m, m, MM); }
  ST_HD Mat wide(int i, int cols) { return Mat(w_[i], m, cols, HM); }
  ST_HD double* vec() { return v_; }
  /// Carries LayerNorm's state from s0 (m numbers).
  ST_HD void carry_s(const double* s0) {
    for (int a = 0; a < m; ++a) s_[a] = s0[a];
    s = s_;
  }
  ST_HD bool root(Mat A, Mat L) {
    psd_root<MM>(A.data(), L.data(), m);
    return is_lower(L);
  }
  template <class VG>
  ST_HD void gaussian(std::uint32_t id, VG G) {
    gaussian_matrix(key.stream(id), G);
  }
  template <class VB>
  ST_HD void wishart(double df, int p, std::uint32_t idn, std::uint32_t idu, VB B) {
    MatrixRng r(key.stream(idn), key.stream(idu));
    wishart_factor(df, p, r, B);
  }

 private:
  double t_[kExactScratch][MM * MM];
  double w_[2][MM * HM];
  double v_[MM];
  double s_[MM];
};

/// A whole sample of the exact chain (exact.hpp's exact_sample); `block index` =
/// layer * nblocks + b.  Saves V at the layers save_at[0..nsave) into out
/// (nsave x m x m), NaN after a blow-up.  Returns the layer of the blow-up (-1: never).
template <int MM, int HM, class Problem>
ST_HD inline std::int64_t exact_sample(const Problem& p, const std::int64_t* save_at, int nsave, std::uint32_t sample,
                                       double* out) {
  const int m = p.m;
  const int mm = m * m;
  double V[MM * MM];
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) V[i * MM + j] = p.V0[i * m + j];
  DeviceCtx<MM, HM> c(m, long(p.width), V);
  if (p.carries_s) c.carry_s(p.s0);
  int k = 0;
  auto save = [&](std::int64_t layer) {
    while (k < nsave && save_at[k] == layer) {
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < m; ++j) out[std::int64_t(k) * mm + i * m + j] = V[i * MM + j];
      ++k;
    }
  };
  save(0);
  std::int64_t exploded = -1;
  for (std::int64_t l = 0; l < p.depth; ++l) {
    bool finite = true;
    for (int b = 0; b < p.nblocks && finite; ++b) {
      c.key = ExactKey{p.seed, sample, std::uint32_t(l * p.nblocks + b), nullptr};
      p.blocks[b].visit([&](const auto& t) { exact_step(t, c); });
      finite = all_finite<MM>(V, m);
    }
    bool bad = !finite;
    for (int i = 0; i < m && !bad; ++i) bad = V[i * MM + i] > p.blowup;
    if (bad) {
      exploded = l + 1;
      break;
    }
    save(l + 1);
  }
  for (; k < nsave; ++k)
    for (int i = 0; i < mm; ++i) out[std::int64_t(k) * mm + i] = nan_d();
  return exploded;
}

/// The widest scratch of the steps of an exact problem (>= m): heads * m for attention.
template <class P>
ST_HD inline int exact_wide(const P& p) {
  int w = p.m;
  for (int b = 0; b < p.nblocks; ++b) p.blocks[b].visit([&](const auto& t) { w = t.wide(p.m) > w ? t.wide(p.m) : w; });
  return w;
}

/// The launch variants of the exact kernel (kernels.cu) and of its CPU twin
/// (host_exact_sample), by m and the widest scratch: <MM, HM> = <4, 4>, <8, 8>,
/// <8, 32>, <16, 32>.
enum class ExactVariant { M4W4, M8W8, M8W32, M16W32 };
ST_HD inline ExactVariant exact_variant(int m, int wide) {
  if (m <= 4 && wide <= 4) return ExactVariant::M4W4;
  if (m <= 8 && wide <= 8) return ExactVariant::M8W8;
  if (m <= 8 && wide <= 32) return ExactVariant::M8W32;
  return ExactVariant::M16W32;
}

}  // namespace shaped_transformer::device
