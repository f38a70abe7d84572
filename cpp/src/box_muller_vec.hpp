// Vectorized Box-Muller for the SIMD translation units.  Included inside an
// anonymous namespace (internal linkage); no #include here on purpose.

/// rng.hpp's box_muller_pair on N lanes at once, written with GCC vector extensions
/// operation by operation (same constants, same order, no contraction), so every
/// lane equals the scalar reference bit for bit.  (The scalar function itself is not
/// auto-vectorized: sqrtf's errno branch counts as control flow.)  VF/VU/VI are
/// float/uint32/int32 vectors of N lanes; vsqrt is the ISA's correctly rounded sqrt.
template <class VF, class VU, class VI, VF (*vsqrt)(VF)>
inline void box_muller_vec(VU a, VU b, VF& z0, VF& z1) {
  const VF u = (__builtin_convertvector((VI)(a >> 8), VF) + 0.5f) * 5.9604644775390625e-8f;
  // log_poly(u)
  const VU bits = (VU)u;
  VF e = __builtin_convertvector((VI)((bits >> 23) & 0xFFu) - 126, VF);
  VF x = (VF)((bits & 0x807FFFFFu) | 0x3F000000u);
  const VI small = x < 0.707106781186547524f;
  e = small ? e - 1.0f : e;
  x = small ? (x + x) - 1.0f : x - 1.0f;
  const VF zz = x * x;
  VF y = x * 7.0376836292e-2f;
  y = y - 1.1514610310e-1f;
  y = y * x + 1.1676998740e-1f;
  y = y * x - 1.2420140846e-1f;
  y = y * x + 1.4249322787e-1f;
  y = y * x - 1.6668057665e-1f;
  y = y * x + 2.0000714765e-1f;
  y = y * x - 2.4999993993e-1f;
  y = y * x + 3.3333331174e-1f;
  y = y * x * zz;
  y = y + e * -2.12194440e-4f;
  y = y + zz * -0.5f;
  x = x + y;
  const VF lg = x + e * 0.693359375f;
  const VF r = vsqrt(lg * -2.0f);
  // angle
  const VF f = (__builtin_convertvector((VI)((b >> 8) & 0x3FFFFFu), VF) + 0.5f) * 2.384185791015625e-7f;
  const VF yy = f * 1.57079632679489662f - 0.785398163397448310f;
  const VF y2 = yy * yy;
  VF sn = y2 * -1.9515295891e-4f;
  sn = sn + 8.3321608736e-3f;
  sn = sn * y2 - 1.6666654611e-1f;
  sn = sn * y2 * yy + yy;
  VF cs = y2 * 2.443315711809948e-5f;
  cs = cs - 1.388731625493765e-3f;
  cs = cs * y2 + 4.166664568298827e-2f;
  cs = cs * y2 * y2 - y2 * 0.5f + 1.0f;
  const float h = 0.70710678118654752f;
  const VF cq = (cs - sn) * h, sq = (cs + sn) * h;
  const VI odd = (VI)((b >> 30) & 1u) != 0;
  const VI neg = (VI)((b >> 30) & 2u) != 0;
  const VF cx = odd ? -sq : cq;
  const VF sx = odd ? cq : sq;
  const VF sign = neg ? VF{} - 1.0f : VF{} + 1.0f;
  z0 = r * (cx * sign);
  z1 = r * (sx * sign);
}
