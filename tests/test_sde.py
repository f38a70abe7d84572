"""The covariance SDE integrator (docs/model.md sections 5-6): API, exactly known cases,
PSD remedies, blow-up reporting, seeding, and Euler's weak order."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from scipy import stats

import shaped_transformer as st
from _mutations import model
from shaped_transformer._core_loader import core
from shaped_transformer.sde import sde_drift
from shaped_transformer.simulate import BlowUpWarning

FULL = os.environ.get("SHAPED_TRANSFORMER_FULL", "") not in ("", "0")


def _V0(m=4):
    return st.inputs.equicorrelated(m, 0.3)


NET = st.shaped_transformer(heads=2, tau0=1.0, gamma=0.5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(T=0.0), "T"),
        (dict(T=1.0, dt=0.1, steps=10), "dt or steps"),
        (dict(T=1.0, dt=-1.0), "dt"),
        (dict(T=1.0, dt=2.0), "dt"),
        (dict(T=1.0, steps=0), "steps"),
        (dict(T=1.0, paths=0), "paths"),
        (dict(T=1.0, scheme="rk4"), "scheme"),
        (dict(T=1.0, psd="abs"), "psd"),
        (dict(T=1.0, save_at=[2.0]), "save_at"),
        (dict(T=1.0, save_at=[]), "save_at"),
        (dict(T=0.7, steps=10, scheme="exact_chain"), "dt"),
        (dict(T=1.0, steps=2, scheme="exact_chain"), "dt"),
        (dict(T=1.0, blowup=-1.0), "blowup"),
        (dict(T=1.0, seed=-1), "seed"),
        (dict(T=1.0, threads=-1), "threads"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kw = dict(kwargs)
        if "dt" not in kw and "steps" not in kw:
            kw["steps"] = 10
        kw.setdefault("paths", 2)
        st.solve_sde(NET, V0=_V0(), **kw)


def test_bad_network_and_V0():
    for net in (
        st.standard_transformer(),
        st.Network([st.StandardAttention()]),
        st.Network([st.ReluMLP()]),
        st.Network([st.ShapedAttention(concat=True, heads=2)]),
        st.Network([st.ShapedAttention(alpha=0.5)]),
    ):
        with pytest.raises(ValueError, match="network"):
            st.solve_sde(net, V0=_V0(), T=1.0, steps=10, paths=2)
    with pytest.raises(ValueError, match="V0"):
        st.solve_sde(NET, V0=-np.eye(3), T=1.0, steps=10, paths=2)
    with pytest.raises(ValueError, match="V0"):
        st.solve_sde(NET, V0=np.ones((2, 3)), T=1.0, steps=10, paths=2)


def test_result_shape_times_and_info():
    r = st.solve_sde(NET, V0=_V0(), T=0.5, steps=50, paths=7, save_at=[0.0, 0.25, 0.5], seed=1)
    assert r.V.shape == (7, 3, 4, 4)
    assert np.allclose(r.t, [0.0, 0.25, 0.5])
    assert np.array_equal(r.V[:, 0], np.broadcast_to(_V0(), (7, 4, 4)))
    assert r.info["projections"].shape == (7,)
    assert r.method == "euler"
    assert r.rho.shape == r.V.shape
    assert np.allclose(np.diagonal(r.rho, axis1=-2, axis2=-1), 1.0)
    d = st.solve_sde(NET, V0=_V0(), T=0.5, dt=0.01, paths=3)
    assert d.V.shape[1] == 51 and d.info["steps"] == 50


def test_seed_threads_and_path_independence():
    a = st.solve_sde(NET, V0=_V0(), T=0.5, steps=100, paths=6, seed=3, threads=1).V
    b = st.solve_sde(NET, V0=_V0(), T=0.5, steps=100, paths=6, seed=3, threads=2).V
    c = st.solve_sde(NET, V0=_V0(), T=0.5, steps=100, paths=2, seed=3).V
    d = st.solve_sde(NET, V0=_V0(), T=0.5, steps=100, paths=6, seed=4).V
    assert np.array_equal(a, b) and np.array_equal(a[:2], c) and not np.allclose(a, d)


def test_gamma_zero_keeps_V_constant():
    net = st.shaped_transformer(gamma=0.0)
    for scheme in ("euler", "tamed_euler", "exact_chain"):
        r = st.solve_sde(net, V0=_V0(), T=1.0, steps=50, paths=3, scheme=scheme)
        assert np.allclose(r.V, _V0(), atol=1e-12)


def test_m1_is_geometric_brownian_motion():
    """m = 1: the attention drift vanishes and dV = sigma V dB with
    sigma^2 = 2 gamma_a^2 (2 - gamma_a^2) + 4 gamma_m^2: E[V_T] = V_0 and
    E[V_T^2] = V_0^2 exp(sigma^2 T) (Euler: (1 + sigma^2 dt)^(T/dt))."""
    ga, gm = 0.3, 0.3
    net = st.Network([st.ShapedAttention(gamma=ga), st.ShapedMLP(gamma=gm)])
    s2 = 2 * ga**2 * (2 - ga**2) + 4 * gm**2
    P = 200000 if FULL else 50000
    r = st.solve_sde(model(net), V0=np.array([[1.5]]), T=1.0, steps=64, paths=P, seed=0, save_at=[1.0], blowup=1e30)
    v = r.V[:, -1, 0, 0]
    assert abs(v.mean() - 1.5) < 4.5 * v.std() / np.sqrt(P)
    exact = 1.5**2 * (1 + s2 / 64) ** 64
    assert abs(np.mean(v**2) - exact) < 4.5 * np.std(v**2) / np.sqrt(P)


def weak_error_fit(dts, est, se):
    """Weighted least squares of E_dt = E_0 + A dt^(1/2) + C dt + D dt^2 over the
    levels (weights 1 / se^2, the levels independent): returns the coefficients
    (E_0, A, C, D), their standard errors and the chi-square of the fit.

    A scheme of weak order 1 has A = 0 (its error is C dt + D dt^2 + ...); one of
    weak order 1/2 has an error led by A dt^(1/2), A != 0.  The D dt^2 term keeps
    the pre-asymptotic curvature of Euler's error out of A: without it, the
    curvature measured below (D / C ~ 0.7) biases A by ~2 standard errors at
    dt = 1/8..1/64."""
    h, y, s = (np.asarray(a, dtype=float) for a in (dts, est, se))
    X = np.stack([np.ones_like(h), np.sqrt(h), h, h * h], axis=1) / s[:, None]
    coef, *_ = np.linalg.lstsq(X, y / s, rcond=None)
    cov = np.linalg.inv(X.T @ X)
    chi2 = float(np.sum((X @ coef - y / s) ** 2))
    return coef, np.sqrt(np.diag(cov)), chi2


#: The weak-order ladder: steps per unit time and paths per level (~ steps^-1/2,
#: the allocation that minimises se(A) at a fixed number of solver steps).
WEAK_STEPS = (4, 8, 16, 32, 64)
WEAK_PATHS = 890_000 if not FULL else 3_560_000  # times steps^-1/2


@pytest.mark.slow
def test_euler_weak_order_is_one():
    """Euler-Maruyama has weak order 1, and the test tells it from order 1/2.

    The shaped MLP SDE at m = 2 (c_+ = 8, c_- = -8, gamma = 0.15, rho_0 = -0.5,
    T = 1): a strong drift of the correlation (gamma^2 (c_+ - c_-)^2 / (2 pi) = 0.92)
    under a small noise, so that the weak error of E[rho_T] is large against the
    spread of rho_T (C / sd ~ 2.8), and no step leaves the PSD cone (no projection at
    dt <= 1/8, 3 in 4e5 paths at dt = 1/4).  E[rho_T] at dt = 1/4 .. 1/64
    (independent levels, 444k .. 111k paths at CI size, 4x at full size) is fitted
    by E_0 + A dt^(1/2) + C dt + D dt^2 (weak_error_fit).  Asserts: the error is
    resolved (E_{1/4} - E_{1/64} > 4.5 standard errors), the fit describes the levels
    (chi-square below its 1e-5 quantile, 1 degree of freedom), and A = 0 within 4.5
    standard errors: no order-1/2 term.

    Power (docs/validation.md): se(A) = 0.020 at CI size, 0.010 at full size, so a
    term A dt^(1/2) with |A| >= 0.12 (CI; 0.06 full) fails with probability 0.95.
    Euler's own error is ~0.33 dt, so a scheme of weak order 1/2 whose error at
    dt = 1/4 is 60% of Euler's is caught.  Mutation order_half (gamma x
    (1 + sqrt(dt) / 4) at step dt) gives A = 0.23, z = 11; an integrator without the
    drift (no_integrator_drift; here the same as c_+ = c_-) leaves E[rho_T] flat in
    dt (difference 0.0006, z = 1.1), which the first assert refuses."""
    net = st.Network([st.ShapedMLP(c_plus=8.0, c_minus=-8.0, gamma=0.15)])
    V0 = st.inputs.equicorrelated(2, -0.5)
    dts, est, se = [], [], []
    for k in WEAK_STEPS:
        P = int(round(WEAK_PATHS / np.sqrt(k), -3))
        r = st.solve_sde(
            model(net, dt=1.0 / k), V0=V0, T=1.0, steps=k, paths=P, seed=1000 + k, save_at=[1.0], blowup=1e4
        )
        x = r.rho[:, -1, 0, 1]
        assert np.all(np.isfinite(x))
        dts.append(1.0 / k)
        est.append(x.mean())
        se.append(x.std() / np.sqrt(P))
    (E0, A, C, D), (_, sA, sC, _), chi2 = weak_error_fit(dts, est, se)
    print(
        f"Euler weak error of E[rho_T]: A = {A:+.4f} +- {sA:.4f} (dt^1/2), C = {C:.4f} +- {sC:.4f} (dt), "
        f"D = {D:+.3f}, E_0 = {E0:.5f}, chi2 = {chi2:.2f} (1 dof); levels {np.round(est, 5)}"
    )
    resolved = (est[0] - est[-1]) / np.hypot(se[0], se[-1])
    assert resolved > 4.5, (est, se)
    assert chi2 < stats.chi2.isf(1e-5, len(dts) - 4), chi2
    assert abs(A) < 4.5 * sA, (A, sA)


def test_psd_clip_counts_projections_and_keeps_psd():
    net = st.Network([st.ShapedAttention(tau0=0.5, gamma=0.9)])
    V0 = st.inputs.equicorrelated(6, 0.95)  # near-singular: coarse steps leave the cone
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BlowUpWarning)
        r = st.solve_sde(net, V0=V0, T=1.0, steps=20, paths=200, psd="clip", seed=0)
        n = st.solve_sde(net, V0=V0, T=1.0, steps=20, paths=200, psd="none", seed=0)
    assert r.info["projections"].sum() > 0
    V = r.finite().V
    assert np.linalg.eigvalsh(V.reshape(-1, 6, 6)).min() > -1e-9 * np.abs(V).max()
    Vn = n.finite().V
    assert np.linalg.eigvalsh(Vn.reshape(-1, 6, 6)).min() < 0  # without the remedy V leaves the cone
    assert n.info["projections"].sum() == 0


def test_exact_chain_scheme_is_the_exact_chain():
    """scheme='exact_chain' at dt = 1/n is simulate(method='exact') at width n: bit for
    bit the per-sample chain it runs, and to rounding the batched kernel simulate picks
    (fused multiply-adds in the lanes)."""
    r = st.solve_sde(NET, V0=_V0(), T=0.25, steps=16, paths=5, scheme="exact_chain", seed=2)
    e = st.simulate(NET, V0=_V0(), width=64, depth=16, samples=5, method="exact", seed=2)
    g = core.simulate_exact(NET.to_core(), _V0(), 64, 16, 5, 2, list(range(17)), 1, 1e4, None, "generic")[0]
    assert np.array_equal(r.V, g)
    assert np.max(np.abs(r.V - e.V)) < 1e-12 * np.abs(e.V).max()
    assert np.all(np.isfinite(r.V)) and r.info["projections"].sum() == 0


def test_blowup_is_reported_never_silent():
    net = st.Network([st.ShapedAttention(tau0=0.3, gamma=0.9)])
    for scheme in ("euler", "tamed_euler"):
        with pytest.warns(BlowUpWarning):
            r = st.solve_sde(net, V0=_V0(), T=1.0, steps=100, paths=100, scheme=scheme, blowup=5.0, seed=1)
        assert r.exploded.any()
        for p in range(r.samples):
            ok = r.t < r.exploded_at[p]
            assert np.all(np.isfinite(r.V[p, ok]))
            assert np.all(np.isnan(r.V[p, ~ok]))
        assert np.all(r.V[~r.exploded].diagonal(axis1=-2, axis2=-1) <= 5.0)


def test_tamed_euler_close_to_euler_for_small_dt():
    """Both schemes converge to the same SDE: at dt = 1/512 their E[rho_T] agree."""
    net = st.shaped_transformer(tau0=1.0, gamma=0.3)
    a = st.solve_sde(net, V0=_V0(), T=0.5, steps=256, paths=4000, seed=1, save_at=[0.5])
    b = st.solve_sde(net, V0=_V0(), T=0.5, steps=256, paths=4000, seed=1, save_at=[0.5], scheme="tamed_euler")
    ra, rb = a.rho[:, -1, 0, 1], b.rho[:, -1, 0, 1]
    # same noise, so the difference is the taming only: O(dt) per path
    assert np.abs(ra - rb).mean() < 0.01


# ---- the integrator's step against the drift and the noise (m = 2..8) -----------

_SDE_MATRIX_BASE = 0xC000  # matrix_id::kSdeBase (rng.hpp): block b's Brownian numbers


def _spd(m, seed):
    """A fixed, well-conditioned SPD matrix with unequal diagonal and mixed-sign
    correlations (so every term of the drift is non-zero)."""
    g = np.random.default_rng(seed).standard_normal((m, m + 2))
    V = g @ g.T / (m + 2) + 0.3 * np.eye(m)
    return V


def _brownian(net, m, seed, path, step, dt):
    """The N(0, dt) numbers the integrator draws for (path, step), all blocks in order
    (brownian.hpp: sqrt(dt) times normals 0.. of Stream{seed, path, step, kSdeBase + b},
    float normals widened to double)."""
    from shaped_transformer._core_loader import core

    parts = []
    for b, blk in enumerate(net):
        k = 2 * m * m if blk.kind == "shaped_attention" else m * m
        z = np.asarray(core.normals(seed, path, step, _SDE_MATRIX_BASE + b, 0, k), dtype=np.float64)
        parts.append(np.sqrt(dt) * z)
    return np.concatenate(parts)


@pytest.mark.parametrize("m", [2, 3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize("scheme", ["euler", "tamed_euler"])
def test_one_step_is_drift_plus_noise(m, scheme):
    """One step of solve_sde from V0 (dt = 0.3, psd='none') is exactly
    V0 + b(V0) dt + noise(V0, dW) (tamed: b dt / (1 + dt |b|_F)), with b = sde_drift,
    noise = sde_noise and dW the integrator's own Brownian numbers: every m from 2 to
    8 (the fixed-size 2, 4, 8 and the dynamic-size paths of the solver).  An
    integrator that dropped, doubled or mis-scaled the drift or the noise fails."""
    from shaped_transformer.sde import sde_noise

    net = st.shaped_transformer(heads=2, tau0=0.8, gamma=0.6, c_plus=0.5, c_minus=-1.0)
    V0 = _spd(m, m)
    dt, seed, paths = 0.3, 17, 3
    r = st.solve_sde(
        net, V0=V0, T=dt, steps=1, paths=paths, seed=seed, psd="none", scheme=scheme, save_at=[dt], blowup=1e30
    )
    b = sde_drift(net, V0)
    assert np.abs(b).max() > 0.05  # the drift is visible at this V0
    drift_incr = b * dt if scheme == "euler" else b * dt / (1 + dt * np.linalg.norm(b))
    for p in range(paths):
        noise = sde_noise(net, V0, _brownian(net, m, seed, p, 0, dt))
        expect = V0 + drift_incr + noise
        expect = 0.5 * (expect + expect.T)
        np.testing.assert_allclose(r.V[p, -1], expect, rtol=1e-10, atol=1e-12 * np.abs(V0).max())


@pytest.mark.parametrize("m", [2, 5, 8])
def test_one_step_moments_are_drift_and_sigma(m):
    """The same step in law, independently of the Brownian keying: over many paths,
    E[V_dt - V0] = b dt and Cov(V_dt - V0) = Sigma dt (Sigma = J J^T of the linear
    noise map), each entry within 4.5 standard errors."""
    from _reduced_numpy import noise_covariance

    net = st.shaped_transformer(heads=2, tau0=0.8, gamma=0.6, c_plus=0.5, c_minus=-1.0)
    V0 = _spd(m, m)
    dt, P = 0.05, 40000
    r = st.solve_sde(net, V0=V0, T=dt, steps=1, paths=P, seed=3, psd="none", save_at=[dt], blowup=1e30)
    D = r.V[:, -1] - V0
    mu, se = D.mean(0), D.std(0) / np.sqrt(P)
    b = sde_drift(net, V0)
    z = (mu - b * dt) / se
    assert np.abs(z).max() < 4.5, z
    iu = np.triu_indices(m)
    S = noise_covariance(net, V0).reshape(m, m, m, m)[iu[0], iu[1]][:, iu[0], iu[1]] * dt
    Dv = D[:, iu[0], iu[1]]
    C = np.cov(Dv.T)
    # variance of each diagonal entry: Var(x^2) / P, x Gaussian: 2 S_ii^2 / P
    zs = (np.diag(C) - np.diag(S)) / (np.sqrt(2.0 / P) * np.diag(S))
    assert np.abs(zs).max() < 4.5, zs
