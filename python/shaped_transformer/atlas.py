"""The stability atlas behind ``shaped-transformer atlas``: how likely a deep shaped
network is to blow up, and where it is safe.

One stopping rule for networks and the SDE alike: a sample (path) stops the first
time max diag V exceeds ``blowup`` (default 1e4) or turns non-finite.  The atlas
estimates P(blow-up by t) with 95% Clopper-Pearson intervals

* over a grid of tau0, gamma, heads and norm placement (none, pre-RMS, post-RMS;
  docs/norms.md), for the attention block, the shaped MLP block and the shaped
  Transformer layer (attention + MLP);
* for the SDE (Euler-Maruyama; tamed Euler bounds the drift increment and so
  suppresses blow-ups, see docs/atlas.md) and for networks of several widths (the
  exact chain, exact in law at any width, depth = T * width);
* at the points where plain Monte Carlo sees few blow-ups, SDE and networks
  alike, by adaptive multilevel splitting (:mod:`shaped_transformer.splitting`;
  networks through the exact chain at dt = 1/width), marked "unresolved" where
  the splitting runs did not resolve the probability;
* and at one "rare" point by repeated splitting runs (the probability far below
  what plain Monte Carlo reaches, with its interval and relative error).

A normalized network cannot blow up (post-norm keeps diag V = 1, pre-norm keeps
the token scales near 1; docs/norms.md section 8): its points are run by the same
rule, read P(blow-up) = 0 with the plain Monte Carlo interval, and run no
splitting (network and SDE alike).  Every point also counts collapse (mean token
correlation above 1 - COLLAPSE_EPS at T, :func:`shaped_transformer.assess.collapsed`),
the informative event of a normalized network.

One verdict rule for every point and method (:func:`shaped_transformer.analysis.verdict`):
safe when the point's interval lies below ``study.level``, unsafe when above,
undecided otherwise; the interval is that of the resolved splitting runs where
they ran, else plain Monte Carlo's (``best_method`` says which).

Each grid point is one call of :func:`atlas_point`, run through
:func:`shaped_transformer.sweep.sweep` (one JSON file per point in
``OUT/points``): an interrupted atlas resumes where it stopped, on any executor.

Outputs in the folder: ``atlas_points.csv`` (one row per point and method),
``atlas_curves.csv`` (P(blow-up by t) on a time grid), ``atlas_collapse.csv``
(the scaling test: P(blow-up by T) at T = s / gamma^2), ``atlas.json`` (the
configuration and every number, blow-up times included), ``rare.json``, PNG
figures (``curves.png``, ``width.png``, ``heatmap_<block>.png``,
``blowup_times.png``, ``collapse.png``) and ``atlas.md``.
"""

from __future__ import annotations

import csv
import json
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from ._validate import check_seed, derived_seed

if TYPE_CHECKING:
    from ._blocks import Norm
    from .sde import Scheme

__all__ = ["DEFAULT_ATLAS", "ATLAS_SIZES", "BLOCKS", "atlas_config", "atlas_point", "run_atlas"]

BLOCKS = ("shaped_attention", "shaped_mlp", "shaped_transformer")

#: The norm placements of the grid (docs/norms.md).  LayerNorm's exact chain needs
#: network widths >= m + 1 (docs/norms.md section 6); its SDE is the RMS placement's.
NORMS = ("none", "pre_rms", "post_rms", "pre_layer", "post_layer")

DEFAULT_ATLAS: dict[str, dict[str, Any]] = {
    "study": {
        "m": 8,
        "rho0": 0.3,
        "T": 1.0,
        "blowup": 1e4,
        "seed": 0,
        "level": 1e-3,  # the "safe" level of the heatmaps: P(blow-up by T) < level
        "times": 40,  # time grid of the curves (intervals from 0 to T)
        "confidence": 0.95,
        "causal": False,  # causal shaped heads (docs/causal.md) instead of bidirectional ones
    },
    # The grid; the shaped MLP has no tau0 or heads (its points are run once).
    # norm: per-token norm placements of every block ("none", "pre_rms", "post_rms").
    "grid": {
        "blocks": list(BLOCKS),
        "tau0": [0.5, 1.0, 2.0],
        "gamma": [0.3, 0.5, 0.7],
        "heads": [1, 4],
        "norm": ["none"],
    },
    # The point of the curve, width and blow-up-time figures.
    "reference": {"block": "shaped_transformer", "tau0": 1.0, "gamma": 0.5, "heads": 1, "norm": "none"},
    "sde": {"samples": 2000, "dt": 1e-3, "scheme": "euler"},
    # Splitting runs (adaptive multilevel splitting) at every point, SDE or network,
    # where plain Monte Carlo saw fewer than `below` blow-ups (particles = 0: off);
    # networks run it on the exact chain at dt = 1 / width.
    "splitting": {"particles": 100, "repeats": 4, "below": 10},
    "network": {
        "widths": [64, 128, 256],
        "samples": 1000,
        "reference_widths": [32, 64, 128, 256, 512],
        "reference_samples": 2000,
    },
    # The scaling test: SDE of the Transformer layer (H = 1) for each (tau0, gamma)
    # up to T = s / gamma^2, so that every curve covers gamma^2 t in [0, s]
    # (samples = 0: skip).
    "collapse": {"s": 0.3, "tau0": [0.5, 1.0, 2.0], "gamma": [0.3, 0.5, 0.7], "samples": 2000},
    # Repeated splitting runs at one point with a tiny probability (repeats = 0: skip).
    "rare": {
        "block": "shaped_transformer",
        "tau0": 1.0,
        "gamma": 0.25,
        "heads": 1,
        "particles": 1000,
        "repeats": 8,
        "dt": 1e-3,
    },
}

ATLAS_SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": {
        "study": {"m": 4, "times": 8},
        "grid": {"tau0": [1.0], "gamma": [0.5, 0.8], "heads": [1]},
        "sde": {"samples": 100, "dt": 1.0 / 32},
        "splitting": {"particles": 20, "repeats": 2, "below": 2},
        "network": {"widths": [16, 32], "samples": 60, "reference_widths": [16, 32], "reference_samples": 60},
        "rare": {"particles": 20, "repeats": 2, "gamma": 0.5, "dt": 1.0 / 32},
        "collapse": {"tau0": [1.0], "gamma": [0.5, 0.8], "samples": 100},
    },
    "small": {
        "grid": {"tau0": [0.5, 1.0, 2.0], "gamma": [0.3, 0.5, 0.7], "heads": [1]},
        "sde": {"samples": 1000, "dt": 2e-3},
        "splitting": {"particles": 50},
        "network": {
            "widths": [64, 128],
            "samples": 400,
            "reference_widths": [32, 64, 128, 256],
            "reference_samples": 800,
        },
        "rare": {"particles": 300, "repeats": 4, "gamma": 0.3},
        "collapse": {"samples": 1000},
    },
    "default": {},
    "large": {
        "grid": {"tau0": [0.5, 0.75, 1.0, 1.5, 2.0], "gamma": [0.2, 0.3, 0.4, 0.5, 0.6, 0.7], "heads": [1, 2, 4]},
        "sde": {"samples": 8000},
        "splitting": {"particles": 200},
        "network": {
            "widths": [64, 128, 256, 512],
            "samples": 4000,
            "reference_widths": [32, 64, 128, 256, 512, 1024],
            "reference_samples": 8000,
        },
        "rare": {"particles": 2000, "repeats": 16},
        "collapse": {"samples": 8000, "tau0": [0.5, 0.75, 1.0, 1.5, 2.0], "gamma": [0.2, 0.3, 0.4, 0.5, 0.6, 0.7]},
    },
}

_TYPES: dict[str, dict[str, type]] = {
    "study": {
        "m": int,
        "rho0": float,
        "T": float,
        "blowup": float,
        "seed": int,
        "level": float,
        "times": int,
        "confidence": float,
        "causal": bool,
    },
    "grid": {"blocks": list, "tau0": list, "gamma": list, "heads": list, "norm": list},
    "reference": {"block": str, "tau0": float, "gamma": float, "heads": int, "norm": str},
    "sde": {"samples": int, "dt": float, "scheme": str},
    "splitting": {"particles": int, "repeats": int, "below": int},
    "network": {"widths": list, "samples": int, "reference_widths": list, "reference_samples": int},
    "rare": {"block": str, "tau0": float, "gamma": float, "heads": int, "particles": int, "repeats": int, "dt": float},
    "collapse": {"s": float, "tau0": list, "gamma": list, "samples": int},
}


def atlas_config(size: str = "default", config: str | Path | Mapping | None = None, *, seed: int | None = None) -> dict:
    """The configuration of the atlas, validated.

    :data:`DEFAULT_ATLAS`, then the ``size`` preset of :data:`ATLAS_SIZES`, then
    ``config``, then ``seed`` (docs/atlas.md lists the keys).

    Parameters
    ----------
    size : {"tiny", "small", "default", "large"}, default "default"
        The size preset.
    config : str, Path or mapping, optional
        A TOML file or a nested dict with the tables of :data:`DEFAULT_ATLAS`.
    seed : int, optional
        ``study.seed``, applied last.

    Returns
    -------
    dict
        The nested configuration, every table and key present.

    Raises
    ------
    ValueError
        For an unknown table, key or size, a wrong type or a value out of range,
        naming it.
    """
    from ._toml import layered_config, merge_typed

    cfg = layered_config(
        DEFAULT_ATLAS, ATLAS_SIZES, size, config, seed, partial(merge_typed, types=_TYPES), "--seed (study.seed)"
    )
    _check(cfg)
    return cfg


def _check(cfg: dict) -> None:
    s = cfg["study"]
    if s["m"] < 2:
        raise ValueError(f"study.m must be >= 2, got {s['m']}")
    if not -1.0 / (s["m"] - 1) <= s["rho0"] < 1.0:
        raise ValueError(f"study.rho0 must lie in [-1/(m-1), 1), got {s['rho0']}")
    for k in ("T", "blowup"):
        if not s[k] > 0:
            raise ValueError(f"study.{k} must be > 0, got {s[k]}")
    check_seed(s["seed"], "study.seed")
    if not 0 < s["level"] < 1:
        raise ValueError(f"study.level must lie in (0, 1), got {s['level']}")
    if not 0 < s["confidence"] < 1:
        raise ValueError(f"study.confidence must lie in (0, 1), got {s['confidence']}")
    if s["times"] < 1:
        raise ValueError(f"study.times must be >= 1, got {s['times']}")
    for b in cfg["grid"]["blocks"] + [cfg["reference"]["block"], cfg["rare"]["block"]]:
        if b not in BLOCKS:
            raise ValueError(f"block must be one of {BLOCKS}, got {b!r}")
    for k in ("tau0", "gamma"):
        for v in cfg["grid"][k]:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"grid.{k} must be a list of positive numbers, got {v!r}")
    for v in cfg["grid"]["gamma"] + [cfg["reference"]["gamma"], cfg["rare"]["gamma"]]:
        if not 0 < v <= 1:
            raise ValueError(f"gamma must lie in (0, 1], got {v}")
    for v in cfg["grid"]["heads"]:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"grid.heads must be a list of integers >= 1, got {v!r}")
    for k in ("widths", "reference_widths"):
        for w in cfg["network"][k]:
            if isinstance(w, bool) or not isinstance(w, int) or w < s["m"]:
                raise ValueError(f"network.{k} must be integers >= m={s['m']}, got {w!r}")
    _check_norms(cfg)
    for t, k in (("sde", "samples"), ("network", "samples"), ("network", "reference_samples")):
        if cfg[t][k] < 1:
            raise ValueError(f"{t}.{k} must be >= 1, got {cfg[t][k]}")
    if not cfg["sde"]["dt"] > 0 or cfg["sde"]["dt"] > s["T"]:
        raise ValueError(f"sde.dt must lie in (0, T], got {cfg['sde']['dt']}")
    if cfg["sde"]["scheme"] not in ("euler", "tamed_euler", "exact_chain"):
        raise ValueError(f"sde.scheme must be 'euler', 'tamed_euler' or 'exact_chain', got {cfg['sde']['scheme']!r}")
    for t, k in (
        ("splitting", "particles"),
        ("splitting", "repeats"),
        ("splitting", "below"),
        ("rare", "particles"),
        ("rare", "repeats"),
    ):
        if cfg[t][k] < 0:
            raise ValueError(f"{t}.{k} must be >= 0, got {cfg[t][k]}")
    if cfg["splitting"]["particles"] and (cfg["splitting"]["repeats"] < 2 or cfg["splitting"]["particles"] < 2):
        raise ValueError("splitting.repeats and splitting.particles must be >= 2 (or splitting.particles = 0 to skip)")
    c = cfg["collapse"]
    if not c["s"] > 0 or c["samples"] < 0:
        raise ValueError(f"collapse.s must be > 0 and collapse.samples >= 0, got {c['s']}, {c['samples']}")
    for k in ("tau0", "gamma"):
        for v in c[k]:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or (k == "gamma" and v > 1):
                raise ValueError(
                    f"collapse.{k} must be a list of numbers in (0, {'1]' if k == 'gamma' else 'inf)'}, got {v!r}"
                )
    if cfg["rare"]["repeats"] and (cfg["rare"]["repeats"] < 2 or cfg["rare"]["particles"] < 2):
        raise ValueError("rare.repeats and rare.particles must be >= 2 (or repeats = 0 to skip)")


def _check_norms(cfg: dict) -> None:
    """grid.norm and reference.norm: placements of :data:`NORMS` whose SDE the
    library covers for every block of the grid (the core's reason otherwise)."""
    from ._blocks import make_network

    for key, values in (("grid.norm", cfg["grid"]["norm"]), ("reference.norm", [cfg["reference"]["norm"]])):
        for v in values:
            if not isinstance(v, str) or v not in NORMS:
                raise ValueError(f"{key} must be a list of {list(NORMS)}, got {v!r}")
            m = cfg["study"]["m"]
            if v in ("pre_layer", "post_layer"):
                for k in ("widths", "reference_widths"):
                    if any(w < m + 1 for w in cfg["network"][k]):
                        raise ValueError(
                            f"{key} = {v!r}: LayerNorm in the exact chain needs network.{k} >= m + 1 = {m + 1}, "
                            f"got {cfg['network'][k]}"
                        )
            if v == "none":
                continue
            for b in dict.fromkeys(cfg["grid"]["blocks"] + [cfg["reference"]["block"]]):
                net = make_network(b, norm=cast("Norm", v), causal=cfg["study"]["causal"])
                if not net.has_sde:
                    raise ValueError(f"{key} = {v!r}: {net.sde_refusal}")


# ---------------------------------------------------------------------------
# One point (module level: picklable for any executor)
# ---------------------------------------------------------------------------


def atlas_point(
    *,
    block: str,
    heads: int = 1,
    tau0: float = 1.0,
    gamma: float = 0.5,
    m: int = 8,
    rho0: float = 0.3,
    T: float = 1.0,
    method: str = "sde",
    width: int | None = None,
    dt: float = 1e-3,
    scheme: Scheme = "euler",
    samples: int = 1000,
    blowup: float = 1e4,
    seed: int = 0,
    ams_particles: int = 0,
    ams_repeats: int = 0,
    ams_below: int = 10,
    threads: int | None = 1,
    collapse: bool = False,
    causal: bool = False,
    norm: str = "none",
) -> dict:
    """P(blow-up by T) of one configuration by plain Monte Carlo, and by splitting where that saw few blow-ups.

    A module-level function of keywords only, so that any executor can run it
    (:func:`shaped_transformer.sweep.sweep` calls it once per point).

    Parameters
    ----------
    block : {"shaped_attention", "shaped_mlp", "shaped_transformer"}
        The block kind (:func:`shaped_transformer.make_network`).
    heads, tau0, gamma : number
        The block parameters.
    m : int, default 8
        The number of tokens.
    rho0 : float, default 0.3
        The input correlation (equicorrelated V0, unit diagonal).
    T : float, default 1.0
        The final time (depth / width for a network).
    method : {"sde", "exact"}, default "sde"
        "sde" integrates the covariance SDE (``scheme``, step ``dt``); "exact" runs
        the exact chain of a network of ``width`` and depth round(T * width).
    width : int, optional
        The network's width (required with method "exact").
    dt : float, default 1e-3
        The SDE step.
    scheme : {"euler", "tamed_euler", "exact_chain"}, default "euler"
        The SDE scheme.
    samples : int, default 1000
        Paths or networks of plain Monte Carlo.
    blowup : float, default 1e4
        The stopping threshold on max diag V.
    seed : int, default 0
        The seed.
    ams_particles, ams_repeats, ams_below : int
        When fewer than ``ams_below`` samples blew up and ``ams_particles`` > 0,
        ``ams_repeats`` splitting runs of ``ams_particles`` particles
        (:func:`shaped_transformer.splitting.ams_blowup`; for a network the
        exact-chain scheme at dt = 1 / width up to depth / width: the same network
        and depth).
    threads : int, optional, default 1
        Worker threads of the core.
    collapse : bool, default False
        Only tags the points of the scaling test.
    causal : bool, default False
        Causal shaped heads (docs/causal.md).
    norm : {"none", "pre_rms", "post_rms"}, default "none"
        The per-token norm of every block (docs/norms.md).  A normalized network
        cannot blow up: no splitting runs for it (SDE or network alike).

    Returns
    -------
    dict
        "samples", "blown", "blowup_times" (sorted; time = layer / width for
        networks), "step_failures" (a normalized network's SDE paths stopped on a
        failed Euler step: neither event) and "collapsed" (samples that did not blow up and whose mean
        token correlation at T exceeds 1 - COLLAPSE_EPS); with splitting runs also
        "ams_runs" (their estimates), "ams_status" (only "resolved" runs estimate
        P), "ams_log10_weight" and "ams_particles".

    Raises
    ------
    ValueError
        For an unknown method, or method "exact" without a width.
    """
    from ._blocks import make_network
    from .assess import collapsed
    from .inputs import equicorrelated

    nm = None if norm == "none" else cast("Norm", norm)  # one of NORMS (atlas_config checks it)
    net = make_network(block, heads=heads, tau0=tau0, gamma=gamma, causal=causal, norm=nm)
    V0 = equicorrelated(m, rho0)
    if method not in ("sde", "exact"):
        raise ValueError(f"method must be 'sde' or 'exact', got {method!r}")
    if method == "exact" and width is None:
        raise ValueError("width must be given with method='exact'")
    common: dict[str, Any] = dict(V0=V0, seed=seed, threads=threads, blowup=blowup)
    splitting: dict[str, Any]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # blow-ups are the point here
        if method == "sde":
            from .sde import solve_sde

            res = solve_sde(net, T=T, dt=dt, paths=samples, scheme=scheme, save_at=[0.0, T], progress=False, **common)
            splitting = dict(T=T, dt=dt, scheme=scheme)
        else:
            from .simulate import simulate

            assert width is not None  # checked above
            depth = int(round(T * width))
            res = simulate(net, width=width, depth=depth, samples=samples, method="exact",
                           save_at=np.array([0, depth]), progress=False, **common)  # fmt: skip
            splitting = dict(T=depth / width, dt=1.0 / width, scheme="exact_chain")
    stopped = np.isfinite(res.exploded_at)
    # a normalized network's SDE paths stop only on a failed Euler step (sde.StepFailureWarning):
    # counted apart, as neither event, by the rule of assess
    failures = int(res.info.get("step_failures", 0))
    times = np.sort(res.exploded_at[stopped]) if not failures else np.empty(0)
    out: dict[str, Any] = {
        "samples": int(samples),
        "blown": int(times.size),
        "blowup_times": times.tolist(),
        "collapsed": int(np.sum(collapsed(res.V[:, -1]))),
        "step_failures": failures,
    }
    # A normalized network cannot blow up: splitting has no levels to climb (same rule for SDE and network).
    if ams_particles > 0 and times.size < ams_below and splitting["T"] > 0 and norm == "none":
        out.update(_splitting_runs(net, common, splitting, ams_particles, ams_repeats))
    return out


def _splitting_runs(net, common: dict[str, Any], grid: dict[str, Any], particles: int, repeats: int) -> dict:
    """``repeats`` splitting runs of one atlas point, seeded 1000 + i from its seed."""
    from .splitting import UnresolvedWarning, ams_blowup

    seed = common["seed"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnresolvedWarning)  # recorded in ams_status instead
        runs = [
            ams_blowup(net, particles=particles, **grid, **{**common, "seed": derived_seed(seed, 1000 + i)})
            for i in range(repeats)
        ]
    return {
        "ams_runs": [r.p for r in runs],
        "ams_status": [r.status for r in runs],
        "ams_log10_weight": [r.log10_weight for r in runs],
        "ams_particles": int(particles),
    }


# ---------------------------------------------------------------------------
# The study
# ---------------------------------------------------------------------------


def _points(cfg: dict) -> list[dict]:
    """All sweep points: the grid for the SDE and each width, plus the reference widths."""
    s, g, sd, nw, sp = cfg["study"], cfg["grid"], cfg["sde"], cfg["network"], cfg["splitting"]
    common = {
        "m": s["m"],
        "rho0": s["rho0"],
        "T": s["T"],
        "blowup": s["blowup"],
        "seed": s["seed"],
        "causal": s["causal"],
    }
    seen: set = set()
    pts: list[dict] = []

    def add(p: dict) -> None:
        key = json.dumps(p, sort_keys=True)
        if key not in seen:
            seen.add(key)
            pts.append(p)

    def configs():
        for norm in g["norm"]:
            for block in g["blocks"]:
                for tau0 in g["tau0"]:
                    for gamma in g["gamma"]:
                        for heads in g["heads"]:
                            if block == "shaped_mlp":  # no tau0, no heads
                                c = {"block": block, "tau0": 1.0, "gamma": float(gamma), "heads": 1}
                            else:
                                c = {"block": block, "tau0": float(tau0), "gamma": float(gamma), "heads": int(heads)}
                            yield _with_norm(c, norm)

    ams_kw = {"ams_particles": sp["particles"], "ams_repeats": sp["repeats"], "ams_below": sp["below"]}
    sde_kw = {"method": "sde", "dt": sd["dt"], "scheme": sd["scheme"], "samples": sd["samples"], **ams_kw}
    ref = dict(cfg["reference"])
    if ref["block"] == "shaped_mlp":
        ref.update(tau0=1.0, heads=1)
    ref = _with_norm(
        {"block": ref["block"], "tau0": float(ref["tau0"]), "gamma": float(ref["gamma"]), "heads": int(ref["heads"])},
        ref["norm"],
    )
    for c in [ref, *configs()]:
        add({**common, **c, **sde_kw})
    for c in configs():
        for w in nw["widths"]:
            add({**common, **c, "method": "exact", "width": int(w), "samples": nw["samples"], **ams_kw})
    for w in nw["reference_widths"]:
        add({**common, **ref, "method": "exact", "width": int(w), "samples": nw["reference_samples"], **ams_kw})
    c = cfg["collapse"]
    if c["samples"]:
        for tau0 in c["tau0"]:
            for gamma in c["gamma"]:
                T = c["s"] / float(gamma) ** 2
                add(
                    {
                        **common,
                        "T": T,
                        "block": "shaped_transformer",
                        "tau0": float(tau0),
                        "gamma": float(gamma),
                        "heads": 1,
                        "method": "sde",
                        "dt": min(sd["dt"], T),
                        "scheme": sd["scheme"],
                        "samples": c["samples"],
                        "ams_particles": 0,
                        "ams_repeats": 0,
                        "ams_below": 0,
                        "collapse": True,
                    }
                )
    return pts


def _with_norm(point: dict, norm: str) -> dict:
    """A point's parameters with its norm; "none" is left out, so that the points
    of an atlas without norms keep the parameters (and files) they had."""
    return point if norm == "none" else {**point, "norm": norm}


def _row(params: Mapping, result: Mapping, confidence: float, level: float) -> dict:
    """One row of the points table: plain Monte Carlo with its Clopper-Pearson
    interval, the splitting runs (if any) with their t interval or "unresolved",
    and the verdict of :func:`shaped_transformer.analysis.verdict` on the point's
    best interval (the resolved splitting runs, else plain Monte Carlo)."""
    from . import analysis as an

    n, k = int(result["samples"]), int(result["blown"])
    mc = an.binomial_interval(k, n, level=confidence, method="exact")
    row = {
        "block": params["block"],
        "heads": params["heads"],
        "tau0": params["tau0"],
        "gamma": params["gamma"],
        "norm": params.get("norm", "none"),
        "causal": bool(params.get("causal", False)),
        "method": params["method"],
        "width": params.get("width"),
        "dt": params.get("dt") if params["method"] == "sde" else None,
        "samples": n,
        "blown": k,
        "p": k / n,
        "ci_low": mc.low,
        "ci_high": mc.high,
        "p_ams": None,
        "ams_ci_low": None,
        "ams_ci_high": None,
        "ams_runs": None,
        "ams": "",
    }
    best = mc
    runs = result.get("ams_runs")
    if runs:
        status = result.get("ams_status") or ["resolved"] * len(runs)
        bad = [x for x in status if x != "resolved"]
        row["ams_runs"] = len(runs)
        if bad:
            # Runs that died out (or hit a bound) say nothing an interval could use: the
            # point is shown as unresolved and keeps its plain Monte Carlo interval.
            counts = ", ".join(f"{bad.count(x)} {x}" for x in dict.fromkeys(bad))
            row["ams"] = f"unresolved ({len(bad)} of {len(runs)} runs: {counts})"
        else:
            iv = an.runs_interval(runs, level=confidence)
            row.update(p_ams=iv.value, ams_ci_low=iv.low, ams_ci_high=iv.high, ams="resolved")
            best = iv
    if result.get("collapsed") is not None:  # atlases written before collapse was counted have none
        ci = an.binomial_interval(int(result["collapsed"]), n, level=confidence, method="exact")
        row.update(
            collapsed=int(result["collapsed"]), p_collapsed=ci.value, collapsed_low=ci.low, collapsed_high=ci.high
        )
    row.update(
        p_best=best.value,
        best_low=best.low,
        best_high=best.high,
        best_method="ams" if best is not mc else "mc",
        interval=best.method,
    )
    row["verdict"] = an.verdict(best, level)
    return row


def _rare(cfg: dict, threads: int | None, log: Callable[[str], None]) -> dict | None:
    r, s = cfg["rare"], cfg["study"]
    if not r["repeats"]:
        return None
    from ._blocks import make_network
    from .inputs import equicorrelated
    from .splitting import ams_repeat

    net = make_network(r["block"], heads=r["heads"], tau0=r["tau0"], gamma=r["gamma"], causal=s["causal"])
    V0 = equicorrelated(s["m"], s["rho0"])
    log(
        f"rare point: {r['repeats']} splitting runs of {r['particles']} particles "
        f"({r['block']}, tau0={r['tau0']}, gamma={r['gamma']}, heads={r['heads']})"
    )
    from .splitting import UnresolvedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnresolvedWarning)  # the rare point's table says "unresolved" instead
        rep = ams_repeat(
            net,
            V0=V0,
            repeats=r["repeats"],
            seed=derived_seed(s["seed"], 7919),
            level=s["confidence"],
            T=s["T"],
            dt=r["dt"],
            blowup=s["blowup"],
            particles=r["particles"],
            threads=threads,
        )
    results = rep.pop("results")
    rep["interval"] = rep["interval"].to_dict()
    rep["config"] = dict(r)
    rep["iterations"] = [x.iterations for x in results]
    rep["elapsed_per_run_s"] = [x.elapsed_s for x in results]
    rep["path_steps_per_run"] = [x.path_steps for x in results]
    return rep


def run_atlas(
    out: str | Path,
    *,
    size: str = "default",
    config: str | Path | Mapping | None = None,
    seed: int | None = None,
    executor: Any = None,
    workers: int | None = None,
    threads: int | None = None,
    progress: bool | None = None,
    plots: bool = True,
    log: Callable[[str], None] = lambda s: None,
) -> dict:
    """Runs the atlas and writes its folder (the module docstring lists the files).

    The grid runs through :func:`shaped_transformer.sweep.sweep` into
    ``out/points``, one JSON file per point, so that an interrupted atlas resumes
    where it stopped.

    Parameters
    ----------
    out : str or Path
        The output folder: empty, new, or a previous atlas (whose points are reused).
    size : {"tiny", "small", "default", "large"}, default "default"
        The size preset.
    config : str, Path or mapping, optional
        A TOML file or a nested dict overriding any entry (see :func:`atlas_config`).
    seed : int, optional
        ``study.seed``.
    executor : concurrent.futures.Executor, optional
        Runs the points (default: a local process pool of ``workers``, each point on
        one thread).
    workers : int, optional
        The workers of the default pool (default: all cores).
    threads : int, optional
        The threads of the rare point's splitting runs (default: all cores).
    progress : bool, optional
        A tqdm bar over points (None: only on a terminal).
    plots : bool, default True
        Write the figures (:func:`shaped_transformer.plotting.atlas_figures`).
    log : callable, optional
        Called with one line per stage.

    Returns
    -------
    dict
        What ``atlas.json`` holds: the configuration, the points table, the
        scaling test, the raw records, the rare point and the elapsed time.

    Raises
    ------
    ValueError
        For a bad configuration or an unusable ``out``, before anything runs.
    """
    from .sweep import sweep

    cfg = atlas_config(size, config, seed=seed)
    out = _prepare_out(Path(out))
    t_start = time.perf_counter()
    pts = _points(cfg)
    log(f"atlas: {len(pts)} points into {out / 'points'} (resumable)")
    res = sweep(atlas_point, pts, out / "points", executor=executor, max_workers=workers, progress=progress)
    raw = [{"params": rec["params"], "result": rec["result"]} for rec in res.records]
    rows = []
    for rec in res.records:
        if not rec["params"].get("collapse"):
            rows.append(
                _row(rec["params"], rec["result"], cfg["study"]["confidence"], cfg["study"]["level"])
                | {"elapsed_s": rec.get("elapsed_s")}
            )
    collapse = _collapse_rows(raw, cfg["study"]["confidence"])
    if collapse:
        _write_csv(out / "atlas_collapse.csv", collapse)
    rare = _rare(cfg, threads, log)
    _write_csv(out / "atlas_points.csv", rows)
    _write_csv(out / "atlas_curves.csv", _curve_rows(cfg, rows, [x for x in raw if not x["params"].get("collapse")]))
    data = {
        "config": cfg,
        "size": size,
        "points": rows,
        "collapse": collapse,
        "raw": raw,
        "rare": rare,
        "elapsed_s": time.perf_counter() - t_start,
    }
    with open(out / "atlas.json", "w") as f:
        json.dump(data, f, indent=1, default=_json_default)
    if rare is not None:
        with open(out / "rare.json", "w") as f:
            json.dump(rare, f, indent=1, default=_json_default)
    figures = _figures(out, cfg, rows, raw) if plots else []
    (out / "atlas.md").write_text(_markdown(cfg, size, rows, rare, figures, collapse))
    log(f"atlas: done in {time.perf_counter() - t_start:.0f} s")
    return data


def _curve_rows(cfg: dict, rows: list[dict], raw: list[dict]) -> list[dict]:
    """atlas_curves.csv: P(blow-up by t) of every point on the time grid, with its
    interval (:func:`shaped_transformer.analysis.proportion_curve`)."""
    from .analysis import proportion_curve

    s = cfg["study"]
    tgrid = np.linspace(0.0, s["T"], s["times"] + 1)
    curves = []
    for row, x in zip(rows, raw):
        n = x["result"]["samples"]
        p, los, his = proportion_curve(x["result"]["blowup_times"], n, tgrid, level=s["confidence"])
        for t, pk, lo, hi in zip(tgrid, p, los, his):
            k = int(round(pk * n))
            curves.append(
                {k2: row[k2] for k2 in ("block", "heads", "tau0", "gamma", "norm", "method", "width")}
                | {"t": float(t), "blown": k, "samples": n, "p": k / n, "ci_low": float(lo), "ci_high": float(hi)}
            )
    return curves


def _collapse_rows(raw: list[dict], confidence: float) -> list[dict]:
    """atlas_collapse.csv: P(blow-up by T) of each point of the scaling test, with its
    Clopper-Pearson interval and the two clocks gamma^2 T and gamma^2 T / tau0^2."""
    from .analysis import binomial_interval

    out = []
    for x in raw:
        if x["params"].get("collapse"):
            pr, r = x["params"], x["result"]
            iv = binomial_interval(r["blown"], r["samples"], level=confidence, method="exact")
            out.append(
                {
                    "tau0": pr["tau0"],
                    "gamma": pr["gamma"],
                    "T": pr["T"],
                    "gamma2_T": pr["gamma"] ** 2 * pr["T"],
                    "drift_clock": pr["gamma"] ** 2 * pr["T"] / pr["tau0"] ** 2,
                    "samples": r["samples"],
                    "blown": r["blown"],
                    "p": r["blown"] / r["samples"],
                    "ci_low": iv.low,
                    "ci_high": iv.high,
                }
            )
    return out


def _figures(out: Path, cfg: dict, rows: list[dict], raw: list[dict]) -> list[str]:
    """The atlas's figures (:func:`shaped_transformer.plotting.atlas_figures`)."""
    try:
        from .plotting import atlas_figures

        return atlas_figures(out, cfg, rows, raw)
    except ImportError as exc:  # pragma: no cover - matplotlib is a dependency
        warnings.warn(f"the atlas figures are skipped: {exc}", RuntimeWarning, stacklevel=2)
        return []


#: Written into every atlas folder: an existing --out is written into only when it
#: holds this (or nothing but what an atlas writes), as the report guards its --out.
_MARKER = ".shaped-transformer-atlas"
_ATLAS_FILES = {
    "atlas.json",
    "atlas.md",
    "atlas_points.csv",
    "atlas_curves.csv",
    "atlas_collapse.csv",
    "rare.json",
    "curves.png",
    "width.png",
    "blowup_times.png",
    "collapse.png",
    "points",
    _MARKER,
}


def _prepare_out(out: Path) -> Path:
    """Checks ``out`` before anything runs and creates it with the atlas's marker.

    The atlas writes its files into ``out`` (and resumes from ``out/points``), so
    an existing folder is used only when it is empty or a previous atlas (it holds
    the marker, or nothing but files an atlas writes); the current folder and its
    parents are refused, so ``--out .`` cannot scatter files among a user's own."""
    from ._outdir import check_out

    check_out(
        out,
        marker=_MARKER,
        what="atlas",
        ours=lambda n: n in _ATLAS_FILES or (n.startswith("heatmap_") and n.endswith(".png")),
    )
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / _MARKER).write_text(
            "shaped-transformer atlas; `shaped-transformer atlas --out` writes into this folder\n"
        )
    except OSError as exc:
        raise ValueError(f"--out {out}: cannot create the output folder ({exc.strerror or exc})") from None
    return out


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)


def _write_csv(path: Path, rows: list[dict]) -> None:
    cols: list[str] = []
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in rows:
            w.writerow(["" if r.get(c) is None else r[c] for c in cols])


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def _markdown(
    cfg: dict, size: str, rows: list[dict], rare: dict | None, figures: list[str], collapse: Sequence[dict] = ()
) -> str:
    from .assess import COLLAPSE_EPS

    s = cfg["study"]
    conf = f"{100 * s['confidence']:g}%"
    lines = [
        "# Stability atlas",
        "",
        f"Size preset `{size}`; m = {s['m']} tokens, rho0 = {s['rho0']}, T = {s['T']}, "
        f"stop when max diag V > {s['blowup']:g} or non-finite (network and SDE alike). "
        f"Intervals: {conf} Clopper-Pearson (plain Monte Carlo) or t intervals over repeated "
        "splitting runs (ams; networks through the exact chain at dt = 1/width).",
        "",
        f"**Verdict, one rule for every point and method**: *safe* when the point's interval lies below "
        f"{s['level']:g}, *unsafe* when it lies above, *undecided* otherwise. The interval is that of the "
        "splitting runs where they ran and resolved the probability, else plain Monte Carlo's (column "
        "`interval`). With no blow-up in n samples the Clopper-Pearson upper end is about 3.7 / n, so plain "
        f"Monte Carlo alone calls a point safe at {s['level']:g} only from about {_samples_to_certify(s):,} "
        "samples on.",
        "",
    ]
    unresolved = [r for r in rows if r["ams"].startswith("unresolved")]
    if unresolved:
        lines += [
            f"**{len(unresolved)} point(s) unresolved by splitting** (column `ams`): their splitting runs died out "
            "or hit a bound, which says nothing about the probability, so their verdict rests on plain Monte "
            "Carlo alone. Raise `splitting.particles` to resolve them.",
            "",
        ]
    for f in figures:
        lines += [f"![{f}]({f})", ""]
    if rare:
        lines += _rare_lines(rare, conf)
    if collapse:
        cc = ["tau0", "gamma", "T", "gamma2_T", "drift_clock", "samples", "blown", "p", "ci_low", "ci_high"]
        lines += [
            "## Scaling test (SDE, shaped Transformer, H = 1, P(blow-up by T) at T = s / gamma^2)",
            "",
            "| " + " | ".join(cc) + " |",
            "|" + "---|" * len(cc),
        ]
        lines += ["| " + " | ".join(_fmt(r.get(k)) for k in cc) + " |" for r in collapse]
        lines.append("")
    if any(r["norm"] != "none" for r in rows):
        lines += [
            "**Normalized points** (column `norm`; docs/norms.md): a normalized network cannot blow up (post-norm "
            "keeps diag V = 1, pre-norm keeps the token scales near 1), so their P(blow-up) reads 0 with its plain "
            "Monte Carlo interval and no splitting runs for them, SDE and network alike. Collapse (columns "
            f"`collapsed`, `p_collapsed` with its {conf} interval: mean token correlation above "
            f"{1 - COLLAPSE_EPS:g} at T) is their informative event.",
            "",
        ]
    cols = (
        "block heads tau0 gamma norm method width samples blown p ci_low ci_high ams p_ams ams_ci_low ams_ci_high "
        "interval verdict collapsed p_collapsed collapsed_low collapsed_high"
    ).split()
    lines += ["## All points", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |")
    lines.append("")
    return "\n".join(lines)


def _rare_lines(rare: dict, conf: str) -> list[str]:
    """The atlas page's section on its rare point (resolved or not)."""
    c = rare["config"]
    head = f"{c['block']}, tau0 = {c['tau0']}, gamma = {c['gamma']}, H = {c['heads']}, dt = {c['dt']}: "
    if rare.get("resolved", True):
        body = (
            f"P = {rare['p']:.3g} ({conf} interval {rare['ci_low']:.3g} .. {rare['ci_high']:.3g}) "
            f"from {rare['repeats']} runs of {rare['particles']} particles; relative error of one run "
            f"{rare['rel_error_single']:.2f}, of the mean {rare['rel_error_mean']:.2f}; "
            f"{rare['elapsed_s']:.0f} s in all."
        )
    else:
        body = (
            f"**unresolved**: {rare['unresolved']} of {rare['repeats']} runs of {rare['particles']} particles "
            f"did not resolve P ({', '.join(rare['statuses'])}); their mean {rare['p']:.3g} is not an "
            f"estimate to trust and no interval is given; {rare['elapsed_s']:.0f} s in all."
        )
    return ["## Rare point (adaptive multilevel splitting)", "", head + body, ""]


def _samples_to_certify(study: Mapping) -> int:
    """The smallest n at which 0 blow-ups in n samples gives a Clopper-Pearson upper
    end below study.level: (1 - n_upper)^n = (1 - confidence) / 2."""
    a = (1.0 - study["confidence"]) / 2
    return int(math.ceil(math.log(a) / math.log1p(-study["level"])))
