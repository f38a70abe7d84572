// Small row-major matrices over lanes, as views: the storage of the m x m algebra
// that the block formulas (SDE drift and noise, exact step) are written against.
// A lane `L` is a double (a host thread, a CUDA thread) or a SIMD vector of doubles
// (one sample per lane, simd/lanes.hpp); entry (i, j) of a view is p[i ld + j].
// MC > 0 fixes the size at compile time (an MC x MC matrix stored densely), so the
// loops over it unroll; MC = 0 takes rows, columns and leading dimension at run time.
// The products below are the few the formulas need (A B, A^T B, A B^T).
#pragma once

#include <type_traits>

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

// ---- products ------------------------------------------------------------------
// Every entry is a sum over k in ascending order from 0 with Ln::madd, so all lanes
// of all kernels run the same operations.  A factor known to be lower triangular
// (a Cholesky root) lets the product skip its zero upper triangle: adding an exact
// zero changes nothing (but the sign of a zero), so the numbers are the same.  For the
// scalar lanes on the host, large dynamic matrices (>= kGemmFrom) go through Eigen's
// GEMM instead (different summation order, far faster at m in the hundreds).

inline constexpr int kGemmFrom = 33;

namespace detail {
/// C (n x p) = op(A) op(B), row-major doubles, through Eigen's GEMM; op = transpose
/// when ta / tb.  Defined in cpp/src/gemm.cpp.
void gemm_rowmajor(bool ta, bool tb, int n, int p, int q, const double* A, int lda, const double* B, int ldb, double* C,
                   int ldc);

template <class Ln, class VC>
ST_HD constexpr bool use_gemm(const VC& C, int q) {
#if defined(__CUDA_ARCH__)
  (void)C;
  (void)q;
  return false;
#else
  if constexpr (std::is_same_v<typename Ln::D, double> && VC::kFixed == 0)
    return q >= kGemmFrom || C.rows() >= kGemmFrom;
  else return false;
#endif
}
}  // namespace detail

/// C = A B.  a_lower: A is lower triangular (k <= i); b_lower: B is (k >= j).
template <class Ln, class VC, class VA, class VB>
ST_HD inline void mul(VC C, VA A, VB B, bool a_lower = false, bool b_lower = false) {
  const int n = C.rows(), p = C.cols(), q = A.cols();
#if !defined(__CUDA_ARCH__)
  if constexpr (std::is_same_v<typename Ln::D, double> && VC::kFixed == 0)
    if (detail::use_gemm<Ln>(C, q))
      return detail::gemm_rowmajor(false, false, n, p, q, A.data(), A.ld(), B.data(), B.ld(), C.data(), C.ld());
#endif
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < p; ++j) {
      typename Ln::D s = Ln::splat(0.0);
      const int k1 = a_lower ? i + 1 : q;
      for (int k = b_lower ? j : 0; k < k1; ++k) s = Ln::madd(A(i, k), B(k, j), s);
      C(i, j) = s;
    }
}

/// C = A^T B.  a_lower: A is lower triangular (k >= i); b_lower: B is (k >= j).
template <class Ln, class VC, class VA, class VB>
ST_HD inline void mul_tn(VC C, VA A, VB B, bool a_lower = false, bool b_lower = false) {
  const int n = C.rows(), p = C.cols(), q = A.rows();
#if !defined(__CUDA_ARCH__)
  if constexpr (std::is_same_v<typename Ln::D, double> && VC::kFixed == 0)
    if (detail::use_gemm<Ln>(C, q))
      return detail::gemm_rowmajor(true, false, n, p, q, A.data(), A.ld(), B.data(), B.ld(), C.data(), C.ld());
#endif
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < p; ++j) {
      typename Ln::D s = Ln::splat(0.0);
      int k0 = a_lower ? i : 0;
      if (b_lower && j > k0) k0 = j;
      for (int k = k0; k < q; ++k) s = Ln::madd(A(k, i), B(k, j), s);
      C(i, j) = s;
    }
}

/// C = A B^T.  a_lower: A is lower triangular (k <= i); b_lower: B is (k <= j).
template <class Ln, class VC, class VA, class VB>
ST_HD inline void mul_nt(VC C, VA A, VB B, bool a_lower = false, bool b_lower = false) {
  const int n = C.rows(), p = C.cols(), q = A.cols();
#if !defined(__CUDA_ARCH__)
  if constexpr (std::is_same_v<typename Ln::D, double> && VC::kFixed == 0)
    if (detail::use_gemm<Ln>(C, q))
      return detail::gemm_rowmajor(false, true, n, p, q, A.data(), A.ld(), B.data(), B.ld(), C.data(), C.ld());
#endif
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < p; ++j) {
      typename Ln::D s = Ln::splat(0.0);
      int k1 = q;
      if (a_lower && i + 1 < k1) k1 = i + 1;
      if (b_lower && j + 1 < k1) k1 = j + 1;
      for (int k = 0; k < k1; ++k) s = Ln::madd(A(i, k), B(j, k), s);
      C(i, j) = s;
    }
}

/// Whether the upper triangle of the square L is zero (in every lane, for doubles).
template <class VL>
ST_HD inline bool is_lower(VL L) {
  const int m = L.rows();
  for (int i = 0; i < m; ++i)
    for (int j = i + 1; j < m; ++j)
      if (!(L(i, j) == 0.0)) return false;
  return true;
}

}  // namespace shaped_transformer
