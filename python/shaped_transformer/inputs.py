"""Ready-made inputs: target covariances V0 and token matrices X0 with X0 X0^T / n = V0."""

from __future__ import annotations

import numpy as np

from ._roots import root, tokens
from ._validate import check_int, check_number, check_square_psd

__all__ = ["equicorrelated", "covariance_root", "tokens_from_covariance", "covariance"]


def equicorrelated(m: int, rho: float, *, scale: float = 1.0) -> np.ndarray:
    """The m x m covariance with diagonal ``scale`` and off-diagonal ``rho * scale``.

    Parameters
    ----------
    m : int
        The number of tokens (>= 1).
    rho : float
        The correlation of every pair, in [-1/(m-1), 1] (where the matrix is
        positive semi-definite).
    scale : float, default 1.0
        The variance of every token (> 0).

    Returns
    -------
    ndarray, shape (m, m)

    Raises
    ------
    ValueError
        For rho outside [-1/(m-1), 1], m < 1 or scale <= 0.

    Examples
    --------
    >>> equicorrelated(3, 0.2)
    array([[1. , 0.2, 0.2],
           [0.2, 1. , 0.2],
           [0.2, 0.2, 1. ]])
    """
    m = check_int("m", m, minimum=1)
    rho = check_number("rho", rho)
    scale = check_number("scale", scale, positive=True)
    lo = -1.0 / (m - 1) if m > 1 else -np.inf
    if not lo <= rho <= 1.0:
        raise ValueError(f"rho must lie in [{lo:.3g}, 1] for m={m} tokens, got {rho}")
    V = np.full((m, m), rho * scale)
    np.fill_diagonal(V, scale)
    return V


def covariance_root(V: np.ndarray) -> np.ndarray:
    """A matrix L with L L^T = V.

    Parameters
    ----------
    V : array_like, shape (m, m)
        A symmetric positive semi-definite matrix.

    Returns
    -------
    ndarray, shape (m, m)
        The Cholesky factor when V is positive definite, else the symmetric square
        root (V may be singular).

    Raises
    ------
    ValueError
        If V is not square, symmetric and positive semi-definite.
    """
    V = check_square_psd("V0", V)
    return root(V)


def tokens_from_covariance(V0: np.ndarray, width: int) -> np.ndarray:
    """Tokens X0 with X0 X0^T / width = V0 exactly.

    X0 = L0 Q with Q = sqrt(n) [I, 0] and L0 = :func:`covariance_root` (V0).  Any Q
    with Q Q^T = n I gives the same law of the network (the weights are rotation
    invariant), so the simplest one is used.

    Parameters
    ----------
    V0 : array_like, shape (m, m)
        The target covariance (symmetric positive semi-definite).
    width : int
        The width n (>= m).

    Returns
    -------
    ndarray, shape (m, width)

    Raises
    ------
    ValueError
        For a bad V0 or a width below m.

    Examples
    --------
    >>> X = tokens_from_covariance(equicorrelated(4, 0.3), 16)
    >>> bool(np.allclose(covariance(X), equicorrelated(4, 0.3)))
    True
    """
    V0 = check_square_psd("V0", V0)
    m = V0.shape[0]
    width = check_int("width", width, minimum=1)
    if width < m:
        raise ValueError(f"width must be >= the number of tokens m={m}, got {width}")
    return tokens(V0, width)


def covariance(X: np.ndarray) -> np.ndarray:
    """The token covariance V = X X^T / n.

    Parameters
    ----------
    X : array_like, shape (..., m, n)
        Tokens (rows) of width n.

    Returns
    -------
    ndarray, shape (..., m, m)
    """
    X = np.asarray(X, dtype=np.float64)
    return X @ np.swapaxes(X, -1, -2) / X.shape[-1]
