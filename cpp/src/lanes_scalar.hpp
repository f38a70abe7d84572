// The one-lane "vectors" of the portable batched kernels (sde_kernels.cpp,
// exact_kernels.cpp): the same source as the SIMD kernels, W = 1, with a fused
// multiply-add and a square root per lane.  Included inside an anonymous
// namespace; the includer provides <cmath>.

constexpr int W = 1;
typedef double VD __attribute__((vector_size(8)));
typedef long long VL __attribute__((vector_size(8)));
inline VD vfma(VD a, VD b, VD c) { return VD{std::fma(a[0], b[0], c[0])}; }
inline VD vsqrtd(VD a) { return VD{std::sqrt(a[0])}; }
