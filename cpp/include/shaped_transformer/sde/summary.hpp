// Saving (sde/save_at.hpp's companion for the batch kernel): the sinks that
// receive a batch's covariances at the saved steps.  StoreSink writes every path's
// V (like SaveAt); SummarySink accumulates per-time statistics of the observables
// on the fly, so a study's memory does not grow with the number of paths.
//
// Summary statistics, per saved time and per observable (rho: the off-diagonal
// correlations a < b pooled over pairs and paths; rho_mean: the per-path average
// of those; log10_diag: log10 V_aa pooled over tokens and paths; erank: the
// effective rank (tr V)^2 / tr V^2 per path): the count, the sums of x, x^2, x^3,
// x^4, the min and max, and a histogram of kSummaryBins bins on a fixed range
// (values outside land in the end bins).  Paths that blew up before a time are
// left out of it and counted in `alive`.
//
// Reproducibility: paths are summed in chunks of kSummaryChunk paths, in path
// order, and the chunks are merged in chunk order, so the sums are the same for
// any thread count and any kernel width.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "batch.hpp"

namespace shaped_transformer::sde {

inline constexpr int kSummaryBins = 120;
inline constexpr int kSummaryObs = 4;  ///< rho, rho_mean, log10_diag, erank
inline constexpr int kSummaryMom = 7;  ///< count, sum x, x^2, x^3, x^4, min, max
inline constexpr int kSummaryChunk = 256;

struct SdeSummary {
  int m = 0;
  std::size_t nsave = 0;
  std::vector<std::int64_t> alive;  ///< nsave: paths not blown up at that time
  std::vector<double> mom;          ///< nsave x kSummaryObs x kSummaryMom
  std::vector<std::int64_t> hist;   ///< nsave x kSummaryObs x kSummaryBins
  double lo[kSummaryObs] = {-1.0, -1.0, -6.0, 1.0};
  double hi[kSummaryObs] = {1.0, 1.0, 6.0, 1.0};
  std::vector<double> scratch;  ///< m: 1 / sqrt(V_aa) of the path being added

  SdeSummary() = default;
  SdeSummary(int m_, std::size_t nsave_)
      : m(m_),
        nsave(nsave_),
        alive(nsave_, 0),
        mom(nsave_ * kSummaryObs * kSummaryMom, 0.0),
        hist(nsave_ * kSummaryObs * kSummaryBins, 0),
        scratch(std::size_t(m_)) {
    hi[3] = std::max(1.0 + 1e-9, double(m_));
    for (std::size_t k = 0; k < nsave; ++k)
      for (int o = 0; o < kSummaryObs; ++o) {
        mom[(k * kSummaryObs + o) * kSummaryMom + 5] = std::numeric_limits<double>::infinity();
        mom[(k * kSummaryObs + o) * kSummaryMom + 6] = -std::numeric_limits<double>::infinity();
      }
  }

  void add(std::size_t k, int o, double x) {
    double* s = &mom[(k * kSummaryObs + std::size_t(o)) * kSummaryMom];
    const double x2 = x * x;
    s[0] += 1.0;
    s[1] += x;
    s[2] += x2;
    s[3] += x2 * x;
    s[4] += x2 * x2;
    s[5] = std::min(s[5], x);
    s[6] = std::max(s[6], x);
    const double f = (x - lo[o]) / (hi[o] - lo[o]) * double(kSummaryBins);
    const int b = f < 0.0 ? 0 : (f >= double(kSummaryBins) ? kSummaryBins - 1 : int(f));
    ++hist[(k * kSummaryObs + std::size_t(o)) * kSummaryBins + std::size_t(b)];
  }

  /// The statistics of one path's V (m x m, entry (i, j) at V[(i m + j) stride]).
  void add_path(std::size_t k, const double* V, int stride) {
    const int n = m;
    ++alive[k];
    double* s = scratch.data();
    double tr = 0.0, tr2 = 0.0;
    for (int a = 0; a < n; ++a) {
      const double d = V[std::size_t(a * n + a) * std::size_t(stride)];
      s[a] = d > 0.0 ? 1.0 / std::sqrt(d) : 0.0;
      tr += d;
      if (d > 0.0) add(k, 2, std::log10(d));
    }
    double rsum = 0.0;
    for (int a = 0; a < n; ++a) {
      const double* row = V + std::size_t(a * n) * std::size_t(stride);
      for (int b = 0; b < n; ++b) {
        const double v = row[std::size_t(b) * std::size_t(stride)];
        tr2 += v * v;
        if (b > a) {
          const double r = v * s[a] * s[b];
          rsum += r;
          add(k, 0, r);
        }
      }
    }
    if (n > 1) add(k, 1, rsum / (0.5 * double(n) * double(n - 1)));
    if (tr2 > 0.0) add(k, 3, tr * tr / tr2);
  }

  /// Adds another summary (a later chunk) to this one.
  void merge(const SdeSummary& o) {
    for (std::size_t k = 0; k < nsave; ++k) alive[k] += o.alive[k];
    for (std::size_t i = 0; i < mom.size(); i += kSummaryMom) {
      for (int j = 0; j < 5; ++j) mom[i + std::size_t(j)] += o.mom[i + std::size_t(j)];
      mom[i + 5] = std::min(mom[i + 5], o.mom[i + 5]);
      mom[i + 6] = std::max(mom[i + 6], o.mom[i + 6]);
    }
    for (std::size_t i = 0; i < hist.size(); ++i) hist[i] += o.hist[i];
  }
};

/// Accumulates the saved covariances of the live lanes into a summary.
class SummarySink final : public BatchSink {
 public:
  explicit SummarySink(SdeSummary& s) : s_(s) {}
  void save(std::size_t k, const double* V, int width, const unsigned char* alive) override {
    for (int l = 0; l < width; ++l)
      if (alive[l]) s_.add_path(k, V + l, width);
  }

 private:
  SdeSummary& s_;
};

/// Writes the saved covariances of paths path0 .. path0+count-1 to a
/// (paths x nsave x m x m) array; NaN for lanes that blew up.
class StoreSink final : public BatchSink {
 public:
  StoreSink(double* out, std::size_t path0, int count, std::size_t nsave, int m)
      : out_(out), path0_(path0), count_(count), nsave_(nsave), m_(m) {}
  void save(std::size_t k, const double* V, int width, const unsigned char* alive) override {
    const std::size_t mm = std::size_t(m_) * std::size_t(m_);
    for (int l = 0; l < count_; ++l) {
      double* o = out_ + ((path0_ + std::size_t(l)) * nsave_ + k) * mm;
      if (!alive[l]) {
        std::fill(o, o + mm, std::numeric_limits<double>::quiet_NaN());
        continue;
      }
      for (std::size_t i = 0; i < mm; ++i) o[i] = V[i * std::size_t(width) + std::size_t(l)];
    }
  }

 private:
  double* out_;
  std::size_t path0_;
  int count_;
  std::size_t nsave_;
  int m_;
};

}  // namespace shaped_transformer::sde
