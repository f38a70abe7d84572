"""An independent NumPy implementation of one shaped attention block in the reduced
m x m form (docs/model.md section 4), vectorised over samples, that also returns the
attention matrices.  The moment tests need them for the control variates of
section 7.1 (E[V' | A] and the mean-zero first-order term); the C++ chain only
returns V'.  Its law is tied to the C++ chain and the explicit network by
tests/test_exact.py."""

from __future__ import annotations

import numpy as np


def _bartlett(rng, df: float, p: int, size: int) -> np.ndarray:
    """(size, p, p) lower-triangular B with B B^T ~ Wishart_p(df, I)."""
    B = np.zeros((size, p, p))
    if df <= p - 1:  # singular Wishart: G G^T with G p x df
        B[:, :, : int(df)] = rng.standard_normal((size, p, int(df)))
        return B
    i, j = np.tril_indices(p, -1)
    B[:, i, j] = rng.standard_normal((size, i.size))
    for k in range(p):
        B[:, k, k] = np.sqrt(rng.chisquare(df - k, size))
    return B


def key_products(rng, m: int, n_k: int, size: int) -> np.ndarray:
    """(size, m, m) samples of M = G_q G_k^T, G_q, G_k m x n_k standard Gaussian."""
    return _bartlett(rng, n_k, m, size) @ rng.standard_normal((size, m, m))


def softmax(Y: np.ndarray) -> np.ndarray:
    Y = Y - Y.max(-1, keepdims=True)
    E = np.exp(Y)
    return E / E.sum(-1, keepdims=True)


def attention_step(rng, V, *, n: int, heads: int, tau0: float, gamma: float, size: int, n_k: int | None = None):
    """One shaped attention block from V for `size` samples.

    Returns (V', cond_mean, first_order): V' the sampled covariances,
    cond_mean = E[V' | A_1..A_H] = lam^2 V + gamma^2/H sum_h A_h V A_h^T and
    first_order = gamma^2/H sum_h (S1_h V + V S1_h^T), S1_h = (1/m)(Y_h/tau) P,
    whose mean is exactly 0.
    """
    m = V.shape[0]
    n_k = n if n_k is None else n_k
    lam = np.sqrt(1 - gamma**2)
    L = np.linalg.cholesky(V)
    tau = tau0 * np.sqrt(n * n_k)
    P = np.eye(m) - 1.0 / m
    cond = lam**2 * V + np.zeros((size, m, m))
    first = np.zeros((size, m, m))
    C = np.zeros((size, m, heads * m))
    for h in range(heads):
        Y = L @ key_products(rng, m, n_k, size) @ L.T / tau
        A = np.eye(m) + softmax(Y) - 1.0 / m
        cond += gamma**2 / heads * A @ V @ np.swapaxes(A, 1, 2)
        S1 = Y @ P / m
        first += gamma**2 / heads * (S1 @ V + V @ np.swapaxes(S1, 1, 2))
        C[:, :, h * m : (h + 1) * m] = A @ L
    Z = rng.standard_normal((size, heads * m, m))
    Pm = C @ Z
    B = _bartlett(rng, n - m, heads * m, size)
    CB = C @ B
    cross = L @ np.swapaxes(Pm, 1, 2)
    Vn = (
        lam**2 * V
        + lam * gamma / np.sqrt(heads * n) * (cross + np.swapaxes(cross, 1, 2))
        + gamma**2 / (heads * n) * (Pm @ np.swapaxes(Pm, 1, 2) + CB @ np.swapaxes(CB, 1, 2))
    )
    return Vn, cond, first


def K_n(rho, c_plus: float, c_minus: float, n: float):
    """Exact MLP kernel: E[c phi_s(u) phi_s(v)] for unit Gaussians with correlation rho."""
    sp, sm = 1 + c_plus / np.sqrt(n), 1 + c_minus / np.sqrt(n)
    rho = np.clip(rho, -1.0, 1.0)
    J = (np.sqrt(1 - rho**2) + (np.pi - np.arccos(rho)) * rho) / (2 * np.pi)
    return ((sp - sm) ** 2 * J + sp * sm * rho) * 2 / (sp**2 + sm**2)


def mlp_mean(V, *, n: int, c_plus: float, c_minus: float, gamma: float):
    """E[V' | V] of one shaped MLP block (exact at any n), V of shape (..., m, m)."""
    d = np.sqrt(np.clip(np.diagonal(V, axis1=-2, axis2=-1), 0, None))
    s = d[..., :, None] * d[..., None, :]
    rho = np.where(s > 0, V / np.where(s > 0, s, 1), 0)
    Kv = s * K_n(rho, c_plus, c_minus, n)
    return (1 - gamma**2) * V + gamma**2 * Kv


def noise_covariance(network, V) -> np.ndarray:
    """Sigma(V) of the structured noise, (m*m, m*m), from the linear map dW -> noise."""
    from shaped_transformer.sde import sde_noise

    m = V.shape[0]
    k = sum(2 * m * m if b.kind == "shaped_attention" else m * m for b in network)
    J = np.stack([sde_noise(network, V, e).ravel() for e in np.eye(k)], axis=1)
    return J @ J.T
