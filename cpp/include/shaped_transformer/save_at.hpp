// Saving (like diffrax's SaveAt(ts=...)): every driver records V at a sorted list of
// layer or step indices (checked by check_save_at, checks.hpp); the Python layer maps
// requested times onto that grid.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

namespace shaped_transformer {

/// Writes V (m x m, row-major) into out[k] for every saved index k equal to the
/// current step; after a blow-up the remaining saves are NaN.
class SaveAt {
 public:
  SaveAt(const std::vector<std::int64_t>& steps, double* out, int m) : steps_(steps), out_(out), m_(m) {}

  /// Records V for every requested index equal to `step` (called in increasing order).
  template <class M>
  void operator()(std::int64_t step, const M& V) {
    while (k_ < steps_.size() && steps_[k_] == step) {
      double* o = out_ + k_ * std::size_t(m_) * std::size_t(m_);
      for (int a = 0; a < m_; ++a)
        for (int b = 0; b < m_; ++b) o[a * m_ + b] = V(a, b);
      ++k_;
    }
  }
  /// Fills the remaining saves with NaN (after a blow-up).
  void fill_nan() {
    for (; k_ < steps_.size(); ++k_) {
      double* o = out_ + k_ * std::size_t(m_) * std::size_t(m_);
      std::fill(o, o + m_ * m_, std::numeric_limits<double>::quiet_NaN());
    }
  }

 private:
  const std::vector<std::int64_t>& steps_;
  double* out_;
  int m_;
  std::size_t k_ = 0;
};

namespace sde {
using ::shaped_transformer::SaveAt;
}

}  // namespace shaped_transformer
