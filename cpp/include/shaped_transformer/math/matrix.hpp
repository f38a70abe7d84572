// Small row-major matrices over lanes, as views: the storage of the m x m algebra
// that the block formulas (SDE drift and noise, exact step) are written against.
// A lane `L` is a double (a host thread, a CUDA thread) or a SIMD vector of doubles
// (one sample per lane, simd/lanes.hpp); entry (i, j) of a view is p[i ld + j].
// MC > 0 fixes the size at compile time (an MC x MC matrix stored densely), so the
// loops over it unroll; MC = 0 takes rows, columns and leading dimension at run time.
#pragma once

#include "../device/hd.hpp"

namespace shaped_transformer {

template <class L, int MC = 0>
class MatRef {
 public:
  static constexpr int kFixed = MC;
  using Lane = L;
  ST_HD MatRef() = default;
  ST_HD MatRef(L* data, int rows, int cols, int ld) : p_(data), r_(rows), c_(cols), ld_(ld) {}
  /// A square m x m matrix stored densely (leading dimension m).
  ST_HD MatRef(L* data, int m) : p_(data), r_(m), c_(m), ld_(m) {}
  ST_HD int rows() const {
    if constexpr (MC > 0) return MC;
    else return r_;
  }
  ST_HD int cols() const {
    if constexpr (MC > 0) return MC;
    else return c_;
  }
  ST_HD int ld() const {
    if constexpr (MC > 0) return MC;
    else return ld_;
  }
  ST_HD L& operator()(int i, int j) const { return p_[i * ld() + j]; }
  ST_HD L* data() const { return p_; }
  /// Columns c0 .. c0 + n - 1 (a run-time view).
  ST_HD MatRef<L, 0> middle_cols(int c0, int n) const { return MatRef<L, 0>(p_ + c0, rows(), n, ld()); }

 private:
  L* p_ = nullptr;
  int r_ = MC, c_ = MC, ld_ = MC;
};

}  // namespace shaped_transformer
