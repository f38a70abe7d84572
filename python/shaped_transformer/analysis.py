"""Analysis helpers: correlations, effective rank, per-depth summaries across
samples, kernel density estimates and distances between samples (Kolmogorov-
Smirnov, Wasserstein-1) with seeded bootstrap confidence intervals.

Everything here works on plain NumPy arrays (or on a :class:`~shaped_transformer.Result`
where said).  The statistics come from SciPy where SciPy has them
(``ks_2samp``, ``wasserstein_distance``, ``gaussian_kde``, ``bootstrap``,
``binomtest``); what is written here by hand is what SciPy lacks:

* the *cluster* bootstrap of :func:`ks`, :func:`wasserstein` and :func:`compare`,
  which resamples whole networks (rows of k correlated token pairs) and reuses one
  sorted merge of the two samples for every replicate (O(n) per replicate instead
  of a sort); on 1-d input it is the ordinary bootstrap and agrees with
  ``scipy.stats.bootstrap`` (tests/test_analysis.py checks this);
* :func:`newcombe_interval`, the interval of a difference of two proportions,
  which SciPy does not provide.

Conventions
-----------
* Covariances have shape ``(..., m, m)``; a sample that blew up carries NaN.
* "Exploded" samples are ignored by the summaries and counted (``dropped``).
* Distances accept 1-d arrays (independent values) or 2-d arrays
  ``(samples, k)`` (k correlated values per independent sample, e.g. the
  ``m(m-1)/2`` token pairs of one network).  With 2-d input the bootstrap
  resamples whole rows (a cluster bootstrap), which is the honest interval when
  the values within a row are dependent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as _stats

from ._result import Result
from ._result import correlations as _correlations

__all__ = [
    "correlations",
    "off_diagonal",
    "mean_correlation",
    "effective_rank",
    "smallest_eigenvalue",
    "DepthSummary",
    "summarize",
    "kde",
    "ks_distance",
    "wasserstein_distance",
    "Distance",
    "ks",
    "wasserstein",
    "compare",
    "final_pairs",
    "sample_observables",
    "OBSERVABLES",
    "blowup_probability",
    "Interval",
    "binomial_interval",
    "runs_interval",
    "proportion_curve",
    "verdict",
    "VERDICTS",
    "newcombe_interval",
    "mean_difference",
    "quantile_difference",
    "loglog_slope",
]


# ---------------------------------------------------------------------------
# Observables of one covariance
# ---------------------------------------------------------------------------


def correlations(V: np.ndarray) -> np.ndarray:
    """Token correlations rho_ab = V_ab / sqrt(V_aa V_bb).

    As :func:`shaped_transformer.correlations` (a token with zero variance gets
    correlation 0), except that a non-finite V_ab (a sample that blew up) gives
    NaN instead of a silent 0, so that the summaries can drop and count such
    samples.

    Parameters
    ----------
    V : array_like, shape (..., m, m)
        Covariances.

    Returns
    -------
    ndarray, shape (..., m, m)
        The correlations, 1 on the diagonal.

    Examples
    --------
    >>> correlations(np.array([[4.0, 2.0], [2.0, 4.0]]))
    array([[1. , 0.5],
           [0.5, 1. ]])
    """
    V = np.asarray(V, dtype=np.float64)
    rho = _correlations(V)
    d = np.diagonal(V, axis1=-2, axis2=-1)
    bad = ~(np.isfinite(V) & np.isfinite(d)[..., :, None] & np.isfinite(d)[..., None, :])
    if bad.any():
        rho = np.where(bad, np.nan, rho)
    return rho


def off_diagonal(A: np.ndarray) -> np.ndarray:
    """The entries a < b of square matrices, flattened.

    Parameters
    ----------
    A : array_like, shape (..., m, m)
        Matrices.

    Returns
    -------
    ndarray, shape (..., m (m - 1) / 2)
        ``A[..., a, b]`` for the pairs a < b in row-major order.

    Raises
    ------
    ValueError
        If ``A`` is not a stack of square matrices.

    Examples
    --------
    >>> off_diagonal(np.arange(9.0).reshape(3, 3))
    array([1., 2., 5.])
    """
    A = np.asarray(A)
    if A.ndim < 2 or A.shape[-1] != A.shape[-2]:
        raise ValueError(f"A must have shape (..., m, m), got {A.shape}")
    a, b = np.triu_indices(A.shape[-1], k=1)
    return A[..., a, b]


def mean_correlation(V: np.ndarray) -> np.ndarray:
    """The average off-diagonal token correlation.

    Parameters
    ----------
    V : array_like, shape (..., m, m)
        Covariances.

    Returns
    -------
    ndarray, shape (...)
        The mean of rho_ab over the pairs a < b; NaN where V is NaN (a sample that
        blew up) and for m = 1 (no pairs).
    """
    V = np.asarray(V, dtype=np.float64)
    if V.ndim < 2 or V.shape[-1] != V.shape[-2]:
        raise ValueError(f"V must have shape (..., m, m), got {V.shape}")
    lead, m = V.shape[:-2], V.shape[-1]
    if m < 2:
        return np.full(lead, np.nan)
    # In blocks of samples: the correlations' full-size temporaries of a large stack
    # (2000 x 128 x 128: 262 MB each) cost seconds in memory traffic; per block they stay
    # in cache.  Each sample's mean is the same sum either way.
    flat = V.reshape(-1, m, m)
    out = np.empty(flat.shape[0])
    block = max(1, (1 << 17) // (m * m))
    for i in range(0, flat.shape[0], block):
        out[i : i + block] = off_diagonal(correlations(flat[i : i + block])).mean(axis=-1)
    return out.reshape(lead)


def effective_rank(V: np.ndarray) -> np.ndarray:
    """The effective rank (tr V)^2 / tr(V^2).

    It is m for V proportional to the identity and 1 for a rank-one V (rank
    collapse).

    Parameters
    ----------
    V : array_like, shape (..., m, m)
        Covariances (or correlation matrices).

    Returns
    -------
    ndarray, shape (...)
        The effective ranks; NaN passes through, and an all-zero V gives NaN.

    Raises
    ------
    ValueError
        If ``V`` is not a stack of square matrices.

    Examples
    --------
    >>> effective_rank(np.stack([np.eye(4), np.ones((4, 4))]))
    array([4., 1.])
    """
    V = np.asarray(V, dtype=np.float64)
    if V.ndim < 2 or V.shape[-1] != V.shape[-2]:
        raise ValueError(f"V must have shape (..., m, m), got {V.shape}")
    tr = np.trace(V, axis1=-2, axis2=-1)
    tr2 = np.einsum("...ab,...ba->...", V, V)  # tr(V^2) = sum_ab V_ab V_ba
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tr2 > 0, tr * tr / np.where(tr2 > 0, tr2, 1.0), np.nan)


def smallest_eigenvalue(V: np.ndarray, *, normalized: bool = False) -> np.ndarray:
    """The smallest eigenvalue of symmetric covariances.

    Parameters
    ----------
    V : array_like, shape (..., m, m)
        Covariances.
    normalized : bool, default False
        Divide by tr V / m (the mean eigenvalue), so that the value is scale-free:
        1 for a multiple of the identity, 0 for a singular V (rank degeneracy).

    Returns
    -------
    ndarray, shape (...)
        The smallest eigenvalues; NaN for matrices with non-finite entries.

    Raises
    ------
    ValueError
        If ``V`` is not a stack of square matrices.
    """
    V = np.asarray(V, dtype=np.float64)
    if V.ndim < 2 or V.shape[-1] != V.shape[-2]:
        raise ValueError(f"V must have shape (..., m, m), got {V.shape}")
    ok = np.all(np.isfinite(V), axis=(-2, -1))
    safe = np.where(ok[..., None, None], V, np.eye(V.shape[-1]))
    lam = np.linalg.eigvalsh(0.5 * (safe + np.swapaxes(safe, -1, -2)))[..., 0]
    if normalized:
        mean_eig = np.trace(safe, axis1=-2, axis2=-1) / V.shape[-1]
        with np.errstate(invalid="ignore", divide="ignore"):
            lam = np.where(mean_eig > 0, lam / np.where(mean_eig > 0, mean_eig, 1.0), np.nan)
    return np.where(ok, lam, np.nan)


def final_pairs(result: Result, index: int = -1) -> np.ndarray:
    """The token correlations of every sample at one saved time.

    Samples that blew up (any non-finite pair) are left out.  Pass the 2-d array
    to :func:`ks`, :func:`wasserstein` or :func:`compare` for a cluster bootstrap
    over samples.

    Parameters
    ----------
    result : Result
        A run of :func:`shaped_transformer.simulate` or
        :func:`shaped_transformer.solve_sde`.
    index : int, default -1
        The saved time (an index into ``result.t``).

    Returns
    -------
    ndarray, shape (finite samples, m (m - 1) / 2)
        The correlations rho_ab, a < b, one row per sample.
    """
    vals = off_diagonal(correlations(result.V[:, index]))
    ok = np.all(np.isfinite(vals), axis=1)
    return vals[ok]


# ---------------------------------------------------------------------------
# Summaries across samples, per depth
# ---------------------------------------------------------------------------


@dataclass
class DepthSummary:
    """Statistics across samples at each saved time (see :func:`summarize`).

    Parameters
    ----------
    median : ndarray, shape (saved,)
        The median of the pooled values.
    levels : tuple of float
        The quantile levels of ``quantiles``.
    quantiles : ndarray, shape (len(levels), saved)
        The quantiles of the pooled values.
    mean : ndarray, shape (saved,)
        The mean over samples of the per-sample average.
    sem : ndarray, shape (saved,)
        The standard error of ``mean`` (standard deviation of the per-sample
        averages over the square root of ``count``).
    count : ndarray, shape (saved,)
        The number of samples that are finite at each time.
    dropped : ndarray, shape (saved,)
        The number of samples left out there (non-finite: they blew up).
    t : ndarray, shape (saved,), optional
        The times (None when not given).
    """

    median: np.ndarray
    levels: tuple[float, ...]
    quantiles: np.ndarray
    mean: np.ndarray
    sem: np.ndarray
    count: np.ndarray
    dropped: np.ndarray
    t: np.ndarray | None = None

    def quantile(self, level: float) -> np.ndarray:
        """The row of ``quantiles`` for one level.

        Parameters
        ----------
        level : float
            One of ``levels``.

        Returns
        -------
        ndarray, shape (saved,)

        Raises
        ------
        ValueError
            If ``level`` was not computed.
        """
        for i, q in enumerate(self.levels):
            if abs(q - level) < 1e-12:
                return self.quantiles[i]
        raise ValueError(f"level {level} was not computed; available: {self.levels}")

    def to_dict(self) -> dict:
        """JSON-friendly dictionary (lists of floats; NaN becomes None)."""

        def clean(a):
            return [None if not np.isfinite(v) else float(v) for v in np.asarray(a, dtype=float).ravel()]

        out = {
            "median": clean(self.median),
            "mean": clean(self.mean),
            "sem": clean(self.sem),
            "count": [int(c) for c in self.count],
            "dropped": [int(c) for c in self.dropped],
            "quantiles": {f"{q:g}": clean(row) for q, row in zip(self.levels, self.quantiles)},
        }
        if self.t is not None:
            out["t"] = clean(self.t)
        return out


def summarize(
    values: np.ndarray, *, t: np.ndarray | None = None, levels: Sequence[float] = (0.05, 0.25, 0.5, 0.75, 0.95)
) -> DepthSummary:
    """Per-depth statistics of values across samples.

    A sample is left out at a given time when any of its values there is
    non-finite (it blew up); :attr:`DepthSummary.dropped` counts them.  The
    quantiles and the median pool all values of the kept samples; the mean and its
    standard error are computed from per-sample averages, so that the error bar is
    right even when the k values of one sample are dependent.

    Parameters
    ----------
    values : array_like, shape (samples, saved) or (samples, saved, k)
        The values; k values per sample are pooled (e.g. the token pairs).
    t : array_like, shape (saved,), optional
        The saved times, kept in the summary.
    levels : sequence of float, default (0.05, 0.25, 0.5, 0.75, 0.95)
        The quantile levels, in [0, 1].

    Returns
    -------
    DepthSummary

    Raises
    ------
    ValueError
        For a wrong shape, levels outside [0, 1] or ``t`` of the wrong length.

    Examples
    --------
    >>> s = summarize(np.array([[0.0, 1.0], [0.0, 3.0], [0.0, np.nan]]))
    >>> s.mean.tolist(), s.dropped.tolist()
    ([0.0, 2.0], [0, 1])
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3 or x.shape[0] == 0:
        raise ValueError(f"values must have shape (samples, saved) or (samples, saved, k), got {np.shape(values)}")
    lv = tuple(float(q) for q in levels)
    if any(not 0.0 <= q <= 1.0 for q in lv):
        raise ValueError(f"levels must lie in [0, 1], got {lv}")
    if t is not None:
        t = np.asarray(t, dtype=np.float64)
        if t.shape != (x.shape[1],):
            raise ValueError(f"t must have shape ({x.shape[1]},), got {t.shape}")
    ns, nt, _ = x.shape
    ok = np.all(np.isfinite(x), axis=2)  # (samples, saved)
    median = np.full(nt, np.nan)
    quant = np.full((len(lv), nt), np.nan)
    mean = np.full(nt, np.nan)
    sem = np.full(nt, np.nan)
    count = ok.sum(axis=0)
    for j in range(nt):
        keep = x[ok[:, j], j, :]
        if keep.shape[0] == 0:
            continue
        pooled = keep.ravel()
        median[j] = np.median(pooled)
        if lv:
            quant[:, j] = np.quantile(pooled, lv)
        per_sample = keep.mean(axis=1)
        mean[j] = per_sample.mean()
        if per_sample.size > 1:
            sem[j] = per_sample.std(ddof=1) / math.sqrt(per_sample.size)
    return DepthSummary(
        median=median, levels=lv, quantiles=quant, mean=mean, sem=sem, count=count, dropped=ns - count, t=t
    )


# ---------------------------------------------------------------------------
# Kernel density estimate
# ---------------------------------------------------------------------------


def kde(
    samples: np.ndarray,
    grid: np.ndarray | int = 256,
    *,
    bandwidth: str | float = "scott",
    bounds: tuple[float, float] | None = None,
    binned: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A Gaussian kernel density estimate of a 1-d sample on a grid.

    Parameters
    ----------
    samples : array_like
        The sample; non-finite values are ignored.
    grid : array_like or int, default 256
        The points to evaluate at, or their number (spread over the data range
        widened by three bandwidths, or over ``bounds``).
    bandwidth : {"scott", "silverman"} or float, default "scott"
        "scott" is n^(-1/5) times the sample standard deviation (as
        ``scipy.stats.gaussian_kde``); a number is the kernel's standard deviation.
    bounds : (float, float), optional
        The support: the kernel is reflected at both ends so that no mass leaks
        out (use (-1, 1) for correlations).  Without bounds the estimate equals
        SciPy's ``gaussian_kde``.
    binned : bool, optional
        First bin the sample into 4096 bins weighted by their counts, which moves
        the estimate by far less than the kernel width and makes large samples
        cheap.  None: when there are more than 20000 values.

    Returns
    -------
    grid, density : ndarray
        The points and the estimated density there.

    Raises
    ------
    ValueError
        For fewer than 2 finite values, a bad bandwidth, bounds with lo >= hi or a
        grid of fewer than 2 points.
    """
    x = np.asarray(samples, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if x.size < 2:
        raise ValueError(f"samples must contain at least 2 finite values, got {x.size}")
    n = x.size
    if isinstance(bandwidth, str):
        sd = x.std(ddof=1)
        if bandwidth == "scott":
            factor = n ** (-1.0 / 5.0)
        elif bandwidth == "silverman":
            factor = (n * 3.0 / 4.0) ** (-1.0 / 5.0)
        else:
            raise ValueError(f"bandwidth must be 'scott', 'silverman' or a positive number, got {bandwidth!r}")
        h = factor * sd
        if not h > 0:  # all samples equal
            h = 1e-3 * max(1.0, abs(float(x[0])))
    else:
        h = float(bandwidth)
        if not (math.isfinite(h) and h > 0):
            raise ValueError(f"bandwidth must be positive, got {bandwidth}")
    if bounds is not None:
        lo, hi = (float(b) for b in bounds)
        if not lo < hi:
            raise ValueError(f"bounds must satisfy lo < hi, got {bounds}")
    if np.ndim(grid) == 0:
        k = int(grid)
        if k < 2:
            raise ValueError(f"grid must be >= 2 points, got {grid}")
        if bounds is not None:
            g = np.linspace(lo, hi, k)
        else:
            g = np.linspace(x.min() - 3 * h, x.max() + 3 * h, k)
    else:
        g = np.asarray(grid, dtype=np.float64).ravel()
    if binned is None:
        binned = n > 20000
    pts, weights = x, None
    if binned:
        counts, edges = np.histogram(x, bins=4096)
        keep = counts > 0
        pts, weights = (0.5 * (edges[:-1] + edges[1:]))[keep], counts[keep].astype(np.float64)
    sd = math.sqrt(float(np.cov(pts, aweights=weights))) if pts.size >= 2 else 0.0
    if not (sd > 0.0 and math.isfinite(h / sd)):
        # scipy's gaussian_kde needs a sample whose variance is representable; a
        # (near) point mass is a sum of Gaussians of standard deviation h, by hand.
        w = np.ones(pts.size) if weights is None else weights
        dens = np.zeros_like(g)
        for c in [pts] if bounds is None else [pts, 2 * lo - pts, 2 * hi - pts]:
            z = (g[None, :] - c[:, None]) / h
            dens += w @ np.exp(-0.5 * z * z)
        dens /= w.sum() * h * math.sqrt(2 * math.pi)
    else:
        # scipy.stats.gaussian_kde with its kernel standard deviation set to h: its
        # bandwidth factor multiplies the (weighted) sample standard deviation.
        est = _stats.gaussian_kde(pts, bw_method=h / sd, weights=weights)
        dens = est(g)
        if bounds is not None:
            # Reflection at the bounds: the kernel mass beyond lo (hi) is folded
            # back, i.e. the density of the mirrored sample 2 lo - x is added.
            dens = dens + est(2 * lo - g) + est(2 * hi - g)
    if bounds is not None:
        dens = np.where((g >= lo) & (g <= hi), dens, 0.0)
    return g, dens


# ---------------------------------------------------------------------------
# Distances between samples, with bootstrap confidence intervals
# ---------------------------------------------------------------------------


def _as_groups(name: str, a: np.ndarray) -> np.ndarray:
    """(groups, k) float64 array of finite rows (1-d input: k = 1)."""
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as exc:  # name the argument, not NumPy's conversion
        raise ValueError(f"{name} must be an array of numbers: {exc}") from None
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 1-d array or a 2-d (samples, k) array, got shape {arr.shape}")
    arr = arr[np.all(np.isfinite(arr), axis=1)]
    if arr.size == 0:
        raise ValueError(f"{name} contains no finite values")
    return arr


class _EcdfPair:
    """Two samples on a merged grid, so that bootstrap replicates cost O(n) each:
    a replicate is a reweighting of the sorted values (counts per group), and the
    two empirical CDFs at the merged points are cumulative sums of the weights."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.gx, self.kx = x.shape
        self.gy, self.ky = y.shape
        xf, yf = x.ravel(), y.ravel()
        ox, oy = np.argsort(xf, kind="stable"), np.argsort(yf, kind="stable")
        self.xs, self.ys = xf[ox], yf[oy]
        self.x_group = ox // self.kx  # group (row) of each sorted value
        self.y_group = oy // self.ky
        allv = np.sort(np.concatenate([self.xs, self.ys]))
        self.allv = allv
        self.dx = np.diff(allv)
        self.ix = np.searchsorted(self.xs, allv, side="right")
        self.iy = np.searchsorted(self.ys, allv, side="right")

    def cdfs(self, wx: np.ndarray | None = None, wy: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        if wx is None:
            fx = self.ix / self.xs.size
        else:
            c = np.concatenate([[0.0], np.cumsum(wx[self.x_group])])
            fx = c[self.ix] / c[-1]
        if wy is None:
            fy = self.iy / self.ys.size
        else:
            c = np.concatenate([[0.0], np.cumsum(wy[self.y_group])])
            fy = c[self.iy] / c[-1]
        return fx, fy

    def ks(self, wx=None, wy=None) -> float:
        fx, fy = self.cdfs(wx, wy)
        return float(np.max(np.abs(fx - fy)))

    def w1(self, wx=None, wy=None) -> float:
        fx, fy = self.cdfs(wx, wy)
        return float(np.sum(np.abs(fx - fy)[:-1] * self.dx))


def ks_distance(x: np.ndarray, y: np.ndarray) -> float:
    """The two-sample Kolmogorov-Smirnov statistic, the largest gap between the two empirical CDFs.

    ``scipy.stats.ks_2samp``'s statistic; non-finite values are ignored.

    Parameters
    ----------
    x, y : array_like
        The two samples (flattened).

    Returns
    -------
    float
    """
    gx, gy = _as_groups("x", np.ravel(x)), _as_groups("y", np.ravel(y))
    return float(_stats.ks_2samp(gx[:, 0], gy[:, 0]).statistic)


def wasserstein_distance(x: np.ndarray, y: np.ndarray) -> float:
    """The Wasserstein-1 distance (the area between the two empirical CDFs) of two 1-d samples.

    ``scipy.stats.wasserstein_distance``; non-finite values are ignored.

    Parameters
    ----------
    x, y : array_like
        The two samples (flattened).

    Returns
    -------
    float
    """
    gx, gy = _as_groups("x", np.ravel(x)), _as_groups("y", np.ravel(y))
    return float(_stats.wasserstein_distance(gx[:, 0], gy[:, 0]))


@dataclass
class Distance:
    """A distance between two samples with a bootstrap confidence interval.

    ``float(d)`` gives ``value``.  The interval fields are NaN when no bootstrap
    was asked for.

    Parameters
    ----------
    metric : str
        "ks" or "wasserstein1".
    value : float
        The plug-in distance between the two empirical distributions.
    low, high : float
        The bootstrap interval at ``level``.
    level : float
        The confidence level.
    bootstrap : int
        The number of bootstrap replicates (0: none).
    n_x, n_y : int
        The number of independent samples (rows) on each side.
    interval : str
        "basic" or "percentile".
    corrected : float
        The bootstrap bias-corrected estimate max(0, 2 value - mean(replicates)):
        two samples of one law are at a positive plug-in distance.
    replicates : ndarray, optional
        The bootstrap replicates of the distance.
    """

    metric: str
    value: float
    low: float = float("nan")
    high: float = float("nan")
    level: float = 0.95
    bootstrap: int = 0
    n_x: int = 0
    n_y: int = 0
    interval: str = ""
    corrected: float = float("nan")
    replicates: np.ndarray | None = field(default=None, repr=False)

    def __float__(self) -> float:
        return float(self.value)

    @property
    def ci(self) -> tuple[float, float]:
        """The interval ``(low, high)``."""
        return (self.low, self.high)

    def to_dict(self) -> dict:
        """A JSON-friendly dictionary of the fields (NaN becomes None; no replicates).

        Returns
        -------
        dict
        """

        def c(v):
            return None if not math.isfinite(v) else float(v)

        return {
            "metric": self.metric,
            "value": c(self.value),
            "low": c(self.low),
            "high": c(self.high),
            "level": self.level,
            "bootstrap": self.bootstrap,
            "interval": self.interval,
            "corrected": c(self.corrected),
            "n_x": self.n_x,
            "n_y": self.n_y,
        }

    def __str__(self) -> str:
        if self.bootstrap:
            return f"{self.metric} = {self.value:.4f} [{self.low:.4f}, {self.high:.4f}] ({self.level:.0%} CI)"
        return f"{self.metric} = {self.value:.4f}"


def _distances(
    metrics: tuple[str, ...], x, y, bootstrap: int, level: float, seed: int | None, interval: str = "basic"
) -> dict[str, Distance]:
    """Distances ``metrics`` ("ks", "wasserstein1") between x and y; the bootstrap
    draws each replicate once and evaluates every metric on it."""
    if interval not in ("basic", "percentile"):
        raise ValueError(f"interval must be 'basic' or 'percentile', got {interval!r}")
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, (int, np.integer)) or bootstrap < 0:
        raise ValueError(f"bootstrap must be a non-negative integer (number of replicates), got {bootstrap!r}")
    if not (isinstance(level, (int, float)) and 0.0 < float(level) < 1.0):
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    gx, gy = _as_groups("x", x), _as_groups("y", y)
    pair = _EcdfPair(gx, gy)

    def evaluate(wx=None, wy=None) -> list[float]:
        fx, fy = pair.cdfs(wx, wy)
        diff = np.abs(fx - fy)
        # (diff * dx).sum() rather than np.dot: BLAS threads on a busy machine cost more than the sum
        return [float(diff.max()) if mt == "ks" else float((diff[:-1] * pair.dx).sum()) for mt in metrics]

    values = evaluate()
    out = {
        mt: Distance(metric=mt, value=v, level=float(level), bootstrap=int(bootstrap), n_x=gx.shape[0], n_y=gy.shape[0])
        for mt, v in zip(metrics, values)
    }
    if bootstrap:
        if seed is None:
            raise ValueError("seed must be given for a reproducible bootstrap")
        rng = np.random.default_rng(seed)
        reps = np.empty((int(bootstrap), len(metrics)))
        for b in range(int(bootstrap)):
            wx = np.bincount(rng.integers(0, pair.gx, pair.gx), minlength=pair.gx).astype(np.float64)
            wy = np.bincount(rng.integers(0, pair.gy, pair.gy), minlength=pair.gy).astype(np.float64)
            reps[b] = evaluate(wx, wy)
        a = (1.0 - float(level)) / 2.0
        for k, mt in enumerate(metrics):
            d, r = out[mt], reps[:, k]
            q_lo, q_hi = (float(v) for v in np.quantile(r, [a, 1.0 - a]))
            if interval == "percentile":
                d.low, d.high = q_lo, q_hi
            else:
                # Basic (reverse-percentile) interval: it corrects the upward bias of a
                # plug-in distance to first order; a distance is >= 0, hence the clip.
                d.low, d.high = max(0.0, 2 * d.value - q_hi), max(0.0, 2 * d.value - q_lo)
            d.interval = interval
            # Bias-corrected estimate 2 d - mean(replicates): the plug-in distance is
            # biased upwards (two samples of one law are at a positive distance), and
            # near 0 the basic interval is centred on this value, not on d.
            d.corrected = max(0.0, 2 * d.value - float(r.mean()))
            d.replicates = r.copy()
    return out


def ks(
    x: np.ndarray,
    y: np.ndarray,
    *,
    bootstrap: int = 0,
    level: float = 0.95,
    seed: int | None = 0,
    interval: str = "basic",
) -> Distance:
    """The Kolmogorov-Smirnov distance between two samples, with a bootstrap interval.

    Parameters
    ----------
    x, y : array_like
        1-d arrays of independent values, or 2-d arrays (samples, k) whose rows
        are independent (k dependent values each, e.g. the token pairs of one
        network): the bootstrap then resamples whole rows (a cluster bootstrap).
    bootstrap : int, default 0
        The number of bootstrap replicates (0: no interval).
    level : float, default 0.95
        The confidence level.
    seed : int, optional
        The NumPy seed of the resampling (the same seed gives the same interval);
        required when ``bootstrap`` > 0.
    interval : {"basic", "percentile"}, default "basic"
        "basic" is [2 d - q_hi, 2 d - q_lo] clipped at 0, which corrects the upward
        bias of the plug-in distance; "percentile" is [q_lo, q_hi], which
        under-covers (in the test suite's N(0, 1) against N(0.5, 1) experiment at
        n = 400 a nominal 90% KS interval covered 70% of the time, the basic one
        85%).

    Returns
    -------
    Distance

    Raises
    ------
    ValueError
        For a sample with no finite row, a bad ``bootstrap``, ``level`` or
        ``interval``, or a bootstrap without a seed.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> d = ks(rng.normal(size=400), rng.normal(0.5, size=400), bootstrap=200, seed=1)
    >>> bool(d.low > 0)
    True
    """
    return _distances(("ks",), x, y, bootstrap, level, seed, interval)["ks"]


def wasserstein(
    x: np.ndarray,
    y: np.ndarray,
    *,
    bootstrap: int = 0,
    level: float = 0.95,
    seed: int | None = 0,
    interval: str = "basic",
) -> Distance:
    """The Wasserstein-1 distance between two samples, with a bootstrap interval.

    Parameters
    ----------
    x, y : array_like
        As in :func:`ks`: 1-d independent values or 2-d rows of dependent ones.
    bootstrap : int, default 0
        The number of bootstrap replicates (0: no interval).
    level : float, default 0.95
        The confidence level.
    seed : int, optional
        The NumPy seed of the resampling; required when ``bootstrap`` > 0.
    interval : {"basic", "percentile"}, default "basic"
        As in :func:`ks`.

    Returns
    -------
    Distance

    Raises
    ------
    ValueError
        As :func:`ks`.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> d = wasserstein(rng.normal(size=1000), rng.normal(0.3, size=1000), bootstrap=200, seed=1)
    >>> bool(d.low < 0.3 < d.high)
    True
    """
    return _distances(("wasserstein1",), x, y, bootstrap, level, seed, interval)["wasserstein1"]


def compare(
    a: Result | np.ndarray,
    b: Result | np.ndarray,
    *,
    index: int = -1,
    bootstrap: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    interval: str = "basic",
) -> dict[str, Distance]:
    """The KS and Wasserstein-1 distances between two runs' token correlations.

    Both metrics come from the same bootstrap replicates, which resample whole
    samples (networks or paths).

    Parameters
    ----------
    a, b : Result or array_like
        Two runs (their correlations at saved time ``index`` are compared, see
        :func:`final_pairs`), or two arrays as in :func:`ks`.
    index : int, default -1
        The saved time of the Results.
    bootstrap : int, default 1000
        The number of bootstrap replicates.
    level : float, default 0.95
        The confidence level.
    seed : int, default 0
        The NumPy seed of the resampling.
    interval : {"basic", "percentile"}, default "basic"
        As in :func:`ks`.

    Returns
    -------
    dict
        ``{"ks": Distance, "wasserstein1": Distance}``.
    """
    x = final_pairs(a, index) if isinstance(a, Result) else a
    y = final_pairs(b, index) if isinstance(b, Result) else b
    return _distances(("ks", "wasserstein1"), x, y, bootstrap, level, seed, interval)


# ---------------------------------------------------------------------------
# Per-sample observables, blow-up probabilities and intervals of differences
# (what the report compares between a network and the SDE)
# ---------------------------------------------------------------------------

#: The per-sample observables of :func:`sample_observables`, with a short description.
OBSERVABLES: dict[str, str] = {
    "mean_rho": "mean off-diagonal token correlation of one sample",
    "log_trace": "log(tr V / m), the log of the mean token scale",
    "effective_rank": "(tr V)^2 / tr(V^2)",
    "log_max_diag": "log of the largest diagonal entry of V (the stopping rule's observable)",
}


def sample_observables(result: Result, index: int = -1) -> dict[str, np.ndarray]:
    """Scalar observables of each sample at one saved time.

    Unlike the pooled token pairs these are independent across samples, so
    ordinary two-sample statistics apply to them.

    Parameters
    ----------
    result : Result
        A run.
    index : int, default -1
        The saved time.

    Returns
    -------
    dict of str to ndarray
        One (samples,) array per key of :data:`OBSERVABLES`, NaN for the samples
        that blew up by then.
    """
    V = np.asarray(result.V[:, index], dtype=np.float64)
    m = V.shape[-1]
    ok = np.all(np.isfinite(V), axis=(-2, -1))
    Vs = np.where(ok[:, None, None], V, np.eye(m))  # placeholders, masked below
    diag = np.diagonal(Vs, axis1=-2, axis2=-1)
    tr = diag.sum(-1)
    rho = correlations(Vs)
    iu = np.triu_indices(m, k=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = {
            "mean_rho": rho[:, iu[0], iu[1]].mean(-1) if m > 1 else np.full(len(V), np.nan),
            "log_trace": np.log(tr / m),
            "effective_rank": tr**2 / np.einsum("sij,sji->s", Vs, Vs),
            "log_max_diag": np.log(diag.max(-1)),
        }
    return {k: np.where(ok, v, np.nan) for k, v in out.items()}


@dataclass
class Interval:
    """An estimate with a confidence interval: the one interval type of the package.

    Blow-up probabilities of the report and the atlas, differences, slopes and
    splitting estimates are all Intervals.  An interval that could not be
    determined is NaN and supports no claim (:meth:`excludes` is False).

    Parameters
    ----------
    value : float
        The estimate.
    low, high : float
        The interval.
    level : float
        Its confidence level.
    method : str
        How it was made: "clopper-pearson", "wilson", "t over runs", "newcombe",
        "welch", "bootstrap (basic)", "least squares (t)", ...

    Examples
    --------
    >>> iv = Interval(0.1, 0.05, 0.2, 0.95, "wilson")
    >>> iv.excludes(0.0), str(iv)
    (True, '0.1 [0.05, 0.2]')
    """

    value: float
    low: float
    high: float
    level: float
    method: str = ""

    def excludes(self, x: float = 0.0) -> bool:
        """Whether ``x`` lies outside the interval.

        Parameters
        ----------
        x : float, default 0.0
            The value.

        Returns
        -------
        bool
            False for an undetermined (NaN) interval: it supports no claim.
        """
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return False
        return not (self.low <= x <= self.high)

    def to_dict(self) -> dict:
        """A JSON-friendly dictionary of the fields (NaN becomes None).

        Returns
        -------
        dict
        """

        def c(v):
            return None if not math.isfinite(v) else float(v)

        return {
            "value": c(self.value),
            "low": c(self.low),
            "high": c(self.high),
            "level": self.level,
            "method": self.method,
        }

    def __str__(self) -> str:
        return f"{self.value:.4g} [{self.low:.4g}, {self.high:.4g}]"


def binomial_interval(k: int, n: int, *, level: float = 0.95, method: str = "exact") -> Interval:
    """k of n with a binomial confidence interval.

    Parameters
    ----------
    k, n : int
        The number of events and of trials (0 <= k <= n, n >= 1).
    level : float, default 0.95
        The confidence level.
    method : {"exact", "wilson"}, default "exact"
        "exact" is Clopper-Pearson (at least the nominal coverage for every p:
        what a verdict "safe" needs); "wilson" is closer to the nominal coverage
        on average.  Both from ``scipy.stats.binomtest``.

    Returns
    -------
    Interval
        k / n with its interval; ``method`` is "clopper-pearson" or "wilson".

    Raises
    ------
    ValueError
        Unless 0 <= k <= n and n >= 1.

    Examples
    --------
    >>> iv = binomial_interval(0, 3700)
    >>> round(iv.high * 3700, 2)
    3.69
    """
    if not 0 <= k <= n or n < 1:
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    ci = _stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method=method)
    name = {"exact": "clopper-pearson"}.get(method, method)
    return Interval(k / n, float(ci.low), float(ci.high), level, name)


def runs_interval(values: Sequence[float] | np.ndarray, *, level: float = 0.95) -> Interval:
    """The mean of independent unbiased estimates with its t interval.

    Used for repeated splitting runs (:func:`shaped_transformer.splitting.ams_repeat`).

    Parameters
    ----------
    values : array_like
        The estimates (probabilities).
    level : float, default 0.95
        The confidence level.

    Returns
    -------
    Interval
        The mean with its t interval, clipped at 0; undetermined (NaN) for fewer
        than two estimates.

    Raises
    ------
    ValueError
        If ``values`` is empty.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError("values must hold at least one estimate")
    mean = float(v.mean())
    if v.size < 2:
        return Interval(mean, math.nan, math.nan, level, "t over runs")
    se = float(v.std(ddof=1) / math.sqrt(v.size))
    q = float(_stats.t.ppf(0.5 + level / 2, v.size - 1))
    return Interval(mean, max(0.0, mean - q * se), mean + q * se, level, "t over runs")


def proportion_curve(
    event_times: Sequence[float] | np.ndarray,
    n: int,
    t: Sequence[float] | np.ndarray,
    *,
    level: float = 0.95,
    method: str = "exact",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The share of ``n`` samples whose event (e.g. a blow-up) happened by each time
    of ``t``, with its binomial interval.

    The intervals are those of :func:`binomial_interval`, computed once per distinct
    count, so that a curve and a table of the same counts give the same numbers.

    Parameters
    ----------
    event_times : array_like
        The times of the events that happened (one per sample that had one).
    n : int
        The number of samples, with or without an event.
    t : array_like
        The times at which to evaluate the curve.
    level : float, default 0.95
        The confidence level.
    method : {"exact", "wilson"}, default "exact"
        As in :func:`binomial_interval` (Clopper-Pearson or Wilson).

    Returns
    -------
    p, low, high : ndarray
        The share by each time and its interval, each shaped like ``t``.

    Examples
    --------
    >>> p, lo, hi = proportion_curve([0.2, 0.5], 10, [0.0, 0.3, 1.0])
    >>> p.tolist()
    [0.0, 0.1, 0.2]
    >>> bool(lo[0] == 0.0 and hi[0] < 0.31)
    True
    """
    times = np.sort(np.asarray(event_times, dtype=np.float64))
    grid = np.asarray(t, dtype=np.float64)
    k = np.searchsorted(times, grid + 1e-12, side="right")
    bounds = {int(c): binomial_interval(int(c), int(n), level=level, method=method) for c in np.unique(k)}
    low = np.array([bounds[int(c)].low for c in k.ravel()]).reshape(k.shape)
    high = np.array([bounds[int(c)].high for c in k.ravel()]).reshape(k.shape)
    return k / n, low, high


#: The verdicts of :func:`verdict`.
VERDICTS = ("safe", "unsafe", "undecided")


def verdict(interval: Interval, threshold: float) -> str:
    """The one verdict rule for an estimated probability, whatever estimated it.

    A network, the SDE or splitting runs: "safe" when the whole interval lies
    below ``threshold``, "unsafe" when it lies above, "undecided" otherwise and
    for an undetermined (NaN) interval, which supports no claim.  With no event
    in n samples the 95% Clopper-Pearson upper end is about 3.7 / n, so plain
    Monte Carlo can call a point safe at 1e-3 only from about 3700 samples on;
    below that only a resolved splitting estimate can.

    Parameters
    ----------
    interval : Interval
        The estimate with its interval.
    threshold : float
        The safe level.

    Returns
    -------
    str
        One of :data:`VERDICTS`.

    Examples
    --------
    >>> verdict(binomial_interval(0, 5000), 1e-3), verdict(binomial_interval(0, 1000), 1e-3)
    ('safe', 'undecided')
    """
    if not (math.isfinite(interval.low) and math.isfinite(interval.high)):
        return "undecided"
    if interval.high < threshold:
        return "safe"
    if interval.low > threshold:
        return "unsafe"
    return "undecided"


def blowup_probability(result: Result, t: float | None = None, *, level: float = 0.95) -> tuple[int, int, Interval]:
    """The share of samples stopped by the blow-up rule by time ``t``.

    Parameters
    ----------
    result : Result
        A run (network or SDE) with its ``exploded_at`` times.
    t : float, optional
        The time; default the last saved time.
    level : float, default 0.95
        The confidence level of the Wilson score interval (``scipy.stats.binomtest``).

    Returns
    -------
    stopped : int
        The number of samples stopped by ``t``.
    samples : int
        The number of samples.
    interval : Interval
        The proportion with its Wilson interval.
    """
    t_end = float(result.t[-1]) if t is None else float(t)
    k = int(np.sum(np.asarray(result.exploded_at) <= t_end + 1e-12))
    n = int(result.samples)
    return k, n, binomial_interval(k, n, level=level, method="wilson")


def newcombe_interval(k1: int, n1: int, k2: int, n2: int, *, level: float = 0.95) -> Interval:
    """The interval of a difference of two proportions p1 - p2.

    Newcombe's hybrid score interval (method 10 of Newcombe 1998), built from the
    two Wilson intervals.  Written here because SciPy has no two-proportion
    interval; it keeps its coverage near 0 and 1, where the Wald interval fails
    (blow-up probabilities are often a few percent or less).

    Parameters
    ----------
    k1, n1 : int
        Events and trials of the first sample.
    k2, n2 : int
        Events and trials of the second sample.
    level : float, default 0.95
        The confidence level.

    Returns
    -------
    Interval
        k1 / n1 - k2 / n2 with its interval (method "newcombe").
    """
    p1, p2 = k1 / n1, k2 / n2
    a = _stats.binomtest(k1, n1).proportion_ci(confidence_level=level, method="wilson")
    b = _stats.binomtest(k2, n2).proportion_ci(confidence_level=level, method="wilson")
    d = p1 - p2
    low = d - math.sqrt((p1 - a.low) ** 2 + (b.high - p2) ** 2)
    high = d + math.sqrt((a.high - p1) ** 2 + (p2 - b.low) ** 2)
    return Interval(d, low, high, level, "newcombe")


def _finite(name: str, a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64).ravel()
    a = a[np.isfinite(a)]
    if a.size < 2:
        raise ValueError(f"{name} needs at least 2 finite values, got {a.size}")
    return a


def mean_difference(x: np.ndarray, y: np.ndarray, *, level: float = 0.95) -> Interval:
    """mean(x) - mean(y) with Welch's t interval.

    ``scipy.stats.ttest_ind`` with ``equal_var=False``; non-finite values (samples
    that blew up) are dropped.

    Parameters
    ----------
    x, y : array_like
        The two samples.
    level : float, default 0.95
        The confidence level.

    Returns
    -------
    Interval
        The difference with its interval (method "welch").

    Raises
    ------
    ValueError
        For a sample with fewer than 2 finite values.
    """
    x, y = _finite("x", x), _finite("y", y)
    r = _stats.ttest_ind(x, y, equal_var=False)
    ci = r.confidence_interval(confidence_level=level)
    d = float(x.mean() - y.mean())
    if not (math.isfinite(ci.low) and math.isfinite(ci.high)):  # both samples constant
        return Interval(d, d, d, level, "welch")
    return Interval(d, float(ci.low), float(ci.high), level, "welch")


def quantile_difference(
    x: np.ndarray, y: np.ndarray, q: float, *, level: float = 0.95, resamples: int = 999, seed: int = 0
) -> Interval:
    """The q-quantile of x minus the q-quantile of y, with a basic bootstrap interval.

    ``scipy.stats.bootstrap`` over the two independent samples; non-finite values
    are dropped.

    Parameters
    ----------
    x, y : array_like
        The two samples.
    q : float
        The quantile level, in [0, 1].
    level : float, default 0.95
        The confidence level.
    resamples : int, default 999
        The number of bootstrap resamples (0: no interval, NaN).
    seed : int, default 0
        The seed of the resampling.

    Returns
    -------
    Interval
        The difference with its interval (method "bootstrap (basic)").

    Raises
    ------
    ValueError
        For a sample with fewer than 2 finite values.
    """
    x, y = _finite("x", x), _finite("y", y)

    def stat(a, b, axis=-1):
        return np.quantile(a, q, axis=axis) - np.quantile(b, q, axis=axis)

    d = float(stat(x, y))
    if resamples == 0:
        return Interval(d, float("nan"), float("nan"), level, "bootstrap (basic)")
    r = _stats.bootstrap(
        (x, y),
        stat,
        n_resamples=int(resamples),
        confidence_level=level,
        method="basic",
        vectorized=True,
        random_state=np.random.default_rng(seed),
    )
    return Interval(d, float(r.confidence_interval.low), float(r.confidence_interval.high), level, "bootstrap (basic)")


def loglog_slope(widths: Sequence[float], values: Sequence[float], *, level: float = 0.95) -> Interval | None:
    """The least-squares slope of log(value) against log(width), with its t interval.

    ``scipy.stats.linregress``; non-positive and non-finite values are left out.

    Parameters
    ----------
    widths : sequence of float
        The widths.
    values : sequence of float
        The values at those widths (e.g. distances to the SDE).
    level : float, default 0.95
        The confidence level.

    Returns
    -------
    Interval or None
        The slope with its interval (method "least squares (t)"); None when fewer
        than three positive values remain.

    Examples
    --------
    >>> w = np.array([32, 64, 128, 256])
    >>> round(loglog_slope(w, 3.0 / w).value, 6)
    -1.0
    """
    w = np.asarray(widths, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v) & (v > 0) & (w > 0)
    if ok.sum() < 3:
        return None
    r = _stats.linregress(np.log(w[ok]), np.log(v[ok]))
    tq = float(_stats.t.ppf(0.5 + level / 2, ok.sum() - 2))
    return Interval(
        float(r.slope), float(r.slope - tq * r.stderr), float(r.slope + tq * r.stderr), level, "least squares (t)"
    )


# Statistics by token position (causal attention, docs/causal.md)
# ---------------------------------------------------------------------------


@dataclass
class PositionStats:
    """Per-pair and per-token statistics of covariances (see :func:`position_statistics`).

    Parameters
    ----------
    pair_mean, pair_se : ndarray, shape (m, m)
        The mean correlation rho_ab over the finite samples and its standard
        error (diagonal 1 and 0).
    token_mean, token_se : ndarray, shape (m,)
        The mean over samples of the average correlation of token i with the
        tokens before it, and its standard error (NaN for the first token).
    scale_median : ndarray, shape (m,)
        The median of V_ii (medians: V_ii is heavy tailed).
    samples : int
        The number of finite samples used.
    dropped : int
        The number of samples left out (they blew up).
    """

    pair_mean: np.ndarray
    pair_se: np.ndarray
    token_mean: np.ndarray
    token_se: np.ndarray
    scale_median: np.ndarray
    samples: int
    dropped: int


def position_statistics(V: np.ndarray | Result, index: int = -1) -> PositionStats:
    """Statistics by token position.

    Under causal attention token i only sees tokens 1..i, so these differ by
    position; under bidirectional attention they depend on position only through
    V_0 (docs/causal.md).

    Parameters
    ----------
    V : array_like, shape (samples, m, m), or Result
        Covariances, or a run (then its covariances at saved time ``index``).
    index : int, default -1
        The saved time of a Result.

    Returns
    -------
    PositionStats

    Raises
    ------
    ValueError
        For a wrong shape.

    Examples
    --------
    >>> V = np.stack([np.eye(3), np.eye(3)])
    >>> position_statistics(V).token_mean
    array([nan,  0.,  0.])
    """
    if isinstance(V, Result):
        V = V.V[:, index]
    V = np.asarray(V, dtype=np.float64)
    if V.ndim != 3 or V.shape[-1] != V.shape[-2] or V.shape[0] < 1:
        raise ValueError(f"V must have shape (samples, m, m) with samples >= 1, got {V.shape}")
    rho = correlations(V)
    ok = np.all(np.isfinite(rho), axis=(1, 2))
    rho, Vf = rho[ok], V[ok]
    k, m = int(ok.sum()), V.shape[-1]
    nanm = np.full(m, np.nan)
    if k == 0:
        full = np.full((m, m), np.nan)
        return PositionStats(full, full.copy(), nanm, nanm.copy(), nanm.copy(), 0, int(V.shape[0]))
    se = rho.std(0, ddof=1) / math.sqrt(k) if k > 1 else np.full((m, m), np.nan)
    tok = np.full((k, m), np.nan)
    for i in range(1, m):
        tok[:, i] = rho[:, i, :i].mean(axis=1)
    tok_se = tok.std(0, ddof=1) / math.sqrt(k) if k > 1 else nanm.copy()
    return PositionStats(
        pair_mean=rho.mean(0),
        pair_se=se,
        token_mean=tok.mean(0),
        token_se=tok_se,
        scale_median=np.median(np.diagonal(Vf, axis1=1, axis2=2), axis=0),
        samples=k,
        dropped=int(V.shape[0] - k),
    )


__all__ += ["PositionStats", "position_statistics"]
