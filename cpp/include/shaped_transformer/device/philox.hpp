// The device's names for the library's one generator and samplers (rng.hpp,
// math/philox.hpp, math/samplers.hpp are `ST_HD`): a CUDA thread draws exactly
// the numbers of the CPU, with the same counter layout, constants and operation
// order (tests/cpp/test_device.cpp, tests/test_cuda.py).
#pragma once

#include <cstdint>

#include "../math/matrix.hpp"
#include "../math/samplers.hpp"
#include "../rng.hpp"
#include "hd.hpp"

namespace shaped_transformer::device {

/// One stream of numbers: seed, sample, block, matrix id.
using Key = ::shaped_transformer::Stream;
using ::shaped_transformer::chi2_variate;
using ::shaped_transformer::gamma_variate;
using ::shaped_transformer::MatrixRng;
using ::shaped_transformer::normal4;
using ::shaped_transformer::philox_words;
using ::shaped_transformer::SeqNormal;
using ::shaped_transformer::SeqUniform;

/// Normals first .. first+count-1 of stream k, widened to double.
ST_HD inline void fill_normal(const Key& k, std::uint64_t first, int count, double* out) {
  fill_normal_reference(k, first, std::size_t(count), out);
}

/// wishart_factor on a row-major array B (p x p, leading dimension ld).
ST_HD inline void wishart_factor(double df, int p, MatrixRng& r, double* B, int ld) {
  MatRef<double> b(B, p, p, ld);
  ::shaped_transformer::wishart_factor(df, p, r, b);
}

}  // namespace shaped_transformer::device
