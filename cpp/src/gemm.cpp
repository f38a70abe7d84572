// The large products of the scalar lanes (math/matrix.hpp): row-major doubles through
// Eigen's GEMM, which at m in the hundreds is far faster than the plain loops the
// small matrices use.
#include <Eigen/Dense>

#include "shaped_transformer/math/matrix.hpp"

namespace shaped_transformer::detail {

void gemm_rowmajor(bool ta, bool tb, int n, int p, int q, const double* A, int lda, const double* B, int ldb, double* C,
                   int ldc) {
  using RM = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Map = Eigen::Map<const RM, 0, Eigen::OuterStride<>>;
  const Map a(A, ta ? q : n, ta ? n : q, Eigen::OuterStride<>(lda));
  const Map b(B, tb ? p : q, tb ? q : p, Eigen::OuterStride<>(ldb));
  Eigen::Map<RM, 0, Eigen::OuterStride<>> c(C, n, p, Eigen::OuterStride<>(ldc));
  if (ta && tb) c.noalias() = a.transpose() * b.transpose();
  else if (ta) c.noalias() = a.transpose() * b;
  else if (tb) c.noalias() = a * b.transpose();
  else c.noalias() = a * b;
}

}  // namespace shaped_transformer::detail
