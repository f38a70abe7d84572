// Philox4x32-10 known answers, the normal kernels against the scalar reference,
// and the moments of the normals.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include <shaped_transformer/normal_kernels.hpp>
#include <shaped_transformer/rng.hpp>

namespace st = shaped_transformer;

TEST_SUITE("rng") {
  // Known-answer vectors of Random123 (kat_vectors: philox4x32_10).
  TEST_CASE("philox4x32_10 matches the Random123 known answers") {
    struct Kat {
      std::uint32_t ctr[4], key[2], out[4];
    };
    const Kat kats[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
        {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
         {0xffffffffu, 0xffffffffu},
         {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
        {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
         {0xa4093822u, 0x299f31d0u},
         {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
    };
    for (const Kat& k : kats) {
      std::uint32_t c[4] = {k.ctr[0], k.ctr[1], k.ctr[2], k.ctr[3]};
      st::detail::philox4x32_10(c, k.key[0], k.key[1]);
      for (int i = 0; i < 4; ++i) CHECK(c[i] == k.out[i]);
    }
  }

  TEST_CASE("normals are a pure function of (seed, sample, block, matrix, index)") {
    const st::Stream s{12345u, 7u, 3u, st::matrix_id::kValue};
    std::vector<float> a(1000), b(1000);
    st::fill_normal_reference(s, 0, a.size(), a.data());
    st::fill_normal_reference(s, 0, b.size(), b.data());
    CHECK(a == b);
    // A window starting mid-group is the same numbers.
    std::vector<float> w(101);
    st::fill_normal_reference(s, 37, w.size(), w.data());
    for (std::size_t i = 0; i < w.size(); ++i) CHECK(w[i] == a[37 + i]);
    // Every key word changes the stream.
    for (const st::Stream t :
         {st::Stream{12346u, 7u, 3u, 2u}, st::Stream{12345u, 8u, 3u, 2u}, st::Stream{12345u, 7u, 4u, 2u},
          st::Stream{12345u, 7u, 3u, 3u}, st::Stream{12345u | (1ull << 40), 7u, 3u, 2u}}) {
      std::vector<float> c(16);
      st::fill_normal_reference(t, 0, c.size(), c.data());
      CHECK(c != std::vector<float>(a.begin(), a.begin() + 16));
    }
  }

  TEST_CASE("fill_normal reproduces the scalar reference bit for bit") {
    INFO("kernel: " << st::normal_kernel_name());
    const st::Stream s{0x9e3779b97f4a7c15ull, 3u, 11u, st::matrix_id::kExactBase + 5};
    for (std::uint64_t first : {0ull, 1ull, 3ull, 4ull, 61ull, (1ull << 34) + 2}) {
      for (std::size_t count : {std::size_t(1), std::size_t(5), std::size_t(64), std::size_t(1027)}) {
        std::vector<float> ref(count), got(count);
        std::vector<double> got_d(count);
        st::fill_normal_reference(s, first, count, ref.data());
        st::fill_normal(s, first, count, got.data());
        st::fill_normal(s, first, count, got_d.data());
        for (std::size_t i = 0; i < count; ++i) {
          REQUIRE(got[i] == ref[i]);
          REQUIRE(got_d[i] == double(ref[i]));
        }
      }
    }
  }

  TEST_CASE("normal moments") {
    // N = 2^22 normals: the sample mean, variance, third and fourth moments have
    // standard errors 1/sqrt(N), sqrt(2/N), sqrt(15/N), sqrt(96/N); tolerances are
    // 5 standard errors (a false alarm has probability < 1e-6 per check).
    const std::size_t N = std::size_t(1) << 22;
    std::vector<float> z(N);
    st::fill_normal(st::Stream{2024u, 0u, 0u, 0u}, 0, N, z.data());
    double m1 = 0, m2 = 0, m3 = 0, m4 = 0;
    for (float v : z) {
      const double x = v, x2 = x * x;
      m1 += x;
      m2 += x2;
      m3 += x2 * x;
      m4 += x2 * x2;
      REQUIRE(std::isfinite(x));
    }
    m1 /= N, m2 /= N, m3 /= N, m4 /= N;
    const double rn = 1.0 / std::sqrt(double(N));
    CHECK(std::abs(m1) < 5 * rn);
    CHECK(std::abs(m2 - 1.0) < 5 * std::sqrt(2.0) * rn);
    CHECK(std::abs(m3) < 5 * std::sqrt(15.0) * rn);
    CHECK(std::abs(m4 - 3.0) < 5 * std::sqrt(96.0) * rn);
    // Tail mass beyond 3: P(|Z| > 3) = 0.0026998; binomial standard error.
    std::size_t tail = 0;
    for (float v : z) tail += std::abs(v) > 3.0f;
    const double p = 0.0026997960632601866;
    CHECK(std::abs(double(tail) / N - p) < 5 * std::sqrt(p * (1 - p) / N));
    // Neighbouring normals (the two of a Box-Muller pair, and across pairs) are
    // uncorrelated: lag-1 and lag-2 autocorrelations within 5 / sqrt(N).
    for (std::size_t lag : {std::size_t(1), std::size_t(2)}) {
      double c = 0;
      for (std::size_t i = 0; i + lag < N; ++i) c += double(z[i]) * z[i + lag];
      CHECK(std::abs(c / (N - lag)) < 5 * rn);
    }
  }

  TEST_CASE("different streams are uncorrelated") {
    const std::size_t N = std::size_t(1) << 20;
    std::vector<double> a(N), b(N);
    st::fill_normal(st::Stream{1u, 0u, 0u, 0u}, 0, N, a.data());
    st::fill_normal(st::Stream{1u, 1u, 0u, 0u}, 0, N, b.data());
    double c = 0;
    for (std::size_t i = 0; i < N; ++i) c += a[i] * b[i];
    CHECK(std::abs(c / N) < 5 / std::sqrt(double(N)));
  }
}
