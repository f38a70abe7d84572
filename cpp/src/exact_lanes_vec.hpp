// Philox normals and uniforms of W streams at once (one stream per SIMD lane, the
// streams of consecutive samples) for the SIMD exact-chain kernels.  Included
// inside an anonymous namespace after W, VD, VF, VU, VI (W lanes each), vsqrt and
// mulhilo (the 32 x 32 -> 64-bit products of the lanes with a constant: high and
// low words) were defined, and after box_muller_vec.hpp; no #include here on purpose.
// Written with GCC vector extensions (no contraction: -ffp-contract=off), so every
// lane equals rng.hpp's scalar reference bit for bit.

/// Counters of group g of the streams {seed, sample0 + l, block, matrix}.
inline void lane_counter(std::uint32_t matrix, std::uint32_t block, std::uint32_t sample0, std::uint64_t g, VU c[4]) {
  VU iota;
  for (int l = 0; l < W; ++l) iota[l] = std::uint32_t(l);
  c[0] = VU{} + std::uint32_t(g);
  c[1] = VU{} + ((matrix << 16) | std::uint32_t(g >> 32));
  c[2] = VU{} + block;
  c[3] = iota + sample0;
}

/// Philox4x32-10 on two sets of counters at once (hides the multiply latency).
inline void philox2(std::uint64_t seed, VU a[4], VU b[4]) {
  std::uint32_t k0 = std::uint32_t(seed), k1 = std::uint32_t(seed >> 32);
  for (int r = 0; r < 10; ++r) {
    VU hi0, lo0, hi1, lo1, hj0, lj0, hj1, lj1;
    mulhilo(a[0], 0xD2511F53u, hi0, lo0);
    mulhilo(a[2], 0xCD9E8D57u, hi1, lo1);
    mulhilo(b[0], 0xD2511F53u, hj0, lj0);
    mulhilo(b[2], 0xCD9E8D57u, hj1, lj1);
    a[0] = hi1 ^ a[1] ^ k0;
    a[1] = lo1;
    a[2] = hi0 ^ a[3] ^ k1;
    a[3] = lo0;
    b[0] = hj1 ^ b[1] ^ k0;
    b[1] = lj1;
    b[2] = hj0 ^ b[3] ^ k1;
    b[3] = lj0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
}

inline void store_normals(const VU c[4], VD* out, int n) {
  VF z[4];
  box_muller_vec<VF, VU, VI, vsqrt>(c[0], c[1], z[0], z[1]);
  box_muller_vec<VF, VU, VI, vsqrt>(c[2], c[3], z[2], z[3]);
  for (int i = 0; i < n; ++i) out[i] = __builtin_convertvector(z[i], VD);
}

inline void lane_normals(std::uint64_t seed, std::uint32_t matrix, std::uint32_t block, std::uint32_t sample0,
                         int groups, VD* out) {
  for (int g = 0; g < groups; g += 2) {
    VU a[4], b[4];
    lane_counter(matrix, block, sample0, std::uint64_t(g), a);
    lane_counter(matrix, block, sample0, std::uint64_t(g + 1), b);
    philox2(seed, a, b);
    store_normals(a, out + 4 * g, 4);
    if (g + 1 < groups) store_normals(b, out + 4 * g + 4, 4);
  }
}

inline VD uniform_of(VU a, VU b) {
  const VD hi = __builtin_convertvector((VI)(a >> 5), VD), lo = __builtin_convertvector((VI)(b >> 6), VD);
  return (hi * 67108864.0 + lo + 0.5) * (1.0 / 9007199254740992.0);
}

inline void lane_uniforms(std::uint64_t seed, std::uint32_t matrix, std::uint32_t block, std::uint32_t sample0,
                          int count, VD* out) {
  for (int k = 0; k < count; k += 4) {  // two uniforms per group, two groups per call
    VU a[4], b[4];
    lane_counter(matrix, block, sample0, std::uint64_t(k / 2), a);
    lane_counter(matrix, block, sample0, std::uint64_t(k / 2 + 1), b);
    philox2(seed, a, b);
    out[k] = uniform_of(a[0], a[1]);
    if (k + 1 < count) out[k + 1] = uniform_of(a[2], a[3]);
    if (k + 2 < count) out[k + 2] = uniform_of(b[0], b[1]);
    if (k + 3 < count) out[k + 3] = uniform_of(b[2], b[3]);
  }
}
