// Argument checks shared by every driver (explicit, law, exact, SDE): each throws
// std::invalid_argument whose message starts with the argument's name.
// Defined in cpp/src/checks.cpp (Eigen's eigen-solver stays out of consumers' builds).
#pragma once

#include <cstdint>
#include <vector>

#include "types.hpp"

namespace shaped_transformer {

/// A covariance given to a driver: non-empty, square, finite, symmetric and positive
/// semi-definite up to rounding (the tolerances of the Python check_square_psd:
/// |V - V^T| <= 1e-9 max(1, max |V|), smallest eigenvalue >= -1e-9 max(scale, largest)).
void check_covariance(const Cov& V, const char* name);

/// Tokens given to a driver: at least one token and one feature, finite, n >= m.
void check_tokens(const MatD& X, const char* name);

/// Saved indices: non-empty, strictly increasing, in [0, last]; `unit` is "layer" or "step".
void check_save_at(const std::vector<std::int64_t>& save_at, std::int64_t last, const char* unit);

/// Common run options: blowup > 0, threads >= 0 (0: all hardware threads).
struct RunOptions;
void check_run_options(const RunOptions& opt);

}  // namespace shaped_transformer
