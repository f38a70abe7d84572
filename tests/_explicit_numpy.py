"""A tiny, independent NumPy explicit network (Gaussian weights, docs/model.md sections
1-2), vectorised over samples, for checking the exact chain at small widths."""

from __future__ import annotations

import numpy as np


def _softmax(Y, mask=None):
    if mask is not None:
        Y = np.where(mask, Y, -np.inf)
    Y = Y - Y.max(-1, keepdims=True)
    E = np.exp(Y)
    return E / E.sum(-1, keepdims=True)


def _rms(X):
    return X / np.sqrt(np.mean(X**2, axis=-1, keepdims=True))


def _normalize(X, norm):
    """Per-token RMS norm, or LayerNorm (centre each token over its features first);
    no gain or bias (1 and 0 at initialization)."""
    if norm in ("pre_layer", "post_layer"):
        X = X - X.mean(-1, keepdims=True)
    return _rms(X)


def block(rng, X, b, norm=None):
    """One block `b` (a shaped_transformer Block, or any object with its attributes)
    applied to tokens X (N, m, n); ``norm`` overrides ``b.norm`` (default "none")."""
    N, m, n = X.shape
    g, lam = b.gamma, b.lam
    norm = getattr(b, "norm", "none") if norm is None else norm
    pre, post = norm in ("pre_rms", "pre_layer"), norm in ("post_rms", "post_layer")
    Xin = _normalize(X, norm) if pre else X
    if b.kind in ("shaped_attention", "standard_attention"):
        nk = b.key_dim or n
        acc = 0.0
        for _ in range(b.heads):
            WQ = rng.standard_normal((N, n, nk))
            WK = rng.standard_normal((N, n, nk))
            Y = (Xin @ WQ / np.sqrt(n)) @ np.swapaxes(Xin @ WK / np.sqrt(n), 1, 2)
            if b.kind == "standard_attention":
                A = _softmax(Y / np.sqrt(nk))
            else:
                tau = b.tau0 * np.sqrt(n * nk)
                if b.causal:
                    mask = np.tril(np.ones((m, m), bool))
                    C = np.tril(np.ones((m, m))) / np.arange(1, m + 1)[:, None]
                else:
                    mask, C = None, np.full((m, m), 1.0 / m)
                A = b.alpha * np.eye(m) + b.beta * _softmax(Y / tau, mask) - b.beta * C
            WV = rng.standard_normal((N, n, n))
            acc = acc + A @ Xin @ WV / np.sqrt(n)
        Xn = lam * X + g / np.sqrt(b.heads) * acc
        return _normalize(Xn, norm) if post else Xn
    W1 = rng.standard_normal((N, n, n))
    W2 = rng.standard_normal((N, n, n))
    K = Xin @ W1 / np.sqrt(n)
    if b.kind == "shaped_mlp":
        sp, sm = 1 + b.c_plus / np.sqrt(n), 1 + b.c_minus / np.sqrt(n)
        F = np.sqrt(2 / (sp**2 + sm**2)) * np.where(K > 0, sp * K, sm * K)
    else:
        F = np.sqrt(2.0) * np.maximum(K, 0)
    Xn = lam * X + g * F @ W2 / np.sqrt(n)
    return _normalize(Xn, norm) if post else Xn


def run(rng, net, X0, depth, samples, batch=500, norm=None, return_X=False):
    """V after `depth` layers, (samples, m, m); with ``return_X`` also the tokens
    (samples, m, n).  ``norm`` overrides every block's."""
    out, xs = [], []
    for s in range(0, samples, batch):
        N = min(batch, samples - s)
        X = np.broadcast_to(X0, (N,) + X0.shape).copy()
        for _ in range(depth):
            for b in net:
                X = block(rng, X, b, norm)
        out.append(X @ np.swapaxes(X, 1, 2) / X0.shape[1])
        xs.append(X)
    return (np.concatenate(out), np.concatenate(xs)) if return_X else np.concatenate(out)
