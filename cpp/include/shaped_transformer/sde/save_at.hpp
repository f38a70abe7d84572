// Saving (like diffrax's SaveAt(ts=...)): the solver records V at a sorted list of
// step indices; the Python layer maps the requested times onto the step grid.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <vector>

#include "../types.hpp"

namespace shaped_transformer::sde {

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

  static void check(const std::vector<std::int64_t>& steps, std::int64_t total) {
    if (steps.empty()) throw std::invalid_argument("save_at: must not be empty");
    for (std::size_t k = 0; k < steps.size(); ++k)
      if (steps[k] < 0 || steps[k] > total || (k > 0 && steps[k] <= steps[k - 1]))
        throw std::invalid_argument("save_at: must be sorted, unique step indices in [0, steps]");
  }

 private:
  const std::vector<std::int64_t>& steps_;
  double* out_;
  int m_;
  std::size_t k_ = 0;
};

}  // namespace shaped_transformer::sde
