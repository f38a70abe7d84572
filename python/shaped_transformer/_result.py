"""The one result type shared by the explicit network, the exact chain and the SDE."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Result", "correlations"]


def correlations(V: np.ndarray) -> np.ndarray:
    """rho_ab = V_ab / sqrt(V_aa V_bb) for covariances of shape (..., m, m).

    Tokens with zero variance get correlation 0 with the others (and 1 with
    themselves) instead of NaN.
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


@dataclass
class Result:
    """Covariances of many independent samples (or SDE paths) at saved times.

    Attributes
    ----------
    V : (samples, saved, m, m) float64 token covariances. Entries after a sample
        blew up (see ``exploded_at``) are NaN; ``finite()`` drops those samples.
    t : (saved,) times: layer / width for networks, SDE time for the SDE.
    exploded_at : (samples,) time at which a sample crossed the blow-up threshold
        (or became non-finite); +inf for samples that stayed finite.
    X : (samples, m, n) final tokens when requested, else None.
    method : "explicit", "law", "exact" or an SDE scheme name.
    info : extra numbers (e.g. the count of PSD projections of the SDE).
    """

    V: np.ndarray
    t: np.ndarray
    exploded_at: np.ndarray
    method: str
    X: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def samples(self) -> int:
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

    def finite(self) -> "Result":
        """The samples that never blew up."""
        keep = ~self.exploded
        return Result(
            V=self.V[keep],
            t=self.t,
            exploded_at=self.exploded_at[keep],
            method=self.method,
            X=None if self.X is None else self.X[keep],
            info=dict(self.info),
        )

    def rho_pairs(self, index: int = -1) -> np.ndarray:
        """Off-diagonal correlations (a < b) at saved time ``index``, pooled over
        the samples that are finite there: a 1-d array for distribution plots."""
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
