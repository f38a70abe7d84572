// The explicit network's blocks at initialization (docs/model.md sections 1-2) and the
// law-exact activation sampler (section 4), for float and double arithmetic.
//
// Explicit: every weight product X W / sqrt(n) goes through gaussian_gemm, which
// generates W tile by tile and never stores it.  Law: the same block with
// X W / sqrt(n) replaced by L G, L L^T = X X^T / n, G an m x cols standard Gaussian
// matrix (given X, the columns of X W / sqrt(n) are i.i.d. N(0, V)).
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "shaped_transformer/linalg.hpp"
#include "shaped_transformer/network.hpp"
#include "shaped_transformer/normal_kernels.hpp"
#include "shaped_transformer/rng.hpp"

namespace shaped_transformer {
namespace {

using RowMatD = Mat<double>;

/// Where a block draws its numbers.
struct Key {
  std::uint64_t seed;
  std::uint32_t sample, block;
  bool law;
  int threads;
  const CancelToken* cancel;
  Stream stream(std::uint32_t id) const { return Stream{seed, sample, block, law ? matrix_id::kLawBase + id : id}; }
};

template <class S>
RowMatD gram(const Mat<S>& X) {
  const Eigen::MatrixXd Xd = X.template cast<double>();
  return (Xd * Xd.transpose()) / double(X.cols());
}

/// A matrix L with L L^T = V: psd_root with the law sampler's rule (law_root_rule),
/// factored in column-major storage and stored row-major, as the draws always were.
RowMatD covariance_root(const RowMatD& V) {
  RowMatD L;
  psd_root(Eigen::MatrixXd(V), L, law_root_rule());
  return L;
}

/// Y = X W / sqrt(n_in) with W (n_in x cols) from stream `id` (explicit), or, in
/// law, L G with G (m x cols) standard Gaussian; Lroot = root of X X^T / n_in.
template <class S>
Mat<S> project(const Key& key, std::uint32_t id, const Mat<S>& X, std::int64_t cols, const Mat<S>& Lroot) {
  Mat<S> Y(X.rows(), cols);
  if (!key.law) {
    gaussian_gemm(key.stream(id), int(X.rows()), X.cols(), cols, X.data(), X.cols(), Y.data(), cols,
                  S(1.0 / std::sqrt(double(X.cols()))), key.threads, key.cancel);
  } else {
    Mat<S> G(X.rows(), cols);
    fill_normal(key.stream(id), 0, std::size_t(G.size()), G.data());
    Y.noalias() = Lroot * G;
  }
  return Y;
}

template <class S>
Mat<S> root_of(const Key& key, const Mat<S>& X) {
  if (!key.law) return Mat<S>();
  return covariance_root(gram(X)).template cast<S>();
}

/// Per-token normalisation over the features (no gain or bias: their values at
/// initialization are 1 and 0).  A token that is all zeros stays zero.
template <class S>
void normalize_tokens(Mat<S>& X, bool layer) {
  const double n = double(X.cols());
  for (Eigen::Index a = 0; a < X.rows(); ++a) {
    auto row = X.row(a);
    double mean = 0.0;
    if (layer) {
      for (Eigen::Index j = 0; j < X.cols(); ++j) mean += double(row(j));
      mean /= n;
    }
    double ss = 0.0;
    for (Eigen::Index j = 0; j < X.cols(); ++j) {
      const double d = double(row(j)) - mean;
      ss += d * d;
    }
    const double scale = ss > 0.0 ? 1.0 / std::sqrt(ss / n) : 0.0;
    for (Eigen::Index j = 0; j < X.cols(); ++j) row(j) = S((double(row(j)) - mean) * scale);
  }
}

bool is_pre(Norm k) { return k == Norm::PreRMS || k == Norm::PreLayer; }
bool is_post(Norm k) { return k == Norm::PostRMS || k == Norm::PostLayer; }
bool is_layer(Norm k) { return is_layer_norm(k); }

/// Both attention kinds; Kind carries the shaped head's parameters (alpha, beta, tau0,
/// causal) or none (standard: A_h = Softmax(Y_h / sqrt(n_k)), optional norms).
template <class S, class Kind>
void attention(const Kind& a, Mat<S>& X, const Key& key) {
  constexpr bool shaped = std::is_same_v<Kind, ShapedAttention>;
  const std::int64_t n = X.cols();
  const Eigen::Index m = X.rows();
  const int H = a.heads;
  a.validate(long(n));
  Norm norm = Norm::None;
  if constexpr (!shaped) norm = a.norm;
  const std::int64_t hd = a.concat ? n / H : n;  // value width of one head
  const std::int64_t nk = a.key_dim > 0 ? a.key_dim : hd;
  if (a.gamma == 0.0 && !is_post(norm)) return;  // X' = X exactly (lambda = 1)

  Mat<S> Xn;
  if (is_pre(norm)) {
    Xn = X;
    normalize_tokens(Xn, is_layer(norm));
  }
  const Mat<S>& Xin = is_pre(norm) ? Xn : X;
  const Mat<S> L = root_of(key, Xin);

  Mat<S> B = Mat<S>::Zero(m, n);
  Eigen::MatrixXd C;
  double logit_scale = 1.0 / std::sqrt(double(nk));
  bool causal = false;
  if constexpr (shaped) {
    C = shaped_centering(m, a.causal);
    logit_scale = 1.0 / (a.tau0 * std::sqrt(double(n) * double(nk)));
    causal = a.causal;
  }
  for (int h = 0; h < H; ++h) {
    const Mat<S> Q = project(key, matrix_id::head(matrix_id::kQuery, h), Xin, nk, L);
    const Mat<S> K = project(key, matrix_id::head(matrix_id::kKey, h), Xin, nk, L);
    const Eigen::MatrixXd Y = (Q * K.transpose()).template cast<double>();
    Eigen::MatrixXd A = Y * logit_scale;
    softmax_rows(A, causal);  // the exact chain's softmax (exact_common.hpp)
    if constexpr (shaped) A = a.alpha * Eigen::MatrixXd::Identity(m, m) + a.beta * A - a.beta * C;
    const Mat<S> XV = project(key, matrix_id::head(matrix_id::kValue, h), Xin, hd, L);
    const Mat<S> As = A.cast<S>();
    if (a.concat) B.middleCols(h * hd, hd).noalias() = As * XV;
    else B.noalias() += As * XV;
  }
  if (a.concat) {
    const Mat<S> Lb = root_of(key, B);
    const Mat<S> out = project(key, matrix_id::kOutput, B, n, Lb);
    X = S(a.lambda) * X + S(a.gamma) * out;
  } else {
    X = S(a.lambda) * X + S(a.gamma / std::sqrt(double(H))) * B;
  }
  if (is_post(norm)) normalize_tokens(X, is_layer(norm));
}

/// The MLP branch with phi_s (s_plus, s_minus) and constant c.
template <class S>
void mlp(double s_plus, double s_minus, double c, double gamma, double lambda, Norm norm, Mat<S>& X, const Key& key) {
  if (gamma == 0.0 && !is_post(norm)) return;
  const std::int64_t n = X.cols();
  Mat<S> Xn;
  if (is_pre(norm)) {
    Xn = X;
    normalize_tokens(Xn, is_layer(norm));
  }
  const Mat<S>& Xin = is_pre(norm) ? Xn : X;
  const Mat<S> L = root_of(key, Xin);
  Mat<S> P = project(key, matrix_id::kPre, Xin, n, L);
  const S sp = S(s_plus), sm = S(s_minus);
  P = P.unaryExpr([sp, sm](S x) { return x > S(0) ? sp * x : sm * x; });
  const Mat<S> Lp = root_of(key, P);
  const Mat<S> out = project(key, matrix_id::kPost, P, n, Lp);
  X = S(lambda) * X + S(gamma * std::sqrt(c)) * out;
  if (is_post(norm)) normalize_tokens(X, is_layer(norm));
}

template <class S>
void shaped_mlp(const ShapedMLP& b, Mat<S>& X, const Key& key) {
  b.validate();
  const double rn = std::sqrt(double(X.cols()));
  const double sp = 1.0 + b.c_plus / rn, sm = 1.0 + b.c_minus / rn;
  mlp(sp, sm, 2.0 / (sp * sp + sm * sm), b.gamma, b.lambda, Norm::None, X, key);
}

}  // namespace

template <class S>
void forward_explicit(const ShapedAttention& b, Mat<S>& X, std::uint64_t seed, std::uint32_t sample,
                      std::uint32_t block, int threads, const CancelToken* cancel) {
  attention<S>(b, X, Key{seed, sample, block, false, threads, cancel});
}
template <class S>
void forward_explicit(const StandardAttention& b, Mat<S>& X, std::uint64_t seed, std::uint32_t sample,
                      std::uint32_t block, int threads, const CancelToken* cancel) {
  attention<S>(b, X, Key{seed, sample, block, false, threads, cancel});
}
template <class S>
void forward_explicit(const ShapedMLP& b, Mat<S>& X, std::uint64_t seed, std::uint32_t sample, std::uint32_t block,
                      int threads, const CancelToken* cancel) {
  shaped_mlp(b, X, Key{seed, sample, block, false, threads, cancel});
}
template <class S>
void forward_explicit(const ReluMLP& b, Mat<S>& X, std::uint64_t seed, std::uint32_t sample, std::uint32_t block,
                      int threads, const CancelToken* cancel) {
  b.validate();
  mlp(1.0, 0.0, 2.0, b.gamma, b.lambda, b.norm, X, Key{seed, sample, block, false, threads, cancel});
}

template <class S>
void forward_law(const ShapedAttention& b, Mat<S>& X, std::uint64_t seed, std::uint32_t sample, std::uint32_t block) {
  attention<S>(b, X, Key{seed, sample, block, true, 1, nullptr});
}
template <class S>
void forward_law(const StandardAttention& b, Mat<S>& X, std::uint64_t seed, std::uint32_t sample, std::uint32_t block) {
  attention<S>(b, X, Key{seed, sample, block, true, 1, nullptr});
}
template <class S>
void forward_law(const ShapedMLP& b, Mat<S>& X, std::uint64_t seed, std::uint32_t sample, std::uint32_t block) {
  shaped_mlp(b, X, Key{seed, sample, block, true, 1, nullptr});
}
template <class S>
void forward_law(const ReluMLP& b, Mat<S>& X, std::uint64_t seed, std::uint32_t sample, std::uint32_t block) {
  b.validate();
  mlp(1.0, 0.0, 2.0, b.gamma, b.lambda, b.norm, X, Key{seed, sample, block, true, 1, nullptr});
}

#define ST_INSTANTIATE(S, B)                                                                             \
  template void forward_explicit<S>(const B&, Mat<S>&, std::uint64_t, std::uint32_t, std::uint32_t, int, \
                                    const CancelToken*);                                                 \
  template void forward_law<S>(const B&, Mat<S>&, std::uint64_t, std::uint32_t, std::uint32_t);
ST_INSTANTIATE(float, ShapedAttention)
ST_INSTANTIATE(double, ShapedAttention)
ST_INSTANTIATE(float, StandardAttention)
ST_INSTANTIATE(double, StandardAttention)
ST_INSTANTIATE(float, ShapedMLP)
ST_INSTANTIATE(double, ShapedMLP)
ST_INSTANTIATE(float, ReluMLP)
ST_INSTANTIATE(double, ReluMLP)
#undef ST_INSTANTIATE

}  // namespace shaped_transformer
