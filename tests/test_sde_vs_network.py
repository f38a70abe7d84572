"""docs/model.md 7.3 and 7.4: the SDE describes finite networks, and standard attention
collapses.

Network side: the exact chain (equal in law to the explicit network, see
test_exact.py).  SDE side: Euler-Maruyama at a small step.  Both sides stop a
path/sample by one rule, max diag V > 1e4 (passed explicitly).  Tamed Euler is not
used: it suppresses the SDE's finite-time blow-up (P(stop) 0.4% against Euler's
7.5% at tau0 = 0.7, gamma = 0.6, converged in dt), which the networks approach."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from scipy.stats import wasserstein_distance

import shaped_transformer as st

from _mutations import model

FULL = os.environ.get("SHAPED_TRANSFORMER_FULL", "") not in ("", "0")


@pytest.mark.slow
def test_rho_distribution_converges_to_the_sde():
    """W1 distance between the laws of rho_T (T = 1, all pairs pooled) of the SDE
    and of the network at width n shrinks as n grows (CI: n = 16 -> 256, full:
    n = 64 -> 1024), given survival under the common stopping rule (max diag V > 1e4;
    measured at CI size: W1 = 0.010, 0.0036, 0.0067).  The statistical floor of W1 at these sample sizes is about
    0.005 (two SDE runs with different seeds)."""
    net = st.Network([st.ShapedAttention(heads=1, tau0=0.8, gamma=0.45)])
    V0 = st.inputs.equicorrelated(4, 0.3)
    P = 16000 if FULL else 8000
    N = 16000 if FULL else 4000
    widths = (64, 256, 1024) if FULL else (16, 64, 256)
    sde = st.solve_sde(model(net), V0=V0, T=1.0, steps=2048 if FULL else 1024, paths=P, seed=1, save_at=[1.0],
                       scheme="euler", blowup=1e4)
    rs = sde.finite().rho_pairs(-1)
    dist = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for n in widths:
            r = st.simulate(net, V0=V0, width=n, depth=n, samples=N, method="exact", seed=n, save_at=np.array([n]),
                            blowup=1e4)
            dist.append(wasserstein_distance(rs, r.finite().rho_pairs(-1)))
    print("W1(rho_T) SDE vs network, n =", widths, ":", np.round(dist, 4))
    assert dist[-1] < dist[0]
    assert dist[-1] < 0.012


def test_rank_collapse_standard_vs_shaped():
    """Standard heads: mean rho -> 1 with depth.  Shaped heads at tau0 = 1,
    gamma = 0.5: mean rho at T = 1 stays well below 1 (network and SDE)."""
    n = 64
    V0 = st.inputs.equicorrelated(4, 0.3)
    std = st.Network([st.StandardAttention(gamma=0.5)])
    r = st.simulate(std, V0=V0, width=n, depth=n, samples=200, method="exact", seed=0, save_every=4)
    rho = r.rho[:, :, 0, 1].mean(0)
    assert rho[-1] > 0.99 and np.all(np.diff(rho) > -1e-12) and rho[4] > rho[0] + 0.2
    shaped = st.Network([st.ShapedAttention(tau0=1.0, gamma=0.5)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = st.simulate(shaped, V0=V0, width=n, depth=4 * n, samples=200, method="exact", seed=0, save_every=n).finite()
        e = st.solve_sde(shaped, V0=V0, T=1.0, steps=512, paths=1000, seed=0, scheme="tamed_euler", save_at=[1.0]).finite()
    assert s.rho[:, 1, 0, 1].mean() < 0.6
    assert s.rho[:, -1, 0, 1].mean() < 0.8
    assert e.rho[:, -1, 0, 1].mean() < 0.6


K_STOP = 1e4  # the one stopping rule of both sides (docs/model.md, "Blow-up")


def _observables(r, m):
    """P(stopped by T), and given survival: mean log tr V_T, mean pooled rho_T; the
    0.9 quantile of log max diag V_T over all paths (stopped paths count as +inf)."""
    ex = r.exploded
    f = r.V[~ex, -1]
    ltr = np.log(np.trace(f, axis1=1, axis2=2))
    iu = np.triu_indices(m, 1)
    rho = st.correlations(f)[:, iu[0], iu[1]].mean(1)
    d = np.diagonal(r.V[:, -1], axis1=1, axis2=2).copy()
    d[ex] = np.inf
    md = np.log(d.max(axis=1))
    N = len(ex)
    dq = 4.5 * np.sqrt(0.9 * 0.1 / N)  # order-statistic band of the 0.9 quantile
    return dict(
        p=ex.mean(), p_se=np.sqrt(max(ex.mean() * (1 - ex.mean()), 1.0 / N) / N),
        ltr=ltr.mean(), ltr_se=ltr.std() / np.sqrt(len(ltr)),
        rho=rho.mean(), rho_se=rho.std() / np.sqrt(len(rho)),
        q90=np.quantile(md, 0.9), q90_lo=np.quantile(md, 0.9 - dq), q90_hi=np.quantile(md, 0.9 + dq),
    )


@pytest.mark.slow
def test_blowup_and_observables_match_the_network():
    """Where the attention's physics is visible (H = 1, tau0 = 0.7, gamma = 0.6, m = 4,
    rho0 = 0.3, T = 1: the SDE stops 7.5% of its paths at max diag V > 1e4, the same
    rule on both sides): the exact chain (= the network in law) at width n against
    Euler-Maruyama (dt = 1/1024, converged: P(stop) 7.5%, 7.9%, 7.3% at dt = 1/512,
    1/2048, 1/8192 with 8000 paths; tamed Euler suppresses the blow-up, 0.4%, and is
    not used here).

    The networks approach the SDE's finite-time blow-up from below, slowly
    (P(stop) 3.4% at n = 256, 6.0% at n = 1024, measured with 4000 samples), so the
    checks are: P(stop) grows with n, stays below the SDE's, and is within a
    finite-width allowance of 0.03 at the largest n; given survival, the mean log tr V
    (allowance 0.1; measured gap 0.06 +- 0.02 at n = 1024) and the mean rho (0.01)
    agree; and the 0.9 quantile of log max diag V agrees within 0.3 (measured 0.15).
    Each comparison also allows 4.5 standard errors.  Full size (measured): P(stop)
    3.1%, 5.7%, 7.0% at n = 256, 1024, 4096 against 7.5%; log tr V 1.279, 1.157,
    1.111 against 1.096.  What it sees (docs/validation.md):
    twice the attention drift (P(stop) 21%) and no softmax terms (no blow-up at all);
    not a 5% gamma error (P(stop) 6.7%), which the drift tests see."""
    m = 4
    net = st.Network([st.ShapedAttention(heads=1, tau0=0.7, gamma=0.6)])
    V0 = st.inputs.equicorrelated(m, 0.3)
    P = 32000 if FULL else 8000
    N = 12000 if FULL else 3000
    widths = (256, 1024, 4096) if FULL else (256, 1024)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sde = st.solve_sde(model(net), V0=V0, T=1.0, steps=2048 if FULL else 1024, paths=P, seed=1, save_at=[1.0],
                           scheme="euler", blowup=K_STOP)
        nets = [st.simulate(net, V0=V0, width=n, depth=n, samples=N, method="exact", seed=n,
                            save_at=np.array([n]), blowup=K_STOP) for n in widths]
    s = _observables(sde, m)
    o = [_observables(r, m) for r in nets]
    for n, x in zip(widths, o):
        print(f"n={n}: P(stop) {x['p']:.4f}, log tr V {x['ltr']:.3f}, rho {x['rho']:.4f}, q90 {x['q90']:.3f}")
    print(f"SDE   : P(stop) {s['p']:.4f}, log tr V {s['ltr']:.3f}, rho {s['rho']:.4f}, q90 {s['q90']:.3f}")
    a, b = o[0], o[-1]
    # blow-up probability: grows with n, approaches the SDE's from below
    assert b["p"] > a["p"], (a["p"], b["p"])
    assert b["p"] < s["p"] + 4.5 * np.hypot(b["p_se"], s["p_se"]), (b["p"], s["p"])
    assert s["p"] - b["p"] < 0.03 + 4.5 * np.hypot(b["p_se"], s["p_se"]), (b["p"], s["p"])
    # given survival
    assert abs(b["ltr"] - s["ltr"]) < 0.1 + 4.5 * np.hypot(b["ltr_se"], s["ltr_se"]), (b["ltr"], s["ltr"])
    assert abs(b["rho"] - s["rho"]) < 0.01 + 4.5 * np.hypot(b["rho_se"], s["rho_se"]), (b["rho"], s["rho"])
    # upper quantile: the order-statistic bands, widened by the allowance, overlap
    assert b["q90_lo"] - 0.3 < s["q90_hi"] and s["q90_lo"] - 0.3 < b["q90_hi"], (b["q90"], s["q90"])
