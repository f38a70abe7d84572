"""The splitting estimator (shaped_transformer.splitting) against plain Monte Carlo
where splitting is needed: P(blow-up by T) ~ 3e-4 at CI size, ~3e-6 at full size
(SHAPED_TRANSFORMER_FULL=1), on the batched SDE kernel's own ground (shaped
attention only, m = 4, Euler, dt = 1/32: both sides run the same chain, so the test
checks the estimator, not the discretization).  tests/test_atlas.py checks it at
~7e-3 and its inner loop (_core.continue_paths) bit for bit.

Power (docs/validation.md): the test fails when the mean of the splitting runs and
the plain estimate differ by 4.5 combined standard errors.  CI size: relative
standard errors ~6% (plain: ~264 blow-ups in 1e6 paths) and ~6% (splitting: 64 runs
of 400 particles, relative error of one run ~0.45), so a relative bias of ~50% is
caught with probability 0.95.  Full size (measured once with 100 kills per
iteration: 145 of 5e7 paths, 2.90e-6 +- 0.24e-6, against 2.87e-6 +- 0.18e-6 from 96
runs of 1000 particles, one run's relative error 0.60; z = -0.09; 5 min on 2 loaded
cores): 8.3% and 6.3%, a relative bias of ~64%.  The runs kill AMS_KILLED = 10
particles per iteration and so make ~320 (CI) or ~1300 (full) iterations: an error
in the weight factor compounds.  The mutation matrix's off-by-one, 1 - (K - 1) / N
(tests/_mutations.py, "splitting_weight"), multiplies each factor by
1 + 1 / (N - K) and the estimate by ~(1 + 1 / 390)^320 = 2.3: measured 5.9e-4
against 2.6e-4, z = +9.6 (unperturbed z = +0.07).  With the default 40 kills per
iteration (~80 iterations) the same error gave a factor 1.16, z = +1.8: not caught.
Mutations of the model side (the splitting runs' network), measured with 40 kills:
gamma -5% z = -8.9, twice the attention drift z = +18.9, H 1 -> 4 z = -5.0.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

import shaped_transformer as st
from _mutations import model
from shaped_transformer.splitting import ams_repeat

FULL = os.environ.get("SHAPED_TRANSFORMER_FULL", "") not in ("", "0")

BLOWUP = 1e4
DT = 1 / 32
# CI: P ~ 2.6e-4 (264 of 1e6 paths);  full: P ~ 2.9e-6 (145 of 5e7), the order of
# docs/atlas.md's rare point (1.9e-6, m = 8 with the MLP: too slow for 1e8 plain paths)
GAMMA = 0.34 if FULL else 0.41
MC_PATHS = 50_000_000 if FULL else 1_000_000
MC_CHUNK = 2_000_000  # paths per solve_sde call (16 bytes each with save="summary")
AMS_RUNS, AMS_PARTICLES = (96, 1000) if FULL else (64, 400)
#: Particles killed per iteration (kill_fraction K / N, not the default 0.1): with few
#: kills per iteration a run makes many iterations (~320 at CI size, ~1300 full), so
#: an error in the weight factor 1 - K / N compounds to a bias the test sees.
AMS_KILLED = 10


def _plain_monte_carlo(net, V0) -> tuple[int, int]:
    """(blow-ups, paths) by T = 1 over MC_PATHS independent Euler paths."""
    k = n = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(0, MC_PATHS, MC_CHUNK):
            paths = min(MC_CHUNK, MC_PATHS - i)
            r = st.solve_sde(
                net,
                V0=V0,
                T=1.0,
                dt=DT,
                paths=paths,
                seed=20_000 + i // MC_CHUNK,
                save="summary",
                save_at=[1.0],
                blowup=BLOWUP,
            )
            k += int(np.isfinite(r.exploded_at).sum())
            n += paths
    return k, n


@pytest.mark.slow
def test_splitting_matches_plain_monte_carlo_at_small_p():
    """The mean of independent splitting runs (unbiased at any particle count) equals
    the plain Monte Carlo frequency within 4.5 combined standard errors, and no run is
    extinct (an estimate of 0 where plain Monte Carlo sees blow-ups)."""
    net = st.Network([st.ShapedAttention(heads=1, tau0=1.0, gamma=GAMMA)])
    V0 = st.inputs.equicorrelated(4, 0.3)
    k, n = _plain_monte_carlo(net, V0)
    p_mc = k / n
    se_mc = np.sqrt(max(k, 1) * (1 - p_mc)) / n  # binomial (Poisson-like at this p)
    rep = ams_repeat(
        model(net),
        V0=V0,
        repeats=AMS_RUNS,
        seed=900,
        T=1.0,
        dt=DT,
        particles=AMS_PARTICLES,
        blowup=BLOWUP,
        kill_fraction=AMS_KILLED / AMS_PARTICLES,
    )
    runs = np.asarray(rep["runs"])
    z = (rep["p"] - p_mc) / np.hypot(se_mc, rep["se"])
    print(
        f"plain Monte Carlo {k} of {n}: P = {p_mc:.3e} +- {se_mc:.1e}; splitting ({AMS_RUNS} runs of "
        f"{AMS_PARTICLES}): {rep['p']:.3e} +- {rep['se']:.1e} (one run: relative error {rep['rel_error_single']:.2f},"
        f" {np.mean(rep['iterations']):.0f} iterations); z = {z:+.2f}"
    )
    assert k >= 50, k  # the plain estimate is resolved
    assert np.all(runs > 0), runs
    assert abs(z) < 4.5, (rep["p"], p_mc, z)
