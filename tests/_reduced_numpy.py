"""An independent NumPy implementation of one shaped attention block in the reduced
m x m form (docs/model.md section 4), vectorised over samples, that also returns the
attention matrices.  The moment tests need them for the control variates of
section 7.1 (E[V' | A] and the mean-zero first-order term); the C++ chain only
returns V'.  Its law is tied to the C++ chain and the explicit network by
tests/test_exact.py.

Two forms of the multi-head value part are here (docs/model.md section 4): the
cross-head Wishart drawn as an Hm x Hm matrix (``value_mix(..., reduced=False)``,
O((H m)^3), what the C++ core did before) and the m x m form that uses only
B R B^T ~ Wishart_m(n - m, B B^T), B = [A_1 L, ..., A_H L] (``reduced=True``,
O(H m^3), what it does now: wishart_quad.hpp), and between them the core's step of
2026-12-05 (``per_head_p=True``: the m x m Wishart, but P = sum_h A_h L Z_h drawn head
by head).  tests/test_multihead_identity.py checks that they agree in law;
:func:`attention_block` is the batched reference of the m x m step for the core.
"""

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


def psd_root(V: np.ndarray) -> np.ndarray:
    """A root L with L L^T = V of covariances (..., m, m): Cholesky, or the symmetric
    root of the clipped spectrum where V is singular (as the core's psd_root)."""
    V = np.asarray(V, dtype=np.float64)
    try:
        return np.linalg.cholesky(V)
    except np.linalg.LinAlgError:
        w, Q = np.linalg.eigh(0.5 * (V + np.swapaxes(V, -1, -2)))
        return (Q * np.sqrt(np.clip(w, 0.0, None))[..., None, :]) @ np.swapaxes(Q, -1, -2)


def attention_matrices(
    rng,
    L,
    *,
    n: int,
    heads: int,
    tau0: float,
    size: int,
    n_k: int | None = None,
    alpha: float = 1.0,
    beta: float = 1.0,
    causal: bool = False,
):
    """The heads' logits Y_h = L M_h L^T / tau and attention matrices
    A_h = alpha I + beta (Softmax(Y_h) - C), each (size, heads, m, m); L is one root
    (m, m) or one per sample (size, m, m).  Heads are drawn in order, one
    key product each (the draws of :func:`attention_step`)."""
    m = L.shape[-1]
    n_k = n if n_k is None else n_k
    tau = tau0 * np.sqrt(n * n_k)
    if causal:
        mask = np.tril(np.ones((m, m), dtype=bool))
        C = np.tril(np.ones((m, m))) / np.arange(1, m + 1)[:, None]
    else:
        mask, C = None, np.full((m, m), 1.0 / m)
    Ys, As = [], []
    for _ in range(heads):
        Y = L @ key_products(rng, m, n_k, size) @ np.swapaxes(L, -1, -2) / tau
        S = softmax(np.where(mask, Y, -np.inf)) if causal else softmax(Y)
        Ys.append(Y)
        As.append(alpha * np.eye(m) + beta * (S - C))
    return np.stack(Ys, axis=1), np.stack(As, axis=1)


def value_mix(rng, V, L, A, *, n: int, gamma: float, reduced: bool, per_head_p: bool = False) -> np.ndarray:
    """The value part of a multi-head attention block given its attention matrices
    A (size, H, m, m): V' = lam^2 V + (lam gamma / sqrt(H n)) (L (B Z)^T + B Z L^T)
    + (gamma^2 / (H n)) (B Z (B Z)^T + B R B^T), B = [A_1 L, ..., A_H L] (m x Hm),
    Z (Hm x m) standard Gaussian, R ~ Wishart_{Hm}(n - m, I) (docs/model.md section 4).

    ``reduced=False`` draws Z and R as they are written (O((H m)^3)); ``reduced=True``
    uses that only B Z and B R B^T enter: with K K^T = B B^T / H, B Z / sqrt(H) has
    the law of K Z' (Z' m x m) and B R B^T / H that of K R' K^T,
    R' ~ Wishart_m(n - m, I), so V' is the one-head formula with A L replaced by K
    (O(H m^3)).  ``per_head_p`` (with ``reduced``): B Z drawn head by head, as
    sum_h A_h L Z_h (H products), the rest as ``reduced``.  V and L are (m, m) or
    (size, m, m)."""
    size, heads, m = A.shape[0], A.shape[1], A.shape[-1]
    lam = np.sqrt(1 - gamma**2)
    VT = np.swapaxes
    C = np.concatenate([A[:, h] @ L for h in range(heads)], axis=-1)  # B, (size, m, H m)
    if reduced:
        K = psd_root(C @ VT(C, 1, 2) / heads)
        if per_head_p:
            W = C @ rng.standard_normal((size, heads * m, m)) / np.sqrt(heads)
        else:
            W = K @ rng.standard_normal((size, m, m))  # the law of B Z / sqrt(H)
        KB = K @ _bartlett(rng, n - m, m, size)
        noise = W @ VT(W, 1, 2) + KB @ VT(KB, 1, 2)
    else:
        W = C @ rng.standard_normal((size, heads * m, m)) / np.sqrt(heads)
        CB = C @ _bartlett(rng, n - m, heads * m, size)
        noise = W @ VT(W, 1, 2) + CB @ VT(CB, 1, 2) / heads
    cross = L @ VT(W, 1, 2)
    return lam**2 * V + lam * gamma / np.sqrt(n) * (cross + VT(cross, 1, 2)) + gamma**2 / n * noise


def attention_step(
    rng, V, *, n: int, heads: int, tau0: float, gamma: float, size: int, n_k: int | None = None, reduced: bool = False
):
    """One shaped attention block from V for `size` samples.

    Returns (V', cond_mean, first_order): V' the sampled covariances,
    cond_mean = E[V' | A_1..A_H] = lam^2 V + gamma^2/H sum_h A_h V A_h^T and
    first_order = gamma^2/H sum_h (S1_h V + V S1_h^T), S1_h = (1/m)(Y_h/tau) P,
    whose mean is exactly 0.  ``reduced`` picks the form of the value part
    (:func:`value_mix`).
    """
    m = V.shape[0]
    lam = np.sqrt(1 - gamma**2)
    L = np.linalg.cholesky(V)
    P = np.eye(m) - 1.0 / m
    Y, A = attention_matrices(rng, L, n=n, heads=heads, tau0=tau0, size=size, n_k=n_k)
    VT = np.swapaxes
    cond = lam**2 * V + gamma**2 / heads * np.sum(A @ V @ VT(A, -1, -2), axis=1)
    S1 = Y @ P / m
    first = gamma**2 / heads * np.sum(S1 @ V + V @ VT(S1, -1, -2), axis=1)
    return value_mix(rng, V, L, A, n=n, gamma=gamma, reduced=reduced), cond, first


def attention_block(
    rng,
    V,
    *,
    n: int,
    heads: int,
    tau0: float,
    gamma: float,
    n_k: int | None = None,
    alpha: float = 1.0,
    beta: float = 1.0,
    causal: bool = False,
    reduced: bool = True,
    per_head_p: bool = False,
) -> np.ndarray:
    """One shaped attention block applied to a batch of covariances V (size, m, m):
    the exact chain's step (docs/model.md section 4), by default with the m x m
    value part (O(H m^3) per sample; ``per_head_p``: :func:`value_mix`).  The
    reference for the core's multi-head step."""
    V = np.asarray(V, dtype=np.float64)
    L = psd_root(V)
    _, A = attention_matrices(
        rng, L, n=n, heads=heads, tau0=tau0, size=V.shape[0], n_k=n_k, alpha=alpha, beta=beta, causal=causal
    )
    out = value_mix(rng, V, L, A, n=n, gamma=gamma, reduced=reduced, per_head_p=per_head_p)
    return 0.5 * (out + np.swapaxes(out, 1, 2))


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
