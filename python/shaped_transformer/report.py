"""The built-in study behind ``shaped-transformer report``.

It compares finite shaped Transformers with their covariance SDE under one
stopping rule and writes a report folder (docs/report.md lists every file):

* the probability that a network (exact chain, at several widths) or an SDE path
  is stopped by the blow-up rule by time T, with intervals;
* given survival, the laws of several observables at T (token correlation rho_T,
  log trace of V, effective rank, log of the largest diagonal entry), as
  distances with bootstrap intervals and as differences with intervals, from
  which the verdicts follow;
* the SDE's own discretization check (the same statistics at dt and dt/refine);
* distances against width on log-log axes with fitted slopes;
* shaped versus standard attention (rank collapse) and one-at-a-time effects of
  tau0, gamma and the number of heads.

The study is a nested dictionary (see :data:`DEFAULT_STUDY` and docs/report.md);
``--size`` picks a preset, ``--config FILE.toml`` overrides any of its entries.
The whole configuration is validated before anything runs, and the output folder
is written atomically (a temporary folder renamed at the end).
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import shutil
import tempfile
import time
import warnings
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from . import analysis as an
from ._validate import check_seed, derived_seed

if TYPE_CHECKING:
    from ._blocks import Block, Network

__all__ = ["DEFAULT_STUDY", "SIZES", "study_config", "run_report", "compare_runs"]

# The default study: a few minutes on 2 cores.  Every number can be overridden
# from a TOML file with the same tables and keys (docs/report.md).
DEFAULT_STUDY: dict[str, dict[str, Any]] = {
    "study": {
        "m": 8,  # tokens
        "rho0": 0.3,  # input correlation (equicorrelated V0, unit diagonal)
        "T": 1.0,  # depth / width
        "seed": 0,
        "saves": 33,  # saved times from 0 to T
        "bootstrap": 400,  # bootstrap replicates for the confidence intervals
        "level": 0.95,
        "threads": 0,  # 0: all cores
        # One stopping rule for networks and SDE: max diag V above this (or non-finite).
        # A finite network can reach 1e4 by T = 1 at the studied widths, not 1e30.
        "blowup": 1e4,
    },
    # blocks: "transformer" (attention then MLP), "attention" or "mlp".
    "network": {"blocks": "transformer", "heads": 1, "tau0": 1.0, "gamma": 0.5, "c_plus": 0.0, "c_minus": -1.0,
                "causal": False},
    # The network side: the exact covariance chain (exact in law at any width).
    # Its attention step costs O((H m)^3), but the MLP step draws the m x n
    # pre-activations (O(m^2 n)), so a network of depth T n costs O(n^2) per
    # sample: about 0.2 us * n^2 on 2 cores at m = 8 (n = 512: 0.05 s per sample).
    "exact": {"widths": [32, 64, 128, 256, 512], "samples": 600},
    # A small explicit-weights run as a sanity check of the exact chain.
    "explicit": {"width": 64, "samples": 400, "method": "explicit"},
    # refine: the discretization check runs the SDE again at dt / refine (0: no check).
    "sde": {"paths": 4000, "dt": 1e-3, "scheme": "euler", "psd": "clip", "refine": 4},
    # For ablations only: run the SDE of a different network (any [network] key);
    # empty: the SDE of the studied network.
    "sde_network": {},
    # Standard softmax attention + ReLU MLP for contrast (rank collapse).
    "standard": {"width": 256, "samples": 400, "method": "exact", "norm": "none"},
    # One-at-a-time variations around [network], exact chain at one width.
    "effects": {"width": 128, "samples": 400, "tau0": [0.5, 1.0, 2.0], "gamma": [0.3, 0.5, 0.7], "heads": [1, 4]},
}

SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": {
        "study": {"saves": 9, "bootstrap": 100},
        "exact": {"widths": [16, 32], "samples": 150},
        "explicit": {"width": 16, "samples": 40},
        "sde": {"paths": 300, "dt": 1.0 / 32, "refine": 2},
        "standard": {"width": 32, "samples": 100},
        "effects": {"width": 16, "samples": 60, "tau0": [0.5, 2.0], "gamma": [0.3, 0.7], "heads": [1, 2]},
    },
    "small": {
        "study": {"saves": 17, "bootstrap": 200},
        "exact": {"widths": [32, 64, 128, 256], "samples": 500},
        "explicit": {"width": 32, "samples": 100},
        "sde": {"paths": 1500, "dt": 2e-3},
        "standard": {"width": 128, "samples": 300},
        "effects": {"width": 64, "samples": 300},
    },
    "default": {},
    "large": {
        "study": {"saves": 65, "bootstrap": 1000},
        "exact": {"widths": [32, 64, 128, 256, 512, 1024], "samples": 3000},
        "explicit": {"width": 128, "samples": 400},
        "sde": {"paths": 16000, "dt": 5e-4},
        "standard": {"width": 512, "samples": 2000},
        "effects": {"width": 256, "samples": 2000, "tau0": [0.5, 1.0, 2.0, 4.0], "gamma": [0.2, 0.4, 0.6, 0.8], "heads": [1, 2, 4, 8]},
    },
}

_NETWORK_KEYS = {"blocks": str, "heads": int, "tau0": float, "gamma": float, "c_plus": float, "c_minus": float,
                 "causal": bool}
_TYPES: dict[str, dict[str, type]] = {
    "study": {"m": int, "rho0": float, "T": float, "seed": int, "saves": int, "bootstrap": int, "level": float,
              "threads": int, "blowup": float},
    "network": _NETWORK_KEYS,
    "exact": {"widths": list, "samples": int},
    "explicit": {"width": int, "samples": int, "method": str},
    "sde": {"paths": int, "dt": float, "scheme": str, "psd": str, "refine": int},
    "sde_network": _NETWORK_KEYS,
    "standard": {"width": int, "samples": int, "method": str, "norm": str},
    "effects": {"width": int, "samples": int, "tau0": list, "gamma": list, "heads": list},
}
_CHOICES = {
    ("network", "blocks"): ("transformer", "attention", "mlp"),
    ("sde_network", "blocks"): ("transformer", "attention", "mlp"),
    ("explicit", "method"): ("explicit", "law"),
    ("sde", "scheme"): ("euler", "tamed_euler", "exact_chain"),
    ("sde", "psd"): ("clip", "none"),
    ("standard", "method"): ("explicit", "law", "exact"),
    ("standard", "norm"): ("none", "pre_rms", "post_rms", "pre_layer", "post_layer"),
}
_LIST_ITEMS = {("exact", "widths"): int, ("effects", "tau0"): float, ("effects", "gamma"): float, ("effects", "heads"): int}


def study_config(size: str = "default", config: str | Path | Mapping | None = None, *, seed: int | None = None) -> dict:
    """The study: :data:`DEFAULT_STUDY`, then the ``size`` preset, then ``config``
    (a TOML path or a nested dict), then ``seed``.  Validates every key, type and
    range, and builds every network of the study, so that a bad configuration is
    refused at once with an error naming its key."""
    from ._toml import layered_config, merge_typed

    cfg = layered_config(DEFAULT_STUDY, SIZES, size, config, seed,
                         partial(merge_typed, types=_TYPES, list_items=_LIST_ITEMS),
                         "--seed (study.seed)")
    _check(cfg)
    return cfg


def _positive_int(cfg: dict, table: str, key: str, minimum: int) -> None:
    v = cfg[table][key]
    if v < minimum:
        raise ValueError(f"{table}.{key} must be >= {minimum}, got {v}")


def _check(cfg: dict) -> None:
    s = cfg["study"]
    _positive_int(cfg, "study", "m", 2)
    if not -1.0 / (s["m"] - 1) <= s["rho0"] < 1.0:
        raise ValueError(f"study.rho0 must lie in [-1/(m-1), 1), got {s['rho0']}")
    if not (math.isfinite(s["T"]) and s["T"] > 0):
        raise ValueError(f"study.T must be a finite number > 0, got {s['T']}")
    check_seed(s["seed"], "study.seed")
    _positive_int(cfg, "study", "saves", 2)
    _positive_int(cfg, "study", "bootstrap", 0)
    if not 0 < s["level"] < 1:
        raise ValueError(f"study.level must lie in (0, 1), got {s['level']}")
    _positive_int(cfg, "study", "threads", 0)
    if not (math.isfinite(s["blowup"]) and s["blowup"] > 1.0):
        raise ValueError(f"study.blowup must be a finite number > 1 (the inputs have unit diagonal), got {s['blowup']}")
    for (table, key), allowed in _CHOICES.items():
        if key in cfg[table] and cfg[table][key] not in allowed:
            raise ValueError(f"{table}.{key} must be one of {list(allowed)}, got {cfg[table][key]!r}")
    for w in cfg["exact"]["widths"]:
        if w < s["m"]:
            raise ValueError(f"exact.widths must be integers >= m={s['m']}, got {w!r}")
    for table, key in (("exact", "samples"), ("explicit", "samples"), ("sde", "paths"), ("standard", "samples"),
                       ("effects", "samples")):
        _positive_int(cfg, table, key, 2)
    for table in ("explicit", "standard", "effects"):
        if cfg[table]["width"] < s["m"]:
            raise ValueError(f"{table}.width must be >= m={s['m']}, got {cfg[table]['width']}")
    if not (math.isfinite(cfg["sde"]["dt"]) and 0 < cfg["sde"]["dt"] <= s["T"]):
        raise ValueError(f"sde.dt must lie in (0, T={s['T']}], got {cfg['sde']['dt']}")
    _positive_int(cfg, "sde", "refine", 0)
    if cfg["sde"]["refine"] == 1:
        raise ValueError("sde.refine must be 0 (no discretization check) or >= 2, got 1")
    if cfg["standard"]["norm"] in ("pre_layer", "post_layer") and cfg["standard"]["method"] == "exact":
        raise ValueError("standard.norm: LayerNorm is not rotation invariant, so standard.method must be "
                         "'explicit' or 'law' with it")
    # Build every network now: the blocks validate their own parameters, and the
    # SDE refuses networks without a limit, naming the key that set them.
    for table in ("network", "sde_network"):
        try:
            net = _study_network(_network_params(cfg, table))
            if table == "sde_network" or not cfg["sde_network"]:
                from .sde import _sde_network

                _sde_network(net)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"[{table}]: {exc}") from None
    for name in ("tau0", "gamma", "heads"):
        for v in cfg["effects"][name]:
            try:
                _study_network({**cfg["network"], name: v})
            except (ValueError, TypeError) as exc:
                raise ValueError(f"effects.{name} = {v!r}: {exc}") from None
    try:
        from ._blocks import standard_transformer

        standard_transformer(heads=cfg["network"]["heads"], gamma=cfg["network"]["gamma"],
                             norm=None if cfg["standard"]["norm"] == "none" else cfg["standard"]["norm"])
    except (ValueError, TypeError) as exc:
        raise ValueError(f"[standard]: {exc}") from None


def _network_params(cfg: dict, table: str) -> dict:
    return {**cfg["network"], **cfg.get(table, {})} if table == "sde_network" else dict(cfg["network"])


def _study_network(p: Mapping[str, Any]) -> Network:
    """The studied network from a [network] table."""
    from ._blocks import Network, ShapedAttention, ShapedMLP

    att = ShapedAttention(heads=p["heads"], tau0=p["tau0"], gamma=p["gamma"], causal=p["causal"])
    mlp = ShapedMLP(c_plus=p["c_plus"], c_minus=p["c_minus"], gamma=p["gamma"])
    layouts: dict[str, list[Block]] = {"transformer": [att, mlp], "attention": [att], "mlp": [mlp]}
    return Network(layouts[p["blocks"]])


# ---------------------------------------------------------------------------
# Running the pieces (module-level so that tests can substitute them)
# ---------------------------------------------------------------------------


def _run_network(net, V0, *, width, depth, samples, method, seed, save_at, threads, blowup, progress):
    from .simulate import simulate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # blow-ups are counted in the report instead
        return simulate(net, V0=V0, width=width, depth=depth, samples=samples, method=method, seed=seed,
                        save_at=save_at, threads=threads, blowup=blowup, progress=progress)


def _run_sde(net, V0, *, T, dt, paths, scheme, psd, seed, save_at, threads, blowup, progress):
    from .sde import solve_sde

    from .simulate import BlowUpWarning

    with warnings.catch_warnings():
        # blow-ups are counted in the report; a StepSizeWarning (sde.dt does not divide study.T) is shown
        warnings.simplefilter("ignore", BlowUpWarning)
        return solve_sde(net, V0=V0, T=T, dt=dt, paths=paths, scheme=scheme, psd=psd, save_at=save_at, seed=seed,
                         threads=threads, blowup=blowup, progress=progress)


def _layers(width: int, T: float, saves: int) -> tuple[int, np.ndarray]:
    depth = max(1, int(round(T * width)))
    return depth, np.unique(np.round(np.linspace(0, depth, saves)).astype(np.int64))


def _rho_values(res) -> np.ndarray:
    """(samples, saved, pairs) off-diagonal correlations."""
    return an.off_diagonal(an.correlations(res.V))


def _pairs_at_end(res) -> np.ndarray:
    return an.final_pairs(res, -1)


# ---------------------------------------------------------------------------
# Comparing two runs under the common stopping rule
# ---------------------------------------------------------------------------

#: What the verdict of :func:`compare_runs` rests on: the blow-up probability and,
#: given survival, one location statistic per observable (its name, how it is
#: computed, and the observable of :func:`analysis.sample_observables`).
VERDICT_STATISTICS: tuple[tuple[str, str, str], ...] = (
    ("P(blow-up by T)", "difference of proportions (Newcombe)", ""),
    ("mean rho_T", "difference of means (Welch)", "mean_rho"),
    ("mean log tr(V_T)/m", "difference of means (Welch)", "log_trace"),
    ("mean effective rank", "difference of means (Welch)", "effective_rank"),
    ("q90 of log max diag V_T", "difference of 90% quantiles (bootstrap)", "log_max_diag"),
)


def compare_runs(a, b, *, level: float = 0.95, bootstrap: int = 400, seed: int = 0) -> dict:
    """Compares two runs (Results) at their last saved time under the stopping rule
    they were both run with.

    Returns a dict with the blow-up counts and probabilities of each run (Wilson
    intervals at ``level``), the distances between the laws given survival of
    rho_T (pooled token pairs, cluster bootstrap) and of each per-sample
    observable (KS and Wasserstein-1 with basic bootstrap intervals), and the
    differences a - b of :data:`VERDICT_STATISTICS` with intervals that hold
    *simultaneously* at ``level`` (Bonferroni over the five statistics).
    ``differs`` lists the statistics whose interval excludes 0: the verdict
    "differs" follows from those printed intervals, and "no measurable difference"
    means that every one of them includes 0.
    """
    k = len(VERDICT_STATISTICS)
    adj = 1.0 - (1.0 - level) / k
    ka, na, pa = an.blowup_probability(a, level=level)
    kb, nb, pb = an.blowup_probability(b, level=level)
    oa, ob = an.sample_observables(a), an.sample_observables(b)
    # Statistics given survival need at least two survivors on each side; with fewer
    # they are left undetermined (NaN) and say so, instead of stopping the report.
    survivors = min(na - ka, nb - kb)
    nan = float("nan")
    distances: dict[str, dict[str, an.Distance]] = {}
    for j, name in enumerate(("rho_T", *an.OBSERVABLES)):
        if survivors < 2:
            distances[name] = {mt: an.Distance(metric=mt, value=nan, level=level) for mt in ("ks", "wasserstein1")}
        elif name == "rho_T":
            distances[name] = an.compare(_pairs_at_end(a), _pairs_at_end(b), bootstrap=bootstrap, level=level, seed=seed)
        else:
            distances[name] = an.compare(oa[name], ob[name], bootstrap=bootstrap, level=level, seed=seed + j)
    diffs: dict[str, an.Interval] = {}
    diffs["P(blow-up by T)"] = an.newcombe_interval(ka, na, kb, nb, level=adj)
    for label, how, obs in VERDICT_STATISTICS[1:]:
        if survivors < 2:
            diffs[label] = an.Interval(nan, nan, nan, adj)
        elif how.startswith("difference of means"):
            diffs[label] = an.mean_difference(oa[obs], ob[obs], level=adj)
        else:
            diffs[label] = an.quantile_difference(oa[obs], ob[obs], 0.9, level=adj, resamples=max(bootstrap, 199),
                                                  seed=seed + 17)
    # A NaN interval (too few survivors) excludes nothing: it cannot support "differs".
    differs = [label for label, iv in diffs.items() if iv.excludes(0.0)]
    return {"blowup": {"a": (ka, na, pa), "b": (kb, nb, pb)}, "distances": distances, "differences": diffs,
            "survivors": survivors,
            "level": level, "simultaneous_level": level, "per_interval_level": adj, "differs": differs}


def _verdict_phrase(cmp_: dict) -> str:
    if not cmp_["differs"] and cmp_["survivors"] < 2:
        return ("no measurable difference in P(blow-up by T); fewer than 2 samples survived on one side, "
                "so nothing is said given survival")
    if not cmp_["differs"]:
        return "no measurable difference (every interval of a difference includes 0)"
    parts = []
    for label in cmp_["differs"]:
        iv = cmp_["differences"][label]
        word = "higher" if iv.value > 0 else "lower"
        if label.startswith("P("):
            parts.append(f"{label} {word} by {abs(iv.value) * 100:.2f} points [{iv.low * 100:.2f}, {iv.high * 100:.2f}]")
        else:
            parts.append(f"{label} {word} by {abs(iv.value):.3g} [{iv.low:.3g}, {iv.high:.3g}]")
    return "differs: " + "; ".join(parts)


# ---------------------------------------------------------------------------
# The output folder
# ---------------------------------------------------------------------------


#: Written into every report folder: only a folder holding it (or nothing but the
#: files a report writes) may be replaced by a new report.
_MARKER = ".shaped-transformer-report"
_REPORT_FILES = {"report.md", "results.json", "differences.csv", "distances.csv", "summaries.csv", "density_rhoT.png",
                 "blowup.png", "distances.png", "rho_vs_depth.png", "effective_rank.png", "parameter_effects.png",
                 _MARKER}


def _prepare_out(out: Path) -> Path:
    """Checks ``out`` before anything runs and returns a fresh temporary folder
    beside it.  The report is written there and renamed to ``out`` at the end, so an
    interrupted run never leaves a mixed folder.  An existing ``out`` is replaced
    only when it is empty or a previous report (it holds the report's marker file,
    or nothing but files a report writes); anything else is refused, and so are the
    current folder and its parents, so that no user's folder can be deleted.  In a
    previous report, only the files a report writes are replaced: anything else
    the user put there is carried over (:func:`_publish`)."""
    from ._outdir import check_out

    out = Path(out)
    check_out(out, marker=_MARKER, ours=_REPORT_FILES.__contains__, what="report")
    parent = out.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=parent))
    except OSError as exc:
        raise ValueError(f"--out {out}: cannot create the output folder ({exc.strerror or exc})") from None
    return tmp


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)  # same file system (tmp is made beside out): no copy of the data
    except OSError:
        shutil.copy2(src, dst)


def _publish(tmp: Path, out: Path) -> None:
    """Replaces ``out`` by ``tmp`` (two renames; the old report is removed last).

    Everything in the old ``out`` that a report does not write (a user's notes, a
    folder of their own) is first linked or copied into ``tmp``, so it survives:
    the report replaces only its own files.  Until the final rename the old folder
    is untouched, so an error on the way loses nothing."""
    if out.exists():
        for p in out.iterdir():
            if p.name in _REPORT_FILES:
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.copytree(p, tmp / p.name, symlinks=True, copy_function=_link_or_copy)
            elif p.is_symlink():
                os.symlink(os.readlink(p), tmp / p.name)
            else:
                _link_or_copy(str(p), str(tmp / p.name))
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.resolve().parent))
        os.rename(out, old / "report")
    try:
        os.rename(tmp, out)
    except BaseException:
        if old is not None:  # put the previous report back
            os.rename(old / "report", out)
            shutil.rmtree(old, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------
# The study
# ---------------------------------------------------------------------------


def run_report(
    out: str | Path = "report",
    *,
    size: str = "default",
    config: str | Path | Mapping | None = None,
    seed: int | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Runs the study and writes the report folder ``out``; returns the results dict.

    ``progress``: tqdm bars (None: only on a terminal). ``log``: called with one
    line per finished stage (e.g. ``print``).  Raises ValueError (naming the key)
    for a bad configuration and for an unusable ``out`` before anything runs.
    """
    from tqdm.auto import tqdm

    from .inputs import equicorrelated
    from ._blocks import standard_transformer

    cfg = study_config(size, config, seed=seed)
    out = Path(out)
    tmp = _prepare_out(out)
    try:
        results = _run(cfg, size, tmp, progress, log or (lambda s: None), tqdm, equicorrelated, standard_transformer)
        _publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    (log or (lambda s: None))(f"report written to {out}/ (compute {results['compute_seconds']:.1f} s)")
    return results


def _run(cfg, size, out: Path, progress, say, tqdm, equicorrelated, standard_transformer) -> dict:
    from .plotting import (
        bands_figure,
        blowup_figure,
        density_figure,
        loglog_distance_figure,
        parameter_effects_figure,
        save_figure,
    )

    S, N = cfg["study"], cfg["network"]
    threads = S["threads"]  # 0: all cores, as for simulate and solve_sde
    V0 = equicorrelated(S["m"], S["rho0"])
    net = _study_network(N)
    sde_net = _study_network(_network_params(cfg, "sde_network"))
    T, seed0, B, level = S["T"], S["seed"], S["bootstrap"], S["level"]
    common = dict(threads=threads, blowup=S["blowup"], progress=progress)

    widths = sorted(set(int(w) for w in cfg["exact"]["widths"]))
    eff = cfg["effects"]
    eff_points = [("tau0", v) for v in eff["tau0"]] + [("gamma", v) for v in eff["gamma"]] + [("heads", int(v)) for v in eff["heads"]]
    D = cfg["sde"]
    refine = int(D["refine"])
    stages = len(widths) + 3 + (refine > 0) + len(eff_points) + 2  # + comparisons and figures
    bar = tqdm(total=stages, desc="report", unit="stage", disable=None if progress is None else not progress)
    timings: dict[str, float] = {}
    runs: dict[str, Any] = {}

    def stage(name: str, fn: Callable[[], Any]):
        t0 = time.perf_counter()
        bar.set_postfix_str(name)
        r = fn()
        timings[name] = time.perf_counter() - t0
        bar.update(1)
        say(f"{name}: {timings[name]:.1f} s")
        return r

    t_start = time.perf_counter()
    try:
        # 1. the network at several widths: exact chain
        for k, w in enumerate(widths):
            depth, layers = _layers(w, T, S["saves"])
            runs[f"exact n={w}"] = stage(f"exact chain n={w}", partial(
                _run_network, net, V0, width=w, depth=depth, samples=cfg["exact"]["samples"], method="exact",
                seed=derived_seed(seed0, 101 * (k + 1)), save_at=layers, **common))
        # 2. explicit weights: sanity check of the exact chain at the same width
        E = cfg["explicit"]
        depth, layers = _layers(E["width"], T, S["saves"])
        runs["explicit"] = stage(f"{E['method']} weights n={E['width']}", lambda: _run_network(
            net, V0, width=E["width"], depth=depth, samples=E["samples"], method=E["method"], seed=derived_seed(seed0, 7),
            save_at=layers, **common))
        ref_key = f"exact n={E['width']}"
        if ref_key not in runs:
            runs["exact (explicit check)"] = _run_network(
                net, V0, width=E["width"], depth=depth, samples=cfg["exact"]["samples"], method="exact",
                seed=derived_seed(seed0, 11), save_at=layers, **common)
            ref_key = "exact (explicit check)"
        # 3. the SDE, and the same SDE at dt / refine (its discretization check)
        sde_times = np.linspace(0.0, T, S["saves"])
        runs["sde"] = stage("SDE", lambda: _run_sde(
            sde_net, V0, T=T, dt=D["dt"], paths=D["paths"], scheme=D["scheme"], psd=D["psd"], seed=derived_seed(seed0, 13),
            save_at=sde_times, **common))
        if refine:
            runs["sde fine"] = stage(f"SDE at dt/{refine}", lambda: _run_sde(
                sde_net, V0, T=T, dt=D["dt"] / refine, paths=D["paths"], scheme=D["scheme"], psd=D["psd"],
                seed=derived_seed(seed0, 14), save_at=sde_times, **common))
        # 4. standard attention for contrast, and the shaped network at the same width
        St = cfg["standard"]
        depth, layers = _layers(St["width"], T, S["saves"])
        std_net = standard_transformer(heads=N["heads"], gamma=N["gamma"], norm=None if St["norm"] == "none" else St["norm"])
        runs["standard"] = stage(f"standard attention n={St['width']}", lambda: _run_network(
            std_net, V0, width=St["width"], depth=depth, samples=St["samples"], method=St["method"], seed=derived_seed(seed0, 17),
            save_at=layers, **common))
        shaped_key = f"exact n={St['width']}"
        if shaped_key not in runs:
            runs["shaped (contrast)"] = _run_network(
                net, V0, width=St["width"], depth=depth, samples=St["samples"], method="exact", seed=derived_seed(seed0, 19),
                save_at=layers, **common)
            shaped_key = "shaped (contrast)"
        # 5. effects of tau0, gamma, heads (one at a time around [network])
        depth, layers = _layers(eff["width"], T, S["saves"])
        effect_runs: dict[str, dict[str, Any]] = {"tau0": {}, "gamma": {}, "heads": {}}
        for j, (name, v) in enumerate(eff_points):
            params = dict(N)
            params[name] = v
            label = f"{name} = {v:g}"
            if params == N and f"exact n={eff['width']}" in runs:
                # the studied network itself at this width: reuse its run
                effect_runs[name][label] = runs[f"exact n={eff['width']}"]
                bar.update(1)
                continue
            effect_runs[name][label] = stage(f"effect {label}", partial(
                _run_network, _study_network(params), V0, width=eff["width"], depth=depth, samples=eff["samples"],
                method="exact", seed=derived_seed(seed0, 1000 + 31 * j), save_at=layers, **common))
    except BaseException:
        bar.close()
        raise
    compute_s = time.perf_counter() - t_start

    # ---- comparisons under the common stopping rule ----
    t_an = time.perf_counter()
    bar.set_postfix_str("comparisons (bootstrap)")
    sde = runs["sde"]
    comparisons: dict[str, dict] = {}
    for k, w in enumerate(widths):
        comparisons[f"network n={w} vs SDE"] = compare_runs(runs[f"exact n={w}"], sde, level=level, bootstrap=B,
                                                            seed=derived_seed(seed0, 5 * k))
    comparisons[f"{E['method']} vs exact n={E['width']}"] = compare_runs(runs["explicit"], runs[ref_key], level=level,
                                                                        bootstrap=B, seed=derived_seed(seed0, 99))
    if refine:
        comparisons[f"SDE dt vs dt/{refine}"] = compare_runs(sde, runs["sde fine"], level=level, bootstrap=B,
                                                             seed=derived_seed(seed0, 97))
    slopes: dict[str, an.Interval | None] = {}
    for obs in ("rho_T", *an.OBSERVABLES):
        vals = [comparisons[f"network n={w} vs SDE"]["distances"][obs]["wasserstein1"].value for w in widths]
        slopes[obs] = an.loglog_slope(widths, vals, level=level)

    def summaries(res) -> dict[str, an.DepthSummary]:
        diag = np.diagonal(res.V, axis1=-2, axis2=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale_ratio = diag.max(-1) / diag.min(-1)  # inf for a token with zero variance
        return {
            "rho": an.summarize(_rho_values(res), t=res.t),
            # (tr V)^2 / tr V^2 mixes the tokens' scales with their directions: unequal
            # scales lower it without any collapse.  The correlation matrix's effective
            # rank m^2 / sum rho_ab^2 sees the directions only.
            "effective_rank": an.summarize(an.effective_rank(res.V), t=res.t),
            "correlation_rank": an.summarize(an.effective_rank(an.correlations(res.V)), t=res.t),
            "scale_ratio": an.summarize(np.where(np.isnan(scale_ratio), np.nan, scale_ratio), t=res.t),
            "min_eig": an.summarize(an.smallest_eigenvalue(res.V, normalized=True), t=res.t),
        }

    summ: dict[str, dict[str, an.DepthSummary]] = {}
    for name, res in runs.items():
        summ[name] = summaries(res)
    for pname, d_ in effect_runs.items():
        for label, res in d_.items():
            summ[f"effect {label}"] = summaries(res)

    def run_info(res) -> dict:
        k, n, p = an.blowup_probability(res, level=level)
        ok = ~np.asarray(res.exploded)
        return {
            "method": str(res.method),
            "samples": int(res.samples),
            "exploded": int(k),
            "p_blowup": p.to_dict(),
            "first_blowup_t": None if ok.all() else float(np.min(res.exploded_at[~ok])),
            "t_final": float(res.t[-1]),
            "width": res.info.get("width"),
            "info": {k_: v for k_, v in res.info.items() if isinstance(v, (int, float, str, bool))},
        }

    timings["comparisons and summaries"] = time.perf_counter() - t_an
    bar.update(1)
    say(f"comparisons and summaries: {timings['comparisons and summaries']:.1f} s")

    # ---- figures ----
    t_fig = time.perf_counter()
    bar.set_postfix_str("figures")
    figs = {}
    dens = {f"network n={w} (exact)": _pairs_at_end(runs[f"exact n={w}"]) for w in widths}
    dens[f"network n={E['width']} ({E['method']} weights)"] = _pairs_at_end(runs["explicit"])
    dens["SDE"] = _pairs_at_end(sde)
    figs["density_rhoT"] = save_figure(density_figure(
        dens, reference="SDE", title=f"token correlations at T = {T:g} given survival (m = {S['m']}, rho0 = {S['rho0']:g})"),
        out / "density_rhoT.png")
    sde_curves = {"SDE": sde} | ({f"SDE dt/{refine}": runs["sde fine"]} if refine else {})
    figs["blowup"] = save_figure(blowup_figure(
        {w: runs[f"exact n={w}"] for w in widths}, sde_curves, level=level,
        title=f"stopped by the blow-up rule (max diag V > {S['blowup']:g})"), out / "blowup.png")
    figs["distances"] = save_figure(loglog_distance_figure(
        widths, {obs: [comparisons[f"network n={w} vs SDE"]["distances"][obs]["wasserstein1"] for w in widths]
                 for obs in ("rho_T", *an.OBSERVABLES)}, slopes,
        title=f"Wasserstein-1 network vs SDE given survival ({level:.0%} bootstrap CI)"), out / "distances.png")
    contrast = {f"shaped n={St['width']}": summ[shaped_key]["rho"], f"standard n={St['width']}": summ["standard"]["rho"],
                "SDE (shaped)": summ["sde"]["rho"]}
    figs["rho_vs_depth"] = save_figure(bands_figure(
        contrast, ylabel=r"token correlation $\rho$", ylim=(-1.05, 1.05),
        title="shaped vs standard attention (median, 25-75%, 5-95%)"), out / "rho_vs_depth.png")
    erank = {f"shaped n={St['width']}": summ[shaped_key]["correlation_rank"],
             f"standard n={St['width']}": summ["standard"]["correlation_rank"],
             "SDE (shaped)": summ["sde"]["correlation_rank"]}
    figs["effective_rank"] = save_figure(bands_figure(
        erank, ylabel=r"effective rank of the correlations $m^2/\sum_{ab}\rho_{ab}^2$", ylim=(0, S["m"] + 0.2),
        title="effective rank of the correlation matrix (median, 25-75%, 5-95%)"), out / "effective_rank.png")
    panels = {pname: {label: summ[f"effect {label}"]["rho"] for label in d_} for pname, d_ in effect_runs.items()}
    figs["parameter_effects"] = save_figure(parameter_effects_figure(
        panels, ylabel=r"token correlation $\rho$", ylim=(-1.05, 1.05),
        title=f"effect of tau0, gamma and heads (exact chain, n = {eff['width']}; median and 25-75% band)"),
        out / "parameter_effects.png")

    timings["figures"] = time.perf_counter() - t_fig
    bar.update(1)
    bar.close()
    say(f"figures: {timings['figures']:.1f} s")

    # ---- files ----
    from . import __version__

    dist_rows = []
    for cname, c in comparisons.items():
        for obs, d in c["distances"].items():
            for metric, dd in d.items():
                dist_rows.append({"comparison": cname, "observable": obs, **dd.to_dict()})
    diff_rows = []
    for cname, c in comparisons.items():
        for label, iv in c["differences"].items():
            diff_rows.append({"comparison": cname, "statistic": label, **iv.to_dict(),
                              "excludes_0": bool(iv.excludes(0.0))})
    results = {
        "version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
        "size": size,
        "config": cfg,
        "compute_seconds": compute_s,
        "timings_s": timings,
        "verdicts": {cname: {"differs": c["differs"], "text": _verdict_phrase(c)} for cname, c in comparisons.items()},
        "differences": diff_rows,
        "distances": dist_rows,
        "slopes": {obs: None if s is None else s.to_dict() for obs, s in slopes.items()},
        "runs": {name: run_info(res) for name, res in runs.items()}
        | {f"effect {label}": run_info(res) for d_ in effect_runs.values() for label, res in d_.items()},
        "summaries": {name: {obs: s.to_dict() for obs, s in d_.items()} for name, d_ in summ.items()},
        "figures": {k: p.name for k, p in figs.items()},
    }
    with open(out / "results.json", "w") as f:
        json.dump(results, f, indent=1, allow_nan=False)
    with open(out / "distances.csv", "w", newline="") as f:
        w_ = csv.DictWriter(f, fieldnames=["comparison", "observable", "metric", "value", "corrected", "low", "high",
                                           "level", "bootstrap", "interval", "n_x", "n_y"])
        w_.writeheader()
        for r in dist_rows:
            w_.writerow(r)
    with open(out / "differences.csv", "w", newline="") as f:
        w_ = csv.DictWriter(f, fieldnames=["comparison", "statistic", "value", "low", "high", "level", "method",
                                           "excludes_0"])
        w_.writeheader()
        for r in diff_rows:
            w_.writerow(r)
    with open(out / "summaries.csv", "w", newline="") as f:
        levels = summ["sde"]["rho"].levels
        rows_ = csv.writer(f)
        rows_.writerow(["run", "observable", "t", "median"] + [f"q{q:g}" for q in levels] + ["mean", "sem", "count", "dropped"])
        for name, d_ in summ.items():
            for obs, s in d_.items():
                assert s.t is not None  # summaries() passes every run's times
                for j in range(len(s.t)):
                    rows_.writerow([name, obs, f"{s.t[j]:.6g}", _fmt(s.median[j])] + [_fmt(s.quantiles[i, j]) for i in range(len(levels))]
                                + [_fmt(s.mean[j]), _fmt(s.sem[j]), int(s.count[j]), int(s.dropped[j])])
    (out / "report.md").write_text(_markdown(cfg, size, results, comparisons, slopes, summ, shaped_key, widths))
    (out / _MARKER).write_text(f"shaped-transformer {__version__} report; `shaped-transformer report --out` may replace "
                               "this folder\n")
    return results


def _reading(cfg: dict, comparisons: dict, widths: list[int]) -> list[str]:
    """How to read the network-vs-SDE verdicts: why a difference at small width is
    expected, what must shrink as the width grows, and, statistic by statistic,
    what the printed intervals say about it (nothing beyond them)."""
    T = cfg["study"]["T"]
    lines = [
        f"**How to read these verdicts.** The SDE is the limit of the network as the width n grows at fixed "
        f"T = depth / width = {T:g}; a network of finite width differs from it by terms of order 1/n, and it blows "
        "up later (a width-n block grows V by a bounded factor, so it needs more layers to reach the threshold). "
        "So *differs* at small n is expected and is not a failure; what must hold is that each difference of "
        "section 2 (and each distance of section 3) shrinks towards 0 as n grows. The two checks read the other "
        "way: explicit weights against the exact chain at the same width compare two simulations of one law, so "
        "*no measurable difference* is what correct code gives; the SDE at dt against dt/refine differs only "
        "when dt is too coarse for the statistic that differs. Per statistic, network minus SDE at "
        + ", ".join(f"n = {w}" for w in widths) + ":",
        "",
    ]
    for label, _, _ in VERDICT_STATISTICS:
        ivs = [comparisons[f"network n={w} vs SDE"]["differences"][label] for w in widths]
        scale, unit = (100.0, " points") if label.startswith("P(") else (1.0, "")
        vals = ", ".join("n/a" if not math.isfinite(iv.value) else f"{iv.value * scale:+.3g}" for iv in ivs)
        excl = [iv.excludes(0.0) for iv in ivs]
        known = [math.isfinite(iv.low) for iv in ivs]
        at = ", ".join(str(w) for w, e in zip(widths, excl) if e)
        if not any(excl):
            say = "every interval includes 0: no finite-width gap resolved at these sample sizes"
        elif not excl[-1] and known[-1]:
            last = max(i for i, e in enumerate(excl) if e)
            say = (f"the interval excludes 0 at n = {at} and includes it from n = {widths[last + 1]} on: consistent "
                   "with a gap that closes as n grows")
        else:
            say = (f"the interval excludes 0 at n = {at}, the largest width included: the gap has not closed at "
                   "these widths (it needs a larger width, or a difference between the models remains)")
        lines.append(f"- {label}: {vals}{unit}; {say}.")
    return lines


def _fmt(v: float) -> str:
    return "" if not np.isfinite(v) else f"{v:.6g}"


def _pct(iv: an.Interval) -> str:
    return f"{iv.value * 100:.2f}% [{iv.low * 100:.2f}, {iv.high * 100:.2f}]"


def _dist(d: an.Distance) -> str:
    if not math.isfinite(d.low):
        return f"{d.value:.4f}"
    return f"{d.value:.4f} ({d.corrected:.4f}) [{d.low:.4f}, {d.high:.4f}]"


def _describe_network(p: Mapping[str, Any]) -> str:
    att = (f"{'causal ' if p['causal'] else ''}shaped attention (heads = {p['heads']}, tau0 = {p['tau0']:g}, "
           f"gamma = {p['gamma']:g})")
    mlp = f"shaped MLP (c+ = {p['c_plus']:g}, c- = {p['c_minus']:g}, gamma = {p['gamma']:g})"
    return {"transformer": f"{att} followed by a {mlp}", "attention": att, "mlp": mlp}[p["blocks"]]


def _markdown(cfg, size, results, comparisons, slopes, summ, shaped_key, widths) -> str:
    S, N = cfg["study"], cfg["network"]
    lvl = f"{S['level']:.0%}"
    refine = cfg["sde"]["refine"]
    E = cfg["explicit"]
    sde_params = _network_params(cfg, "sde_network")
    runs = results["runs"]
    lines = [
        "# Shaped Transformer at initialization: network vs covariance SDE",
        "",
        f"shaped-transformer {results['version']}, {results['created']}, size `{size}`, seed {S['seed']}, "
        f"compute time {results['compute_seconds']:.0f} s.",
        "",
        f"Network: {_describe_network(N)}; m = {S['m']} tokens with input correlation rho0 = {S['rho0']:g}; "
        f"depth = T x width with T = {S['T']:g}. The network side is the exact covariance chain "
        f"({cfg['exact']['samples']} samples per width; exact in law at any width), checked against "
        f"{E['samples']} networks with {E['method']} weights at n = {E['width']}. "
        f"The SDE uses {cfg['sde']['paths']} paths, dt = {cfg['sde']['dt']:g}, scheme `{cfg['sde']['scheme']}`"
        + (f", and again at dt/{refine} as its discretization check." if refine else "."),
    ]
    if cfg["sde_network"]:
        lines += ["", f"**Ablation**: the SDE side is the SDE of a different network, {_describe_network(sde_params)} "
                  f"(`[sde_network]` = {dict(cfg['sde_network'])}), so a difference is expected."]
    lines += [
        "",
        f"**Stopping rule, the same for every run**: a network or an SDE path stops the first time the largest "
        f"diagonal entry of V exceeds {S['blowup']:g} (or turns non-finite). Section 1 gives the probability of "
        "that by T; every later statistic is *given survival* (the stopped samples are left out and counted).",
        "",
        "## Verdict",
        "",
        f"A comparison **differs** when at least one of its intervals of a difference (section 2) excludes 0; "
        f"the five intervals of a comparison hold simultaneously at {lvl} (each at "
        f"{1 - (1 - S['level']) / len(VERDICT_STATISTICS):.1%}, Bonferroni). Otherwise there is **no measurable "
        "difference** at these sample sizes (which is not a proof of equality).",
        "",
    ]
    for cname, c in comparisons.items():
        lines.append(f"- **{cname}**: {_verdict_phrase(c)}.")
    lines += ["", *_reading(cfg, comparisons, widths)]
    # the trend with width, stated only as far as the intervals carry it
    d = runs["sde"]["p_blowup"]
    num = {k: float("nan") if d[k] is None else float(d[k]) for k in ("value", "low", "high", "level")}
    p_sde = an.Interval(num["value"], num["low"], num["high"], num["level"], str(d.get("method", "")))
    p_net = [runs[f"exact n={w}"]["p_blowup"] for w in widths]
    lines += ["", f"Blow-up by T = {S['T']:g}: network "
              + ", ".join(f"{p['value'] * 100:.2f}% (n = {w})" for w, p in zip(widths, p_net))
              + f"; SDE {_pct(p_sde)}."]
    trend = []
    for obs, s in slopes.items():
        if s is None:
            continue
        if s.high < 0:
            trend.append(f"{obs} decreases with width (log-log slope {s.value:.2f} [{s.low:.2f}, {s.high:.2f}])")
        elif s.low > 0:
            trend.append(f"{obs} increases with width (log-log slope {s.value:.2f} [{s.low:.2f}, {s.high:.2f}])")
        else:
            trend.append(f"{obs}: no trend resolved (slope {s.value:.2f} [{s.low:.2f}, {s.high:.2f}] includes 0)")
    if trend:
        lines += ["", "Wasserstein-1 distance to the SDE against width (section 3): " + "; ".join(trend) + "."]

    lines += ["", f"## 1. Probability of blow-up by T ({lvl} Wilson intervals)", "",
              "| run | width n (depth = T n) or SDE step | samples | stopped | P(blow-up by T) | first stop at t |",
              "|---|---|---|---|---|---|"]
    for name, info in runs.items():
        p = info["p_blowup"]
        first = "" if info["first_blowup_t"] is None else f"{info['first_blowup_t']:.3g}"
        where = (f"n = {info['width']}" if info.get("width") is not None
                 else f"SDE, dt = {info['info'].get('dt', float('nan')):.3g}")
        lines.append(f"| {name} | {where} | {info['samples']} | {info['exploded']} | {p['value'] * 100:.2f}% "
                     f"[{p['low'] * 100:.2f}, {p['high'] * 100:.2f}] | {first} |")
    lines += ["", "![blow-up probability](blowup.png)", ""]

    lines += ["## 2. Differences given survival (a - b), simultaneous intervals", "",
              "| comparison (a vs b) | " + " | ".join(label for label, _, _ in VERDICT_STATISTICS) + " |",
              "|---|" + "---|" * len(VERDICT_STATISTICS)]
    for cname, c in comparisons.items():
        cells = []
        for label, _, _ in VERDICT_STATISTICS:
            iv = c["differences"][label]
            mark = " **x**" if iv.excludes(0.0) else ""
            if label.startswith("P("):
                cells.append(f"{iv.value * 100:+.2f} [{iv.low * 100:+.2f}, {iv.high * 100:+.2f}] pts{mark}")
            else:
                cells.append(f"{iv.value:+.4g} [{iv.low:+.4g}, {iv.high:+.4g}]{mark}")
        lines.append(f"| {cname} | " + " | ".join(cells) + " |")
    lines += ["", "**x**: the interval excludes 0. " + "; ".join(f"{label}: {how}" for label, how, _ in VERDICT_STATISTICS)
              + ".", ""]

    lines += [f"## 3. Distances between the laws given survival ({lvl} basic bootstrap CI, {S['bootstrap']} replicates)", "",
              "Wasserstein-1 per observable: the plug-in distance, in parentheses the bootstrap bias-corrected "
              "estimate, then the interval (clipped at 0). rho_T pools the m(m-1)/2 token pairs and resamples whole "
              "networks; the others are one value per sample. Two samples of one law are at a positive plug-in "
              f"distance (the noise floor: see the row `{E['method']} vs exact`).", "",
              "| comparison | " + " | ".join(("rho_T", *an.OBSERVABLES)) + " |", "|---|" + "---|" * (1 + len(an.OBSERVABLES))]
    for cname, c in comparisons.items():
        lines.append(f"| {cname} | " + " | ".join(_dist(c["distances"][o]["wasserstein1"]) for o in ("rho_T", *an.OBSERVABLES)) + " |")
    lines += ["", "KS distance of rho_T: " + "; ".join(f"{cname} {_dist(c['distances']['rho_T']['ks'])}"
                                                      for cname, c in comparisons.items()) + ".", "",
              "![distances against width](distances.png)", "", "![density of rho_T](density_rhoT.png)", "",
              "## 4. Rank collapse: shaped versus standard attention", ""]
    sh, st_ = summ[shaped_key], summ["standard"]
    Sw = cfg["standard"]
    lines.append(
        f"Both networks at width n = {Sw['width']} ({Sw['method']} method, {Sw['samples']} samples for standard "
        f"attention), T = {S['T']:g}, medians over samples. The token correlation is {sh['rho'].median[-1]:.3f} "
        f"with shaped attention and {st_['rho'].median[-1]:.3f} with standard attention. **Rank collapse** is read "
        f"from the effective rank of the correlation matrix, m^2 / sum_ab rho_ab^2 (m = {S['m']} for orthogonal "
        f"tokens, 1 when all tokens point the same way): {sh['correlation_rank'].median[-1]:.2f} (shaped) versus "
        f"{st_['correlation_rank'].median[-1]:.2f} (standard). The effective rank of V itself, (tr V)^2 / tr V^2, is "
        f"{sh['effective_rank'].median[-1]:.2f} versus {st_['effective_rank'].median[-1]:.2f}: it also counts the "
        "tokens' scales, and is lower than the correlations' because the scales spread (the largest V_aa is "
        f"{sh['scale_ratio'].median[-1]:.1f} times the smallest, shaped; {st_['scale_ratio'].median[-1]:.1f} "
        "standard), not because the directions collapse."
    )
    lines += ["", "![rho against depth](rho_vs_depth.png)", "", "![effective rank against depth](effective_rank.png)", ""]
    eff = cfg["effects"]
    lines += ["## 5. Effect of tau0, gamma and the number of heads", "",
              f"One parameter at a time around the studied network; the exact chain at width n = {eff['width']} "
              f"(depth {max(1, int(round(S['T'] * eff['width'])))}), {eff['samples']} samples (the studied network "
              "itself: its run at that width when there is one).", "",
              f"| variation (n = {eff['width']}) | median rho_T | mean rho_T (+- s.e.) | P(blow-up by T) ({lvl}) |",
              "|---|---|---|---|"]
    for name, d in summ.items():
        if name.startswith("effect "):
            r = d["rho"]
            p = runs[name]["p_blowup"]
            lines.append(f"| {name[7:]} | {r.median[-1]:.3f} | {r.mean[-1]:.3f} +- {r.sem[-1]:.3f} | "
                         f"{p['value'] * 100:.2f}% [{p['low'] * 100:.2f}, {p['high'] * 100:.2f}] |")
    lines += ["", "![parameter effects](parameter_effects.png)", "",
              "Numbers: `results.json`, `differences.csv`, `distances.csv`, `summaries.csv`. Timings (s): "
              + ", ".join(f"{k} {v:.1f}" for k, v in results["timings_s"].items()) + ".", ""]
    return "\n".join(lines)
