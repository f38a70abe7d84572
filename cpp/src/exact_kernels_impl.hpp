// The batched exact attention chain (exact/batch.hpp), written once for W lanes.
// Included inside an anonymous namespace by exact_kernels.cpp (W = 1),
// exact_kernels_avx2.cpp (W = 4) and exact_kernels_avx512.cpp (W = 8), after they
// define W, VD, VL, vfma, vsqrtd (as for sde_kernels_impl.hpp) and
//   void lane_normals(std::uint64_t seed, std::uint32_t matrix, std::uint32_t block,
//                     std::uint32_t sample0, int groups, VD* out)
//       normals 0 .. 4 groups - 1 of the W streams {seed, sample0 + l, block, matrix}
//       (double(float normal), as fill_normal);
//   void lane_uniforms(std::uint64_t seed, std::uint32_t matrix, std::uint32_t block,
//                      std::uint32_t sample0, int count, VD* out)
//       uniforms 0 .. count - 1 of those streams (SeqUniform's numbers).
// Every lane only reads its own data and every kernel runs the same operations per
// lane, so all kernels give the same numbers.  Scalar pieces that all kernels share
// (the gamma log test, the Wishart factor of a lane that needs a second proposal,
// the PSD root of a lane whose Cholesky fails) are compiled once in
// exact_kernels.cpp (detail::...).

#include "lanes_cholesky.hpp"

using shaped_transformer::exact_batch::Params;

/// exp(x) for every lane: 2^k exp(r), r = x - k ln 2 in [-ln2/2, ln2/2], degree-13
/// Taylor polynomial (truncation below 1e-17 relative); within ~2 ulp of std::exp.
/// Results below 2^-1022 (x < -708) are flushed to 0: the softmax adds them to a
/// sum >= 1.  NaN stays NaN.
inline VD vexp(VD x) {
  const VD big = vset(6755399441055744.0);  // 1.5 * 2^52: adding it rounds to an integer
  const VD xc = x < vset(-708.0) ? vset(-708.0) : (x > vset(709.0) ? vset(709.0) : x);
  const VD t = vfma(xc, vset(1.4426950408889634), big);
  const VD k = t - big;
  VD r = vfma(k, vset(-0.6931471803691238), xc);  // ln 2, high part (exact product for |k| < 2^11)
  r = vfma(k, vset(-1.9082149292705877e-10), r);  // ln 2, low part
  VD p = vset(1.0 / 6227020800.0);
  const double inv_fact[13] = {1.0 / 479001600.0,
                               1.0 / 39916800.0,
                               1.0 / 3628800.0,
                               1.0 / 362880.0,
                               1.0 / 40320.0,
                               1.0 / 5040.0,
                               1.0 / 720.0,
                               1.0 / 120.0,
                               1.0 / 24.0,
                               1.0 / 6.0,
                               0.5,
                               1.0,
                               1.0};
  for (int i = 0; i < 13; ++i) p = vfma(p, r, vset(inv_fact[i]));
  const VL kb = ((VL)t - (VL)big + 1023) << 52;  // 2^k: k in [-1022, 1023]
  VD y = p * (VD)kb;
  y = x < vset(-708.0) ? vset(0.0) : y;
  return x != x ? x : y;
}

/// Lane Bartlett factor B (lower triangular, B B^T ~ Wishart_m(df)): the draws of
/// exact_small::wishart, lane by lane.  Lanes whose gamma variates need more than
/// the first proposal (or whose log test is close) are redrawn by the scalar
/// sampler (same numbers).  N: scratch of >= 4 * ceil(m (m + 1) / 8) lanes.
template <int MC>
inline void wishart_lanes(int m, double df, std::uint64_t seed, std::uint32_t mat_normal, std::uint32_t mat_uniform,
                          std::uint32_t block, std::uint32_t sample0, const unsigned char* alive, VD* N, VD* U, VD* B) {
  const int nn = m * (m + 1) / 2;
  lane_normals(seed, mat_normal, block, sample0, (nn + 3) / 4, N);
  lane_uniforms(seed, mat_uniform, block, sample0, m, U);
  VL redo = VL{};  // lanes for the scalar sampler
  for (int i = 0; i < m; ++i) {
    const double shape = 0.5 * (df - double(i));
    const int base = i * (i + 1) / 2;
    for (int j = 0; j < i; ++j) B[i * m + j] = N[base + 1 + j];
    for (int j = i + 1; j < m; ++j) B[i * m + j] = vset(0.0);
    if (!(shape >= 1.0)) {  // gamma_variate's boost: uniforms first, rare here
      redo = (VL{} == VL{});
      B[i * m + i] = vset(1.0);
      continue;
    }
    const double d = shape - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
    const VD x = N[base];
    VD v = vset(1.0) + vset(c) * x;
    redo |= v <= vset(0.0);
    v = v * v * v;
    const VD u = U[i];
    const VD x2 = x * x;
    const VL squeeze = u < vset(1.0) - vset(0.0331) * x2 * x2;
    for (int l = 0; l < W; ++l)
      if (!squeeze[l] && !redo[l] && alive[l] &&
          !shaped_transformer::exact_batch::detail::gamma_log_accept(u[l], x2[l], d, v[l]))
        redo[l] = -1;
    B[i * m + i] = vsqrtd(vset(2.0) * (vset(d) * v));
  }
  for (int l = 0; l < W; ++l)
    if (redo[l] && alive[l]) {
      double b[shaped_transformer::exact_batch::kMaxM * shaped_transformer::exact_batch::kMaxM];
      shaped_transformer::exact_batch::detail::wishart_lane(
          df, m, shaped_transformer::Stream{seed, sample0 + std::uint32_t(l), block, mat_normal},
          shaped_transformer::Stream{seed, sample0 + std::uint32_t(l), block, mat_uniform}, b);
      for (int k = 0; k < m * m; ++k) B[k][l] = b[k];
    }
}

/// Y = A B for m x m lane matrices (row-major), summed in k order.
template <int MC>
inline void mul(int m, const VD* A, const VD* Bm, VD* Y) {
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) {
      VD s = A[i * m] * Bm[j];
      for (int k = 1; k < m; ++k) s = vfma(A[i * m + k], Bm[k * m + j], s);
      Y[i * m + j] = s;
    }
}

/// Y = A B^T.
template <int MC>
inline void mul_t(int m, const VD* A, const VD* Bm, VD* Y) {
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) {
      VD s = A[i * m] * Bm[j * m];
      for (int k = 1; k < m; ++k) s = vfma(A[i * m + k], Bm[j * m + k], s);
      Y[i * m + j] = s;
    }
}

/// Y = A B with B lower triangular (k >= j only).
template <int MC>
inline void mul_lower(int m, const VD* A, const VD* Bm, VD* Y) {
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) {
      VD s = A[i * m + j] * Bm[j * m + j];
      for (int k = j + 1; k < m; ++k) s = vfma(A[i * m + k], Bm[k * m + j], s);
      Y[i * m + j] = s;
    }
}

/// Y = A B with A lower triangular (k <= i only).
template <int MC>
inline void lower_mul(int m, const VD* A, const VD* Bm, VD* Y) {
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) {
      VD s = A[i * m] * Bm[j];
      for (int k = 1; k <= i; ++k) s = vfma(A[i * m + k], Bm[k * m + j], s);
      Y[i * m + j] = s;
    }
}

struct Work {
  VD *V, *L, *B, *Z, *Mk, *T, *Y, *C, *P, *CB, *Q, *N, *U;
};

/// One attention block on every lane (exact_small::attention's steps and draws).
template <int MC>
inline void attention_lanes(const Params& p, const shaped_transformer::exact_batch::BlockParams& b, std::uint32_t block,
                            std::uint32_t sample0, const unsigned char* alive, Work& w, double* tV, double* tL) {
  using shaped_transformer::ExactKey;
  namespace mid = shaped_transformer::matrix_id;
  const int m = MC > 0 ? MC : p.m, mm = m * m;
  VD *V = w.V, *L = w.L, *B = w.B, *Z = w.Z, *T = w.T, *Y = w.Y, *C = w.C, *P = w.P, *Q = w.Q;
  // root of V: lane Cholesky, psd_root for the lanes where it fails
  const VL ok = cholesky_lanes<MC>(m, V, L);
  bool tri = true;
  for (int l = 0; l < W; ++l) {
    if (ok[l] || !alive[l]) continue;
    for (int i = 0; i < mm; ++i) tV[i] = V[i][l];
    shaped_transformer::sde::batch_lane_root(tV, tL, m, false);
    for (int i = 0; i < mm; ++i) L[i][l] = tL[i];
    tri = false;
  }
  const double n = double(p.n);
  const double tau = b.tau0 * std::sqrt(n * b.nk);
  const std::uint32_t head0 = mid::kExactBase + 8u;  // ExactKey::head_stream(0, .)
  // key product M = chol(Wishart_m(n_k)) Z
  wishart_lanes<MC>(m, b.nk ST_MUTATE(kKeyDf), p.seed, head0 + ExactKey::kKeyWishart, head0 + ExactKey::kKeyUniform,
                    block, sample0, alive, w.N, w.U, B);
  lane_normals(p.seed, head0 + ExactKey::kKeyGauss, block, sample0, (mm + 3) / 4, Z);
  lower_mul<MC>(m, B, Z, w.Mk);
  if (tri) lower_mul<MC>(m, L, w.Mk, T);
  else mul<MC>(m, L, w.Mk, T);
  mul_t<MC>(m, T, L, Y);
  // softmax rows, then A = alpha I + beta (S - C)
  for (int i = 0; i < m; ++i) {
    const int k = b.causal ? i + 1 : m;
    for (int j = 0; j < k; ++j) Y[i * m + j] = Y[i * m + j] / tau;
    VD mx = Y[i * m];
    for (int j = 1; j < k; ++j) mx = Y[i * m + j] > mx ? Y[i * m + j] : mx;
    VD sum = vset(0.0);
    for (int j = 0; j < k; ++j) sum += (Y[i * m + j] = vexp(Y[i * m + j] - mx));
    for (int j = 0; j < k; ++j) Y[i * m + j] = Y[i * m + j] / sum;
    for (int j = k; j < m; ++j) Y[i * m + j] = vset(0.0);
    const double c = 1.0 / double(k);
    for (int j = 0; j < m; ++j) Y[i * m + j] = vset(b.beta) * (Y[i * m + j] - vset(j < k ? c : 0.0));
    Y[i * m + i] += b.alpha;
  }
  if (tri) mul_lower<MC>(m, Y, L, C);
  else mul<MC>(m, Y, L, C);
  // value mix with H = 1
  lane_normals(p.seed, mid::kExactBase + 8u + ExactKey::kValueZ, block, sample0, (mm + 3) / 4, Z);
  mul<MC>(m, C, Z, P);
  wishart_lanes<MC>(m, n - double(m) ST_MUTATE(kValueDf), p.seed, mid::kExactBase + ExactKey::kR,
                    mid::kExactBase + ExactKey::kRUniform, block, sample0, alive, w.N, w.U, B);
  mul_lower<MC>(m, C, B, w.CB);
  mul_t<MC>(m, L, P, T);
  mul_t<MC>(m, P, P, Q);
  mul_t<MC>(m, w.CB, w.CB, Y);
  const double HN = n;
  const VD ll = vset(b.lambda * b.lambda), lg = vset(b.lambda * b.gamma / std::sqrt(HN)),
           gg = vset(b.gamma * b.gamma / HN);
  for (int i = 0; i < mm; ++i) Q[i] = Q[i] + Y[i];
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) {
      VD o = ll * V[i * m + j];
      o = o + lg * (T[i * m + j] + T[j * m + i]);
      C[i * m + j] = o + gg * Q[i * m + j];  // C is free again: out
    }
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) V[i * m + j] = vset(0.5) * (C[i * m + j] + C[j * m + i]);
}

template <int MC>
void run_exact_impl(const Params& p, const double* V0, std::uint32_t sample0, int count, double* out,
                    std::int64_t* exploded, const shaped_transformer::CancelToken* cancel) {
  const int m = MC > 0 ? MC : p.m, mm = m * m;
  const std::size_t nsave = p.nsave, nblocks = p.blocks.size();
  const int stride = 4 * ((mm + 3) / 4);  // lane_normals writes whole groups of 4
  std::vector<VD> buf(std::size_t(12 * stride + m));
  Work w;
  VD* q = buf.data();
  for (VD** v : {&w.V, &w.L, &w.B, &w.Z, &w.Mk, &w.T, &w.Y, &w.C, &w.P, &w.CB, &w.Q, &w.N}) {
    *v = q;
    q += stride;
  }
  w.U = q;
  double tV[shaped_transformer::exact_batch::kMaxM * shaped_transformer::exact_batch::kMaxM],
      tL[shaped_transformer::exact_batch::kMaxM * shaped_transformer::exact_batch::kMaxM];
  unsigned char alive[W];
  for (int l = 0; l < W; ++l) {
    alive[l] = l < count ? 1 : 0;
    if (l < count) exploded[l] = -1;
  }
  for (int i = 0; i < mm; ++i) w.V[i] = vset(V0[i]);
  std::size_t k = 0;
  auto save = [&](std::int64_t layer) {
    for (; k < nsave && (layer < 0 || p.save_at[k] == layer); ++k)
      for (int l = 0; l < count; ++l) {
        double* o = out + (std::size_t(l) * nsave + k) * std::size_t(mm);
        for (int i = 0; i < mm; ++i) o[i] = alive[l] ? w.V[i][l] : std::numeric_limits<double>::quiet_NaN();
      }
  };
  save(0);
  for (int layer = 0; layer < p.depth; ++layer) {
    if (cancel && cancel->stop_requested()) return;
    VD bad = vset(0.0);  // NaN in the lanes that overflowed inside the layer
    for (std::size_t bi = 0; bi < nblocks; ++bi) {
      attention_lanes<MC>(p, p.blocks[bi], std::uint32_t(std::size_t(layer) * nblocks + bi), sample0, alive, w, tV, tL);
      for (int i = 0; i < mm; ++i) bad += w.V[i] * 0.0;
    }
    VD maxdiag = w.V[0];
    for (int a = 1; a < m; ++a) maxdiag = w.V[a * m + a] > maxdiag ? w.V[a * m + a] : maxdiag;
    const VL stop = (bad != vset(0.0)) | !(maxdiag <= vset(p.blowup));
    bool any = false;
    for (int l = 0; l < W; ++l) {
      if (alive[l] && stop[l]) {
        alive[l] = 0;
        exploded[l] = layer + 1;
      }
      if (!alive[l])  // park the lane at the identity
        for (int a = 0; a < m; ++a)
          for (int c = 0; c < m; ++c) w.V[a * m + c][l] = a == c ? 1.0 : 0.0;
      any = any || alive[l];
    }
    if (!any) break;
    save(layer + 1);
  }
  save(-1);  // saves not reached: NaN
}

void run_exact(const Params& p, const double* V0, std::uint32_t sample0, int count, double* out, std::int64_t* exploded,
               const shaped_transformer::CancelToken* cancel) {
  if (p.m == 8) run_exact_impl<8>(p, V0, sample0, count, out, exploded, cancel);
  else run_exact_impl<0>(p, V0, sample0, count, out, exploded, cancel);
}
