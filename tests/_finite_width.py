"""The model of the finite-width gap between a network and its SDE
(docs/validation.md, "SDE against the network").

The exact chain at width n is a Markov chain whose steps (one layer, dt = 1/n)
have the first moments of an Euler step of the SDE up to O(n^{-2}) (drift b / n,
covariance Sigma / n; docs/model.md section 5, tests/test_moments.py).  Like a
scheme of weak order 1 with step 1/n, an expectation of a bounded, smooth enough
observable then approaches its limit as

    E_n[f] = E_inf[f] + a / n + O(n^{-2}).

The expansion is in |V| / (tau0 sqrt(n)) (the size of the logits): it fails for the
paths whose V is large, so observables dominated by them (moments of V itself, or
means *given survival*, whose survivors at finite width include paths the SDE
blows up) converge more slowly at practical widths.  The tests use P(stopped by T),
capped observables (stopped paths counted at the cap) and correlations.

`extrapolate` fits c + a / n to a network's estimates at several widths by weighted
least squares, so that a test compares the limit c -- not one finite width with an
allowance measured on the code -- with the SDE's estimate, within standard errors;
the chi-square of the fit checks that the gap does shrink like 1/n.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass
class Extrapolation:
    """c + a / n fitted to estimates at widths n (weights 1 / se^2)."""

    limit: float  # c: the estimate's value at n = infinity
    limit_se: float
    slope: float  # a: the gap at width n is a / n
    slope_se: float
    chi2: float  # of the fit; len(widths) - 2 degrees of freedom
    dof: int

    def z(self, ref: float, ref_se: float) -> float:
        """z-score of the limit against an independent estimate ``ref``."""
        return (self.limit - ref) / float(np.hypot(self.limit_se, ref_se))

    def fits(self, alpha: float = 1e-5) -> bool:
        """The 1/n model is not rejected at level ``alpha`` (True without a degree of freedom)."""
        return self.dof == 0 or self.chi2 < stats.chi2.isf(alpha, self.dof)


def extrapolate(widths, est, se) -> Extrapolation:
    x = 1.0 / np.asarray(widths, dtype=float)
    y, s = np.asarray(est, dtype=float), np.asarray(se, dtype=float)
    X = np.stack([np.ones_like(x), x], axis=1) / s[:, None]
    cov = np.linalg.inv(X.T @ X)
    coef = cov @ X.T @ (y / s)
    chi2 = float(np.sum((X @ coef - y / s) ** 2))
    return Extrapolation(
        float(coef[0]), float(np.sqrt(cov[0, 0])), float(coef[1]), float(np.sqrt(cov[1, 1])), chi2, len(x) - 2
    )


def mean_se(x: np.ndarray) -> tuple[float, float]:
    """Sample mean and its standard error."""
    x = np.asarray(x, dtype=float)
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(x.size))


def compare_limits(widths, networks, steps, sdes, *, z_max: float = 4.5, approach_from_below=()) -> list[str]:
    """Compares, observable by observable, the network's limit with the SDE's.

    ``networks[i]`` and ``sdes[j]`` map an observable's name to (estimate, standard
    error) at width ``widths[i]`` and at Euler's step 1 / ``steps[j]``; each side is
    extrapolated to its limit (c + a / n, c' + e dt).  Returns the failures (an empty
    list when all hold): the limits differ by z_max standard errors of the difference
    (or the comparison is not a number), the network's gap does not shrink like 1/n
    (chi-square above its 1e-5 quantile), or, for the names in
    ``approach_from_below``, the network's slope a is not negative by z_max standard
    errors (the gap is absent or of the wrong sign).  Prints one line per observable."""
    failures = []
    for key in networks[0]:
        s = extrapolate(steps, *zip(*(o[key] for o in sdes)))
        e = extrapolate(widths, *zip(*(o[key] for o in networks)))
        z = e.z(s.limit, s.limit_se)
        print(
            f"{key:18s} network {' '.join(f'{o[key][0]:.4f}' for o in networks)} -> {e.limit:.4f} +- {e.limit_se:.4f}"
            f" (a = {e.slope:+.2f} +- {e.slope_se:.2f}, chi2 {e.chi2:.2f}); SDE "
            f"{' '.join(f'{o[key][0]:.4f}' for o in sdes)} -> {s.limit:.4f} +- {s.limit_se:.4f}; z = {z:+.2f}"
        )
        if not abs(z) < z_max:  # (a NaN fails too)
            failures.append(f"{key}: network limit {e.limit:.4f} against the SDE's {s.limit:.4f} (z = {z:+.2f})")
        if not e.fits():
            failures.append(f"{key}: the gap does not shrink like 1/n (chi2 = {e.chi2:.1f}, {e.dof} dof)")
        if key in approach_from_below and not e.slope < -z_max * e.slope_se:
            failures.append(f"{key}: the networks do not approach the SDE from below (a = {e.slope:+.2f})")
    return failures


def binary_se(x: np.ndarray) -> tuple[float, float]:
    """Frequency of a 0/1 sample and its binomial standard error, at least that of one
    event in N (so that a frequency of 0 is not known exactly)."""
    x = np.asarray(x, dtype=float)
    p, N = float(x.mean()), x.size
    return p, float(np.sqrt(max(p * (1 - p), 1.0 / N) / N))
