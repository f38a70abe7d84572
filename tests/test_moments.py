"""docs/model.md 7.1 and 7.5: one-step moments of the blocks converge to the SDE's drift
b(V) and diffusion Sigma(V), with the control variates of section 7.1, and the
exactly known MLP mean.

Drift (attention): the estimator n (E[V'|A] - V - first-order term) has O(1)
variance; its mean is compared with b(V) within Z_MAX standard errors and within a
relative error.  Diffusion: n Cov(V' - V) from the exact chain (tied to the explicit
network by test_exact.py) against Sigma(V) of the structured noise; the relative
Frobenius error has a statistical floor ~ sqrt(2/N) and a finite-width bias that
shrinks with n."""

from __future__ import annotations

import os

import numpy as np
import pytest

import shaped_transformer as st
from _mutations import model as _model
from _reduced_numpy import K_n, attention_step, mlp_mean, noise_covariance
from shaped_transformer.sde import sde_drift, sde_noise

FULL = os.environ.get("SHAPED_TRANSFORMER_FULL", "") not in ("", "0")
Z_MAX = 4.5


def _chain(net):
    """The exact chain is a model side only for core mutations (cross_heads)."""
    return net


def _V(m=4):
    V = st.inputs.equicorrelated(m, 0.3)
    V[0, 0] = 1.6
    V[1, 2] = V[2, 1] = -0.1
    return V


@pytest.mark.parametrize("heads", [1, 4])
def test_attention_drift(heads):
    V = _V()
    tau0, gamma = 0.8, 0.6
    net = st.Network([st.ShapedAttention(heads=heads, tau0=tau0, gamma=gamma)])
    b = sde_drift(_model(net), V)
    N = 100000 if FULL else 20000
    rng = np.random.default_rng(heads)
    errs = []
    for n in (16, 256, 4096):
        _, cond, first = attention_step(rng, V, n=n, heads=heads, tau0=tau0, gamma=gamma, size=N)
        est = n * (cond - V - first)
        mu, se = est.mean(0), est.std(0) / np.sqrt(N)
        errs.append(np.abs(mu - b).max() / np.abs(b).max())
        if n >= 256:
            assert np.max(np.abs(mu - b) / se) < Z_MAX, (n, mu, b)
    # at n = 16 the O(n^{-1/2}) bias is visible; at 4096 only the statistical floor
    # (se / max|b| ~ 1% at N = 20000) remains
    assert errs[-1] < 0.03
    assert errs[0] > errs[-1]


def _diffusion_error(net, V, n, N, seed):
    m = V.shape[0]
    iu = np.triu_indices(m)
    S = noise_covariance(_model(net), V).reshape(m, m, m, m)[iu[0], iu[1]][:, iu[0], iu[1]]
    r = st.simulate(net, V0=V, width=n, depth=1, samples=N, method="exact", seed=seed)
    D = np.sqrt(n) * (r.V[:, 1] - V)[:, iu[0], iu[1]]
    C = np.cov(D.T)
    return np.linalg.norm(C - S) / np.linalg.norm(S)


NETS = {
    "attention_H1": lambda: st.Network([st.ShapedAttention(heads=1, tau0=0.8, gamma=0.6)]),
    "attention_H4": lambda: st.Network([st.ShapedAttention(heads=4, tau0=0.8, gamma=0.6)]),
    "mlp": lambda: st.Network([st.ShapedMLP(c_plus=0.5, c_minus=-1.0, gamma=0.6)]),
    "full": lambda: st.shaped_transformer(heads=2, tau0=0.8, gamma=0.6, c_plus=0.5, c_minus=-1.0),
}


@pytest.mark.parametrize("name", list(NETS))
def test_diffusion(name):
    net = NETS[name]()
    V = _V()
    N = 100000 if FULL else 15000
    errs = [_diffusion_error(net, V, n, N, seed=1) for n in (8, 64, 512)]
    floor = 3.0 * np.sqrt(2.0 / N) * 2  # ~ sqrt(2/N) per entry, a factor for the max over entries
    assert errs[-1] < max(floor, 0.03), errs
    assert errs[0] > errs[-1], errs


def test_full_block_drift():
    """Attention then MLP: n E[V'' - V] -> b_att + b_mlp.  Estimator: the attention
    control variate for V' - V plus n (E[V''|V'] - V'), with E[V''|V'] the exact MLP
    mean (mlp_mean), which has O(1) variance."""
    tau0, gamma, cp, cm = 0.8, 0.6, 1.0, -1.0
    net = st.shaped_transformer(heads=2, tau0=tau0, gamma=gamma, c_plus=cp, c_minus=cm)
    V = _V()
    b = sde_drift(_model(net), V)
    N = 100000 if FULL else 20000
    rng = np.random.default_rng(5)
    errs = []
    for n in (16, 1024):
        Vp, cond, first = attention_step(rng, V, n=n, heads=2, tau0=tau0, gamma=gamma, size=N)
        est = n * (cond - V - first) + n * (mlp_mean(Vp, n=n, c_plus=cp, c_minus=cm, gamma=gamma) - Vp)
        mu, se = est.mean(0), est.std(0) / np.sqrt(N)
        errs.append(np.abs(mu - b).max() / np.abs(b).max())
    assert np.max(np.abs(mu - b) / se) < Z_MAX
    assert errs[-1] < 0.05 and errs[0] > errs[-1], errs


def test_mlp_mean_exact_at_any_width():
    """E[V'|V] = lam^2 V + gamma^2 sqrt(V_aa V_bb) K_n(rho) at n = 8 and 64 (exact chain)."""
    V = _V()
    cp, cm, gamma = 1.5, -2.0, 0.8
    net = st.Network([st.ShapedMLP(c_plus=cp, c_minus=cm, gamma=gamma)])
    N = 200000 if FULL else 40000
    for n in (8, 64):
        Vn = st.simulate(net, V0=V, width=n, depth=1, samples=N, method="exact", seed=n).V[:, 1]
        z = (Vn.mean(0) - mlp_mean(V, n=n, c_plus=cp, c_minus=cm, gamma=gamma)) / (Vn.std(0) / np.sqrt(N))
        assert np.max(np.abs(z)) < Z_MAX, z


def test_mlp_drift_is_the_limit_of_K_n():
    """n (K_n(rho) - rho) -> nu(rho), with error O(n^{-1/2})."""
    cp, cm = 0.7, -1.3
    rho = np.linspace(-0.95, 0.99, 30)
    nu = (cp - cm) ** 2 / (2 * np.pi) * (np.sqrt(1 - rho**2) - rho * np.arccos(rho))
    errs = [np.abs(n * (K_n(rho, cp, cm, n) - rho) - nu).max() for n in (1e2, 1e4, 1e6)]
    assert errs[1] < errs[0] / 5 and errs[2] < errs[1] / 5
    assert errs[2] < 1e-2
    # and the C++ drift is that formula
    V = _V()
    gamma = 0.5
    b = sde_drift(_model(st.Network([st.ShapedMLP(c_plus=cp, c_minus=cm, gamma=gamma)])), V)
    d = np.sqrt(np.diag(V))
    r = V / np.outer(d, d)
    expect = (
        gamma**2
        * (cp - cm) ** 2
        / (2 * np.pi)
        * (np.sqrt(np.clip(1 - r**2, 0, None)) - r * np.arccos(np.clip(r, -1, 1)))
        * np.outer(d, d)
    )
    np.fill_diagonal(expect, 0)
    assert np.allclose(b, expect, atol=1e-12)


def test_known_limits_of_the_terms():
    """gamma = 0: no drift, no noise; tau0 -> inf: no softmax terms; c_+ = c_-: no MLP
    drift; m = 1: the attention drift vanishes (P = 0)."""
    V = _V()
    m = V.shape[0]
    z = np.random.default_rng(0).standard_normal(3 * m * m)
    full0 = st.shaped_transformer(gamma=0.0)
    assert np.allclose(sde_drift(full0, V), 0)
    assert np.allclose(st.sde.sde_noise(full0, V, z), 0)
    att_inf = st.Network([st.ShapedAttention(tau0=1e9, gamma=0.6)])
    assert np.abs(sde_drift(att_inf, V)).max() < 1e-15
    # noise: only the linear part, gamma sqrt(2 - gamma^2) (L dZ L^T + L dZ^T L^T)/sqrt(2)
    L = np.linalg.cholesky(V)
    dZ = z[: m * m].reshape(m, m)
    S = L @ dZ @ L.T
    lin = 0.6 * np.sqrt(2 - 0.36) / np.sqrt(2) * (S + S.T)
    assert np.allclose(st.sde.sde_noise(att_inf, V, z[: 2 * m * m]), lin, atol=1e-8)
    assert np.allclose(sde_drift(st.Network([st.ShapedMLP(c_plus=0.3, c_minus=0.3)]), V), 0)
    one = np.array([[2.0]])
    assert np.allclose(sde_drift(st.Network([st.ShapedAttention(gamma=0.7)]), one), 0)


def test_noise_covariance_is_sigma_lin_for_the_mlp():
    """The structured draw (L dZ L^T + L dZ^T L^T)/sqrt(2) has covariance Sigma_lin
    exactly: so the MLP noise covariance is 2 gamma^2 Sigma_lin."""
    V = _V()
    m = V.shape[0]
    gamma = 0.6
    S = noise_covariance(st.Network([st.ShapedMLP(gamma=gamma)]), V).reshape(m, m, m, m)
    lin = np.einsum("ac,bd->abcd", V, V) + np.einsum("ad,bc->abcd", V, V)
    assert np.allclose(S, 2 * gamma**2 * lin)


# ---- the two parts of the attention noise, each to a few percent ------------------


def _noise_parts(net, V):
    """Sigma_lin part and Sigma_soft part of the attention noise covariance of the SDE
    (restricted to the upper triangle, incl. the diagonal): the noise is linear in
    (dZ, dXi), so each part is J J^T over its own columns."""
    m = V.shape[0]
    iu = np.triu_indices(m)
    J = np.stack([sde_noise(net, V, e)[iu] for e in np.eye(2 * m * m)], axis=1)
    lin, soft = J[:, : m * m], J[:, m * m :]
    return lin @ lin.T, soft @ soft.T


def _trace_ratio(D, S):
    """tr Cov(D) / tr S and its standard error (from the per-sample squared norms)."""
    q = np.sum((D - D.mean(0)) ** 2, axis=1)
    return q.mean() / np.trace(S), q.std() / np.sqrt(len(q)) / np.trace(S)


@pytest.mark.parametrize("heads", [1, 4])
def test_softmax_noise_and_its_head_damping(heads):
    """The softmax part of the attention noise: gamma^4 / H Sigma_soft.

    Common random numbers isolate it: the exact chain at tau0 and at tau0 = 1e9
    (A = I) with the same seed shares the value weights, so
    sqrt(n) (V'(tau0) - V'(inf)) -> the softmax noise, whose covariance is compared
    with the dXi part of the SDE noise (tr Cov / tr Sigma_soft within 4.5 standard
    errors and a relative Frobenius error).  n = 2^16 keeps the finite-width bias
    below the statistical floor (the chain's cost does not depend on n).  Standard
    error of the trace ratio 0.45% at N = 20000 (CI; measured ratios 0.996 and 1.000, Frobenius errors 0.015-0.019), 0.2% at 100000: a 5% error in
    Sigma_soft (or the 1/sqrt(H) damping off, a factor 4) fails."""
    tau0, gamma = 0.8, 0.6
    V = _V()
    m = V.shape[0]
    n = 2**16
    N = 100000 if FULL else 20000
    iu = np.triu_indices(m)
    att = st.Network([st.ShapedAttention(heads=heads, tau0=tau0, gamma=gamma)])
    flat = st.Network([st.ShapedAttention(heads=heads, tau0=1e9, gamma=gamma)])
    kw = dict(V0=V, width=n, depth=1, samples=N, method="exact", seed=40 + heads)
    a = st.simulate(_chain(att), **kw).V[:, 1]
    b = st.simulate(_chain(flat), **kw).V[:, 1]
    D = np.sqrt(n) * (a - b)[:, iu[0], iu[1]]
    _, S = _noise_parts(_model(att), V)
    k, se = _trace_ratio(D, S)
    rel = np.linalg.norm(np.cov(D.T) - S) / np.linalg.norm(S)
    print(f"H={heads}: tr Cov / tr Sigma_soft = {k:.4f} +- {se:.4f}; relative Frobenius error {rel:.4f}")
    assert abs(k - 1) < Z_MAX * se, (k, se)
    assert rel < 0.06, rel


@pytest.mark.parametrize("heads", [1, 4])
def test_linear_noise_exact_at_any_width(heads):
    """With A = I (tau0 = 1e9) the chain's n Cov(V' - V) is
    (2 lambda^2 gamma^2 + gamma^4) Sigma_lin = gamma^2 (2 - gamma^2) Sigma_lin exactly at
    any n, for any H -- because the heads share the value weights outside the span of
    X (the cross-head terms of the chain).  Dropping them would give
    2 lambda^2 gamma^2 + gamma^4 / H (-16% at H = 4)."""
    tau0, gamma = 1e9, 0.6
    V = _V()
    m = V.shape[0]
    n = 64
    N = 100000 if FULL else 20000
    iu = np.triu_indices(m)
    net = st.Network([st.ShapedAttention(heads=heads, tau0=tau0, gamma=gamma)])
    a = st.simulate(_chain(net), V0=V, width=n, depth=1, samples=N, method="exact", seed=50 + heads).V[:, 1]
    D = np.sqrt(n) * (a - V)[:, iu[0], iu[1]]
    S, _ = _noise_parts(_model(net), V)
    k, se = _trace_ratio(D, S)
    print(f"H={heads}: tr Cov / tr (gamma^2 (2 - gamma^2) Sigma_lin) = {k:.4f} +- {se:.4f}")
    assert abs(k - 1) < Z_MAX * se, (k, se)
