// A small study with the C++ core alone: the mean token correlation of a shaped
// Transformer (shaped attention + shaped MLP per layer) against depth, from the
// exact m x m covariance chain and from the explicit network at the same small
// width.  The exact chain has the law of the finite-width network (docs/model.md
// section 4), so the two columns agree up to Monte Carlo error, which is printed.
//
// Usage: depth_study [width=64] [depth=64] [samples_exact=400] [samples_explicit=100] [seed=1]
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <shaped_transformer/exact.hpp>
#include <shaped_transformer/explicit.hpp>
#include <shaped_transformer/network.hpp>

namespace st = shaped_transformer;

namespace {

// Mean and standard error over samples of the mean off-diagonal correlation at
// saved index k (samples that blew up are skipped).
struct Summary {
  double mean = 0, se = 0;
  int used = 0;
};

Summary mean_correlation(const st::Trajectories& r, int k) {
  const int m = r.m;
  std::vector<double> per_sample;
  for (int s = 0; s < r.samples; ++s) {
    const double* V = r.V_at(s, k);
    double acc = 0;
    int pairs = 0;
    bool ok = true;
    for (int a = 0; a < m; ++a)
      for (int b = a + 1; b < m; ++b) {
        const double rho = V[a * m + b] / std::sqrt(V[a * m + a] * V[b * m + b]);
        ok = ok && std::isfinite(rho);
        acc += rho;
        ++pairs;
      }
    if (ok) per_sample.push_back(acc / pairs);
  }
  Summary out;
  out.used = int(per_sample.size());
  if (out.used == 0) return out;
  for (double x : per_sample) out.mean += x;
  out.mean /= out.used;
  double var = 0;
  for (double x : per_sample) var += (x - out.mean) * (x - out.mean);
  if (out.used > 1) out.se = std::sqrt(var / (out.used - 1) / out.used);
  return out;
}

long arg(int argc, char** argv, int i, long fallback) {
  return argc > i ? std::strtol(argv[i], nullptr, 10) : fallback;
}

}  // namespace

int main(int argc, char** argv) {
  const long width = arg(argc, argv, 1, 64);
  const int depth = int(arg(argc, argv, 2, 64));
  const int samples_exact = int(arg(argc, argv, 3, 400));
  const int samples_explicit = int(arg(argc, argv, 4, 100));
  const std::uint64_t seed = std::uint64_t(arg(argc, argv, 5, 1));
  const int m = 4;
  const double rho0 = 0.3;

  // One layer = shaped attention (4 heads) followed by a shaped MLP.
  st::ShapedAttention attention;
  attention.heads = 4;
  attention.tau0 = 1.0;
  attention.gamma = 0.5;
  attention.lambda = std::sqrt(1.0 - 0.25);
  st::ShapedMLP mlp;  // c_+ = 0, c_- = -1, gamma = 0.5
  const st::Network net{{attention, mlp}};

  // Equicorrelated input covariance V0 and tokens X0 (m x width) with X0 X0^T / n = V0:
  // X0 = L [sqrt(n) I_m, 0] with L the Cholesky factor of V0.
  st::Cov V0 = st::Cov::Constant(m, m, rho0);
  V0.diagonal().setOnes();
  const st::Cov L = V0.llt().matrixL();
  st::MatD X0 = st::MatD::Zero(m, width);
  X0.leftCols(m) = L * std::sqrt(double(width));

  std::vector<std::int64_t> save_at;
  for (int l = 0; l <= depth; l += depth / 8 > 0 ? depth / 8 : 1) save_at.push_back(l);
  if (save_at.back() != depth) save_at.push_back(depth);

  st::RunOptions opt;
  opt.threads = 0;  // all hardware threads; results do not depend on it
  const st::Trajectories exact = st::simulate_exact(net, V0, width, depth, samples_exact, seed, save_at, opt);
  const st::Trajectories expl =
      st::simulate_explicit(net, X0, depth, samples_explicit, seed, save_at, /*float32=*/false, opt);

  std::printf("# shaped transformer, m=%d tokens, rho0=%.2f, width=%ld, depth=%d, seed=%llu\n", m, rho0, width, depth,
              static_cast<unsigned long long>(seed));
  std::printf("# samples: exact chain %d, explicit network %d\n", samples_exact, samples_explicit);
  std::printf("%6s %8s %12s %10s %12s %10s\n", "layer", "t", "rho_exact", "se", "rho_explicit", "se");
  for (std::size_t k = 0; k < save_at.size(); ++k) {
    const Summary a = mean_correlation(exact, int(k));
    const Summary b = mean_correlation(expl, int(k));
    std::printf("%6lld %8.4f %12.6f %10.6f %12.6f %10.6f\n", static_cast<long long>(save_at[k]),
                double(save_at[k]) / double(width), a.mean, a.se, b.mean, b.se);
  }
  return 0;
}
