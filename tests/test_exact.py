"""The exact m x m chain (docs/model.md section 4) against the explicit network, in law.

Two-sample checks use fixed seeds; tolerances come from standard errors (each
z-statistic below is a difference of two independent means divided by its standard
error; with ~30 statistics per test a bound of 4.5 fails by chance with
probability < 1e-4)."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

import shaped_transformer as st
from _explicit_numpy import run as run_numpy
from _mutations import model as _model
from shaped_transformer._core_loader import core

FULL = os.environ.get("SHAPED_TRANSFORMER_FULL", "") not in ("", "0")
Z_MAX = 4.5


def _V0(m):
    V = st.inputs.equicorrelated(m, 0.3)
    V[0, 0] = 1.5
    if m > 2:
        V[1, 2] = V[2, 1] = -0.05
    return V


def _compare(a, b, what):
    """z statistics of means and of standard deviations of every entry of V."""
    na, nb = len(a), len(b)
    za = (a.mean(0) - b.mean(0)) / np.sqrt(a.var(0) / na + b.var(0) / nb + 1e-300)
    # sd: the delta method, se(s) ~ s sqrt((kurt - 1) / (4 N)); kurtosis estimated
    sa, sb = a.std(0), b.std(0)

    def se_sd(x):
        k = np.mean((x - x.mean(0)) ** 4, 0) / np.maximum(x.var(0) ** 2, 1e-300)
        return x.std(0) * np.sqrt(np.maximum(k - 1, 0) / (4 * len(x)))

    zs = (sa - sb) / np.sqrt(se_sd(a) ** 2 + se_sd(b) ** 2 + 1e-300)
    const = (sa < 1e-9) & (sb < 1e-9)  # e.g. diag V = 1 after post-RMS norm
    za = np.where(const, (a.mean(0) - b.mean(0)) / 1e-9, za)
    zs = np.where(const, 0.0, zs)
    assert np.max(np.abs(za)) < Z_MAX, f"{what}: means differ, z = {np.round(za, 2)}"
    assert np.max(np.abs(zs)) < Z_MAX, f"{what}: std devs differ, z = {np.round(zs, 2)}"


CASES = {
    "shaped_H1": [st.ShapedAttention(heads=1, tau0=0.5, gamma=0.7)],
    "shaped_H3": [st.ShapedAttention(heads=3, tau0=0.5, gamma=0.7)],
    "general_causal": [st.ShapedAttention(heads=2, tau0=0.5, gamma=0.6, alpha=0.8, beta=1.5, causal=True, key_dim=5)],
    "standard": [st.StandardAttention(heads=2, gamma=0.6)],
    "standard_pre_rms": [st.StandardAttention(heads=1, gamma=0.6, norm="pre_rms", key_dim=2)],
    "standard_post_rms": [st.StandardAttention(heads=1, gamma=0.6, norm="post_rms")],
    "shaped_mlp": [st.ShapedMLP(c_plus=1.0, c_minus=-2.0, gamma=0.7)],
    "relu_mlp_pre": [st.ReluMLP(gamma=0.7, norm="pre_rms")],
    "relu_mlp_post": [st.ReluMLP(gamma=0.7, norm="post_rms")],
    "shaped_pre_rms": [st.ShapedAttention(heads=2, tau0=0.5, gamma=0.7, norm="pre_rms")],
    "shaped_post_rms": [st.ShapedAttention(tau0=0.5, gamma=0.7, beta=1.5, causal=True, norm="post_rms")],
    "shaped_mlp_pre_rms": [st.ShapedMLP(c_plus=1.0, c_minus=-2.0, gamma=0.7, norm="pre_rms")],
    "shaped_mlp_post_rms": [st.ShapedMLP(c_plus=1.0, c_minus=-2.0, gamma=0.7, norm="post_rms")],
}


@pytest.mark.parametrize("name", list(CASES))
def test_one_block_matches_numpy_explicit(name):
    """Every rotation-invariant block kind, one block at m = 3, n = 12: the chain and
    an independent NumPy explicit network agree in mean and spread of every entry."""
    net = st.Network(CASES[name])
    m, n, N = 3, 12, (20000 if FULL else 4000)
    V0 = _V0(m)
    X0 = st.inputs.tokens_from_covariance(V0, n)
    a = run_numpy(np.random.default_rng(7), net, X0, depth=1, samples=N)
    b = st.simulate(_model(net), V0=V0, width=n, depth=1, samples=N, method="exact", seed=11).V[:, -1]
    _compare(a, b, name)


def test_several_blocks_in_law_numpy():
    """Shaped Transformer (H = 2), 3 layers, m = 4, n = 16: chain vs NumPy explicit."""
    net = st.shaped_transformer(heads=2, tau0=0.7, gamma=0.6, c_plus=0.5, c_minus=-1.0)
    m, n, N = 4, 16, (20000 if FULL else 3000)
    V0 = _V0(m)
    a = run_numpy(np.random.default_rng(3), net, st.inputs.tokens_from_covariance(V0, n), depth=3, samples=N)
    b = st.simulate(_model(net), V0=V0, width=n, depth=3, samples=N, method="exact", seed=5).V[:, -1]
    _compare(a, b, "transformer d=3")


def _features(V):
    """Per sample: log tr V, the mean correlation, log V_00 and the spread of log diag V."""
    iu = np.triu_indices(V.shape[-1], 1)
    ld = np.log(np.diagonal(V, axis1=1, axis2=2))
    return {
        "log tr V": np.log(np.trace(V, axis1=1, axis2=2)),
        "mean rho": st.correlations(V)[:, iu[0], iu[1]].mean(1),
        "log V_00": ld[:, 0],
        "sd log diag V": ld.std(1),
    }


def _z_mean_var(x, y):
    """z statistics of the difference of means and of variances of two samples."""
    zm = (x.mean() - y.mean()) / np.sqrt(x.var() / len(x) + y.var() / len(y))
    dx, dy = (x - x.mean()) ** 2, (y - y.mean()) ** 2
    zv = (dx.mean() - dy.mean()) / np.sqrt(dx.var() / len(dx) + dy.var() / len(dy))
    return zm, zv


@pytest.mark.slow
def test_exact_vs_explicit_network_after_several_blocks():
    """docs/model.md 7.2: the chain and the C++ explicit network after d = n = 32 layers
    (T = 1) of a shaped Transformer (H = 2, tau0 = 0.8, gamma = 0.6, m = 4):
    two-sample z tests of the means and variances of log tr V, mean rho, log V_00 and
    the spread of log diag V, plus the means and standard deviations of every entry.

    Power (CI: N = 16000 per side; full: 64000): the standard error of a difference
    of means of log tr V is sd sqrt(2/N) = 0.0045 at CI size, so a 2% bias in tr V
    (0.02 in log tr V) gives z = 4.4 at CI size and 8.9 at full size; measured
    with 4000 samples, the chain with the attention drift doubled (heads 4,
    tau0 / sqrt(2)) gave z = 8 (log tr V), with no softmax z = 10.5, with gamma -5% a
    variance z of 3.1 and with H = 1 instead of 2 a z of 2.8 (x2 at CI size)."""
    net = st.shaped_transformer(heads=2, tau0=0.8, gamma=0.6)
    m, n, d = 4, 32, 32
    N = 64000 if FULL else 16000
    V0 = _V0(m)
    kw = dict(V0=V0, width=n, depth=d, samples=N, save_at=np.array([d]), blowup=1e4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = st.simulate(net, method="explicit", seed=1, **kw).V[:, -1]
        b = st.simulate(_model(net), method="exact", seed=2, **kw).V[:, -1]
    fa = np.isfinite(a).all((1, 2))
    fb = np.isfinite(b).all((1, 2))
    # P(stopped) (none expected at n = 32, T = 1)
    pa, pb = 1 - fa.mean(), 1 - fb.mean()
    assert abs(pa - pb) <= 4.5 * np.sqrt(max(pa + pb, 2.0 / N) / N), (pa, pb)
    a, b = a[fa], b[fb]
    _compare(a, b, "explicit vs exact")
    xa, xb = _features(a), _features(b)
    for k in xa:
        zm, zv = _z_mean_var(xa[k], xb[k])
        print(f"{k}: z(mean) = {zm:.2f}, z(var) = {zv:.2f}")
        assert abs(zm) < Z_MAX and abs(zv) < Z_MAX, (k, zm, zv)


def test_singular_input_rank_one_stays_rank_one():
    """Equal tokens stay equal (A 1 = 1): V0 = 11^T gives a rank-one V at every layer."""
    net = st.shaped_transformer(heads=2)
    V0 = np.ones((4, 4))
    r = st.simulate(net, V0=V0, width=64, depth=20, samples=20, method="exact", seed=0)
    V = r.V[:, -1]
    assert np.all(np.isfinite(V))
    # rounding-level eigenvalues of a singular V give O(sqrt(eps)) errors in the root
    assert np.allclose(V, V[:, :1, :1] * np.ones((4, 4)), rtol=1e-6)


def test_singular_input_rank_two_matches_numpy():
    n, N = 12, 3000  # m = 3 tokens (V0 below)
    u = np.array([1.0, 0.5, -0.2])
    v = np.array([0.0, 1.0, 1.0])
    V0 = np.outer(u, u) + np.outer(v, v)  # rank 2
    net = st.Network([st.ShapedAttention(heads=2, tau0=0.5, gamma=0.7), st.ShapedMLP(gamma=0.7)])
    a = run_numpy(np.random.default_rng(1), net, st.inputs.tokens_from_covariance(V0, n), depth=1, samples=N)
    b = st.simulate(net, V0=V0, width=n, depth=1, samples=N, method="exact", seed=1).V[:, -1]
    _compare(a, b, "rank-2 input")


def test_seeding_and_threads():
    net = st.shaped_transformer(heads=3)
    V0 = _V0(5)
    a = st.simulate(net, V0=V0, width=50, depth=10, samples=6, method="exact", seed=9, threads=1).V
    b = st.simulate(net, V0=V0, width=50, depth=10, samples=6, method="exact", seed=9, threads=2).V
    c = st.simulate(net, V0=V0, width=50, depth=10, samples=6, method="exact", seed=10, threads=2).V
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)
    # sample s does not depend on how many samples run
    d = st.simulate(net, V0=V0, width=50, depth=10, samples=2, method="exact", seed=9).V
    assert np.array_equal(a[:2], d)


def test_width_independent_cost():
    """n = 10^6 runs like n = 100 for attention (O((Hm)^3) per block, no n x n
    matrix): 2000 blocks at n = 10^6 finish (no timing assert: a loaded machine
    would make it flaky; a cost that grew with n would not finish here)."""
    net = st.Network([st.ShapedAttention(heads=2)])
    V0 = _V0(6)
    r = st.simulate(net, V0=V0, width=10**6, depth=2000, samples=2, method="exact", seed=0, save_every=1000)
    assert np.all(np.isfinite(r.V))
    # at n = 10^6 a block moves V by O(n^{-1/2}) only
    assert np.abs(r.V[:, 1] - V0).max() < 0.3


def test_blowup_reported_not_silent():
    net = st.Network([st.StandardAttention(gamma=0.9)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = st.simulate(net, V0=_V0(3), width=20, depth=50, samples=50, method="exact", seed=0, blowup=1.6)
    assert r.exploded.any()
    for s in np.flatnonzero(r.exploded):
        k = np.searchsorted(r.t, r.exploded_at[s])
        assert np.all(np.isnan(r.V[s, k:]))
        assert np.all(np.isfinite(r.V[s, :k]))
    assert np.all(np.isfinite(r.V[~r.exploded]))


def test_refused_blocks():
    with pytest.raises(ValueError, match="concat"):
        st.simulate(st.ShapedAttention(heads=2, concat=True), V0=np.eye(3), width=8, depth=1, method="exact")
    # LayerNorm needs width >= m + 1 (docs/norms.md section 6)
    for b in (st.StandardAttention(norm="pre_layer"), st.ReluMLP(norm="post_layer")):
        with pytest.raises(ValueError, match="width"):
            st.simulate(b, V0=np.eye(3), width=3, depth=1, method="exact")
    # the core refuses on its own as well
    with pytest.raises(ValueError, match="width"):
        core.simulate_exact([st.StandardAttention(norm="pre_layer")], np.eye(2), 2, 1, 1, 0, [1], 1, 1e30, None)


def test_gamma_variates_via_wishart_mean():
    """The Bartlett factor with exact chi-square diagonals: at gamma = 1, lambda = 0,
    H = 1, an MLP block with c_+ = c_- = 0 (phi = identity, c = 1)... E[V'] = E[Phi] = V
    exactly; and E[V'^2] checks the Wishart second moment (n = 9, m = 2)."""
    net = st.Network([st.ShapedMLP(c_plus=0.0, c_minus=0.0, gamma=1.0)])
    V0 = np.array([[1.0, 0.4], [0.4, 2.0]])
    n, N = 9, 40000
    V = st.simulate(net, V0=V0, width=n, depth=1, samples=N, method="exact", seed=3).V[:, -1]
    # V' = L_Phi (Z Z^T + R) L_Phi^T / n with Phi ~ Wishart(n, V)/n: V' = W2 W1 composition
    # E[V'] = V; Var(V'_00) = V00^2 ((1 + 2/n)^2 - 1)
    se = V.std(0) / np.sqrt(N)
    assert np.all(np.abs(V.mean(0) - V0) < Z_MAX * se)
    var_exact = V0[0, 0] ** 2 * ((1 + 2 / n) ** 2 - 1)
    assert abs(V[:, 0, 0].var() / var_exact - 1) < 0.06  # se of a variance ~ sqrt(kurt/N) ~ 2%


@pytest.mark.parametrize("norm", ["pre_rms", "post_rms", None])
def test_norm_conventions_match_cpp_explicit(norm):
    """The chain's RMS-norm placements are those of the C++ explicit network
    (pre: branch on N(X), residual X; post: N(lambda X + gamma f(X)))."""
    net = st.standard_transformer(heads=2, gamma=0.6, norm=norm)
    m, n, d, N = 3, 16, 2, (20000 if FULL else 1000)
    V0 = _V0(m)
    a = st.simulate(net, V0=V0, width=n, depth=d, samples=N, method="explicit", seed=1).V[:, -1]
    b = st.simulate(net, V0=V0, width=n, depth=d, samples=N, method="exact", seed=2).V[:, -1]
    _compare(a, b, f"standard transformer norm={norm}")


def test_overflow_inside_a_layer_is_reported():
    """V overflowing to Inf in the middle of a layer (or an MLP with c = inf) is a
    reported blow-up, not a crash or a silent NaN."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for net in (
            st.Network([st.ShapedMLP(gamma=0.5), st.ShapedMLP(gamma=0.5)]),
            st.Network([st.ShapedAttention(gamma=0.9), st.ShapedAttention(gamma=0.9)]),
        ):
            r = st.simulate(
                net, V0=1e307 * np.eye(2), width=64, depth=2, samples=3, method="exact", seed=0, blowup=1e308
            )
            assert r.exploded.all() and not np.any(np.isinf(r.V))
        try:  # s_+ = s_- = 0 at n = 4: refused by validation, or run and reported
            r = st.simulate(
                st.Network([st.ShapedMLP(c_plus=-2.0, c_minus=-2.0)]),
                V0=np.eye(2),
                width=4,
                depth=1,
                samples=2,
                method="exact",
                seed=0,
            )
        except ValueError:
            return
        assert r.exploded.all()
