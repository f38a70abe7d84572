"""Covariance roots and the tokens with a given covariance, for covariances already
checked: shaped_transformer.inputs checks its arguments and calls these, and
simulate() hands :func:`tokens` to the core, which calls it once it has checked V0
(so that V0 is checked once, and the tokens are the NumPy ones they always were)."""

from __future__ import annotations

import numpy as np

__all__ = ["root", "tokens"]


def root(V: np.ndarray) -> np.ndarray:
    """L with L L^T = V (symmetric PSD float64): Cholesky when V is positive
    definite, else the symmetric square root (V may be singular)."""
    try:
        return np.linalg.cholesky(V)
    except np.linalg.LinAlgError:
        w, Q = np.linalg.eigh(V)
        return (Q * np.sqrt(np.clip(w, 0.0, None))) @ Q.T


def tokens(V0: np.ndarray, width: int) -> np.ndarray:
    """Tokens X0 (m x width) with X0 X0^T / width = V0: X0 = root(V0) sqrt(n) [I, 0]."""
    m = V0.shape[0]
    X = np.zeros((m, width))
    X[:, :m] = root(V0) * np.sqrt(width)
    return X
