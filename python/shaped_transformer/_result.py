"""The one result type shared by the explicit network, the exact chain and the SDE."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Result", "SdeSummary", "correlations"]


def correlations(V: np.ndarray) -> np.ndarray:
    """rho_ab = V_ab / sqrt(V_aa V_bb) for covariances of shape (..., m, m).

    Tokens with zero variance get correlation 0 with the others (and 1 with
    themselves) instead of NaN.

    Parameters
    ----------
    V : array_like, shape (..., m, m)
        Covariances; a NaN one (a blown-up sample) keeps NaN correlations.

    Returns
    -------
    ndarray, shape (..., m, m)
    """
    V = np.asarray(V, dtype=np.float64)
    d = np.sqrt(np.clip(np.diagonal(V, axis1=-2, axis2=-1), 0.0, None))
    denom = d[..., :, None] * d[..., None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(denom > 0, V / np.where(denom > 0, denom, 1.0), 0.0)
    # A blown-up sample (NaN covariance) keeps NaN correlations, so that
    # rho_pairs() and the analysis helpers drop it instead of reading rho = 0.
    rho = np.where(np.isnan(V) | np.isnan(denom), np.nan, rho)
    m = V.shape[-1]
    idx = np.arange(m)
    rho[..., idx, idx] = np.where(np.isnan(np.diagonal(V, axis1=-2, axis2=-1)), np.nan, 1.0)
    return rho


_SUMMARY_NAMES = ("rho", "rho_mean", "log10_diag", "erank")


@dataclass
class SdeSummary:
    """Per-time statistics of SDE paths accumulated on the fly (``solve_sde(save="summary")``).

    Observables: ``"rho"`` (the off-diagonal correlations rho_ab, a < b, pooled over
    pairs and paths), ``"rho_mean"`` (each path's average of those), ``"log10_diag"``
    (log10 V_aa pooled over tokens and paths) and ``"erank"`` (each path's
    effective rank (tr V)^2 / tr V^2).  At each saved time only paths that have
    not blown up count.  Correlations are V_ab s_a s_b with s_a = 1 / sqrt(V_aa).

    Attributes
    ----------
    t : (saved,) times.
    paths : number of paths integrated.
    alive : (saved,) paths not blown up at each time.
    moments : (saved, 4, 7) per observable: count, sum x, sum x^2, sum x^3,
        sum x^4, min, max.
    hist : (saved, 4, 120) counts on fixed bins (``edges(name)``); values outside
        the range land in the end bins (min and max are exact).
    lo, hi : (4,) the histogram's range of each observable.
    names : the observables, in the order of the second axis of moments and hist.
    """

    t: np.ndarray
    paths: int
    alive: np.ndarray
    moments: np.ndarray
    hist: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    names: tuple = _SUMMARY_NAMES

    @classmethod
    def from_core(cls, d: dict, *, t: np.ndarray, paths: int, m: int) -> SdeSummary:
        return cls(
            t=np.asarray(t, dtype=np.float64),
            paths=int(paths),
            alive=np.asarray(d["alive"]),
            moments=np.asarray(d["moments"]),
            hist=np.asarray(d["hist"]),
            lo=np.asarray(d["lo"], dtype=np.float64),
            hi=np.asarray(d["hi"], dtype=np.float64),
        )

    def _index(self, name: str) -> int:
        if name not in self.names:
            raise ValueError(f"name must be one of {self.names}, got {name!r}")
        return self.names.index(name)

    @property
    def exploded(self) -> np.ndarray:
        """(saved,) number of paths blown up by each time."""
        return self.paths - self.alive

    def count(self, name: str) -> np.ndarray:
        """(saved,) number of values of ``name`` at each time."""
        return self.moments[:, self._index(name), 0]

    def mean(self, name: str) -> np.ndarray:
        """(saved,) mean of ``name`` (NaN where there are no values)."""
        m = self.moments[:, self._index(name)]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(m[:, 0] > 0, m[:, 1] / np.where(m[:, 0] > 0, m[:, 0], 1), np.nan)

    def var(self, name: str) -> np.ndarray:
        """(saved,) unbiased variance of ``name`` (NaN with fewer than 2 values)."""
        m = self.moments[:, self._index(name)]
        n = m[:, 0]
        with np.errstate(invalid="ignore", divide="ignore"):
            v = (m[:, 2] - m[:, 1] ** 2 / np.where(n > 0, n, 1)) / np.where(n > 1, n - 1, 1)
        return np.where(n > 1, np.maximum(v, 0.0), np.nan)

    def std(self, name: str) -> np.ndarray:
        """(saved,) standard deviation of ``name``."""
        return np.sqrt(self.var(name))

    def min(self, name: str) -> np.ndarray:
        """(saved,) smallest value of ``name``."""
        return self.moments[:, self._index(name), 5]

    def max(self, name: str) -> np.ndarray:
        """(saved,) largest value of ``name``."""
        return self.moments[:, self._index(name), 6]

    def edges(self, name: str) -> np.ndarray:
        """The histogram's bin edges of ``name``."""
        i = self._index(name)
        return np.linspace(self.lo[i], self.hi[i], self.hist.shape[-1] + 1)

    def histogram(self, name: str, index: int = -1) -> tuple[np.ndarray, np.ndarray]:
        """(counts, edges) of ``name`` at saved time ``index``."""
        return self.hist[index, self._index(name)], self.edges(name)

    def quantile(self, name: str, q: float | np.ndarray, index: int = -1) -> np.ndarray:
        """Quantiles of ``name`` at saved time ``index`` from the histogram
        (linear inside a bin: accurate to a bin width, 1/60 for correlations)."""
        counts, edges = self.histogram(name, index)
        c = np.concatenate([[0.0], np.cumsum(counts, dtype=np.float64)])
        if c[-1] == 0:
            return np.full(np.shape(q), np.nan)
        lo, hi = self.min(name)[index], self.max(name)[index]
        x = np.interp(np.asarray(q, dtype=np.float64) * c[-1], c, edges)
        return np.clip(x, lo, hi)


@dataclass
class Result:
    """Covariances of many independent samples (or SDE paths) at saved times.

    Built by :func:`simulate` and :func:`solve_sde`; each parameter is kept as the
    attribute of the same name.

    Parameters
    ----------
    V : (samples, saved, m, m) float64 token covariances. Entries after a sample
        blew up (see ``exploded_at``) are NaN; ``finite()`` drops those samples.
    t : (saved,) times: layer / width for networks, SDE time for the SDE.
    exploded_at : (samples,) time at which a sample crossed the blow-up threshold
        (or became non-finite); +inf for samples that stayed finite.
    X : (samples, m, n) final tokens when requested, else None.
    method : "explicit", "law", "exact" or an SDE scheme name.
    info : extra numbers (e.g. the count of PSD projections of the SDE).
    summary : SDE statistics accumulated without storing paths
        (``solve_sde(save="summary")``; V then has no samples), else None.
    kernel : what ran, as the core's driver reports it: ``"generic"`` (the
        per-sample or per-path Eigen code), the instruction set of a batched SIMD
        kernel (``"avx512"``, ``"avx2"``, ``"scalar"``: the exact chain and the SDE,
        one sample per lane) or of the normal generator inside the weight products
        (the explicit network and the law sampler), or ``"cuda"``.  The per-sample
        exact chain at m >= 33 also reports in ``info["gemm"]`` the instruction set of
        its large products (Eigen's GEMM built for ``"avx512"``, ``"avx2"`` or
        ``"scalar"``, chosen for the CPU; ``SHAPED_TRANSFORMER_KERNEL=scalar`` forces
        the portable one): the builds agree to rounding, not bit for bit.
    """

    V: np.ndarray
    t: np.ndarray
    exploded_at: np.ndarray
    method: str
    X: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)
    summary: SdeSummary | None = None
    kernel: str = ""

    @property
    def samples(self) -> int:
        if self.summary is not None:
            return self.summary.paths
        return int(self.V.shape[0])

    @property
    def m(self) -> int:
        return int(self.V.shape[-1])

    @property
    def exploded(self) -> np.ndarray:
        """(samples,) bool: which samples blew up."""
        return np.isfinite(self.exploded_at)

    @property
    def rho(self) -> np.ndarray:
        """Correlations, same shape as V."""
        return correlations(self.V)

    def finite(self) -> Result:
        """The samples that never blew up."""
        if self.summary is not None:
            raise ValueError("finite() needs stored paths; this Result holds a summary (save='summary')")
        keep = ~self.exploded
        return Result(
            V=self.V[keep],
            t=self.t,
            exploded_at=self.exploded_at[keep],
            method=self.method,
            X=None if self.X is None else self.X[keep],
            info=dict(self.info),
            kernel=self.kernel,
        )

    def rho_pairs(self, index: int = -1) -> np.ndarray:
        """Off-diagonal correlations (a < b) at one saved time, pooled over the
        samples that are finite there.

        Parameters
        ----------
        index : int, default -1
            The saved time (an index into ``t``; the last by default).

        Returns
        -------
        numpy.ndarray
            A 1-d array of the correlations, for distribution plots.
        """
        # Correlations of the one saved time asked for, not of every saved time.
        rho = correlations(self.V[:, index])
        a, b = np.triu_indices(self.m, k=1)
        vals = rho[:, a, b]
        ok = np.all(np.isfinite(vals), axis=1)
        return vals[ok].ravel()

    def __repr__(self) -> str:
        return (
            f"Result(method={self.method!r}, samples={self.samples}, m={self.m}, saved={len(self.t)}, "
            f"t=[{self.t[0]:.4g}..{self.t[-1]:.4g}], exploded={int(self.exploded.sum())})"
        )
