// The exact m x m chain (exact.hpp): shapes, saving, determinism, blow-up, errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include <shaped_transformer/cpu_features.hpp>
#include <shaped_transformer/detail/exact_impl.hpp>  // the faces and their products (white-box)
#include <shaped_transformer/exact.hpp>
#include <shaped_transformer/gemm.hpp>
#include <shaped_transformer/large_root.hpp>
#include <shaped_transformer/row_softmax.hpp>

#include "driver_helpers.hpp"

namespace st = shaped_transformer;
using namespace st_test;

TEST_SUITE("exact") {
  TEST_CASE("shapes, the saved input and finite covariances") {
    const st::Cov V0 = equicorrelated(4, 0.3);
    st::RunOptions opt;
    opt.threads = 2;
    const auto r = st::simulate_exact(shaped_net(), V0, 64, 8, 5, 1, {0, 4, 8}, opt);
    CHECK(r.samples == 5);
    CHECK(r.saved == 3);
    CHECK(r.m == 4);
    REQUIRE(r.V.size() == std::size_t(5 * 3 * 4 * 4));
    REQUIRE(r.exploded.size() == 5u);
    for (int s = 0; s < 5; ++s) {
      CHECK(r.exploded[s] == -1);
      for (int i = 0; i < 16; ++i) CHECK(r.V_at(s, 0)[i] == doctest::Approx(V0.data()[i]).epsilon(1e-14));
      for (int k = 1; k < 3; ++k) {
        const double* V = r.V_at(s, k);
        for (int a = 0; a < 4; ++a) {
          CHECK(V[a * 4 + a] > 0);
          for (int b = 0; b < 4; ++b) {
            CHECK(std::isfinite(V[a * 4 + b]));
            CHECK(V[a * 4 + b] == doctest::Approx(V[b * 4 + a]).epsilon(1e-12));  // symmetric
          }
        }
      }
    }
  }

  TEST_CASE("results depend on the seed and the sample, never on the thread count") {
    const st::Cov V0 = equicorrelated(3, 0.5);
    st::RunOptions one, many;
    one.threads = 1;
    many.threads = 3;
    const auto a = st::simulate_exact(shaped_net(), V0, 32, 6, 7, 11, all_layers(6), one);
    const auto b = st::simulate_exact(shaped_net(), V0, 32, 6, 7, 11, all_layers(6), many);
    CHECK(a.V == b.V);
    const auto c = st::simulate_exact(shaped_net(), V0, 32, 6, 7, 12, all_layers(6), many);
    CHECK(a.V != c.V);
    // Sample s of a run is sample s of any other run with the same seed.
    const auto d = st::simulate_exact(shaped_net(), V0, 32, 6, 3, 11, all_layers(6), many);
    CHECK(std::vector<double>(a.V.begin(), a.V.begin() + d.V.size()) == d.V);
  }

  TEST_CASE("blow-up stops a sample and fills its later saves with NaN") {
    st::RunOptions opt;
    opt.blowup = 1e-3;  // the input itself has diag 1 > blowup: stopped at once
    const auto r = st::simulate_exact(shaped_net(), equicorrelated(3, 0.2), 16, 4, 2, 0, all_layers(4), opt);
    for (int s = 0; s < 2; ++s) {
      CHECK(r.exploded[s] >= 0);
      CHECK(r.exploded[s] <= 1);
      CHECK(std::isnan(r.V_at(s, 4)[0]));
    }
  }

  TEST_CASE("invalid arguments throw std::invalid_argument") {
    const st::Cov V0 = equicorrelated(3, 0.2);
    const st::RunOptions opt;
    CHECK_THROWS_AS(st::simulate_exact(st::Network{}, V0, 16, 2, 1, 0, {0}, opt), std::invalid_argument);
    CHECK_THROWS_AS(st::simulate_exact(shaped_net(), V0, 16, -1, 1, 0, {0}, opt), std::invalid_argument);
    CHECK_THROWS_AS(st::simulate_exact(shaped_net(), V0, 16, 2, 0, 0, {0}, opt), std::invalid_argument);
    CHECK_THROWS_AS(st::simulate_exact(shaped_net(), V0, 2, 2, 1, 0, {0}, opt), std::invalid_argument);
    CHECK_THROWS_AS(st::simulate_exact(shaped_net(), V0, 16, 2, 1, 0, {0, 3}, opt), std::invalid_argument);
    CHECK_THROWS_AS(st::simulate_exact(shaped_net(), V0, 16, 2, 1, 0, {2, 1}, opt), std::invalid_argument);
  }

  TEST_CASE("poll cancels a run with Cancelled") {
    st::RunOptions opt;
    opt.threads = 1;
    opt.poll = [] { return true; };
    CHECK_THROWS_AS(st::simulate_exact(shaped_net(), equicorrelated(4, 0.3), 64, 20000, 64, 0, {0, 20000}, opt),
                    st::Cancelled);
  }

  TEST_CASE("numbers: E[V'] = V for A = I (tau0 = 1e9) and for the identity MLP; gamma = 0 keeps V") {
    // With A = I: V' = lambda^2 V + lambda gamma (..Z..)/sqrt(n) + gamma^2 L (Z Z^T + R) L^T / n,
    // whose mean is V exactly at any n and any H (within 5 standard errors).
    const st::Cov V0 = spd(3);
    st::RunOptions opt;
    st::ShapedAttention a;
    a.tau0 = 1e9;
    a.heads = 3;
    a.gamma = 0.8;
    a.lambda = 0.6;
    const auto r = st::simulate_exact(st::Network{{a}}, V0, 16, 1, 20000, 4, {1}, opt);
    st::ShapedMLP id;  // c_+ = c_- = 0: phi = identity, c = 1
    id.c_plus = 0.0;
    id.c_minus = 0.0;
    id.gamma = 0.8;
    id.lambda = 0.6;
    const auto q = st::simulate_exact(st::Network{{id}}, V0, 9, 1, 20000, 5, {1}, opt);
    for (const auto* t : {&r, &q})
      for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) {
          CAPTURE(i);
          CAPTURE(j);
          double mean, se;
          mean_entry(*t, 0, i, j, mean, se);
          CHECK(std::abs(mean - V0(i, j)) < 5 * se);
          CHECK(se < 0.05 * V0.cwiseAbs().maxCoeff());
        }
    // Var(V'_00) at A = I, H = 1, exactly at any n: V'_00 = lambda^2 V_00
    // + 2 lambda gamma V_00 Z_00 / sqrt(n) + gamma^2 V_00 chi^2_n / n, so
    // Var = 2 V_00^2 (2 lambda^2 gamma^2 + gamma^4) / n.
    a.heads = 1;
    const long n = 16;
    const auto v = st::simulate_exact(st::Network{{a}}, V0, n, 1, 40000, 6, {1}, opt);
    double s1 = 0, s2 = 0;
    for (int s = 0; s < v.samples; ++s) {
      const double x = v.V_at(s, 0)[0];
      s1 += x;
      s2 += x * x;
    }
    const double var = s2 / v.samples - (s1 / v.samples) * (s1 / v.samples);
    const double g2 = 0.64, l2 = 0.36;
    const double expect = 2 * V0(0, 0) * V0(0, 0) * (2 * l2 * g2 + g2 * g2) / double(n);
    CHECK(var == doctest::Approx(expect).epsilon(0.05));  // se of a variance ~ 1.5% here
    st::ShapedAttention zero;
    zero.gamma = 0.0;
    zero.lambda = 1.0;
    const auto z = st::simulate_exact(st::Network{{zero}}, V0, 16, 3, 2, 0, {3}, opt);
    for (int i = 0; i < 9; ++i) CHECK(z.V_at(0, 0)[i] == doctest::Approx(V0.data()[i]).epsilon(1e-14));
  }
}

TEST_SUITE("exact") {
  TEST_CASE("the faces' products (math/matrix.hpp) equal Eigen's, with loops and with GEMM") {
    // m = 7: the loops the small matrices use (lower-triangular factors skipped);
    // m = 40: Eigen's GEMM for the scalar lanes' large matrices (the generic path at large m).
    for (int m : {7, 40}) {
      CAPTURE(m);
      st::Cov A(m, m), B(m, m), L;
      st::SeqNormal z(st::Stream{3u, 1u, 2u, 5u});
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < m; ++j) {
          A(i, j) = z();
          B(i, j) = z();
        }
      const st::Cov V = A * A.transpose() + st::Cov::Identity(m, m);
      L = V.llt().matrixL();
      using RM = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
      RM a = A, b = B, l = L, c(m, m);
      const st::MatRef<double> Am(a.data(), m), Bm(b.data(), m), Lm(l.data(), m), Cm(c.data(), m);
      auto close = [&](const st::Cov& want) {
        return (st::Cov(c) - want).cwiseAbs().maxCoeff() <= 1e-12 * want.norm();
      };
      st::mul<st::ScalarLanes>(Cm, Am, Bm);
      CHECK(close(A * B));
      st::mul<st::ScalarLanes>(Cm, Lm, Bm, true);
      CHECK(close(L * B));
      st::mul<st::ScalarLanes>(Cm, Am, Lm, false, true);
      CHECK(close(A * L));
      st::mul_tn<st::ScalarLanes>(Cm, Lm, Bm, true);
      CHECK(close(L.transpose() * B));
      st::mul_nt<st::ScalarLanes>(Cm, Am, Lm, false, true);
      CHECK(close(A * L.transpose()));
      st::mul_nt<st::ScalarLanes>(Cm, Lm, Am, true, false);
      CHECK(close(L * A.transpose()));
      CHECK(st::is_lower(Lm));
      CHECK_FALSE(st::is_lower(Am));
      // a product into a view of columns (the exact step's stacked C_h)
      RM wide = RM::Zero(m, 2 * m);
      st::mul<st::ScalarLanes>(st::MatRef<double>(wide.data(), m, 2 * m, 2 * m).middle_cols(m, m), Am, Bm);
      CHECK((st::Cov(wide.rightCols(m)) - A * B).cwiseAbs().maxCoeff() <= 1e-12 * (A * B).norm());
      CHECK(wide.leftCols(m).cwiseAbs().maxCoeff() == 0.0);
    }
  }

  TEST_CASE("the large products (gemm.hpp): every build equals the sums to rounding, SIMD ones included") {
    // Every transposition, odd sizes and leading dimensions wider than the columns (the
    // exact step's column views), and the structure the products use: A A^T (a
    // symmetric rank-k update) and a lower-triangular square factor on either side.
    // Bound per entry: 2 q eps sum_k |a_ik| |b_kj|, twice the worst-case rounding of
    // one ordered sum of q products: the naive sum and every build are each within half.
    const int ld = 60;
    std::vector<double> A(std::size_t(ld) * ld), B(std::size_t(ld) * ld), Al, Bl;
    st::SeqNormal z(st::Stream{3u, 1u, 2u, 6u});
    for (double& x : A) x = z();
    for (double& x : B) x = z();
    auto lower = [&](std::vector<double> M) {  // zero upper triangle
      for (int i = 0; i < ld; ++i)
        for (int j = i + 1; j < ld; ++j) M[std::size_t(i) * ld + j] = 0.0;
      return M;
    };
    Al = lower(A);
    Bl = lower(B);
    CHECK(std::string(st::gemm_kernel()) == st::simd_level_name(st::simd_level()));
    int simd_runs = 0;
    auto compare = [&](bool ta, bool tb, int n, int p, int q, const std::vector<double>& Av,
                       const std::vector<double>& Bv) {
      CAPTURE(ta);
      CAPTURE(tb);
      CAPTURE(n);
      CAPTURE(p);
      CAPTURE(q);
      auto a = [&](int i, int k) { return ta ? Av[std::size_t(k) * ld + i] : Av[std::size_t(i) * ld + k]; };
      auto b = [&](int k, int j) { return tb ? Bv[std::size_t(j) * ld + k] : Bv[std::size_t(k) * ld + j]; };
      for (int level : {0, 1, 2}) {
        CAPTURE(level);
        std::vector<double> C(std::size_t(n) * ld, 7.0);
        if (!st::detail::gemm_rowmajor_at(level, ta, tb, n, p, q, Av.data(), ld, Bv.data(), ld, C.data(), ld)) {
          CHECK(level > 0);
          CHECK(C == std::vector<double>(std::size_t(n) * ld, 7.0));  // refused: untouched
          continue;
        }
        simd_runs += level > 0;
        double worst = 0.0;
        for (int i = 0; i < n; ++i)
          for (int j = 0; j < p; ++j) {
            double exact = 0.0, mag = 0.0;
            for (int k = 0; k < q; ++k) {
              exact += a(i, k) * b(k, j);
              mag += std::abs(a(i, k) * b(k, j));
            }
            const double bound = 2.0 * q * std::numeric_limits<double>::epsilon() * mag;
            worst = std::max(worst, std::abs(C[std::size_t(i) * ld + j] - exact) / bound);
          }
        CHECK(worst <= 1.0);
        for (int i = 0; i < n; ++i)  // columns beyond p untouched
          for (int j = p; j < ld; ++j) CHECK(C[std::size_t(i) * ld + j] == 7.0);
      }
    };
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        compare(ta, tb, 37, 41, 53, A, B);    // general
        compare(ta, tb, 37, 37, 37, Al, B);   // A lower (used when not transposed)
        compare(ta, tb, 37, 41, 41, A, Bl);   // B lower (used when not transposed)
        compare(ta, tb, 41, 41, 41, Al, Bl);  // both
      }
    compare(false, true, 37, 37, 53, A, A);    // A A^T: the rank-k update
    compare(false, true, 37, 37, 37, Al, Al);  // L L^T
    CHECK_FALSE(st::detail::gemm_rowmajor_at(3, false, false, 1, 1, 1, A.data(), 1, B.data(), 1, A.data(), 1));
    CHECK_FALSE(st::detail::gemm_rowmajor_at(-1, false, false, 1, 1, 1, A.data(), 1, B.data(), 1, A.data(), 1));
    MESSAGE("SIMD runs of the products compared: " << simd_runs << " (this CPU: " << std::string(st::gemm_kernel())
                                                   << ")");
  }

  TEST_CASE("the MLP's Gram beyond 32 tokens (gemm.hpp's tiles, HostCtx::gram): every build equals the sums") {
    // m = 40 > exact_mlp::kMaxM: the per-sample chain's Gram goes through mlp_gram_tile, a
    // triangular product when L_in is a Cholesky root and a full one otherwise (the
    // clipped-spectrum root of a singular V), then phi and a rank update of the lower
    // triangle.  Reference: Eigen's plain products on the same draws (the m x n Gaussian
    // of the stream kPre, column j = normals m j .. m j + m - 1), phi the fused kernel's.
    // n = 300: two full tiles and a partial one.  A skipped tile, a wrong phi or a full
    // L taken for triangular is O(1); rounding is ~1e-15 of max |Gram|.
    const int m = 40;
    const long n = 300;
    using RM = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    st::Cov V = st::Cov::Constant(m, m, 0.3);
    V.diagonal().setConstant(1.2);
    st::Cov Ltri;
    REQUIRE(st::psd_root(V, Ltri));
    REQUIRE(st::Cov(Ltri.triangularView<Eigen::StrictlyUpper>()).isZero(0.0));
    st::Cov Lfull(m, m);  // no zero upper triangle
    st::SeqNormal z(st::Stream{7u, 1u, 2u, 3u});
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < m; ++j) Lfull(i, j) = z() / std::sqrt(double(m));
    const st::exact_mlp::PiecewiseLinear phi{1.3, -0.4};
    const st::ExactKey key{5u, 2u, 9u, nullptr};
    const st::Stream pre = key.stream(st::ExactKey::kPre);
    Eigen::MatrixXd G(m, n);  // column-major: column j holds normals m j .. m j + m - 1
    st::fill_normal(pre, 0, std::size_t(m) * std::size_t(n), G.data());
    int simd_runs = 0;
    for (const st::Cov* Lp : {&Ltri, &Lfull}) {
      const bool lower = Lp == &Ltri;
      CAPTURE(lower);
      const st::Cov K = (*Lp * G).unaryExpr(phi);
      const st::Cov ref = K * K.transpose();
      const double scale = ref.cwiseAbs().maxCoeff();
      RM Lr = *Lp;
      // one tile at every level: w = 44 columns, Gram's upper triangle and its columns
      // beyond m untouched (leading dimension 45)
      const int w = 44, ldg = m + 5;
      const RM Gt = G.leftCols(w).transpose();
      const st::Cov Kw = (*Lp * G.leftCols(w)).unaryExpr(phi);
      const st::Cov refw = Kw * Kw.transpose();
      for (int level : {0, 1, 2}) {
        CAPTURE(level);
        std::vector<double> Kbuf(std::size_t(m) * w), out(std::size_t(m) * ldg, 7.0);
        for (int i = 0; i < m; ++i)
          for (int j = 0; j <= i; ++j) out[std::size_t(i) * ldg + j] = 1.0;  // the sum so far
        if (!st::detail::mlp_gram_tile_at(level, m, w, Lr.data(), m, lower, Gt.data(), phi.sp, phi.sm, Kbuf.data(),
                                          out.data(), ldg)) {
          CHECK(level > 0);
          continue;
        }
        simd_runs += level > 0;
        double worst = 0.0;
        for (int i = 0; i < m; ++i)
          for (int j = 0; j < ldg; ++j) {
            const double o = out[std::size_t(i) * ldg + j];
            if (j > i) CHECK(o == 7.0);
            else worst = std::max(worst, std::abs(o - 1.0 - refw(i, j)));
          }
        CHECK(worst <= 1e-13 * refw.cwiseAbs().maxCoeff());
      }
      // the whole Gram through the per-sample context, in the build for this CPU
      st::exact_generic::HostCtx<0> c(m, m);
      c.n = n;
      c.key = key;
      auto Lin = c.tmp(1), out = c.tmp(2);
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < m; ++j) Lin(i, j) = (*Lp)(i, j);
      for (int pass = 0; pass < 2; ++pass) {  // the context's tiles reused: same numbers
        REQUIRE(c.gram(Lin, phi.sp, phi.sm, out));
        double worst = 0.0;
        for (int i = 0; i < m; ++i)
          for (int j = 0; j < m; ++j) {
            CHECK(out(i, j) == out(j, i));
            worst = std::max(worst, std::abs(out(i, j) - ref(i, j)));
          }
        CHECK(worst <= 1e-13 * scale);
      }
      st::CancelToken stop;  // cancelled: false, as the fused kernel
      stop.request_stop();
      c.key = st::ExactKey{5u, 2u, 9u, &stop};
      CHECK_FALSE(c.gram(Lin, phi.sp, phi.sm, out));
    }
    MESSAGE("SIMD runs of the Gram tile compared: " << simd_runs);
  }

  TEST_CASE("the large roots (large_root.hpp): Cholesky in every build, psd_root's to rounding, and its fallbacks") {
    const int m = 37;
    auto gram = [&](int k, std::uint32_t id) {  // G G^T / k, G m x k standard normal
      std::vector<double> G(std::size_t(m) * k), V(std::size_t(m) * m, 0.0);
      st::SeqNormal z(st::Stream{5u, 1u, 2u, id});
      for (double& x : G) x = z();
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < m; ++j)
          for (int l = 0; l < k; ++l)
            V[std::size_t(i) * m + j] += G[std::size_t(i) * k + l] * G[std::size_t(j) * k + l] / k;
      return V;
    };
    auto to_cov = [&](const std::vector<double>& V) {
      st::Cov c(m, m);
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < m; ++j) c(i, j) = V[std::size_t(i) * m + j];
      return c;
    };
    std::vector<double> V = gram(3 * m, 1u);
    for (int a = 0; a < m; ++a) V[std::size_t(a) * (m + 1)] += 0.1;
    const st::Cov Vc = to_cov(V);
    const st::Cov L0 = Eigen::LLT<st::Cov>(Vc).matrixL();
    const Eigen::VectorXd w = Vc.selfadjointView<Eigen::Lower>().eigenvalues();
    // Cholesky's forward error: a few m eps cond(V) relative to max |L| (here ~1e-12; a
    // wrong pivot or a skipped update is O(1))
    const double tol = 8.0 * m * std::numeric_limits<double>::epsilon() * w.maxCoeff() / w.minCoeff();
    int simd_runs = 0;
    for (int level : {0, 1, 2}) {
      CAPTURE(level);
      std::vector<double> L(std::size_t(m) * m, 7.0);
      bool ok = false;
      if (!st::detail::llt_rowmajor_at(level, m, V.data(), L.data(), &ok)) {
        CHECK(level > 0);
        continue;
      }
      simd_runs += level > 0;
      REQUIRE(ok);
      double worst = 0.0;
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < m; ++j) {
          const double l = L[std::size_t(i) * m + j];
          if (j > i) CHECK(l == 0.0);
          if (level == 0) CHECK(l == L0(i, j));  // psd_root's Cholesky, bit for bit
          worst = std::max(worst, std::abs(l - L0(i, j)) / L0.cwiseAbs().maxCoeff());
        }
      CHECK(worst <= tol);
      std::vector<double> bad = V;  // indefinite: a pivot <= 0
      bad[std::size_t(5) * (m + 1)] = -1.0;
      CHECK(st::detail::llt_rowmajor_at(level, m, bad.data(), L.data(), &ok));
      CHECK_FALSE(ok);
    }
    bool ok = true;
    CHECK_FALSE(st::detail::llt_rowmajor_at(3, m, V.data(), V.data(), &ok));
    // psd_root_rowmajor: the Cholesky above when definite; psd_root itself (the root of
    // the clipped spectrum) for a singular V of rank 10, zero and non-finite matrices
    std::vector<double> L(std::size_t(m) * m);
    REQUIRE(st::psd_root_rowmajor(m, V.data(), L.data()));
    std::vector<double> L1(std::size_t(m) * m);
    REQUIRE(st::detail::llt_rowmajor(m, V.data(), L1.data()));
    CHECK(L == L1);
    for (const auto& Vs : {gram(10, 2u), std::vector<double>(std::size_t(m) * m, 0.0)}) {
      st::Cov Lr;
      CHECK(st::psd_root_rowmajor(m, Vs.data(), L.data()));
      CHECK(st::psd_root(to_cov(Vs), Lr));
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < m; ++j) CHECK(L[std::size_t(i) * m + j] == Lr(i, j));
    }
    std::vector<double> Vn = V;
    Vn[3] = std::numeric_limits<double>::quiet_NaN();
    CHECK_FALSE(st::psd_root_rowmajor(m, Vn.data(), L.data()));
    CHECK(std::isnan(L[0]));
    MESSAGE("SIMD runs of the Cholesky compared: " << simd_runs);
  }

  TEST_CASE("the large row softmax (row_softmax.hpp) agrees with softmax_rows to rounding") {
    // m = 37 (a tail after 4 or 8 lanes), leading dimension 40 (its padding untouched),
    // logits up to +-15 and a row of -800 (exp below 2^-1022: flushed to zero by the
    // vector exp, subnormal in libm's: equal to 1e-300 absolute).  Per entry: exp within
    // 2 ulp, the sum of k terms reordered, one division: 4 (k + 4) eps relative.
    const int m = 37, ld = 40;
    std::vector<double> S0(std::size_t(m) * ld);
    st::SeqNormal z(st::Stream{7u, 1u, 2u, 3u});
    for (double& x : S0) x = 5.0 * z();
    for (int j = 1; j < m; ++j) S0[std::size_t(4) * ld + j] = -800.0;
    int simd_runs = 0;
    for (bool causal : {false, true}) {
      CAPTURE(causal);
      std::vector<double> ref = S0;
      st::softmax_rows<st::ScalarLanes>(st::MatRef<double, 0>(ref.data(), m, m, ld), causal);
      for (int level : {0, 1, 2}) {
        CAPTURE(level);
        std::vector<double> S = S0;
        if (!st::detail::row_softmax_at(level, m, S.data(), ld, causal)) {
          CHECK(S == S0);  // refused (the portable level, or no such build): untouched
          continue;
        }
        simd_runs += 1;
        double worst = 0.0;
        for (int i = 0; i < m; ++i) {
          const int k = causal ? i + 1 : m;
          const double bound = 4.0 * (k + 4) * std::numeric_limits<double>::epsilon();
          for (int j = 0; j < ld; ++j) {
            const double s = S[std::size_t(i) * ld + j], r = ref[std::size_t(i) * ld + j];
            if (j >= m) CHECK(s == S0[std::size_t(i) * ld + j]);
            else if (j >= k) CHECK(s == 0.0);
            else worst = std::max(worst, std::abs(s - r) / (bound * r + 1e-300));
          }
        }
        CHECK(worst <= 1.0);
        CHECK(S[std::size_t(4) * ld] == ref[std::size_t(4) * ld]);  // the -800 row: 1 at its maximum
      }
      // the host context's softmax: the build for this CPU from kGemmFrom tokens on
      std::vector<double> host = S0, mine = S0;
      st::softmax_rows<st::exact_generic::HostLanes>(st::MatRef<double, 0>(host.data(), m, m, ld), causal);
      if (!st::detail::row_softmax(m, mine.data(), ld, causal))
        st::softmax_rows<st::ScalarLanes>(st::MatRef<double, 0>(mine.data(), m, m, ld), causal);
      CHECK(host == mine);
    }
    CHECK((st::simd_level() == st::SimdLevel::Scalar || simd_runs > 0));
    MESSAGE("SIMD runs of the row softmax compared: " << simd_runs);
  }

  TEST_CASE("the generic chain runs at m > 32 (Eigen's GEMM products): reproducible, symmetric, definite") {
    // m = 33: beyond the batched kernels (m <= 32) and the loops; the products go through
    // Eigen's GEMM (checked against Eigen above), the MLP's Gram through Eigen's tiles.
    const int m = 33;
    st::ShapedAttention a;
    a.gamma = 0.3;
    a.lambda = std::sqrt(1.0 - 0.09);
    const st::Network net{{a, st::ShapedMLP{}}};
    st::Cov V0 = st::Cov::Constant(m, m, 0.2);
    V0.diagonal().setConstant(1.0);
    st::RunOptions opt;
    opt.threads = 2;
    CHECK_FALSE(st::exact_batch::covers(net, m, 400));
    const auto r1 = st::simulate_exact(net, V0, 400, 2, 3, 8, {2}, opt);
    const auto r2 = st::simulate_exact(net, V0, 400, 2, 3, 8, {2}, opt);
    CHECK(r1.V == r2.V);
    for (int s = 0; s < 3; ++s) {
      st::Cov V(m, m);
      for (int i = 0; i < m * m; ++i) V(i / m, i % m) = r1.V_at(s, 0)[i];
      CHECK((V - V.transpose()).cwiseAbs().maxCoeff() == 0.0);
      CHECK(V.selfadjointView<Eigen::Lower>().eigenvalues().minCoeff() > 0.0);
      CHECK(std::abs(V.diagonal().mean() - 1.0) < 0.2);
    }
  }
}

TEST_SUITE("exact") {
  TEST_CASE("the batched kernels (exact/batch.hpp) equal each other and the per-sample path to rounding") {
    for (int m : {3, 8, 20}) {
      st::ShapedAttention a;
      a.gamma = 0.6;
      a.lambda = std::sqrt(1.0 - 0.36);
      a.causal = m == 3;
      const st::Network net{{a}};
      st::Cov V0 = st::Cov::Constant(m, m, 0.4);
      V0.diagonal().setConstant(1.3);
      REQUIRE(st::exact_batch::covers(net, m, 300));
      st::RunOptions opt;
      opt.threads = 2;
      const auto g = st::simulate_exact(net, V0, 300, 15, 9, 4, all_layers(15), opt, "generic");
      const auto s = st::simulate_exact(net, V0, 300, 15, 9, 4, all_layers(15), opt, "scalar");
      double scale = 0.0, diff = 0.0;
      for (std::size_t i = 0; i < g.V.size(); ++i) {
        scale = std::max(scale, std::abs(g.V[i]));
        diff = std::max(diff, std::abs(g.V[i] - s.V[i]));
      }
      CHECK(diff <= 1e-11 * scale);
      CHECK(g.exploded == s.exploded);
      for (const char* k : {"avx2", "avx512"}) {
        if (!st::exact_batch::kernel(k).run) continue;
        const auto v = st::simulate_exact(net, V0, 300, 15, 9, 4, all_layers(15), opt, k);
        CHECK(v.V == s.V);
      }
    }
  }
}

TEST_SUITE("exact") {
  TEST_CASE("the fused MLP Gram (exact/mlp_gram.hpp) equals Eigen's products to rounding (same draws)") {
    for (int m : {1, 3, 8, 20}) {
      for (long n : {1L, 200L, 1000L}) {
        st::Cov V = st::Cov::Constant(m, m, 0.3);
        V.diagonal().setConstant(1.2);
        st::Cov L;
        st::psd_root(V, L);
        const st::Stream pre{5, 2, 9, st::matrix_id::kExactBase + st::ExactKey::kPre};
        const st::exact_mlp::PiecewiseLinear phi{1.3, -0.4};
        Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor> G(m, n);
        st::fill_normal(pre, 0, std::size_t(m * n), G.data());
        const st::Cov K = (L * G).unaryExpr(phi);
        const st::Cov ref = K * K.transpose();
        Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> Lr = L, out(m, m);
        REQUIRE(st::exact_mlp::gram(pre, m, n, Lr.data(), phi.sp, phi.sm, out.data(), nullptr));
        CHECK((out - ref).cwiseAbs().maxCoeff() <= 1e-12 * ref.cwiseAbs().maxCoeff());
      }
    }
  }
}
