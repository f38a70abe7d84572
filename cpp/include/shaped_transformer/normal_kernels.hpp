// Fast bulk generation of the normals defined by rng.hpp.  The implementation picks
// the widest instruction set the CPU has at run time; every variant returns exactly
// the numbers of fill_normal_reference.
#pragma once

#include <cstddef>
#include <cstdint>

#include "rng.hpp"

namespace shaped_transformer {

/// Normals first .. first+count-1 of stream s, written to out.
void fill_normal(const Stream& s, std::uint64_t first, std::size_t count, float* out);
/// Same numbers, widened to double.
void fill_normal(const Stream& s, std::uint64_t first, std::size_t count, double* out);

/// Name of the kernel fill_normal uses on this CPU ("avx512", "avx2" or "scalar").
const char* normal_kernel_name();

}  // namespace shaped_transformer
