// Argument checks shared by every driver (checks.hpp).
#include "shaped_transformer/checks.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>

#include <Eigen/Eigenvalues>

#include "shaped_transformer/result.hpp"

namespace shaped_transformer {

namespace {
std::string g3(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}
}  // namespace

void check_covariance(const Cov& V, const char* name) {
  const std::string n(name);
  if (V.rows() < 1 || V.rows() != V.cols()) throw std::invalid_argument(n + ": must be a non-empty square matrix");
  if (!V.allFinite()) throw std::invalid_argument(n + ": contains non-finite values");
  const double scale = std::max(1.0, V.cwiseAbs().maxCoeff());
  if ((V - V.transpose()).cwiseAbs().maxCoeff() > 1e-9 * scale) throw std::invalid_argument(n + ": must be symmetric");
  const Eigen::SelfAdjointEigenSolver<Cov> es(0.5 * (V + V.transpose()), Eigen::EigenvaluesOnly);
  const double lo = es.eigenvalues()(0), hi = es.eigenvalues()(V.rows() - 1);
  if (lo < -1e-9 * std::max(scale, hi))
    throw std::invalid_argument(n + ": must be positive semi-definite; its smallest eigenvalue is " + g3(lo));
}

void check_tokens(const MatD& X, const char* name) {
  const std::string n(name);
  if (X.rows() < 1 || X.cols() < 1) throw std::invalid_argument(n + ": must have at least one token and one feature");
  if (X.cols() < X.rows())
    throw std::invalid_argument("width: must be >= the number of tokens m (" + n + " has fewer columns than rows)");
  if (!X.allFinite()) throw std::invalid_argument(n + ": contains non-finite values");
}

void check_save_at(const std::vector<std::int64_t>& save_at, std::int64_t last, const char* unit) {
  if (save_at.empty()) throw std::invalid_argument("save_at: must not be empty");
  for (std::size_t k = 0; k < save_at.size(); ++k)
    if (save_at[k] < 0 || save_at[k] > last || (k > 0 && save_at[k] <= save_at[k - 1]))
      throw std::invalid_argument(std::string("save_at: must be sorted, unique ") + unit + " indices in [0, " +
                                  std::to_string(last) + "]");
}

void check_run_options(const RunOptions& opt) {
  if (!(opt.blowup > 0.0)) throw std::invalid_argument("blowup: must be > 0");
  if (opt.threads < 0) throw std::invalid_argument("threads: must be >= 0 (0: all hardware threads)");
}

}  // namespace shaped_transformer
