"""Normalized shaped Transformers, network against the library's SDE (issue 24's
"must show"; docs/norms.md section 7.4).

Shaped Transformer layers (attention + shaped MLP, gamma = 0.5, tau0 = 1, H = 1,
c_+ = 0, c_- = -1), every block pre-RMS or post-RMS, m = 8 tokens, V0 =
equicorrelated(8, 0.3), T = 1: the network is the exact chain at width n = 1024
and depth n (``simulate(method="exact")``), the SDE is ``solve_sde`` of the same
network (it carries its norm).  One stopping rule (max diag V > 1e4) and the same
observables on both sides, per sample: the mean over token pairs of rho_T and of
rho_T^2, log tr V_T, and whether it blew up.

* Each placement: network and SDE agree in mean rho_T, mean rho_T^2 and mean
  log tr V_T (|z| < Z_MAX; under pre-norm the network's token scales are within
  O(n^-1/2) of 1 and their mean offset, O(1/n), is below the standard error:
  n times it measured -0.1 +- 0.7 at full size), and in P(blow-up): both 0, the
  Newcombe interval of the difference holds 0.
* Power (common random numbers, docs/norms.md section 7.3): pre- and post-norm
  networks run with the same seed share the exact chain's draws, and the two SDEs
  share their Brownian increments, so the pre - post gap has a standard error
  about ten times smaller than either run; on the SDE side it is the pre-norm
  fast drift beta_fast alone.  The network's gap must agree with the SDE's, and
  differ by more than POWER standard errors from 0 (the SDE without beta_fast).
  The mutation matrix (tests/_mutations.py) shows that this test catches
  beta_fast doubled in the core (``fast_drift_x2``) and the SDE run without its
  norm (``sde_norm_dropped``).

CI size: 128 networks per placement, 1000 SDE paths at dt = 1/256 (15 s on 2
shared cores, 23 s when they were busy).  Full size (SHAPED_TRANSFORMER_FULL=1):
2000 networks, 4000 paths at dt = 1/512 (169 s); ``pytest -s`` prints the table of
docs/norms.md section 7.4.
"""

from __future__ import annotations

import os
import sys
import warnings

import numpy as np
import pytest

import shaped_transformer as st
from shaped_transformer.analysis import newcombe_interval

sys.path.insert(0, os.path.dirname(__file__))
from _mutations import model  # noqa: E402

FULL = os.environ.get("SHAPED_TRANSFORMER_FULL", "") not in ("", "0")
Z_MAX = 4.5
POWER = 2 * Z_MAX

M, N_WIDTH, RHO0, T = 8, 1024, 0.3, 1.0
SIZE = {"networks": 2000, "paths": 4000, "steps": 512} if FULL else {"networks": 128, "paths": 1000, "steps": 256}
#: Differences below this are rounding (post-norm: tr V_T = m on both sides, to
#: the last bits), not evidence: a z-score of them would divide rounding by rounding.
ROUNDING = 1e-12
NORMS = ("pre_rms", "post_rms")
SEED_NETWORK, SEED_SDE = 11, 12


def _network(norm: str) -> st.Network:
    return st.shaped_transformer(heads=1, tau0=1.0, gamma=0.5, c_plus=0.0, c_minus=-1.0, norm=norm)


def _observables(res) -> dict[str, np.ndarray]:
    """Per sample at T, the observables both sides are judged on (NaN once blown up)."""
    V = res.V[:, -1]
    with np.errstate(invalid="ignore"):
        C = st.analysis.correlations(V)
    r = st.analysis.off_diagonal(C)
    return {
        "mean rho": r.mean(-1),
        "mean rho^2": (r**2).mean(-1),
        "log trace": np.log(np.trace(V, axis1=-2, axis2=-1)),
        "blown": np.asarray(res.exploded, dtype=bool),
    }


_CACHE: dict = {}


def _run(side: str, norm: str) -> dict[str, np.ndarray]:
    """The observables of one side ("network" or "sde") of one placement; both
    placements of a side use the same seed (common random numbers)."""
    if (side, norm) not in _CACHE:
        V0 = st.inputs.equicorrelated(M, RHO0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", st.BlowUpWarning)  # blow-ups are counted
            if side == "network":
                res = st.simulate(_network(norm), V0=V0, width=N_WIDTH, depth=int(T * N_WIDTH),
                                  samples=SIZE["networks"], method="exact", seed=SEED_NETWORK,
                                  save_at=np.array([int(T * N_WIDTH)]), progress=False)  # fmt: skip
            else:
                res = st.solve_sde(model(_network(norm)), V0=V0, T=T, steps=SIZE["steps"], paths=SIZE["paths"],
                                   seed=SEED_SDE, save_at=[T], progress=False)  # fmt: skip
        _CACHE[side, norm] = _observables(res)
    return _CACHE[side, norm]


def _mean_se(x: np.ndarray) -> tuple[float, float]:
    x = x[np.isfinite(x)]
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x)))


def _z(a: np.ndarray, b: np.ndarray) -> float:
    """|mean a - mean b| in standard errors of the difference (independent samples;
    0 for a difference at rounding level)."""
    (ma, sa), (mb, sb) = _mean_se(a), _mean_se(b)
    d = abs(ma - mb) if abs(ma - mb) > ROUNDING else 0.0
    se = np.hypot(sa, sb)
    return float(d / se) if se > 0 else (0.0 if d == 0 else np.inf)


def _show(label: str, x: np.ndarray) -> str:
    m, s = _mean_se(x)
    return f"{label} {m:.4f} +- {s:.4f}"


def _needs_sde() -> None:
    net = _network("pre_rms")
    if not net.has_sde:
        pytest.fail(f"the library's SDE does not run a normalized network: {net.sde_refusal}")


@pytest.mark.slow
@pytest.mark.parametrize("norm", NORMS)
def test_network_agrees_with_sde(norm):
    """One placement: mean rho_T, mean rho_T^2, mean log tr V_T and P(blow-up)."""
    _needs_sde()
    net, sde = _run("network", norm), _run("sde", norm)
    for stat in ("mean rho", "mean rho^2", "log trace"):
        print(f"\n{norm} {stat}: {_show('network', net[stat])}, {_show('SDE', sde[stat])}")
    k_net, k_sde = int(net["blown"].sum()), int(sde["blown"].sum())
    gap = newcombe_interval(k_net, len(net["blown"]), k_sde, len(sde["blown"]))
    print(f"{norm} blow-ups: network {k_net} of {len(net['blown'])}, SDE {k_sde} of {len(sde['blown'])}, gap {gap}")
    assert _z(net["log trace"], sde["log trace"]) < Z_MAX, norm
    for stat in ("mean rho", "mean rho^2"):
        assert _z(net[stat], sde[stat]) < Z_MAX, (norm, stat)
    assert gap.low <= 0.0 <= gap.high, (norm, k_net, k_sde)
    assert k_net == 0 and k_sde == 0, "a normalized network cannot blow up (docs/norms.md section 8)"


@pytest.mark.slow
def test_pre_minus_post_gap_resolves_the_fast_drift():
    """The pre - post gap with common random numbers: the network's agrees with
    the SDE's (which is beta_fast alone), and both are resolved away from 0 (the
    SDE without beta_fast) by more than POWER standard errors."""
    _needs_sde()
    gaps = {}
    for side in ("network", "sde"):
        pre, post = _run(side, "pre_rms"), _run(side, "post_rms")
        gaps[side] = {stat: pre[stat] - post[stat] for stat in ("mean rho", "mean rho^2")}
    for stat in ("mean rho", "mean rho^2"):
        print(f"\ngap pre - post, {stat}: {_show('network', gaps['network'][stat])}, {_show('SDE', gaps['sde'][stat])}")
        assert _z(gaps["network"][stat], gaps["sde"][stat]) < Z_MAX, stat
    # Power: the SDE's gap without beta_fast is exactly 0 (post-norm's increments).
    for side in ("network", "sde"):
        m, s = _mean_se(gaps[side]["mean rho^2"])
        assert abs(m) / s > POWER, (side, m, s)
