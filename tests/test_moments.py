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
from shaped_transformer.sde import sde_drift

from _reduced_numpy import attention_step, K_n, mlp_mean, noise_covariance

FULL = os.environ.get("SHAPED_TRANSFORMER_FULL", "") not in ("", "0")
Z_MAX = 4.5


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
    b = sde_drift(net, V)
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
    S = noise_covariance(net, V).reshape(m, m, m, m)[iu[0], iu[1]][:, iu[0], iu[1]]
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
    b = sde_drift(net, V)
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
    b = sde_drift(st.Network([st.ShapedMLP(c_plus=cp, c_minus=cm, gamma=gamma)]), V)
    d = np.sqrt(np.diag(V))
    r = V / np.outer(d, d)
    expect = gamma**2 * (cp - cm) ** 2 / (2 * np.pi) * (np.sqrt(np.clip(1 - r**2, 0, None)) - r * np.arccos(np.clip(r, -1, 1))) * np.outer(d, d)
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
