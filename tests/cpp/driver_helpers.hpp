// Shared helpers of the driver tests.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include <shaped_transformer/network.hpp>
#include <shaped_transformer/result.hpp>
#include <shaped_transformer/types.hpp>

namespace st_test {

namespace st = shaped_transformer;

/// A shaped Transformer layer: shaped attention (2 heads) + shaped MLP.
inline st::Network shaped_net(int heads = 2) {
  st::ShapedAttention a;
  a.heads = heads;
  st::ShapedMLP mlp;
  return st::Network{{a, mlp}};
}

/// Equicorrelated m x m covariance.
inline st::Cov equicorrelated(int m, double rho) {
  st::Cov V = st::Cov::Constant(m, m, rho);
  V.diagonal().setOnes();
  return V;
}

/// Tokens X (m x n) with X X^T / n = V: X = L [sqrt(n) I, 0].
inline st::MatD tokens(const st::Cov& V, long n) {
  const st::Cov L = V.llt().matrixL();
  st::MatD X = st::MatD::Zero(V.rows(), n);
  X.leftCols(V.rows()) = L * std::sqrt(double(n));
  return X;
}

inline std::vector<std::int64_t> all_layers(int depth) {
  std::vector<std::int64_t> s;
  for (int l = 0; l <= depth; ++l) s.push_back(l);
  return s;
}

/// Mean over samples of the mean off-diagonal correlation at saved index k, and its
/// standard error.
inline void mean_rho(const st::Trajectories& r, int k, double& mean, double& se) {
  std::vector<double> x;
  for (int s = 0; s < r.samples; ++s) {
    const double* V = r.V_at(s, k);
    double acc = 0;
    int pairs = 0;
    for (int a = 0; a < r.m; ++a)
      for (int b = a + 1; b < r.m; ++b, ++pairs) acc += V[a * r.m + b] / std::sqrt(V[a * r.m + a] * V[b * r.m + b]);
    x.push_back(acc / pairs);
  }
  mean = 0;
  for (double v : x) mean += v;
  mean /= double(x.size());
  double var = 0;
  for (double v : x) var += (v - mean) * (v - mean);
  se = std::sqrt(var / double(x.size() - 1) / double(x.size()));
}

}  // namespace st_test

namespace st_test {

/// Mean and standard error of entry (a, b) of V at saved index k over the samples.
inline void mean_entry(const st::Trajectories& r, int k, int a, int b, double& mean, double& se) {
  double s1 = 0, s2 = 0;
  for (int s = 0; s < r.samples; ++s) {
    const double v = r.V_at(s, k)[a * r.m + b];
    s1 += v;
    s2 += v * v;
  }
  mean = s1 / r.samples;
  se = std::sqrt(std::max(0.0, s2 / r.samples - mean * mean) / (r.samples - 1));
}

/// A fixed SPD matrix with unequal diagonal and mixed-sign correlations.
inline st::Cov spd(int m) {
  st::Cov V = st::Cov::Identity(m, m) * 0.4;
  for (int a = 0; a < m; ++a)
    for (int b = 0; b < m; ++b) V(a, b) += 0.5 * std::cos(1.0 + a + 0.7 * b) * std::cos(1.0 + b + 0.7 * a);
  V = (V * V.transpose()).eval() + 0.3 * st::Cov::Identity(m, m);
  return V;
}

}  // namespace st_test
