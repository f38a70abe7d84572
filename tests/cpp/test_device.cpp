// The per-thread code of the CUDA backend (cpp/include/shaped_transformer/device/),
// compiled here by the ordinary C++ compiler, against the CPU kernels: the normals
// bit for bit, the exact samplers draw for draw, the m x m SDE path and the exact
// chain's sample to rounding, for every template instance the GPU runs (the fixed-size
// m = 4 and 8 SDE kernels included).  A GPU run can then only fail in the launch and
// memory code (cpp/cuda/) and in libdevice's last bits.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include <shaped_transformer/detail/exact_impl.hpp>
#include <shaped_transformer/detail/sde_impl.hpp>
#include <shaped_transformer/device/from_network.hpp>
#include <shaped_transformer/exact.hpp>
#include <shaped_transformer/linalg.hpp>
#include <shaped_transformer/normal_kernels.hpp>
#include <shaped_transformer/rng.hpp>
#include <shaped_transformer/sde.hpp>

#include "driver_helpers.hpp"

namespace st = shaped_transformer;
namespace dv = shaped_transformer::device;
using namespace st_test;

namespace {

std::uint32_t bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

double max_rel_diff(const std::vector<double>& a, const std::vector<double>& b) {
  double scale = 0.0, d = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) || std::isnan(b[i])) {
      if (std::isnan(a[i]) != std::isnan(b[i])) return INFINITY;
      continue;
    }
    scale = std::max(scale, std::abs(a[i]));
    d = std::max(d, std::abs(a[i] - b[i]));
  }
  return scale > 0 ? d / scale : d;
}

}  // namespace

TEST_SUITE("device") {
  TEST_CASE("Philox and Box-Muller: bit-identical to rng.hpp for many keys") {
    std::uint64_t seeds[] = {0u, 1u, 0xFFFFFFFFFFFFFFFFull, 0x123456789ABCDEF0ull};
    int checked = 0;
    for (std::uint64_t seed : seeds)
      for (std::uint32_t sample : {0u, 7u, 0xFFFFFFFFu})
        for (std::uint32_t block : {0u, 3u, 123456u})
          for (std::uint32_t matrix : {0u, 2u, 0x8000u + 11u, 0xC001u}) {
            const st::Stream s{seed, sample, block, matrix};
            const dv::Key k{seed, sample, block, matrix};
            for (std::uint64_t g : {0ull, 1ull, 77ull, 0xFFFFFFFFull, 0x1234567890ull}) {
              float a[4], b[4];
              st::normal4(s, g, a);
              dv::normal4(k, g, b);
              for (int i = 0; i < 4; ++i) CHECK(bits(a[i]) == bits(b[i]));
              std::uint32_t c1[4] = {std::uint32_t(g), (matrix << 16) | std::uint32_t(g >> 32), block, sample};
              std::uint32_t c2[4];
              st::detail::philox4x32_10(c1, std::uint32_t(seed), std::uint32_t(seed >> 32));
              dv::philox_words(k, g, c2);
              for (int i = 0; i < 4; ++i) CHECK(c1[i] == c2[i]);
              ++checked;
            }
          }
    CHECK(checked == 4 * 3 * 3 * 4 * 5);
  }

  TEST_CASE("fill_normal (double) equals the CPU's fast kernel at any offset") {
    const st::Stream s{42u, 3u, 9u, 0xC000u};
    const dv::Key k{42u, 3u, 9u, 0xC000u};
    for (std::uint64_t first : {0ull, 1ull, 2ull, 3ull, 5ull, 1000ull}) {
      std::vector<double> a(4099), b(4099);
      st::fill_normal(s, first, a.size(), a.data());
      dv::fill_normal(k, first, int(b.size()), b.data());
      CHECK(a == b);
    }
  }

  TEST_CASE("sequential uniforms, gamma and Wishart draws equal linalg.hpp's exactly") {
    const st::Stream sn{5u, 1u, 2u, 0x8000u}, su{5u, 1u, 2u, 0x8001u};
    st::MatrixRng r1(sn, su);
    dv::MatrixRng r2(dv::Key{5u, 1u, 2u, 0x8000u}, dv::Key{5u, 1u, 2u, 0x8001u});
    for (int i = 0; i < 100; ++i) {
      CHECK(r1.uniform() == r2.uniform());
      CHECK(r1.normal() == r2.normal());
    }
    for (double shape : {0.3, 1.0, 2.5, 40.0, 5000.0})
      CHECK(st::gamma_variate(shape, r1) == dv::gamma_variate(shape, r2));
    for (double df : {3.0, 7.5, 1000.0, 2.0}) {  // 2.0 < p - 1: the singular Wishart
      st::Cov B1(5, 5);                          // wishart_factor writes B(i, j), it does not resize
      st::wishart_factor(df, 5, r1, B1);
      double B2[25];
      dv::wishart_factor(df, 5, r2, B2, 5);
      for (int i = 0; i < 5; ++i)
        for (int j = 0; j < 5; ++j) CHECK(B1(i, j) == B2[i * 5 + j]);
    }
  }

  TEST_CASE("PSD root and clip agree with linalg.hpp to rounding") {
    constexpr int MM = 8;
    const int m = 6;
    // positive definite, singular (rank 3) and indefinite matrices
    st::Cov G = st::Cov::Zero(m, m);
    st::SeqNormal z(st::Stream{1u, 0u, 0u, 0u});
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < m; ++j) G(i, j) = z();
    std::vector<st::Cov> cases = {G * G.transpose() / m, G.leftCols(3) * G.leftCols(3).transpose(),
                                  G * G.transpose() / m - 0.8 * st::Cov::Identity(m, m)};
    for (std::size_t ci = 0; ci < cases.size(); ++ci) {
      const st::Cov& V = cases[ci];
      double Vd[MM * MM], Ld[MM * MM];
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < m; ++j) Vd[i * MM + j] = V(i, j);
      st::Cov L;
      st::psd_root(V, L);
      dv::psd_root<MM>(Vd, Ld, m);
      // compare the products L L^T (the root of a singular V is not unique)
      st::Cov LLd(m, m);
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < m; ++j) {
          double s = 0.0;
          for (int k = 0; k < m; ++k) s += Ld[i * MM + k] * Ld[j * MM + k];
          LLd(i, j) = s;
        }
      CHECK((LLd - L * L.transpose()).norm() <= 1e-12 * V.norm());
      st::Cov Vc = V, Lc;
      const bool p1 = st::psd_clip_root(Vc, Lc);
      const bool p2 = dv::psd_clip_root<MM>(Vd, Ld, m);
      // Whether a singular V "has a negative eigenvalue" is decided by rounding
      // (Eigen may see -1e-17, Jacobi +1e-17); the definite and indefinite cases are clear.
      if (ci != 1) CHECK(p1 == p2);
      double diff = 0.0;
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < m; ++j) diff = std::max(diff, std::abs(Vd[i * MM + j] - Vc(i, j)));
      CHECK(diff <= 1e-12 * V.norm());
    }
  }

  TEST_CASE("SDE paths: every instance the GPU runs equals solve_sde to rounding, same blow-ups") {
    // m = 4 and 8: the fixed-size instances; 3, 5, 12: the bounded ones (4, 8, 16).
    st::ShapedAttention causal;
    causal.causal = true;
    causal.beta = 1.4;
    const st::Network nets[] = {shaped_net(2), st::Network{{causal, st::ShapedMLP{}}}};
    for (int m : {3, 4, 5, 8, 12}) {
      for (int scheme = 0; scheme < 2; ++scheme)
        for (bool clip : {true, false})
          for (int ni = 0; ni < 2; ++ni) {
            CAPTURE(m);
            CAPTURE(scheme);
            CAPTURE(clip);
            CAPTURE(ni);
            const st::Cov V0 = equicorrelated(m, 0.3);
            st::SdeOptions o;
            o.dt = 1.0 / 100;
            o.steps = 100;
            o.save_steps = {0, 1, 50, 100};
            o.scheme = scheme ? st::SdeScheme::TamedEuler : st::SdeScheme::Euler;
            o.psd = clip ? st::PsdRemedy::Clip : st::PsdRemedy::None;
            const int paths = 12;
            const double blowup = 50.0;
            st::RunOptions opt;
            opt.threads = 1;
            opt.blowup = blowup;
            const auto cpu = st::solve_sde(nets[ni], V0, o, paths, 11, opt, "generic");
            const dv::SdeProblem p = dv::sde_problem(nets[ni], V0, o.dt, o.steps, scheme == 1, clip, blowup, 11);
            std::vector<double> gpu(cpu.V.size());
            for (int path = 0; path < paths; ++path) {
              std::int64_t proj = 0;
              const std::int64_t e = dv::host_solve_path(p, o.save_steps.data(), int(o.save_steps.size()),
                                                         std::uint32_t(path), gpu.data() + path * 4 * m * m, proj);
              CHECK(e == cpu.exploded[path]);
              CHECK(proj == cpu.projections[path]);
            }
            CHECK(max_rel_diff(cpu.V, gpu) < 1e-10);
          }
    }
  }

  TEST_CASE("exact chain, attention only: the per-thread sample equals simulate_exact to rounding") {
    struct Case {
      int m, heads;
      bool causal;
      int key_dim;
      double alpha, beta;
      long width;
    };
    // <MM, HM> = <4, 4>, <8, 8>, <8, 32>, <16, 32>: every instance the GPU runs
    const Case cases[] = {{4, 1, false, 0, 1.0, 1.0, 64}, {8, 1, false, 0, 1.0, 1.0, 1000},
                          {5, 3, true, 0, 0.5, 2.0, 40},  {8, 2, false, 3, 1.0, 1.0, 256},
                          {3, 1, false, 2, 1.0, 1.0, 3},  {12, 1, false, 0, 1.0, 1.0, 100}};
    for (const Case& c : cases) {
      CAPTURE(c.m);
      CAPTURE(c.heads);
      st::ShapedAttention a;
      a.heads = c.heads;
      a.causal = c.causal;
      a.key_dim = c.key_dim;
      a.alpha = c.alpha;
      a.beta = c.beta;
      a.tau0 = 0.7;
      st::StandardAttention sa;
      sa.heads = c.heads;
      sa.norm = c.causal ? st::Norm::PreRMS : st::Norm::PostRMS;
      const st::Network net{{a, sa, a}};
      const st::Cov V0 = equicorrelated(c.m, 0.4);
      const std::vector<std::int64_t> save = {0, 3, 10};
      st::RunOptions opt;
      opt.threads = 1;
      opt.blowup = 1e4;
      const int samples = 5;
      const auto cpu = st::simulate_exact(net, V0, c.width, 10, samples, 3, save, opt, "generic");
      const dv::ExactProblem p = dv::exact_problem(net, V0, c.width, 10, 1e4, 3);
      std::vector<double> gpu(cpu.V.size());
      for (int s = 0; s < samples; ++s) {
        const std::int64_t e =
            dv::host_exact_sample(p, save.data(), int(save.size()), std::uint32_t(s), gpu.data() + s * 3 * c.m * c.m);
        CHECK(e == cpu.exploded[s]);
      }
      CHECK(max_rel_diff(cpu.V, gpu) < 1e-11);
    }
  }

  TEST_CASE("LayerNorm: the device's exact sample carries s as the CPU chain does, from the same s0") {
    // m = 8 at width m + 1 (no Wishart remainder) and 64, with two heads (the M8W32
    // instance) and one (M8W8); V0 off the unit diagonal, so that s0 = L0 1_m is generic
    // and a start from corr(V0) would show.  s passes a block without LayerNorm.
    for (const long width : {9L, 64L}) {
      for (const int heads : {1, 2}) {
        CAPTURE(width);
        CAPTURE(heads);
        st::ShapedAttention a;
        a.heads = heads;
        a.norm = st::Norm::PreLayer;
        st::StandardAttention sa;
        sa.norm = st::Norm::PostLayer;
        st::ShapedAttention plain;
        plain.gamma = 0.4;
        plain.lambda = std::sqrt(1.0 - 0.16);
        const st::Network net{{a, sa, plain}};
        st::Cov V0 = equicorrelated(8, 0.3);
        V0(0, 0) = 1.7;
        V0(3, 3) = 0.6;
        const std::vector<std::int64_t> save = {0, 3, 10};
        st::RunOptions opt;
        opt.threads = 1;
        opt.blowup = 1e4;
        const int samples = 4;
        const auto cpu = st::simulate_exact(net, V0, width, 10, samples, 3, save, opt, "generic");
        const dv::ExactProblem p = dv::exact_problem(net, V0, width, 10, 1e4, 3);
        CHECK(p.carries_s == 1);
        std::vector<double> gpu(cpu.V.size());
        for (int s = 0; s < samples; ++s) {
          const std::int64_t e =
              dv::host_exact_sample(p, save.data(), int(save.size()), std::uint32_t(s), gpu.data() + s * 3 * 64);
          CHECK(e == cpu.exploded[s]);
        }
        CHECK(max_rel_diff(cpu.V, gpu) < 1e-11);
      }
    }
    st::ShapedAttention a;
    a.norm = st::Norm::PostLayer;
    CHECK_THROWS_WITH_AS(dv::exact_problem(st::Network{{a}}, equicorrelated(4, 0.3), 4, 1, 1e4, 0),
                         doctest::Contains("width >= m + 1"), std::invalid_argument);
  }

  TEST_CASE("problem builders refuse what the device code does not cover") {
    const st::Cov V0 = equicorrelated(4, 0.3);
    const st::Network mixed{{st::ShapedAttention{}, st::ShapedMLP{}}};
    CHECK_THROWS_AS(dv::exact_problem(mixed, V0, 64, 1, 1e4, 0), std::invalid_argument);
    CHECK_THROWS_AS(dv::sde_problem(st::Network{{st::StandardAttention{}}}, V0, 0.01, 1, false, true, 1e4, 0),
                    std::invalid_argument);
    st::ShapedAttention many;
    many.heads = 9;
    CHECK_THROWS_AS(dv::exact_problem(st::Network{{many}}, V0, 64, 1, 1e4, 0), std::invalid_argument);
    CHECK_THROWS_AS(dv::sde_problem(mixed, equicorrelated(17, 0.1), 0.01, 1, false, true, 1e4, 0),
                    std::invalid_argument);
    // depth x blocks past the 32-bit block word of the random counter, as the CPU chain
    const st::Network two{{st::ShapedAttention{}, st::ShapedAttention{}}};
    CHECK_NOTHROW(dv::exact_problem(two, V0, 64, (std::int64_t(1) << 31) - 1, 1e4, 0));
    CHECK_THROWS_WITH_AS(dv::exact_problem(two, V0, 64, std::int64_t(1) << 31, 1e4, 0), doctest::Contains("depth"),
                         std::invalid_argument);
  }
}
