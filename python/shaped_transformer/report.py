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

The code follows the study's four stages, listed in ``_STAGES``: configuration
(the validated study and the plan of every run with its seed), runs, comparisons
(under the common stopping rule) and rendering (figures, tables, ``report.md``).
Each stage reads what the ones before it left in a ``_Study`` and adds its part.
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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import analysis as an
from ._validate import check_seed, derived_seed

if TYPE_CHECKING:
    from ._blocks import Block, Network

__all__ = ["DEFAULT_STUDY", "SIZES", "VERDICT_STATISTICS", "study_config", "run_report", "compare_runs"]

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
    "network": {
        "blocks": "transformer",
        "heads": 1,
        "tau0": 1.0,
        "gamma": 0.5,
        "c_plus": 0.0,
        "c_minus": -1.0,
        "causal": False,
        # Per-token norm of both blocks (docs/norms.md): "none", "pre_rms", "post_rms",
        # "pre_layer" or "post_layer" (LayerNorm: the exact chain needs widths >= m + 1).
        "norm": "none",
    },
    # The network side: the exact covariance chain (exact in law at any width).
    # Its attention step costs O(H m^3), but the MLP step draws the m x n
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
        "effects": {
            "width": 256,
            "samples": 2000,
            "tau0": [0.5, 1.0, 2.0, 4.0],
            "gamma": [0.2, 0.4, 0.6, 0.8],
            "heads": [1, 2, 4, 8],
        },
    },
}

#: The norm placements of [network] and [sde_network] (docs/norms.md).
_NORMS = ("none", "pre_rms", "post_rms", "pre_layer", "post_layer")

_NETWORK_KEYS = {
    "blocks": str,
    "heads": int,
    "tau0": float,
    "gamma": float,
    "c_plus": float,
    "c_minus": float,
    "causal": bool,
    "norm": str,
}
_TYPES: dict[str, dict[str, type]] = {
    "study": {
        "m": int,
        "rho0": float,
        "T": float,
        "seed": int,
        "saves": int,
        "bootstrap": int,
        "level": float,
        "threads": int,
        "blowup": float,
    },
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
    ("network", "norm"): _NORMS,
    ("sde_network", "norm"): _NORMS,
    ("explicit", "method"): ("explicit", "law"),
    ("sde", "scheme"): ("euler", "tamed_euler", "exact_chain"),
    ("sde", "psd"): ("clip", "none"),
    ("standard", "method"): ("explicit", "law", "exact"),
    ("standard", "norm"): ("none", "pre_rms", "post_rms", "pre_layer", "post_layer"),
}
_LIST_ITEMS = {
    ("exact", "widths"): int,
    ("effects", "tau0"): float,
    ("effects", "gamma"): float,
    ("effects", "heads"): int,
}


def study_config(size: str = "default", config: str | Path | Mapping | None = None, *, seed: int | None = None) -> dict:
    """The configuration of the study, validated.

    :data:`DEFAULT_STUDY`, then the ``size`` preset of :data:`SIZES`, then
    ``config``, then ``seed``.  Every key, type and range is checked and every
    network of the study is built, so that a bad configuration is refused at once
    with an error naming its key (docs/report.md lists the keys).

    Parameters
    ----------
    size : {"tiny", "small", "default", "large"}, default "default"
        The size preset.
    config : str, Path or mapping, optional
        A TOML file or a nested dict with the tables of :data:`DEFAULT_STUDY`; any
        subset of keys overrides the preset.
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

    Examples
    --------
    >>> cfg = study_config("tiny", {"network": {"tau0": 2.0}}, seed=3)
    >>> cfg["network"]["tau0"], cfg["study"]["seed"], cfg["exact"]["widths"]
    (2.0, 3, [16, 32])
    """
    from ._toml import layered_config, merge_typed

    cfg = layered_config(
        DEFAULT_STUDY,
        SIZES,
        size,
        config,
        seed,
        partial(merge_typed, types=_TYPES, list_items=_LIST_ITEMS),
        "--seed (study.seed)",
    )
    _check(cfg)
    return cfg


def _positive_int(cfg: dict, table: str, key: str, minimum: int) -> None:
    v = cfg[table][key]
    if v < minimum:
        raise ValueError(f"{table}.{key} must be >= {minimum}, got {v}")


def _check(cfg: dict) -> None:
    """Validates the merged study; raises ValueError naming the key."""
    _check_study(cfg)
    _check_runs(cfg)
    _check_networks(cfg)


def _check_study(cfg: dict) -> None:
    study = cfg["study"]
    _positive_int(cfg, "study", "m", 2)
    if not -1.0 / (study["m"] - 1) <= study["rho0"] < 1.0:
        raise ValueError(f"study.rho0 must lie in [-1/(m-1), 1), got {study['rho0']}")
    if not (math.isfinite(study["T"]) and study["T"] > 0):
        raise ValueError(f"study.T must be a finite number > 0, got {study['T']}")
    check_seed(study["seed"], "study.seed")
    _positive_int(cfg, "study", "saves", 2)
    _positive_int(cfg, "study", "bootstrap", 0)
    if not 0 < study["level"] < 1:
        raise ValueError(f"study.level must lie in (0, 1), got {study['level']}")
    _positive_int(cfg, "study", "threads", 0)
    if not (math.isfinite(study["blowup"]) and study["blowup"] > 1.0):
        raise ValueError(
            f"study.blowup must be a finite number > 1 (the inputs have unit diagonal), got {study['blowup']}"
        )
    for (table, key), allowed in _CHOICES.items():
        if key in cfg[table] and cfg[table][key] not in allowed:
            raise ValueError(f"{table}.{key} must be one of {list(allowed)}, got {cfg[table][key]!r}")


def _check_runs(cfg: dict) -> None:
    m, T = cfg["study"]["m"], cfg["study"]["T"]
    for w in cfg["exact"]["widths"]:
        if w < m:
            raise ValueError(f"exact.widths must be integers >= m={m}, got {w!r}")
    for table, key in (
        ("exact", "samples"),
        ("explicit", "samples"),
        ("sde", "paths"),
        ("standard", "samples"),
        ("effects", "samples"),
    ):
        _positive_int(cfg, table, key, 2)
    for table in ("explicit", "standard", "effects"):
        if cfg[table]["width"] < m:
            raise ValueError(f"{table}.width must be >= m={m}, got {cfg[table]['width']}")
    if not (math.isfinite(cfg["sde"]["dt"]) and 0 < cfg["sde"]["dt"] <= T):
        raise ValueError(f"sde.dt must lie in (0, T={T}], got {cfg['sde']['dt']}")
    _positive_int(cfg, "sde", "refine", 0)
    if cfg["sde"]["refine"] == 1:
        raise ValueError("sde.refine must be 0 (no discretization check) or >= 2, got 1")
    # LayerNorm's exact step needs the all-ones feature direction outside the tokens'
    # span (docs/norms.md section 6): every width the exact chain runs at must be >= m + 1.
    layer = ("pre_layer", "post_layer")
    if _network_params(cfg, "network")["norm"] in layer:
        for key, widths in (("exact.widths", cfg["exact"]["widths"]), ("effects.width", [cfg["effects"]["width"]])):
            if any(w < m + 1 for w in widths):
                raise ValueError(
                    f"{key}: LayerNorm (network.norm = {cfg['network']['norm']!r}) in the exact chain needs widths "
                    f">= m + 1 = {m + 1}, got {widths if len(widths) > 1 else widths[0]}"
                )
    if cfg["standard"]["norm"] in layer and cfg["standard"]["method"] == "exact" and cfg["standard"]["width"] < m + 1:
        raise ValueError(
            f"standard.width: LayerNorm in the exact chain needs width >= m + 1 = {m + 1}, got "
            f"{cfg['standard']['width']} (or standard.method = 'explicit' or 'law')"
        )


def _check_networks(cfg: dict) -> None:
    """Builds every network of the study: the blocks validate their own parameters,
    and the SDE side must have an SDE limit, so a bad value is refused naming the
    table or key that set it."""
    for table in ("network", "sde_network"):
        norm = _network_params(cfg, table)["norm"]
        try:
            net = _study_network(_network_params(cfg, table))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"[{table}]: {exc}") from None
        if (table == "sde_network" or not cfg["sde_network"]) and not net.has_sde:
            reason = net.sde_refusal or "the network has no covariance SDE limit (docs/model.md section 5)"
            key = f"{table}.norm" if norm != "none" else f"[{table}]"
            raise ValueError(f"{key}: {reason}")
    for name in ("tau0", "gamma", "heads"):
        for v in cfg["effects"][name]:
            try:
                _study_network({**cfg["network"], name: v})
            except (ValueError, TypeError) as exc:
                raise ValueError(f"effects.{name} = {v!r}: {exc}") from None
    try:
        _standard_network(cfg)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"[standard]: {exc}") from None


def _network_params(cfg: dict, table: str) -> dict:
    return {**cfg["network"], **cfg.get(table, {})} if table == "sde_network" else dict(cfg["network"])


def _study_network(p: Mapping[str, Any]) -> Network:
    """The studied network from a [network] table."""
    from ._blocks import Network, ShapedAttention, ShapedMLP

    norm = None if p["norm"] == "none" else p["norm"]
    att = ShapedAttention(heads=p["heads"], tau0=p["tau0"], gamma=p["gamma"], causal=p["causal"], norm=norm)
    mlp = ShapedMLP(c_plus=p["c_plus"], c_minus=p["c_minus"], gamma=p["gamma"], norm=norm)
    layouts: dict[str, list[Block]] = {"transformer": [att, mlp], "attention": [att], "mlp": [mlp]}
    return Network(layouts[p["blocks"]])


def _standard_network(cfg: dict) -> Network:
    """The standard Transformer of the contrast run ([standard], with [network]'s heads and gamma)."""
    from ._blocks import standard_transformer

    norm = cfg["standard"]["norm"]
    return standard_transformer(
        heads=cfg["network"]["heads"], gamma=cfg["network"]["gamma"], norm=None if norm == "none" else norm
    )


# ---------------------------------------------------------------------------
# Running the pieces (module-level so that tests can substitute them)
# ---------------------------------------------------------------------------


def _run_network(net, V0, *, width, depth, samples, method, seed, save_at, threads, blowup, progress):
    from .simulate import simulate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # blow-ups are counted in the report instead
        return simulate(
            net,
            V0=V0,
            width=width,
            depth=depth,
            samples=samples,
            method=method,
            seed=seed,
            save_at=save_at,
            threads=threads,
            blowup=blowup,
            progress=progress,
        )


def _run_sde(net, V0, *, T, dt, paths, scheme, psd, seed, save_at, threads, blowup, progress):
    from .sde import solve_sde
    from .simulate import BlowUpWarning

    with warnings.catch_warnings():
        # blow-ups are counted in the report; a StepSizeWarning (sde.dt does not divide study.T) is shown
        warnings.simplefilter("ignore", BlowUpWarning)
        return solve_sde(
            net,
            V0=V0,
            T=T,
            dt=dt,
            paths=paths,
            scheme=scheme,
            psd=psd,
            save_at=save_at,
            seed=seed,
            threads=threads,
            blowup=blowup,
            progress=progress,
        )


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
    """Compares two runs at their last saved time under the stopping rule they share.

    Parameters
    ----------
    a, b : Result
        Two runs (networks or SDE) stopped by the same blow-up rule.
    level : float, default 0.95
        The confidence level.  The intervals of the differences hold
        *simultaneously* at ``level`` (Bonferroni over the statistics of
        :data:`VERDICT_STATISTICS`).
    bootstrap : int, default 400
        Bootstrap replicates of the distances.
    seed : int, default 0
        The seed of the bootstraps.

    Returns
    -------
    dict
        "blowup": the blow-up counts and probabilities of each run (Wilson
        intervals at ``level``); "distances": given survival, the KS and
        Wasserstein-1 distances between the laws of rho_T (pooled token pairs,
        cluster bootstrap) and of each observable of
        :func:`~shaped_transformer.analysis.sample_observables`, with basic
        bootstrap intervals; "differences": a - b for each statistic of
        :data:`VERDICT_STATISTICS` with its simultaneous interval; "survivors";
        the levels; and "differs", the statistics whose interval excludes 0.  The
        verdict "differs" follows from those printed intervals, and "no
        measurable difference" means that every one of them includes 0.  With
        fewer than 2 survivors on a side the statistics given survival are NaN
        (undetermined) and support no claim.
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
            distances[name] = an.compare(
                _pairs_at_end(a), _pairs_at_end(b), bootstrap=bootstrap, level=level, seed=seed
            )
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
            diffs[label] = an.quantile_difference(
                oa[obs], ob[obs], 0.9, level=adj, resamples=max(bootstrap, 199), seed=seed + 17
            )
    # A NaN interval (too few survivors) excludes nothing: it cannot support "differs".
    differs = [label for label, iv in diffs.items() if iv.excludes(0.0)]
    return {
        "blowup": {"a": (ka, na, pa), "b": (kb, nb, pb)},
        "distances": distances,
        "differences": diffs,
        "survivors": survivors,
        "level": level,
        "simultaneous_level": level,
        "per_interval_level": adj,
        "differs": differs,
    }


def _verdict_phrase(cmp_: dict) -> str:
    if not cmp_["differs"] and cmp_["survivors"] < 2:
        return (
            "no measurable difference in P(blow-up by T); fewer than 2 samples survived on one side, "
            "so nothing is said given survival"
        )
    if not cmp_["differs"]:
        return "no measurable difference (every interval of a difference includes 0)"
    parts = []
    for label in cmp_["differs"]:
        iv = cmp_["differences"][label]
        word = "higher" if iv.value > 0 else "lower"
        if label.startswith("P("):
            parts.append(
                f"{label} {word} by {abs(iv.value) * 100:.2f} points [{iv.low * 100:.2f}, {iv.high * 100:.2f}]"
            )
        else:
            parts.append(f"{label} {word} by {abs(iv.value):.3g} [{iv.low:.3g}, {iv.high:.3g}]")
    return "differs: " + "; ".join(parts)


# ---------------------------------------------------------------------------
# The output folder
# ---------------------------------------------------------------------------


#: Written into every report folder: only a folder holding it (or nothing but the
#: files a report writes) may be replaced by a new report.
_MARKER = ".shaped-transformer-report"
_REPORT_FILES = {
    "report.md",
    "results.json",
    "differences.csv",
    "distances.csv",
    "summaries.csv",
    "density_rhoT.png",
    "blowup.png",
    "distances.png",
    "rho_vs_depth.png",
    "effective_rank.png",
    "parameter_effects.png",
    _MARKER,
}


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
    """Run the study and write the report folder.

    The study runs in four stages: configuration (the study is merged, validated
    and planned), runs (every network and SDE run), comparisons (under the common
    stopping rule) and rendering (the figures, tables and ``report.md``).

    Parameters
    ----------
    out : str or Path, default "report"
        The output folder. It is written atomically: the report is built in a
        temporary folder beside it, which replaces ``out`` at the end. An existing
        ``out`` must be empty or a previous report; files a user added to a previous
        report are kept.
    size : {"tiny", "small", "default", "large"}, default "default"
        The size preset (:data:`SIZES`).
    config : str, Path or mapping, optional
        A TOML file or a nested dict overriding any entry of the study (applied
        after ``size``); see :func:`study_config`.
    seed : int, optional
        The study's seed (``study.seed``), applied last.
    progress : bool, optional
        tqdm progress bars; None shows them only on a terminal.
    log : callable, optional
        Called with one line per finished stage (e.g. ``print``).

    Returns
    -------
    dict
        The results, as written to ``results.json`` (configuration, verdicts,
        differences, distances, slopes, runs and summaries).

    Raises
    ------
    ValueError
        For a bad configuration (naming the key) or an unusable ``out``, before
        anything runs.
    KeyboardInterrupt
        When interrupted; the previous ``out`` is left untouched.

    Examples
    --------
    >>> from shaped_transformer.report import run_report
    >>> results = run_report("quick", size="tiny", progress=False)  # doctest: +SKIP
    >>> results["verdicts"]["network n=32 vs SDE"]["text"]  # doctest: +SKIP
    'no measurable difference (every interval of a difference includes 0)'
    """
    cfg = study_config(size, config, seed=seed)
    out = Path(out)
    tmp = _prepare_out(out)
    say = log or (lambda s: None)
    try:
        results = _run(cfg, size, tmp, progress, say)
        _publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(f"report written to {out}/ (compute {results['compute_seconds']:.1f} s)")
    return results


# ---------------------------------------------------------------------------
# The stages: configuration, runs, comparisons, rendering
# ---------------------------------------------------------------------------


def _run(cfg: dict, size: str, out: Path, progress: bool | None, say: Callable[[str], None]) -> dict:
    """Runs the stages of ``_STAGES`` in order, writing into ``out``; returns the
    results dict."""
    study = _Study(cfg, size, out, _Clock(progress, say))
    try:
        for _name, stage in _STAGES:
            stage(study)
    finally:
        study.clock.close()
    return study.results


class _Clock:
    """The progress bar, the per-stage timings and the log lines of one report."""

    def __init__(self, progress: bool | None, say: Callable[[str], None]):
        self.progress, self.say = progress, say
        self.bar: Any = None
        self.timings: dict[str, float] = {}

    def start(self, total: int) -> None:
        from tqdm.auto import tqdm

        disable = None if self.progress is None else not self.progress
        self.bar = tqdm(total=total, desc="report", unit="stage", disable=disable)

    def stage(self, name: str, fn: Callable[[], Any], *, note: str | None = None) -> Any:
        """Runs ``fn`` as the stage ``name``: timed, logged, one step of the bar."""
        t0 = time.perf_counter()
        self.bar.set_postfix_str(note or name)
        r = fn()
        self.timings[name] = time.perf_counter() - t0
        self.bar.update(1)
        self.say(f"{name}: {self.timings[name]:.1f} s")
        return r

    def skip(self) -> None:
        """One step of the bar without work (a run reused from another)."""
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@dataclass(frozen=True)
class _PlannedRun:
    """One simulation of the study.  ``label``: the timed stage it is shown as (None:
    a helper run, untimed); ``group``: the parameter of an effects run (None: a
    main run); ``reuse``: the key of a main run that already is this one."""

    key: str
    label: str | None
    run: Callable[[], Any] | None
    group: str | None = None
    reuse: str | None = None


@dataclass
class _Findings:
    """What the comparisons stage finds: every comparison under the common stopping
    rule, the log-log slopes of the distances against width, and the per-depth
    summaries and results.json entries of every run (main runs by key, then the
    effects as "effect <label>")."""

    comparisons: dict[str, dict]
    slopes: dict[str, an.Interval | None]
    summaries: dict[str, dict[str, an.DepthSummary]]
    infos: dict[str, dict]


@dataclass
class _Study:
    """One report in the making: the validated configuration, then what each stage
    adds (the plan of runs, the runs, the findings, the results)."""

    cfg: dict
    size: str
    out: Path
    clock: _Clock
    # configuration
    widths: list[int] = field(default_factory=list)
    plan: list[_PlannedRun] = field(default_factory=list)
    ref_key: str = ""  # the exact-chain run the explicit-weights check compares with
    shaped_key: str = ""  # the shaped run at the standard run's width (rank-collapse contrast)
    # runs
    runs: dict[str, Any] = field(default_factory=dict)
    effects: dict[str, dict[str, Any]] = field(default_factory=lambda: {"tau0": {}, "gamma": {}, "heads": {}})
    compute_s: float = 0.0
    # comparisons, rendering
    findings: _Findings | None = None
    results: dict = field(default_factory=dict)


def _configure(study: _Study) -> None:
    """Stage "configuration": the inputs, the networks and the plan of every run with
    its seed; starts the progress bar (one step per timed run, comparisons, figures)."""
    from .inputs import equicorrelated

    cfg = study.cfg
    V0 = equicorrelated(cfg["study"]["m"], cfg["study"]["rho0"])
    common = dict(threads=cfg["study"]["threads"], blowup=cfg["study"]["blowup"], progress=study.clock.progress)
    study.widths = sorted(set(int(w) for w in cfg["exact"]["widths"]))
    study.plan = _network_plan(cfg, V0, study.widths, common)
    keys = {r.key for r in study.plan}
    study.ref_key = f"exact n={cfg['explicit']['width']}"
    if study.ref_key not in keys:
        study.ref_key = "exact (explicit check)"
    study.shaped_key = f"exact n={cfg['standard']['width']}"
    if study.shaped_key not in keys:
        study.shaped_key = "shaped (contrast)"
    study.clock.start(len([r for r in study.plan if r.label is not None]) + 2)


def _network_plan(cfg: dict, V0: np.ndarray, widths: list[int], common: dict) -> list[_PlannedRun]:
    """The runs in order: the exact chain at each width, explicit weights (and the
    exact chain at their width if needed), the SDE (and at dt / refine), standard
    attention (and the shaped network at its width if needed), then the effects."""
    study, exact, explicit = cfg["study"], cfg["exact"], cfg["explicit"]
    T, seed0, saves = study["T"], study["seed"], study["saves"]
    net = _study_network(cfg["network"])
    plan = []
    for k, w in enumerate(widths):
        depth, layers = _layers(w, T, saves)
        plan.append(
            _PlannedRun(
                f"exact n={w}",
                f"exact chain n={w}",
                partial(
                    _run_network,
                    net,
                    V0,
                    width=w,
                    depth=depth,
                    samples=exact["samples"],
                    method="exact",
                    seed=derived_seed(seed0, 101 * (k + 1)),
                    save_at=layers,
                    **common,
                ),
            )
        )
    depth, layers = _layers(explicit["width"], T, saves)
    plan.append(
        _PlannedRun(
            "explicit",
            f"{explicit['method']} weights n={explicit['width']}",
            partial(
                _run_network,
                net,
                V0,
                width=explicit["width"],
                depth=depth,
                samples=explicit["samples"],
                method=explicit["method"],
                seed=derived_seed(seed0, 7),
                save_at=layers,
                **common,
            ),
        )
    )
    if f"exact n={explicit['width']}" not in {r.key for r in plan}:
        plan.append(
            _PlannedRun(
                "exact (explicit check)",
                None,
                partial(
                    _run_network,
                    net,
                    V0,
                    width=explicit["width"],
                    depth=depth,
                    samples=exact["samples"],
                    method="exact",
                    seed=derived_seed(seed0, 11),
                    save_at=layers,
                    **common,
                ),
            )
        )
    plan += _sde_plan(cfg, V0, common)
    plan += _standard_plan(cfg, V0, net, {r.key for r in plan}, common)
    plan += _effects_plan(cfg, V0, {r.key for r in plan}, common)
    return plan


def _sde_plan(cfg: dict, V0: np.ndarray, common: dict) -> list[_PlannedRun]:
    """The SDE, and the same SDE at dt / refine (its discretization check)."""
    study, sde = cfg["study"], cfg["sde"]
    sde_net = _study_network(_network_params(cfg, "sde_network"))
    refine = int(sde["refine"])
    kw = dict(
        T=study["T"],
        paths=sde["paths"],
        scheme=sde["scheme"],
        psd=sde["psd"],
        save_at=np.linspace(0.0, study["T"], study["saves"]),
        **common,
    )
    plan = [
        _PlannedRun(
            "sde", "SDE", partial(_run_sde, sde_net, V0, dt=sde["dt"], seed=derived_seed(study["seed"], 13), **kw)
        )
    ]
    if refine:
        plan.append(
            _PlannedRun(
                "sde fine",
                f"SDE at dt/{refine}",
                partial(_run_sde, sde_net, V0, dt=sde["dt"] / refine, seed=derived_seed(study["seed"], 14), **kw),
            )
        )
    return plan


def _standard_plan(cfg: dict, V0: np.ndarray, net: Network, keys: set[str], common: dict) -> list[_PlannedRun]:
    """Standard attention for contrast, and the shaped network at the same width."""
    study, standard = cfg["study"], cfg["standard"]
    width, seed0 = standard["width"], study["seed"]
    depth, layers = _layers(width, study["T"], study["saves"])
    plan = [
        _PlannedRun(
            "standard",
            f"standard attention n={width}",
            partial(
                _run_network,
                _standard_network(cfg),
                V0,
                width=width,
                depth=depth,
                samples=standard["samples"],
                method=standard["method"],
                seed=derived_seed(seed0, 17),
                save_at=layers,
                **common,
            ),
        )
    ]
    if f"exact n={width}" not in keys:
        plan.append(
            _PlannedRun(
                "shaped (contrast)",
                None,
                partial(
                    _run_network,
                    net,
                    V0,
                    width=width,
                    depth=depth,
                    samples=standard["samples"],
                    method="exact",
                    seed=derived_seed(seed0, 19),
                    save_at=layers,
                    **common,
                ),
            )
        )
    return plan


def _effects_plan(cfg: dict, V0: np.ndarray, keys: set[str], common: dict) -> list[_PlannedRun]:
    """tau0, gamma and heads one at a time around [network], at one width; the studied
    network itself reuses its run at that width when there is one."""
    study, network, effects = cfg["study"], cfg["network"], cfg["effects"]
    depth, layers = _layers(effects["width"], study["T"], study["saves"])
    points = (
        [("tau0", v) for v in effects["tau0"]]
        + [("gamma", v) for v in effects["gamma"]]
        + [("heads", int(v)) for v in effects["heads"]]
    )
    plan = []
    for j, (name, v) in enumerate(points):
        params = {**network, name: v}
        label = f"{name} = {v:g}"
        own = f"exact n={effects['width']}"
        if params == network and own in keys:
            plan.append(_PlannedRun(label, f"effect {label}", None, group=name, reuse=own))
            continue
        plan.append(
            _PlannedRun(
                label,
                f"effect {label}",
                partial(
                    _run_network,
                    _study_network(params),
                    V0,
                    width=effects["width"],
                    depth=depth,
                    samples=effects["samples"],
                    method="exact",
                    seed=derived_seed(study["seed"], 1000 + 31 * j),
                    save_at=layers,
                    **common,
                ),
                group=name,
            )
        )
    return plan


def _simulate(study: _Study) -> None:
    """Stage "runs": every run of the plan, each a timed step of the progress bar."""
    t_start = time.perf_counter()
    for r in study.plan:
        if r.reuse is not None:
            result = study.runs[r.reuse]
            study.clock.skip()
        else:
            assert r.run is not None
            result = r.run() if r.label is None else study.clock.stage(r.label, r.run)
        if r.group is None:
            study.runs[r.key] = result
        else:
            study.effects[r.group][r.key] = result
    study.compute_s = time.perf_counter() - t_start


def _compare(study: _Study) -> None:
    """Stage "comparisons": one timed step of the progress bar."""
    study.findings = study.clock.stage(
        "comparisons and summaries", partial(_findings, study), note="comparisons (bootstrap)"
    )


def _findings(study: _Study) -> _Findings:
    """Compares the network at each width with the SDE, explicit weights with the
    exact chain, the SDE with itself at dt / refine; fits the slopes; summarizes
    every run."""
    cfg, runs = study.cfg, study.runs
    seed0, level, bootstrap = cfg["study"]["seed"], cfg["study"]["level"], cfg["study"]["bootstrap"]
    explicit, refine = cfg["explicit"], cfg["sde"]["refine"]
    compare = partial(compare_runs, level=level, bootstrap=bootstrap)
    comparisons: dict[str, dict] = {}
    for k, w in enumerate(study.widths):
        comparisons[f"network n={w} vs SDE"] = compare(
            runs[f"exact n={w}"], runs["sde"], seed=derived_seed(seed0, 5 * k)
        )
    comparisons[f"{explicit['method']} vs exact n={explicit['width']}"] = compare(
        runs["explicit"], runs[study.ref_key], seed=derived_seed(seed0, 99)
    )
    if refine:
        comparisons[f"SDE dt vs dt/{refine}"] = compare(runs["sde"], runs["sde fine"], seed=derived_seed(seed0, 97))
    slopes: dict[str, an.Interval | None] = {}
    for obs in ("rho_T", *an.OBSERVABLES):
        vals = [comparisons[f"network n={w} vs SDE"]["distances"][obs]["wasserstein1"].value for w in study.widths]
        slopes[obs] = an.loglog_slope(study.widths, vals, level=level)
    every = dict(runs) | {f"effect {label}": res for d in study.effects.values() for label, res in d.items()}
    summaries = {name: _summaries(res) for name, res in every.items()}
    infos = {name: _run_info(res, level) for name, res in every.items()}
    return _Findings(comparisons, slopes, summaries, infos)


def _summaries(res) -> dict[str, an.DepthSummary]:
    """Per-depth summaries of one run: the token correlations, the two effective
    ranks, the ratio of the largest to the smallest token scale, the smallest
    eigenvalue."""
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


def _run_info(res, level: float) -> dict:
    """The entry of one run in results.json: its size, blow-ups and where it ran."""
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


def _render(study: _Study) -> None:
    """Stage "rendering": the figures (a timed step of the progress bar), then
    results.json, the CSV tables and report.md."""
    assert study.findings is not None
    figures = study.clock.stage("figures", partial(_figures, study, study.findings, study.out))
    study.clock.close()
    study.results = _write_outputs(study, study.findings, figures, study.clock.timings, study.compute_s, study.out)


#: The stages of a report, in order: each reads what the ones before it left in the
#: :class:`_Study` and adds its own part.
_STAGES: tuple[tuple[str, Callable[[_Study], None]], ...] = (
    ("configuration", _configure),
    ("runs", _simulate),
    ("comparisons", _compare),
    ("rendering", _render),
)


def _figures(study: _Study, findings: _Findings, out: Path) -> dict[str, Path]:
    """Stage 4, figures: the six PNG files of the report (docs/report.md)."""
    from . import plotting

    cfg, runs, summ, widths = study.cfg, study.runs, findings.summaries, study.widths
    study_, explicit, level = cfg["study"], cfg["explicit"], cfg["study"]["level"]
    refine, T = cfg["sde"]["refine"], study_["T"]
    dens = {f"network n={w} (exact)": _pairs_at_end(runs[f"exact n={w}"]) for w in widths}
    dens[f"network n={explicit['width']} ({explicit['method']} weights)"] = _pairs_at_end(runs["explicit"])
    dens["SDE"] = _pairs_at_end(runs["sde"])
    figs = {
        "density_rhoT": plotting.density_figure(
            dens,
            reference="SDE",
            title=f"token correlations at T = {T:g} given survival (m = {study_['m']}, rho0 = {study_['rho0']:g})",
        )
    }
    sde_curves = {"SDE": runs["sde"]} | ({f"SDE dt/{refine}": runs["sde fine"]} if refine else {})
    figs["blowup"] = plotting.blowup_figure(
        {w: runs[f"exact n={w}"] for w in widths},
        sde_curves,
        level=level,
        title=f"stopped by the blow-up rule (max diag V > {study_['blowup']:g})",
    )
    w1 = {
        obs: [findings.comparisons[f"network n={w} vs SDE"]["distances"][obs]["wasserstein1"] for w in widths]
        for obs in ("rho_T", *an.OBSERVABLES)
    }
    figs["distances"] = plotting.loglog_distance_figure(
        widths, w1, findings.slopes, title=f"Wasserstein-1 network vs SDE given survival ({level:.0%} bootstrap CI)"
    )
    width = cfg["standard"]["width"]

    def contrast(obs: str) -> dict[str, an.DepthSummary]:
        return {
            f"shaped n={width}": summ[study.shaped_key][obs],
            f"standard n={width}": summ["standard"][obs],
            "SDE (shaped)": summ["sde"][obs],
        }

    figs["rho_vs_depth"] = plotting.bands_figure(
        contrast("rho"),
        ylabel=r"token correlation $\rho$",
        ylim=(-1.05, 1.05),
        title="shaped vs standard attention (median, 25-75%, 5-95%)",
    )
    figs["effective_rank"] = plotting.bands_figure(
        contrast("correlation_rank"),
        ylabel=r"effective rank of the correlations $m^2/\sum_{ab}\rho_{ab}^2$",
        ylim=(0, study_["m"] + 0.2),
        title="effective rank of the correlation matrix (median, 25-75%, 5-95%)",
    )
    panels = {pname: {label: summ[f"effect {label}"]["rho"] for label in d} for pname, d in study.effects.items()}
    figs["parameter_effects"] = plotting.parameter_effects_figure(
        panels,
        ylabel=r"token correlation $\rho$",
        ylim=(-1.05, 1.05),
        title=f"effect of tau0, gamma and heads (exact chain, n = {cfg['effects']['width']}; median and 25-75% band)",
    )
    return {name: plotting.save_figure(fig, out / f"{name}.png") for name, fig in figs.items()}


def _write_outputs(
    study: _Study, findings: _Findings, figs: dict[str, Path], timings: dict[str, float], compute_s: float, out: Path
) -> dict:
    """Stage 4, files: results.json, the three CSV tables, report.md and the marker."""
    from . import __version__

    comparisons = findings.comparisons
    dist_rows = [
        {"comparison": cname, "observable": obs, **dd.to_dict()}
        for cname, c in comparisons.items()
        for obs, d in c["distances"].items()
        for dd in d.values()
    ]
    diff_rows = [
        {"comparison": cname, "statistic": label, **iv.to_dict(), "excludes_0": bool(iv.excludes(0.0))}
        for cname, c in comparisons.items()
        for label, iv in c["differences"].items()
    ]
    results = {
        "version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
        "size": study.size,
        "config": study.cfg,
        "compute_seconds": compute_s,
        "timings_s": timings,
        "verdicts": {cname: {"differs": c["differs"], "text": _verdict_phrase(c)} for cname, c in comparisons.items()},
        "differences": diff_rows,
        "distances": dist_rows,
        "slopes": {obs: None if s is None else s.to_dict() for obs, s in findings.slopes.items()},
        "runs": findings.infos,
        "summaries": {name: {obs: s.to_dict() for obs, s in d.items()} for name, d in findings.summaries.items()},
        "figures": {k: p.name for k, p in figs.items()},
    }
    with open(out / "results.json", "w") as f:
        json.dump(results, f, indent=1, allow_nan=False)
    _write_rows(
        out / "distances.csv",
        dist_rows,
        [
            "comparison",
            "observable",
            "metric",
            "value",
            "corrected",
            "low",
            "high",
            "level",
            "bootstrap",
            "interval",
            "n_x",
            "n_y",
        ],
    )
    _write_rows(
        out / "differences.csv",
        diff_rows,
        ["comparison", "statistic", "value", "low", "high", "level", "method", "excludes_0"],
    )
    _write_summaries(out / "summaries.csv", findings.summaries)
    (out / "report.md").write_text(_markdown(study, findings, results))
    (out / _MARKER).write_text(
        f"shaped-transformer {__version__} report; `shaped-transformer report --out` may replace this folder\n"
    )
    return results


def _write_rows(path: Path, rows: list[dict], fieldnames: list[str]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fieldnames)
        w.writeheader()
        for r in rows:
            w.writerow(r)


def _write_summaries(path: Path, summaries: dict[str, dict[str, an.DepthSummary]]) -> None:
    """summaries.csv: one row per run, observable and saved time."""
    levels = summaries["sde"]["rho"].levels
    with open(path, "w", newline="") as f:
        rows = csv.writer(f)
        rows.writerow(
            ["run", "observable", "t", "median"] + [f"q{q:g}" for q in levels] + ["mean", "sem", "count", "dropped"]
        )
        for name, d in summaries.items():
            for obs, s in d.items():
                assert s.t is not None  # _summaries passes every run's times
                for j in range(len(s.t)):
                    rows.writerow(
                        [name, obs, f"{s.t[j]:.6g}", _fmt(s.median[j])]
                        + [_fmt(s.quantiles[i, j]) for i in range(len(levels))]
                        + [_fmt(s.mean[j]), _fmt(s.sem[j]), int(s.count[j]), int(s.dropped[j])]
                    )


# ---- report.md, section by section ----


def _markdown(study: _Study, findings: _Findings, results: dict) -> str:
    """report.md: the header and verdict, then sections 1-5 (docs/report.md)."""
    sections = (_md_header, _md_verdict, _md_blowup, _md_differences, _md_distances, _md_rank_collapse, _md_effects)
    return "\n".join(line for section in sections for line in section(study, findings, results))


def _md_header(study: _Study, findings: _Findings, results: dict) -> list[str]:
    cfg = study.cfg
    study_, explicit, sde, refine = cfg["study"], cfg["explicit"], cfg["sde"], cfg["sde"]["refine"]
    lines = [
        "# Shaped Transformer at initialization: network vs covariance SDE",
        "",
        f"shaped-transformer {results['version']}, {results['created']}, size `{study.size}`, seed {study_['seed']}, "
        f"compute time {results['compute_seconds']:.0f} s.",
        "",
        f"Network: {_describe_network(cfg['network'])}; m = {study_['m']} tokens with input correlation "
        f"rho0 = {study_['rho0']:g}; depth = T x width with T = {study_['T']:g}. The network side is the exact "
        f"covariance chain ({cfg['exact']['samples']} samples per width; exact in law at any width), checked against "
        f"{explicit['samples']} networks with {explicit['method']} weights at n = {explicit['width']}. "
        f"The SDE uses {sde['paths']} paths, dt = {sde['dt']:g}, scheme `{sde['scheme']}`"
        + (f", and again at dt/{refine} as its discretization check." if refine else "."),
    ]
    if cfg["sde_network"]:
        lines += [
            "",
            f"**Ablation**: the SDE side is the SDE of a different network, "
            f"{_describe_network(_network_params(cfg, 'sde_network'))} "
            f"(`[sde_network]` = {dict(cfg['sde_network'])}), so a difference is expected.",
        ]
    return lines + [
        "",
        f"**Stopping rule, the same for every run**: a network or an SDE path stops the first time the largest "
        f"diagonal entry of V exceeds {study_['blowup']:g} (or turns non-finite). Section 1 gives the probability of "
        "that by T; every later statistic is *given survival* (the stopped samples are left out and counted).",
        "",
    ]


def _md_verdict(study: _Study, findings: _Findings, results: dict) -> list[str]:
    study_, comparisons, widths = study.cfg["study"], findings.comparisons, study.widths
    lines = [
        "## Verdict",
        "",
        f"A comparison **differs** when at least one of its intervals of a difference (section 2) excludes 0; "
        f"the five intervals of a comparison hold simultaneously at {study_['level']:.0%} (each at "
        f"{1 - (1 - study_['level']) / len(VERDICT_STATISTICS):.1%}, Bonferroni). Otherwise there is **no measurable "
        "difference** at these sample sizes (which is not a proof of equality).",
        "",
    ]
    lines += [f"- **{cname}**: {_verdict_phrase(c)}." for cname, c in comparisons.items()]
    lines += ["", *_reading(study.cfg, comparisons, widths)]
    # the trend with width, stated only as far as the intervals carry it
    runs = results["runs"]
    d = runs["sde"]["p_blowup"]
    num = {k: float("nan") if d[k] is None else float(d[k]) for k in ("value", "low", "high", "level")}
    p_sde = an.Interval(num["value"], num["low"], num["high"], num["level"], str(d.get("method", "")))
    p_net = [runs[f"exact n={w}"]["p_blowup"] for w in widths]
    lines += [
        "",
        f"Blow-up by T = {study_['T']:g}: network "
        + ", ".join(f"{p['value'] * 100:.2f}% (n = {w})" for w, p in zip(widths, p_net))
        + f"; SDE {_pct(p_sde)}.",
    ]
    trend = [_trend(obs, s) for obs, s in findings.slopes.items() if s is not None]
    if trend:
        lines += ["", "Wasserstein-1 distance to the SDE against width (section 3): " + "; ".join(trend) + "."]
    return lines + [""]


def _trend(obs: str, s: an.Interval) -> str:
    """What a log-log slope's interval says about the distance against width."""
    if s.high < 0:
        return f"{obs} decreases with width (log-log slope {s.value:.2f} [{s.low:.2f}, {s.high:.2f}])"
    if s.low > 0:
        return f"{obs} increases with width (log-log slope {s.value:.2f} [{s.low:.2f}, {s.high:.2f}])"
    return f"{obs}: no trend resolved (slope {s.value:.2f} [{s.low:.2f}, {s.high:.2f}] includes 0)"


def _md_blowup(study: _Study, findings: _Findings, results: dict) -> list[str]:
    lines = [
        f"## 1. Probability of blow-up by T ({study.cfg['study']['level']:.0%} Wilson intervals)",
        "",
        "| run | width n (depth = T n) or SDE step | samples | stopped | P(blow-up by T) | first stop at t |",
        "|---|---|---|---|---|---|",
    ]
    for name, info in results["runs"].items():
        p = info["p_blowup"]
        first = "" if info["first_blowup_t"] is None else f"{info['first_blowup_t']:.3g}"
        where = (
            f"n = {info['width']}"
            if info.get("width") is not None
            else f"SDE, dt = {info['info'].get('dt', float('nan')):.3g}"
        )
        lines.append(
            f"| {name} | {where} | {info['samples']} | {info['exploded']} | {p['value'] * 100:.2f}% "
            f"[{p['low'] * 100:.2f}, {p['high'] * 100:.2f}] | {first} |"
        )
    return lines + ["", "![blow-up probability](blowup.png)", ""]


def _md_differences(study: _Study, findings: _Findings, results: dict) -> list[str]:
    lines = [
        "## 2. Differences given survival (a - b), simultaneous intervals",
        "",
        "| comparison (a vs b) | " + " | ".join(label for label, _, _ in VERDICT_STATISTICS) + " |",
        "|---|" + "---|" * len(VERDICT_STATISTICS),
    ]
    for cname, c in findings.comparisons.items():
        cells = []
        for label, _, _ in VERDICT_STATISTICS:
            iv = c["differences"][label]
            mark = " **x**" if iv.excludes(0.0) else ""
            if label.startswith("P("):
                cells.append(f"{iv.value * 100:+.2f} [{iv.low * 100:+.2f}, {iv.high * 100:+.2f}] pts{mark}")
            else:
                cells.append(f"{iv.value:+.4g} [{iv.low:+.4g}, {iv.high:+.4g}]{mark}")
        lines.append(f"| {cname} | " + " | ".join(cells) + " |")
    return lines + [
        "",
        "**x**: the interval excludes 0. " + "; ".join(f"{label}: {how}" for label, how, _ in VERDICT_STATISTICS) + ".",
        "",
    ]


def _md_distances(study: _Study, findings: _Findings, results: dict) -> list[str]:
    study_, comparisons = study.cfg["study"], findings.comparisons
    observables = ("rho_T", *an.OBSERVABLES)
    lines = [
        f"## 3. Distances between the laws given survival ({study_['level']:.0%} basic bootstrap CI, "
        f"{study_['bootstrap']} replicates)",
        "",
        "Wasserstein-1 per observable: the plug-in distance, in parentheses the bootstrap bias-corrected "
        "estimate, then the interval (clipped at 0). rho_T pools the m(m-1)/2 token pairs and resamples whole "
        "networks; the others are one value per sample. Two samples of one law are at a positive plug-in "
        f"distance (the noise floor: see the row `{study.cfg['explicit']['method']} vs exact`).",
        "",
        "| comparison | " + " | ".join(observables) + " |",
        "|---|" + "---|" * len(observables),
    ]
    for cname, c in comparisons.items():
        lines.append(f"| {cname} | " + " | ".join(_dist(c["distances"][o]["wasserstein1"]) for o in observables) + " |")
    return lines + [
        "",
        "KS distance of rho_T: "
        + "; ".join(f"{cname} {_dist(c['distances']['rho_T']['ks'])}" for cname, c in comparisons.items())
        + ".",
        "",
        "![distances against width](distances.png)",
        "",
        "![density of rho_T](density_rhoT.png)",
        "",
    ]


def _md_rank_collapse(study: _Study, findings: _Findings, results: dict) -> list[str]:
    study_, standard = study.cfg["study"], study.cfg["standard"]
    sh, st_ = findings.summaries[study.shaped_key], findings.summaries["standard"]
    return [
        "## 4. Rank collapse: shaped versus standard attention",
        "",
        f"Both networks at width n = {standard['width']} ({standard['method']} method, {standard['samples']} "
        f"samples for standard attention), T = {study_['T']:g}, medians over samples. The token correlation is "
        f"{sh['rho'].median[-1]:.3f} with shaped attention and {st_['rho'].median[-1]:.3f} with standard "
        "attention. **Rank collapse** is read from the effective rank of the correlation matrix, "
        f"m^2 / sum_ab rho_ab^2 (m = {study_['m']} for orthogonal tokens, 1 when all tokens point the same way): "
        f"{sh['correlation_rank'].median[-1]:.2f} (shaped) versus {st_['correlation_rank'].median[-1]:.2f} "
        "(standard). The effective rank of V itself, (tr V)^2 / tr V^2, is "
        f"{sh['effective_rank'].median[-1]:.2f} versus {st_['effective_rank'].median[-1]:.2f}: it also counts "
        "the tokens' scales, and is lower than the correlations' because the scales spread (the largest V_aa "
        f"is {sh['scale_ratio'].median[-1]:.1f} times the smallest, shaped; {st_['scale_ratio'].median[-1]:.1f} "
        "standard), not because the directions collapse.",
        "",
        "![rho against depth](rho_vs_depth.png)",
        "",
        "![effective rank against depth](effective_rank.png)",
        "",
    ]


def _md_effects(study: _Study, findings: _Findings, results: dict) -> list[str]:
    study_, effects = study.cfg["study"], study.cfg["effects"]
    lines = [
        "## 5. Effect of tau0, gamma and the number of heads",
        "",
        f"One parameter at a time around the studied network; the exact chain at width n = {effects['width']} "
        f"(depth {max(1, int(round(study_['T'] * effects['width'])))}), {effects['samples']} samples (the "
        "studied network itself: its run at that width when there is one).",
        "",
        f"| variation (n = {effects['width']}) | median rho_T | mean rho_T (+- s.e.) | P(blow-up by T) "
        f"({study_['level']:.0%}) |",
        "|---|---|---|---|",
    ]
    for name, d in findings.summaries.items():
        if name.startswith("effect "):
            r = d["rho"]
            p = results["runs"][name]["p_blowup"]
            lines.append(
                f"| {name[7:]} | {r.median[-1]:.3f} | {r.mean[-1]:.3f} +- {r.sem[-1]:.3f} | "
                f"{p['value'] * 100:.2f}% [{p['low'] * 100:.2f}, {p['high'] * 100:.2f}] |"
            )
    return lines + [
        "",
        "![parameter effects](parameter_effects.png)",
        "",
        "Numbers: `results.json`, `differences.csv`, `distances.csv`, `summaries.csv`. Timings (s): "
        + ", ".join(f"{k} {v:.1f}" for k, v in results["timings_s"].items())
        + ".",
        "",
    ]


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
        + ", ".join(f"n = {w}" for w in widths)
        + ":",
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
            say = (
                f"the interval excludes 0 at n = {at} and includes it from n = {widths[last + 1]} on: consistent "
                "with a gap that closes as n grows"
            )
        else:
            say = (
                f"the interval excludes 0 at n = {at}, the largest width included: the gap has not closed at "
                "these widths (it needs a larger width, or a difference between the models remains)"
            )
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
    att = (
        f"{'causal ' if p['causal'] else ''}shaped attention (heads = {p['heads']}, tau0 = {p['tau0']:g}, "
        f"gamma = {p['gamma']:g})"
    )
    mlp = f"shaped MLP (c+ = {p['c_plus']:g}, c- = {p['c_minus']:g}, gamma = {p['gamma']:g})"
    layer = {"transformer": f"{att} followed by a {mlp}", "attention": att, "mlp": mlp}[p["blocks"]]
    norm = {"none": "", "pre_rms": "pre-RMS", "post_rms": "post-RMS", "pre_layer": "pre-LayerNorm",
            "post_layer": "post-LayerNorm"}[p["norm"]]  # fmt: skip
    return layer if not norm else f"{layer}, every block with a {norm} norm (docs/norms.md)"
