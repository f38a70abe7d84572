#include "shaped_transformer/normal_kernels.hpp"

namespace shaped_transformer {

void fill_normal(const Stream& s, std::uint64_t first, std::size_t count, float* out) {
  fill_normal_reference(s, first, count, out);
}

void fill_normal(const Stream& s, std::uint64_t first, std::size_t count, double* out) {
  fill_normal_reference(s, first, count, out);
}

const char* normal_kernel_name() { return "scalar"; }

}  // namespace shaped_transformer
