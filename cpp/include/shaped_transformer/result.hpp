// What a run returns, and the options every driver (explicit network, law sampler,
// exact chain, SDE) takes.  Plain vectors, so the core needs no Python.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace shaped_transformer {

/// Options shared by all drivers.
struct RunOptions {
  int threads = 0;        ///< worker threads; 0 = all hardware threads
  double blowup = 1e4;    ///< a sample with max diag V above this (or non-finite) is stopped (docs/model.md, section 6)
  bool return_X = false;  ///< keep the final tokens (explicit and law drivers)
  /// Called from the calling thread with the number of finished samples.
  std::function<void(std::size_t)> progress;
  /// Polled from the calling thread every 50 ms; returning true cancels the run
  /// (the driver then throws shaped_transformer::Cancelled).
  std::function<bool()> poll;
  /// The caller already ran this driver's argument checks (check_explicit_arguments,
  /// check_exact_arguments, sde::check_arguments) on these very arguments, so the
  /// driver skips them: the Python binding checks once, then runs its memory check,
  /// then allocates and calls the driver.
  bool checked = false;
};

/// Covariances of `samples` independent runs at `saved` saved times.
struct Trajectories {
  int samples = 0, saved = 0, m = 0, n = 0;
  std::vector<double> V;                  ///< samples x saved x m x m, row-major
  std::vector<std::int64_t> exploded;     ///< per sample: layer (or step) of blow-up, -1 = never
  std::vector<double> X;                  ///< samples x m x n when return_X, else empty
  std::vector<std::int64_t> projections;  ///< SDE only: PSD projections per path
  std::string kernel;                     ///< what ran: "generic", or the SIMD set of a batch / normal kernel

  Trajectories() = default;
  Trajectories(int samples_, int saved_, int m_)
      : samples(samples_),
        saved(saved_),
        m(m_),
        V(std::size_t(samples_) * std::size_t(saved_) * std::size_t(m_) * std::size_t(m_)),
        exploded(std::size_t(samples_), -1) {}

  /// Pointer to the m x m covariance (row-major) of sample s at saved index k.
  double* V_at(int s, int k) {
    return V.data() + (std::size_t(s) * std::size_t(saved) + std::size_t(k)) * std::size_t(m) * std::size_t(m);
  }
  const double* V_at(int s, int k) const {
    return V.data() + (std::size_t(s) * std::size_t(saved) + std::size_t(k)) * std::size_t(m) * std::size_t(m);
  }
};

}  // namespace shaped_transformer
