"""The stability atlas behind ``shaped-transformer atlas``: how likely a deep shaped
network is to blow up, and where it is safe.

One stopping rule for networks and the SDE alike: a sample (path) stops the first
time max diag V exceeds ``blowup`` (default 1e4) or turns non-finite.  The atlas
estimates P(blow-up by t) with 95% Clopper-Pearson intervals

* over a grid of tau0, gamma and heads, for the attention block, the shaped MLP
  block and the shaped Transformer layer (attention + MLP);
* for the SDE (Euler-Maruyama; tamed Euler bounds the drift increment and so
  suppresses blow-ups, see docs/atlas.md) and for networks of several widths (the
  exact chain, exact in law at any width, depth = T * width);
* at the points where plain Monte Carlo sees few blow-ups, SDE and networks
  alike, by adaptive multilevel splitting (:mod:`shaped_transformer.splitting`;
  networks through the exact chain at dt = 1/width), marked "unresolved" where
  the splitting runs did not resolve the probability;
* and at one "rare" point by repeated splitting runs (the probability far below
  what plain Monte Carlo reaches, with its interval and relative error).

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
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from ._validate import check_seed, derived_seed

if TYPE_CHECKING:
    from .sde import Scheme

__all__ = ["DEFAULT_ATLAS", "ATLAS_SIZES", "atlas_config", "atlas_point", "binomial_ci", "run_atlas"]

BLOCKS = ("shaped_attention", "shaped_mlp", "shaped_transformer")

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
    "grid": {
        "blocks": list(BLOCKS),
        "tau0": [0.5, 1.0, 2.0],
        "gamma": [0.3, 0.5, 0.7],
        "heads": [1, 4],
    },
    # The point of the curve, width and blow-up-time figures.
    "reference": {"block": "shaped_transformer", "tau0": 1.0, "gamma": 0.5, "heads": 1},
    "sde": {"samples": 2000, "dt": 1e-3, "scheme": "euler"},
    # Splitting runs (adaptive multilevel splitting) at every point, SDE or network,
    # where plain Monte Carlo saw fewer than `below` blow-ups (particles = 0: off);
    # networks run it on the exact chain at dt = 1 / width.
    "splitting": {"particles": 100, "repeats": 4, "below": 10},
    "network": {"widths": [64, 128, 256], "samples": 1000, "reference_widths": [32, 64, 128, 256, 512],
                "reference_samples": 2000},
    # The scaling test: SDE of the Transformer layer (H = 1) for each (tau0, gamma)
    # up to T = s / gamma^2, so that every curve covers gamma^2 t in [0, s]
    # (samples = 0: skip).
    "collapse": {"s": 0.3, "tau0": [0.5, 1.0, 2.0], "gamma": [0.3, 0.5, 0.7], "samples": 2000},
    # Repeated splitting runs at one point with a tiny probability (repeats = 0: skip).
    "rare": {"block": "shaped_transformer", "tau0": 1.0, "gamma": 0.25, "heads": 1, "particles": 1000,
             "repeats": 8, "dt": 1e-3},
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
        "network": {"widths": [64, 128], "samples": 400, "reference_widths": [32, 64, 128, 256],
                    "reference_samples": 800},
        "rare": {"particles": 300, "repeats": 4, "gamma": 0.3},
        "collapse": {"samples": 1000},
    },
    "default": {},
    "large": {
        "grid": {"tau0": [0.5, 0.75, 1.0, 1.5, 2.0], "gamma": [0.2, 0.3, 0.4, 0.5, 0.6, 0.7], "heads": [1, 2, 4]},
        "sde": {"samples": 8000},
        "splitting": {"particles": 200},
        "network": {"widths": [64, 128, 256, 512], "samples": 4000, "reference_widths": [32, 64, 128, 256, 512, 1024],
                    "reference_samples": 8000},
        "rare": {"particles": 2000, "repeats": 16},
        "collapse": {"samples": 8000, "tau0": [0.5, 0.75, 1.0, 1.5, 2.0], "gamma": [0.2, 0.3, 0.4, 0.5, 0.6, 0.7]},
    },
}

_TYPES: dict[str, dict[str, type]] = {
    "study": {"m": int, "rho0": float, "T": float, "blowup": float, "seed": int, "level": float, "times": int,
              "confidence": float, "causal": bool},
    "grid": {"blocks": list, "tau0": list, "gamma": list, "heads": list},
    "reference": {"block": str, "tau0": float, "gamma": float, "heads": int},
    "sde": {"samples": int, "dt": float, "scheme": str},
    "splitting": {"particles": int, "repeats": int, "below": int},
    "network": {"widths": list, "samples": int, "reference_widths": list, "reference_samples": int},
    "rare": {"block": str, "tau0": float, "gamma": float, "heads": int, "particles": int, "repeats": int,
             "dt": float},
    "collapse": {"s": float, "tau0": list, "gamma": list, "samples": int},
}


def atlas_config(size: str = "default", config: str | Path | Mapping | None = None, *,
                 seed: int | None = None) -> dict:
    """The atlas: :data:`DEFAULT_ATLAS`, then the ``size`` preset, then ``config`` (a
    TOML path or a nested dict with the same tables), then ``seed``; validated."""
    from ._toml import layered_config, merge_typed

    cfg = layered_config(DEFAULT_ATLAS, ATLAS_SIZES, size, config, seed, partial(merge_typed, types=_TYPES),
                         "--seed (study.seed)")
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
    for t, k in (("sde", "samples"), ("network", "samples"), ("network", "reference_samples")):
        if cfg[t][k] < 1:
            raise ValueError(f"{t}.{k} must be >= 1, got {cfg[t][k]}")
    if not cfg["sde"]["dt"] > 0 or cfg["sde"]["dt"] > s["T"]:
        raise ValueError(f"sde.dt must lie in (0, T], got {cfg['sde']['dt']}")
    if cfg["sde"]["scheme"] not in ("euler", "tamed_euler", "exact_chain"):
        raise ValueError(f"sde.scheme must be 'euler', 'tamed_euler' or 'exact_chain', got {cfg['sde']['scheme']!r}")
    for t, k in (("splitting", "particles"), ("splitting", "repeats"), ("splitting", "below"), ("rare", "particles"),
                 ("rare", "repeats")):
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
                raise ValueError(f"collapse.{k} must be a list of numbers in (0, {'1]' if k == 'gamma' else 'inf)'}, got {v!r}")
    if cfg["rare"]["repeats"] and (cfg["rare"]["repeats"] < 2 or cfg["rare"]["particles"] < 2):
        raise ValueError("rare.repeats and rare.particles must be >= 2 (or repeats = 0 to skip)")


# ---------------------------------------------------------------------------
# Intervals
# ---------------------------------------------------------------------------


def binomial_ci(k, n, *, confidence: float = 0.95):
    """Clopper-Pearson (exact) interval of a binomial proportion k / n.

    The quantiles of the beta distribution (scipy.stats.beta), the same numbers as
    ``scipy.stats.binomtest(k, n).proportion_ci(method="exact")`` (and as
    :func:`shaped_transformer.analysis.binomial_interval`, which returns one
    :class:`~shaped_transformer.analysis.Interval`), vectorized over ``k`` (and
    ``n``) for the curves.  Scalars in, a pair of floats out; arrays in, a pair of
    arrays.
    """
    from scipy.stats import beta

    k_arr = np.asarray(k, dtype=float)
    n_arr = np.asarray(n, dtype=float)
    a = (1.0 - confidence) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = np.where(k_arr > 0, beta.ppf(a, k_arr, n_arr - k_arr + 1), 0.0)
        hi = np.where(k_arr < n_arr, beta.ppf(1 - a, k_arr + 1, n_arr - k_arr), 1.0)
    if lo.ndim == 0:
        return float(lo), float(hi)
    return lo, hi


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
) -> dict:
    """P(blow-up by T) of one configuration by plain Monte Carlo, and by splitting
    where plain Monte Carlo saw few blow-ups.

    ``method`` "sde" integrates the covariance SDE (``scheme``, step ``dt``);
    "exact" runs the exact chain of a network of ``width`` and depth
    ``round(T * width)``.  Returns the sample count, the number that blew up, and
    their blow-up times (sorted; time = layer / width for networks).  When fewer
    than ``ams_below`` samples blew up and ``ams_particles`` > 0, it adds
    ``ams_repeats`` splitting runs (:func:`shaped_transformer.splitting.ams_blowup`;
    for a network the exact-chain scheme at dt = 1 / width up to depth / width, the
    same network and depth) as "ams_runs" (estimates), "ams_status" (each run's
    status: only "resolved" runs estimate P) and "ams_log10_weight".  ``collapse``
    only tags the points of the scaling test; ``causal`` makes the shaped heads
    causal (docs/causal.md).
    """
    from ._blocks import make_network
    from .inputs import equicorrelated

    net = make_network(block, heads=heads, tau0=tau0, gamma=gamma, causal=causal)
    V0 = equicorrelated(m, rho0)
    out: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # blow-ups are the point here
        if method == "sde":
            from .sde import solve_sde

            res = solve_sde(net, V0=V0, T=T, dt=dt, paths=samples, scheme=scheme, seed=seed, threads=threads,
                            save_at=[0.0, T], blowup=blowup, progress=False)
            ams_T, ams_dt, ams_scheme = T, dt, scheme
        elif method == "exact":
            from .simulate import simulate

            if width is None:
                raise ValueError("width must be given with method='exact'")
            depth = int(round(T * width))
            res = simulate(net, V0=V0, width=width, depth=depth, samples=samples, method="exact", seed=seed,
                           threads=threads, save_at=np.array([0, depth]), blowup=blowup, progress=False)
            ams_T, ams_dt, ams_scheme = depth / width, 1.0 / width, "exact_chain"
        else:
            raise ValueError(f"method must be 'sde' or 'exact', got {method!r}")
    times = np.sort(res.exploded_at[np.isfinite(res.exploded_at)])
    out["samples"] = int(samples)
    out["blown"] = int(times.size)
    out["blowup_times"] = times.tolist()
    if ams_particles > 0 and times.size < ams_below and ams_T > 0:
        from .splitting import UnresolvedWarning, ams_blowup

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnresolvedWarning)  # recorded in ams_status instead
            runs = [ams_blowup(net, V0=V0, T=ams_T, dt=ams_dt, scheme=ams_scheme, blowup=blowup,
                               particles=ams_particles, seed=derived_seed(seed, 1000 + i), threads=threads)
                    for i in range(ams_repeats)]
        out["ams_runs"] = [r.p for r in runs]
        out["ams_status"] = [r.status for r in runs]
        out["ams_log10_weight"] = [r.log10_weight for r in runs]
        out["ams_particles"] = int(ams_particles)
    return out


# ---------------------------------------------------------------------------
# The study
# ---------------------------------------------------------------------------


def _points(cfg: dict) -> list[dict]:
    """All sweep points: the grid for the SDE and each width, plus the reference widths."""
    s, g, sd, nw, sp = cfg["study"], cfg["grid"], cfg["sde"], cfg["network"], cfg["splitting"]
    common = {"m": s["m"], "rho0": s["rho0"], "T": s["T"], "blowup": s["blowup"], "seed": s["seed"],
              "causal": s["causal"]}
    seen: set = set()
    pts: list[dict] = []

    def add(p: dict) -> None:
        key = json.dumps(p, sort_keys=True)
        if key not in seen:
            seen.add(key)
            pts.append(p)

    def configs():
        for block in g["blocks"]:
            for tau0 in g["tau0"]:
                for gamma in g["gamma"]:
                    for heads in g["heads"]:
                        if block == "shaped_mlp":  # no tau0, no heads
                            yield {"block": block, "tau0": 1.0, "gamma": float(gamma), "heads": 1}
                        else:
                            yield {"block": block, "tau0": float(tau0), "gamma": float(gamma), "heads": int(heads)}

    ams_kw = {"ams_particles": sp["particles"], "ams_repeats": sp["repeats"], "ams_below": sp["below"]}
    sde_kw = {"method": "sde", "dt": sd["dt"], "scheme": sd["scheme"], "samples": sd["samples"], **ams_kw}
    ref = dict(cfg["reference"])
    if ref["block"] == "shaped_mlp":
        ref.update(tau0=1.0, heads=1)
    ref = {"block": ref["block"], "tau0": float(ref["tau0"]), "gamma": float(ref["gamma"]), "heads": int(ref["heads"])}
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
                add({**common, "T": T, "block": "shaped_transformer", "tau0": float(tau0), "gamma": float(gamma),
                     "heads": 1, "method": "sde", "dt": min(sd["dt"], T), "scheme": sd["scheme"],
                     "samples": c["samples"], "ams_particles": 0, "ams_repeats": 0, "ams_below": 0, "collapse": True})
    return pts


def _row(params: Mapping, result: Mapping, confidence: float, level: float) -> dict:
    """One row of the points table: plain Monte Carlo with its Clopper-Pearson
    interval, the splitting runs (if any) with their t interval or "unresolved",
    and the verdict of :func:`shaped_transformer.analysis.verdict` on the point's
    best interval (the resolved splitting runs, else plain Monte Carlo)."""
    from . import analysis as an

    n, k = int(result["samples"]), int(result["blown"])
    mc = an.binomial_interval(k, n, level=confidence, method="exact")
    row = {
        "block": params["block"], "heads": params["heads"], "tau0": params["tau0"], "gamma": params["gamma"],
        "causal": bool(params.get("causal", False)), "method": params["method"], "width": params.get("width"),
        "dt": params.get("dt") if params["method"] == "sde" else None,
        "samples": n, "blown": k, "p": k / n, "ci_low": mc.low, "ci_high": mc.high,
        "p_ams": None, "ams_ci_low": None, "ams_ci_high": None, "ams_runs": None, "ams": "",
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
    row.update(p_best=best.value, best_low=best.low, best_high=best.high,
               best_method="ams" if best is not mc else "mc", interval=best.method)
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
    log(f"rare point: {r['repeats']} splitting runs of {r['particles']} particles "
        f"({r['block']}, tau0={r['tau0']}, gamma={r['gamma']}, heads={r['heads']})")
    from .splitting import UnresolvedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnresolvedWarning)  # the rare point's table says "unresolved" instead
        rep = ams_repeat(net, V0=V0, repeats=r["repeats"], seed=derived_seed(s["seed"], 7919), level=s["confidence"],
                         T=s["T"], dt=r["dt"], blowup=s["blowup"], particles=r["particles"], threads=threads)
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
    """Runs the atlas and writes its folder ``out`` (see the module docstring).

    The grid runs through :func:`shaped_transformer.sweep.sweep` into ``out/points``
    (resumable; ``executor`` any ``concurrent.futures.Executor``, default a local
    process pool of ``workers``, each point on one thread).  ``threads`` is used by
    the rare-point splitting runs (default: all cores).  Returns the dictionary
    written to ``atlas.json``.
    """
    from .sweep import sweep

    cfg = atlas_config(size, config, seed=seed)
    out = _prepare_out(Path(out))
    s = cfg["study"]
    t_start = time.perf_counter()
    pts = _points(cfg)
    log(f"atlas: {len(pts)} points into {out / 'points'} (resumable)")
    res = sweep(atlas_point, pts, out / "points", executor=executor, max_workers=workers, progress=progress)
    rows, curves = [], []
    tgrid = np.linspace(0.0, s["T"], s["times"] + 1)
    raw = []
    for rec in res.records:
        p, r = rec["params"], rec["result"]
        if p.get("collapse"):
            raw.append({"params": p, "result": r})
            continue
        row = _row(p, r, s["confidence"], s["level"])
        row["elapsed_s"] = rec.get("elapsed_s")
        rows.append(row)
        bt = np.asarray(r["blowup_times"], dtype=float)
        ks = np.searchsorted(np.sort(bt), tgrid + 1e-12, side="right")
        los, his = binomial_ci(ks, r["samples"], confidence=s["confidence"])
        for t, k, lo, hi in zip(tgrid, ks, los, his):
            curves.append({k2: row[k2] for k2 in ("block", "heads", "tau0", "gamma", "method", "width")}
                          | {"t": float(t), "blown": int(k), "samples": r["samples"], "p": int(k) / r["samples"],
                             "ci_low": float(lo), "ci_high": float(hi)})
        raw.append({"params": p, "result": r})
    collapse = []
    for x in raw:
        if x["params"].get("collapse"):
            pr, r = x["params"], x["result"]
            lo, hi = binomial_ci(r["blown"], r["samples"], confidence=s["confidence"])
            collapse.append({"tau0": pr["tau0"], "gamma": pr["gamma"], "T": pr["T"], "gamma2_T": pr["gamma"] ** 2 * pr["T"],
                             "drift_clock": pr["gamma"] ** 2 * pr["T"] / pr["tau0"] ** 2, "samples": r["samples"],
                             "blown": r["blown"], "p": r["blown"] / r["samples"], "ci_low": lo, "ci_high": hi})
    if collapse:
        _write_csv(out / "atlas_collapse.csv", collapse)
    rare = _rare(cfg, threads, log)
    _write_csv(out / "atlas_points.csv", rows)
    _write_csv(out / "atlas_curves.csv", curves)
    data = {"config": cfg, "size": size, "points": rows, "collapse": collapse, "raw": raw, "rare": rare,
            "elapsed_s": time.perf_counter() - t_start}
    with open(out / "atlas.json", "w") as f:
        json.dump(data, f, indent=1, default=_json_default)
    if rare is not None:
        with open(out / "rare.json", "w") as f:
            json.dump(rare, f, indent=1, default=_json_default)
    figures: list[str] = []
    if plots:
        figures = _plots(out, cfg, rows, raw)
    (out / "atlas.md").write_text(_markdown(cfg, size, rows, rare, figures, collapse))
    log(f"atlas: done in {time.perf_counter() - t_start:.0f} s")
    return data


#: Written into every atlas folder: an existing --out is written into only when it
#: holds this (or nothing but what an atlas writes), as the report guards its --out.
_MARKER = ".shaped-transformer-atlas"
_ATLAS_FILES = {"atlas.json", "atlas.md", "atlas_points.csv", "atlas_curves.csv", "atlas_collapse.csv", "rare.json",
                "curves.png", "width.png", "blowup_times.png", "collapse.png", "points", _MARKER}


def _prepare_out(out: Path) -> Path:
    """Checks ``out`` before anything runs and creates it with the atlas's marker.

    The atlas writes its files into ``out`` (and resumes from ``out/points``), so
    an existing folder is used only when it is empty or a previous atlas (it holds
    the marker, or nothing but files an atlas writes); the current folder and its
    parents are refused, so ``--out .`` cannot scatter files among a user's own."""
    from ._outdir import check_out

    check_out(out, marker=_MARKER, what="atlas",
              ours=lambda n: n in _ATLAS_FILES or (n.startswith("heatmap_") and n.endswith(".png")))
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / _MARKER).write_text("shaped-transformer atlas; `shaped-transformer atlas --out` writes into this folder\n")
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


# ---------------------------------------------------------------------------
# Figures (matplotlib is imported here only)
# ---------------------------------------------------------------------------


def _select(rows, **kw):
    return [r for r in rows if all(r.get(k) == v for k, v in kw.items())]


def _legend(ax, **kw) -> None:
    """A legend when the panel has labelled curves, else a note that it has no
    data (matplotlib warns about an empty legend)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kw)
    else:
        ax.text(0.5, 0.5, "no run at this point", transform=ax.transAxes, ha="center", va="center", fontsize=8,
                color="grey")


def _plots(out: Path, cfg: dict, rows: list[dict], raw: list[dict]) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - optional dependency
        warnings.warn("matplotlib is not installed: the atlas figures are skipped", RuntimeWarning, stacklevel=2)
        return []
    s = cfg["study"]
    ref = cfg["reference"]
    ref_kw = {"block": ref["block"], "tau0": float(ref["tau0"]) if ref["block"] != "shaped_mlp" else 1.0,
              "gamma": float(ref["gamma"]), "heads": int(ref["heads"]) if ref["block"] != "shaped_mlp" else 1}
    files = []

    def raw_for(**kw):
        xs = [x for x in raw if not x["params"].get("collapse")
              and all(x["params"].get(k) == v for k, v in kw.items())]
        # One record per (method, width): the reference runs (more samples) win.
        best: dict = {}
        for x in xs:
            key = (x["params"]["method"], x["params"].get("width"))
            if key not in best or x["result"]["samples"] > best[key]["result"]["samples"]:
                best[key] = x
        return list(best.values())

    def curve(x, tgrid):
        bt = np.asarray(x["result"]["blowup_times"], dtype=float)
        n = x["result"]["samples"]
        k = np.searchsorted(np.sort(bt), tgrid + 1e-12, side="right")
        lo, hi = binomial_ci(k, n, confidence=s["confidence"])
        return k / n, lo, hi

    tgrid = np.linspace(0.0, s["T"], 201)
    # 1. P(blow-up by t) at the reference point for each block: SDE and widths.
    blocks = [b for b in cfg["grid"]["blocks"]]
    fig, axes = plt.subplots(1, len(blocks), figsize=(4.6 * len(blocks), 3.8), squeeze=False)
    for ax, b in zip(axes[0], blocks):
        kw = dict(ref_kw, block=b)
        if b == "shaped_mlp":
            kw.update(tau0=1.0, heads=1)
        xs = sorted(raw_for(**kw, method="exact"), key=lambda x: x["params"]["width"])
        cmap = plt.get_cmap("viridis")
        for i, x in enumerate(xs):
            p, lo, hi = curve(x, tgrid)
            c = cmap(i / max(1, len(xs) - 1) * 0.85)
            ax.plot(tgrid, p, color=c, label=f"network n={x['params']['width']}")
            ax.fill_between(tgrid, lo, hi, color=c, alpha=0.15, lw=0)
        for x in raw_for(**kw, method="sde"):
            p, lo, hi = curve(x, tgrid)
            ax.plot(tgrid, p, color="crimson", lw=2, label=f"SDE ({x['params']['scheme']}, dt={x['params']['dt']:g})")
            ax.fill_between(tgrid, lo, hi, color="crimson", alpha=0.15, lw=0)
        ax.set_title(f"{b}\ntau0={kw['tau0']:g}, gamma={kw['gamma']:g}, H={kw['heads']}", fontsize=9)
        ax.set_xlabel("t = depth / width")
        ax.set_ylabel(f"P(max diag V > {s['blowup']:g} by t)")
        _legend(ax, fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=120)
    plt.close(fig)
    files.append("curves.png")

    # 2. P(T) against width at the reference point, SDE as a band.
    fig, ax = plt.subplots(figsize=(5.5, 4))
    best: dict = {}
    for r in _select(rows, **ref_kw, method="exact"):  # the reference runs (more samples) win
        if r["width"] not in best or r["samples"] > best[r["width"]]["samples"]:
            best[r["width"]] = r
    xs = sorted(best.values(), key=lambda r: r["width"])
    if xs:
        w = np.array([r["width"] for r in xs])
        p = np.array([r["p"] for r in xs])
        ax.errorbar(w, p, yerr=[p - np.array([r["ci_low"] for r in xs]), np.array([r["ci_high"] for r in xs]) - p],
                    fmt="o-", capsize=3, label="network (exact chain), 95% CI")
        ax.set_xscale("log", base=2)
    for r in _select(rows, **ref_kw, method="sde"):
        ax.axhline(r["p"], color="crimson", label=f"SDE (Euler, dt={r['dt']:g})")
        ax.axhspan(r["ci_low"], r["ci_high"], color="crimson", alpha=0.15)
    ax.set_xlabel("width n (depth = T n)")
    ax.set_ylabel(f"P(blow-up by T={s['T']:g})")
    ax.set_title(f"{ref_kw['block']}, tau0={ref_kw['tau0']:g}, gamma={ref_kw['gamma']:g}, H={ref_kw['heads']}",
                 fontsize=9)
    _legend(ax, fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "width.png", dpi=120)
    plt.close(fig)
    files.append("width.png")

    # 3. Heatmaps of P(T) over (tau0, gamma), one panel per heads and method.
    tau0s = sorted({float(v) for v in cfg["grid"]["tau0"]})
    gammas = sorted({float(v) for v in cfg["grid"]["gamma"]})
    widths = sorted(cfg["network"]["widths"])
    for b in blocks:
        if b == "shaped_mlp":
            continue
        panels = [(h, "sde", None) for h in cfg["grid"]["heads"]] + [(h, "exact", widths[-1]) for h in cfg["grid"]["heads"]]
        fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.4), squeeze=False)
        for ax, (h, meth, w) in zip(axes[0], panels):
            Z = np.full((len(gammas), len(tau0s)), np.nan)
            txt = {}
            for i, g in enumerate(gammas):
                for j, t0 in enumerate(tau0s):
                    sel = _select(rows, block=b, heads=int(h), tau0=t0, gamma=g, method=meth)
                    if w is not None:
                        sel = [r for r in sel if r["width"] == w]
                    if not sel:
                        continue
                    r = max(sel, key=lambda x: x["samples"])
                    Z[i, j] = math.log10(r["p_best"]) if r["p_best"] > 0 else np.nan
                    mark = {"safe": "", "unsafe": "*", "undecided": "?"}[r["verdict"]] + ("u" if r["ams"].startswith("unresolved") else "")
                    txt[i, j] = ("<%.0e" % r["best_high"] if r["p_best"] == 0 else "%.1e" % r["p_best"]) + mark
            cm = plt.get_cmap("magma_r").with_extremes(bad="lightgrey")  # grey: no blow-up seen
            im = ax.imshow(np.ma.masked_invalid(Z), origin="lower", cmap=cm, vmin=-7, vmax=0, aspect="auto")
            for (i, j), t in txt.items():
                ax.text(j, i, t, ha="center", va="center", fontsize=6.5,
                        color="white" if np.isfinite(Z[i, j]) and Z[i, j] > -3.5 else "black")
            lvl = math.log10(s["level"])
            if np.isfinite(Z).all() and len(tau0s) > 1 and len(gammas) > 1 and Z.min() < lvl < Z.max():
                ax.contour(Z, levels=[math.log10(s["level"])], colors="cyan", linewidths=1.5)
            ax.set_xticks(range(len(tau0s)), [f"{v:g}" for v in tau0s])
            ax.set_yticks(range(len(gammas)), [f"{v:g}" for v in gammas])
            ax.set_xlabel("tau0")
            if ax is axes[0][0]:
                ax.set_ylabel("gamma")
            ax.set_title(f"{'SDE' if meth == 'sde' else f'network n={w}'}, H={h}", fontsize=9)
        fig.colorbar(im, ax=list(axes[0]), label=f"log10 P(blow-up by T={s['T']:g})", shrink=0.9)
        fig.suptitle(f"{b}: cyan line P = {s['level']:g}; * interval above it, ? interval straddles it, "
                     "u splitting unresolved; grey: no blow-up seen (< upper bound)", fontsize=9)
        fig.savefig(out / f"heatmap_{b}.png", dpi=120, bbox_inches="tight")
        plt.close(fig)
        files.append(f"heatmap_{b}.png")

    # 4. Distribution of the blow-up time at the reference point.
    fig, ax = plt.subplots(figsize=(5.5, 4))
    bins = np.linspace(0.0, s["T"], 21).tolist()
    xs = sorted(raw_for(**ref_kw, method="exact"), key=lambda x: x["params"]["width"])
    for x in xs + raw_for(**ref_kw, method="sde"):
        bt = np.asarray(x["result"]["blowup_times"], dtype=float)
        if bt.size == 0:
            continue
        lab = "SDE" if x["params"]["method"] == "sde" else f"n={x['params']['width']}"
        ax.hist(bt, bins=bins, histtype="step", density=True, lw=2 if lab == "SDE" else 1,
                label=f"{lab} ({bt.size} blow-ups)", color="crimson" if lab == "SDE" else None)
    ax.set_xlabel("blow-up time t")
    ax.set_ylabel("density given a blow-up by T")
    ax.set_title("distribution of the blow-up time", fontsize=9)
    _legend(ax, fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "blowup_times.png", dpi=120)
    plt.close(fig)
    files.append("blowup_times.png")

    # 5. Collapse: the scaling test, P(blow-up by t) against gamma^2 t and gamma^2 t / tau0^2.
    xs = [x for x in raw if x["params"].get("collapse")]
    if xs:
        c = cfg["collapse"]
        ct = sorted({float(v) for v in c["tau0"]})
        cg = sorted({float(v) for v in c["gamma"]})
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        cmap = plt.get_cmap("plasma")
        for x in xs:
            pr = x["params"]
            tg = np.linspace(0.0, pr["T"], 301)
            p, lo, hi = curve(x, tg)
            col = cmap(ct.index(pr["tau0"]) / max(1, len(ct) - 1) * 0.85)
            ls = ["-", "--", ":", "-."][cg.index(pr["gamma"]) % 4]
            for ax, scale in zip(axes, (pr["gamma"] ** 2, pr["gamma"] ** 2 / pr["tau0"] ** 2)):
                ax.plot(tg * scale, np.where(p > 0, p, np.nan), color=col, ls=ls,
                        label=f"tau0={pr['tau0']:g}, gamma={pr['gamma']:g}")
                ax.fill_between(tg * scale, np.where(p > 0, lo, np.nan), np.where(p > 0, hi, np.nan), color=col,
                                alpha=0.08, lw=0)
        axes[0].set_xlabel("gamma^2 t (the noise clock)")
        axes[1].set_xlabel("gamma^2 t / tau0^2 (the drift clock)")
        axes[1].set_xscale("log")
        for ax in axes:
            ax.set_yscale("log")
            ax.set_ylabel("P(blow-up by t), SDE")
        _legend(axes[0], fontsize=6, ncol=2)
        fig.suptitle(f"shaped_transformer, H=1, SDE: colour = tau0, line style = gamma; each curve runs to "
                     f"gamma^2 T = {c['s']:g}", fontsize=9)
        fig.tight_layout()
        fig.savefig(out / "collapse.png", dpi=120)
        plt.close(fig)
        files.append("collapse.png")
    return files


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def _markdown(cfg: dict, size: str, rows: list[dict], rare: dict | None, figures: list[str],
              collapse: Sequence[dict] = ()) -> str:
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
        c = rare["config"]
        head = (f"{c['block']}, tau0 = {c['tau0']}, gamma = {c['gamma']}, H = {c['heads']}, dt = {c['dt']}: ")
        if rare.get("resolved", True):
            body = (f"P = {rare['p']:.3g} ({conf} interval {rare['ci_low']:.3g} .. {rare['ci_high']:.3g}) "
                    f"from {rare['repeats']} runs of {rare['particles']} particles; relative error of one run "
                    f"{rare['rel_error_single']:.2f}, of the mean {rare['rel_error_mean']:.2f}; "
                    f"{rare['elapsed_s']:.0f} s in all.")
        else:
            body = (f"**unresolved**: {rare['unresolved']} of {rare['repeats']} runs of {rare['particles']} particles "
                    f"did not resolve P ({', '.join(rare['statuses'])}); their mean {rare['p']:.3g} is not an "
                    f"estimate to trust and no interval is given; {rare['elapsed_s']:.0f} s in all.")
        lines += ["## Rare point (adaptive multilevel splitting)", "", head + body, ""]
    if collapse:
        cc = ["tau0", "gamma", "T", "gamma2_T", "drift_clock", "samples", "blown", "p", "ci_low", "ci_high"]
        lines += ["## Scaling test (SDE, shaped Transformer, H = 1, P(blow-up by T) at T = s / gamma^2)", "",
                  "| " + " | ".join(cc) + " |", "|" + "---|" * len(cc)]
        lines += ["| " + " | ".join(_fmt(r.get(k)) for k in cc) + " |" for r in collapse]
        lines.append("")
    cols = ["block", "heads", "tau0", "gamma", "method", "width", "samples", "blown", "p", "ci_low", "ci_high",
            "ams", "p_ams", "ams_ci_low", "ams_ci_high", "interval", "verdict"]
    lines += ["## All points", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |")
    lines.append("")
    return "\n".join(lines)


def _samples_to_certify(study: Mapping) -> int:
    """The smallest n at which 0 blow-ups in n samples gives a Clopper-Pearson upper
    end below study.level: (1 - n_upper)^n = (1 - confidence) / 2."""
    a = (1.0 - study["confidence"]) / 2
    return int(math.ceil(math.log(a) / math.log1p(-study["level"])))
