"""docs/model.md 7.3 and 7.4: the SDE describes finite networks, and standard attention
collapses.

Network side: the exact chain (equal in law to the explicit network, see
test_exact.py).  SDE side: tamed Euler at a small step (plain Euler loses about 1%
of the paths to numerical blow-up at these parameters and dt = 1/1024 while the
networks lose none; the tamed step loses none)."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from scipy.stats import wasserstein_distance

import shaped_transformer as st

FULL = os.environ.get("SHAPED_TRANSFORMER_FULL", "") not in ("", "0")


@pytest.mark.slow
def test_rho_distribution_converges_to_the_sde():
    """W1 distance between the laws of rho_T (T = 1, all pairs pooled) of the SDE
    and of the network at width n shrinks as n grows (CI: n = 16 -> 256, full:
    n = 64 -> 1024).  The statistical floor of W1 at these sample sizes is about
    0.005 (two SDE runs with different seeds)."""
    net = st.Network([st.ShapedAttention(heads=1, tau0=0.8, gamma=0.45)])
    V0 = st.inputs.equicorrelated(4, 0.3)
    P = 16000 if FULL else 8000
    N = 16000 if FULL else 4000
    widths = (64, 256, 1024) if FULL else (16, 64, 256)
    sde = st.solve_sde(net, V0, T=1.0, steps=2048 if FULL else 1024, paths=P, seed=1, save_at=[1.0], scheme="tamed_euler")
    rs = sde.finite().rho_pairs(-1)
    dist = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for n in widths:
            r = st.simulate(net, V0=V0, width=n, depth=n, samples=N, method="exact", seed=n, save_at=np.array([n]))
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
        e = st.solve_sde(shaped, V0, T=1.0, steps=512, paths=1000, seed=0, scheme="tamed_euler", save_at=[1.0]).finite()
    assert s.rho[:, 1, 0, 1].mean() < 0.6
    assert s.rho[:, -1, 0, 1].mean() < 0.8
    assert e.rho[:, -1, 0, 1].mean() < 0.6
