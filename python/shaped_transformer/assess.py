"""One call for a planned model: how likely is it to blow up, or its tokens to
collapse, by the last layer?  (``st.assess``, ``shaped-transformer check``.)

The answer puts together what the library already computes (docs/assess.md):

* **the network at the given width**: the exact m x m chain (``simulate(method=
  "exact")``, docs/model.md section 4), exact in law at any width, plain Monte
  Carlo over ``samples`` initializations;
* **the SDE** at the matched time T = depth / width (docs/model.md section 5),
  its n -> infinity limit, with the same stopping rule and the same collapse
  rule, and the gap network - SDE;
* **adaptive multilevel splitting** (:mod:`shaped_transformer.splitting`) where
  plain Monte Carlo saw fewer than ``splitting_below`` blow-ups: on the network
  itself (its exact chain, ``scheme="exact_chain"`` at dt = 1/width) and on the
  SDE, so that probabilities far below 1/samples get a value and an interval,
  or are reported as unresolved;
* **a verdict** at ``level``, by one rule for every estimate (:func:`verdict`).

Events, the same for network and SDE:

* **blow-up**: the library's stopping rule, max diag V > ``blowup`` (default 1e4)
  or non-finite at some layer up to the last (docs/model.md section 6);
* **collapse**: at the last layer, a sample that has not blown up has mean token
  correlation (the average of rho_ab over the pairs a < b) above
  1 - ``collapse_eps`` (default 0.01): the tokens are nearly one direction.  The
  threshold is justified in docs/assess.md (figure docs/img/collapse_threshold.png,
  benchmarks/collapse_threshold.py).

The two events are disjoint (a blown-up sample has no last-layer correlation).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import numpy as np

from ._validate import (
    DEFAULT_BLOWUP,
    check_int,
    check_number,
    check_seed,
    check_square_psd,
    check_threads,
    check_tokens,
    derived_seed,
)

__all__ = [
    "BLOCKS",
    "COLLAPSE_EPS",
    "Assessment",
    "Estimate",
    "assess",
    "collapsed",
    "verdict",
]

#: The default collapse threshold: a sample has collapsed when its mean token
#: correlation exceeds 1 - COLLAPSE_EPS (docs/assess.md, "Collapse").
COLLAPSE_EPS = 1e-2

#: The block kinds ``assess`` covers: shaped attention (with or without the
#: shaped MLP) and, for contrast, standard softmax attention (no SDE limit).
BLOCKS: dict[str, str] = {
    "shaped_transformer": "shaped attention + shaped MLP",
    "shaped_attention": "shaped attention only",
    "standard_transformer": "softmax attention + ReLU MLP",
    "standard_attention": "softmax attention only",
}

Verdict = Literal["safe", "unsafe", "undecided"]

# Keeps the stored final covariances of one simulate / solve_sde call below this
# many bytes: larger runs go in chunks of samples (the chunk size depends on m
# only, so the numbers do not depend on the machine or the thread count).
_CHUNK_BYTES = 2**28


# ---------------------------------------------------------------------------
# The rules: collapse, verdict
# ---------------------------------------------------------------------------


def collapsed(V: np.ndarray, eps: float = COLLAPSE_EPS) -> np.ndarray:
    """Whether covariances ``(..., m, m)`` are collapsed: mean off-diagonal token
    correlation > 1 - eps.  NaN covariances (samples that blew up) give False."""
    from .analysis import mean_correlation

    with np.errstate(invalid="ignore"):
        r = mean_correlation(V)
    return np.asarray(np.isfinite(r) & (r > 1.0 - eps))


def verdict(low: float, high: float, level: float, *, unresolved: bool = False) -> Verdict:
    """The package's one verdict rule (:func:`shaped_transformer.analysis.verdict`)
    for an interval [low, high] against ``level``: "safe" when the whole interval
    lies below ``level``, "unsafe" when it lies above, "undecided" otherwise, and
    always "undecided" for an estimate that did not resolve (``unresolved``)."""
    from .analysis import Interval
    from .analysis import verdict as _verdict

    if unresolved:
        return "undecided"
    v = _verdict(Interval(math.nan, float(low), float(high), math.nan, "given"), level)
    return cast(Verdict, v)


def _clopper_pearson(k: int, n: int, confidence: float) -> tuple[float, float]:
    from .analysis import binomial_interval

    ci = binomial_interval(k, n, level=confidence, method="exact")
    return ci.low, ci.high


def samples_to_certify(level: float, confidence: float = 0.95) -> int:
    """The number of samples with no event at which the Clopper-Pearson interval
    lies below ``level``: the smallest n with 1 - ((1 - confidence) / 2)^(1/n) < level."""
    return int(math.floor(math.log((1.0 - confidence) / 2.0) / math.log1p(-level))) + 1


# ---------------------------------------------------------------------------
# Result types
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """A probability with its interval.

    Attributes
    ----------
    p, low, high : the estimate and its interval at the assessment's confidence.
    method : what produced it ("exact chain", "SDE", "splitting (exact chain)",
        "splitting (SDE)").
    events, samples : plain Monte Carlo counts (None for splitting).
    runs : the splitting runs' estimates (None for plain Monte Carlo).
    unresolved : the estimate did not resolve the probability (splitting runs
        that died out or hit their iteration cap); its interval is then not used.
    note : why, when unresolved or skipped.
    """

    p: float
    low: float
    high: float
    method: str
    events: int | None = None
    samples: int | None = None
    runs: tuple[float, ...] | None = None
    unresolved: bool = False
    note: str = ""

    def verdict(self, level: float) -> Verdict:
        return verdict(self.low, self.high, level, unresolved=self.unresolved)

    def __str__(self) -> str:
        if self.unresolved:
            return "unresolved (see the notes)"
        if self.events is not None:
            return f"{_g(self.p)} [{_g(self.low)}, {_g(self.high)}]  ({self.events} of {self.samples})"
        runs = f"{len(self.runs)} runs" if self.runs else "splitting"
        return f"{_g(self.p)} [{_g(self.low)}, {_g(self.high)}]  ({runs})"

    def to_dict(self) -> dict:
        return {"p": self.p, "low": self.low, "high": self.high, "method": self.method, "events": self.events,
                "samples": self.samples, "runs": None if self.runs is None else list(self.runs),
                "unresolved": self.unresolved, "note": self.note}


@dataclass(frozen=True)
class Gap:
    """network - SDE, with an interval from the two printed intervals (the
    MOVER construction: Newcombe's method 10 when both are Wilson intervals,
    Zou and Donner 2008 in general)."""

    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{_g(self.value, signed=True)} [{_g(self.low, signed=True)}, {_g(self.high, signed=True)}]"


def _gap(a: Estimate | None, b: Estimate | None) -> Gap | None:
    if a is None or b is None or a.unresolved or b.unresolved:
        return None
    d = a.p - b.p
    low = d - math.hypot(a.p - a.low, b.high - b.p)
    high = d + math.hypot(a.high - a.p, b.p - b.low)
    return Gap(d, low, high)


@dataclass
class Assessment:
    """What :func:`assess` found.  ``str(a)`` is what ``shaped-transformer check``
    prints; ``a.to_dict()`` the same numbers for JSON.

    Attributes
    ----------
    settings : the configuration (width, depth, T, heads, tokens, tau0, gamma,
        block, causal, norm, input, blowup, collapse_eps, samples, seed, ...).
    level, confidence : the verdict's level and the intervals' confidence.
    blowup, collapse : the network's answers (the splitting estimate where it ran
        and resolved, else plain Monte Carlo of the exact chain).
    blowup_mc : plain Monte Carlo of the exact chain; blowup_splitting its
        splitting estimate (None when not run).
    sde_blowup, sde_collapse, sde_blowup_splitting : the same for the SDE (None
        when the block kind has no SDE limit or ``sde=False``).
    failure : P(blow-up or collapse), the events being disjoint.
    gap_blowup, gap_collapse : network - SDE.
    verdicts : {"blow-up": .., "collapse": .., "overall": ..}; ``verdict`` is the
        overall one (from ``failure``).
    final : the network's last layer over the samples that did not blow up:
        quantiles (5%, 50%, 95%) of the mean token correlation and of tr V / m.
    elapsed_s, timings : wall time in all and per stage.
    notes : what the reader should know (skipped stages, warnings).
    """

    settings: dict[str, Any]
    level: float
    confidence: float
    blowup: Estimate
    collapse: Estimate
    blowup_mc: Estimate
    blowup_splitting: Estimate | None
    sde_blowup: Estimate | None
    sde_collapse: Estimate | None
    sde_blowup_splitting: Estimate | None
    failure: Estimate
    gap_blowup: Gap | None
    gap_collapse: Gap | None
    verdicts: dict[str, Verdict]
    final: dict[str, list[float]]
    elapsed_s: float
    timings: dict[str, float]
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> Verdict:
        return self.verdicts["overall"]

    def to_dict(self) -> dict:
        def est(e):
            return None if e is None else e.to_dict()

        def gap(g):
            return None if g is None else {"value": g.value, "low": g.low, "high": g.high}

        return {
            "settings": {k: v for k, v in self.settings.items() if k != "V0"},
            "V0": np.asarray(self.settings["V0"]).tolist(),
            "level": self.level, "confidence": self.confidence,
            "blowup": est(self.blowup), "collapse": est(self.collapse), "blowup_mc": est(self.blowup_mc),
            "blowup_splitting": est(self.blowup_splitting), "sde_blowup": est(self.sde_blowup),
            "sde_collapse": est(self.sde_collapse), "sde_blowup_splitting": est(self.sde_blowup_splitting),
            "failure": est(self.failure), "gap_blowup": gap(self.gap_blowup), "gap_collapse": gap(self.gap_collapse),
            "verdicts": dict(self.verdicts), "final": self.final, "elapsed_s": self.elapsed_s,
            "timings": dict(self.timings), "notes": list(self.notes),
        }

    def __str__(self) -> str:
        s = self.settings
        conf = f"{100 * self.confidence:g}%"
        head = (f"{s['block']} ({BLOCKS[s['block']]}), width {s['width']}, depth {s['depth']} "
                f"(T = depth / width = {s['T']:.4g}), {s['heads']} head{'s' if s['heads'] > 1 else ''}, "
                f"{s['tokens']} tokens")
        shaped = s["block"].startswith("shaped")
        params = (f"tau0 {s['tau0']:g}, " if shaped else "") + f"gamma {s['gamma']:g}, " + \
            ("causal" if s["causal"] else "bidirectional") + ", no norm"
        lines = [
            head,
            f"  {params}; input: {s['input']}",
            f"  blow-up: max diag V > {s['blowup']:g} (or non-finite) by layer {s['depth']}; collapse: mean token "
            f"correlation > {1 - s['collapse_eps']:g} at layer {s['depth']}",
            f"  {conf} intervals (Clopper-Pearson; splitting: t-interval over its runs); level {self.level:g}",
            "",
        ]
        net = f"network (exact chain, n = {s['width']})"
        sde = f"SDE (Euler, dt = {s['sde_dt']:.3g})" if self.sde_blowup is not None else "SDE"
        rows: list[tuple[str, str, str, str]] = [("", net, sde, "gap (network - SDE)")]

        def cell(e: Estimate | None, absent: str = "-") -> str:
            return absent if e is None else str(e)

        no_sde = s.get("sde_absent", "-")
        rows.append(("P(blow-up)", cell(self.blowup_mc), cell(self.sde_blowup, no_sde),
                     "" if self.blowup_splitting or self.sde_blowup_splitting else _gs(_gap(self.blowup_mc,
                                                                                          self.sde_blowup))))
        if self.blowup_splitting is not None or self.sde_blowup_splitting is not None:
            rows.append(("  by splitting", cell(self.blowup_splitting, "not run"),
                         cell(self.sde_blowup_splitting, "not run" if self.sde_blowup is not None else no_sde), ""))
            rows.append(("  best estimate", str(self.blowup), cell(_best(self.sde_blowup, self.sde_blowup_splitting),
                                                                   no_sde), _gs(self.gap_blowup)))
        rows.append(("P(collapse)", cell(self.collapse), cell(self.sde_collapse, no_sde), _gs(self.gap_collapse)))
        rows.append(("P(either)", str(self.failure), "", ""))
        w = [max(len(r[i]) for r in rows) for i in range(4)]
        for r in rows:
            lines.append("  " + "  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip())
        lines.append("")
        v = self.verdicts
        lines.append(f"  verdict at level {self.level:g}: {v['overall'].upper()} "
                     f"(blow-up {v['blow-up']}, collapse {v['collapse']}; safe = the whole interval below the level, "
                     "unsafe = above it)")
        if v["overall"] == "undecided" and self.blowup.events == 0 and self.collapse.events == 0:
            lines.append(f"    with no event seen, plain Monte Carlo needs {samples_to_certify(self.level, self.confidence)}"
                         f" samples to certify P < {self.level:g} at {conf}; this run had {self.blowup_mc.samples}")
        f = self.final
        if f:
            lines.append(f"  last layer (network, samples that did not blow up): mean correlation {f['mean_rho'][1]:.3g} "
                         f"(5%..95%: {f['mean_rho'][0]:.3g}..{f['mean_rho'][2]:.3g}), tr V / m {f['scale'][1]:.3g} "
                         f"({f['scale'][0]:.3g}..{f['scale'][2]:.3g})")
        for note in self.notes:
            lines.append(f"  note: {note}")
        stages = ", ".join(f"{k} {_secs(t)}" for k, t in self.timings.items())
        lines.append(f"  time: {_secs(self.elapsed_s)} ({stages})")
        return "\n".join(lines)


def _best(mc: Estimate | None, spl: Estimate | None) -> Estimate | None:
    """Splitting where it ran and resolved, else plain Monte Carlo."""
    if spl is not None and not spl.unresolved:
        return spl
    return mc


def _g(x: float, signed: bool = False) -> str:
    if x == 0:
        return "0"
    s = f"{x:+.2g}" if signed else f"{x:.2g}"
    return s.replace("e-0", "e-").replace("e+0", "e+")


def _gs(g: Gap | None) -> str:
    return "" if g is None else str(g)


def _secs(t: float) -> str:
    return f"{t:.1f} s" if t < 100 else f"{t / 60:.1f} min"


# ---------------------------------------------------------------------------
# Validation (every check before any compute)
# ---------------------------------------------------------------------------


def _check_input(tokens, rho0, X0, V0, width: int) -> tuple[int, np.ndarray, str]:
    """(m, V0, description) from exactly one of rho0, X0 (m x width tokens), V0."""
    given = [name for name, v in (("rho0", rho0), ("X0", X0), ("V0", V0)) if v is not None]
    if len(given) > 1:
        raise ValueError(f"give one input correlation: rho0, X0 or V0, not {' and '.join(given)}")
    if X0 is not None:
        X = check_tokens("X0", X0)
        if X.shape[1] != width:
            raise ValueError(f"X0: tokens of dimension {X.shape[1]} do not match width={width} (X0 is tokens x width)")
        V = X @ X.T / X.shape[1]
        if np.max(np.diag(V)) <= 0:
            raise ValueError("X0 must not be all zeros")
        what = f"tokens X0 ({X.shape[0]} x {X.shape[1]}), mean square {np.trace(V) / len(V):.3g}"
    elif V0 is not None:
        V = check_square_psd("V0", V0)
        what = f"Gram matrix V0 ({len(V)} x {len(V)}), mean diagonal {np.trace(V) / len(V):.3g}"
    else:
        if tokens is None:
            raise ValueError("tokens must be given with rho0 (or give X0 or V0, which set it)")
        m = check_int("tokens", tokens, minimum=2)
        r = 0.3 if rho0 is None else check_number("rho0", rho0)
        if not -1.0 / (m - 1) <= r < 1.0:
            raise ValueError(f"rho0 must lie in [-1/(tokens-1), 1) = [{-1.0 / (m - 1):.3g}, 1) for {m} tokens, got {r}")
        from .inputs import equicorrelated

        V = equicorrelated(m, r)
        what = f"equicorrelated, rho0 = {r:g}{' (default)' if rho0 is None else ''}, unit diagonal"
    m = V.shape[0]
    if tokens is not None and check_int("tokens", tokens, minimum=2) != m:
        raise ValueError(f"tokens={tokens} does not match the input's {m} tokens ({given[0]})")
    if m < 2:
        raise ValueError(f"tokens: collapse needs at least 2 tokens, the input has {m}")
    if np.any(np.diag(V) <= 0):
        raise ValueError(f"{given[0] if given else 'V0'}: every token needs a positive mean square (a zero token has no correlation)")
    return m, V, what


def _network(block: str, heads: int, tau0: float, gamma: float, causal: bool):
    from ._blocks import Network, ReluMLP, ShapedAttention, ShapedMLP, StandardAttention

    if block == "shaped_attention":
        return Network([ShapedAttention(heads=heads, tau0=tau0, gamma=gamma, causal=causal)])
    if block == "shaped_transformer":
        return Network([ShapedAttention(heads=heads, tau0=tau0, gamma=gamma, causal=causal), ShapedMLP(gamma=gamma)])
    if block == "standard_attention":
        return Network([StandardAttention(heads=heads, gamma=gamma)])
    return Network([StandardAttention(heads=heads, gamma=gamma), ReluMLP(gamma=gamma)])


def _chunks(total: int, m: int) -> Iterator[tuple[int, int]]:
    """(index, count) of the chunks of samples whose final covariances fit in _CHUNK_BYTES."""
    size = max(1, _CHUNK_BYTES // (8 * m * m))
    for i, start in enumerate(range(0, total, size)):
        yield i, min(size, total - start)


def _bar(total: int, enabled: bool | None):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="assess", unit="stage", disable=None if enabled is None else not enabled, leave=False)


# ---------------------------------------------------------------------------
# assess
# ---------------------------------------------------------------------------


def assess(
    *,
    width: int,
    depth: int,
    heads: int = 1,
    tokens: int | None = None,
    tau0: float | None = None,
    gamma: float = 0.5,
    block: str = "shaped_transformer",
    causal: bool = False,
    norm: str | None = None,
    rho0: float | None = None,
    X0: np.ndarray | None = None,
    V0: np.ndarray | None = None,
    samples: int = 2000,
    level: float = 1e-3,
    confidence: float = 0.95,
    blowup: float = DEFAULT_BLOWUP,
    collapse_eps: float = COLLAPSE_EPS,
    sde: bool = True,
    sde_paths: int | None = None,
    dt: float | None = None,
    splitting: bool = True,
    splitting_below: int = 10,
    splitting_particles: int = 100,
    splitting_repeats: int = 4,
    splitting_budget_s: float | None = None,
    seed: int = 0,
    threads: int | None = None,
    progress: bool | None = None,
) -> Assessment:
    """P(blow-up by the last layer) and P(collapse) of a planned network at
    initialization, with intervals, the SDE's prediction beside them and a
    verdict (docs/assess.md).

    Parameters
    ----------
    width, depth : the embedding dimension n and the number of layers d; the
        SDE runs to T = d / n.
    heads : attention heads H (summed heads, docs/model.md section 2).
    tokens : the sequence length m; required with ``rho0``, implied by X0 / V0.
    tau0 : the shaped heads' temperature (tau = tau0 sqrt(n n_k)); default 1.
        Not a parameter of standard attention (refused there).
    gamma : the branch weight (lambda^2 + gamma^2 = 1), in (0, 1].
    block : "shaped_transformer" (shaped attention + shaped MLP, default),
        "shaped_attention", or for contrast "standard_transformer" /
        "standard_attention" (softmax heads; no SDE, no splitting).
    causal : causal shaped heads (docs/causal.md).
    norm : None only, for now; norm placement (pre/post RMS norm) is planned.
    rho0, X0, V0 : the input, at most one: an equicorrelated Gram matrix with
        unit diagonal and correlation rho0 (default 0.3), the user's token
        embeddings X0 (tokens x width; V0 = X0 X0^T / width), or a Gram matrix
        V0.  The scale counts: the network sees V0 as given (docs/assess.md).
    samples : initializations of the exact chain (plain Monte Carlo).
    level : the verdict's level for each probability.
    confidence : of every interval (default 95%).
    blowup : the stopping rule's threshold on max diag V (docs/model.md section 6).
    collapse_eps : collapse = mean token correlation > 1 - collapse_eps at the
        last layer.
    sde : also run the SDE (shaped blocks only).
    sde_paths : SDE paths (default: ``samples``, like with like).
    dt : the SDE's step (default T / max(100, ceil(T / 1e-3))).
    splitting : run adaptive multilevel splitting where plain Monte Carlo saw
        fewer than ``splitting_below`` blow-ups (network and SDE separately).
    splitting_particles, splitting_repeats : per splitting run, and runs (>= 2).
    splitting_budget_s : a rough time budget per splitting estimate (network or
        SDE); it bounds the iterations from the measured cost of a step, and a
        run that needs more is reported unresolved, and the stage is skipped
        (unresolved) when the budget cannot reach ``level``.  Default: twice the
        time of the plain Monte Carlo stage it follows, at least 30 s.
    seed : the Philox key of every stage (same seed, same numbers, any thread count).
    threads : worker threads (None or 0: all cores).
    progress : tqdm bars (None: only on a terminal).

    Every argument is checked before any compute: a bad one raises ValueError
    (or TypeError) naming it.
    """
    t_start = time.perf_counter()
    # ---- validation ------------------------------------------------------
    width = check_int("width", width, minimum=1)
    depth = check_int("depth", depth, minimum=1)
    heads = check_int("heads", heads, minimum=1)
    if not isinstance(block, str) or block not in BLOCKS:
        raise ValueError(f"block must be one of {tuple(BLOCKS)}, got {block!r}")
    shaped = block.startswith("shaped")
    if tau0 is None:
        tau0 = 1.0
    elif not shaped:
        raise ValueError(f"tau0: standard attention has no temperature parameter (block={block!r}); leave tau0 unset")
    else:
        tau0 = check_number("tau0", tau0, positive=True)
    gamma = check_number("gamma", gamma)
    if not 0.0 < gamma <= 1.0:
        raise ValueError(f"gamma must lie in (0, 1], got {gamma}")
    if not isinstance(causal, (bool, np.bool_)):
        raise TypeError(f"causal must be True or False, got {type(causal).__name__}")
    if causal and not shaped:
        raise ValueError(f"causal: only shaped heads can be causal (block={block!r})")
    if norm is not None and norm != "none":
        raise ValueError(
            f"norm={norm!r}: norm placement is not supported by assess yet (the exact chain and the SDE with "
            "pre/post norms are planned); use norm=None"
        )
    m, V0_, input_what = _check_input(tokens, rho0, X0, V0, width)
    if width < m:
        raise ValueError(f"width={width} must be >= tokens={m} (the token Gram matrix has rank at most width)")
    samples = check_int("samples", samples, minimum=1)
    level = check_number("level", level)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    confidence = check_number("confidence", confidence)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    from ._validate import check_blowup

    blowup = check_blowup(blowup, V0_)
    collapse_eps = check_number("collapse_eps", collapse_eps)
    if not 0.0 < collapse_eps < 1.0:
        raise ValueError(f"collapse_eps must lie in (0, 1), got {collapse_eps}")
    if not isinstance(sde, (bool, np.bool_)):
        raise TypeError(f"sde must be True or False, got {type(sde).__name__}")
    sde_paths = samples if sde_paths is None else check_int("sde_paths", sde_paths, minimum=1)
    T = depth / width
    if dt is None:
        steps = max(100, math.ceil(T / 1e-3 - 1e-9))
        dt = T / steps
    else:
        dt = check_number("dt", dt, positive=True)
        if dt > T:
            raise ValueError(f"dt must be <= T = depth / width = {T:g}, got {dt}")
    if not isinstance(splitting, (bool, np.bool_)):
        raise TypeError(f"splitting must be True or False, got {type(splitting).__name__}")
    splitting_below = check_int("splitting_below", splitting_below, minimum=0)
    splitting_particles = check_int("splitting_particles", splitting_particles, minimum=10)
    splitting_repeats = check_int("splitting_repeats", splitting_repeats, minimum=2)
    if splitting_budget_s is not None:
        splitting_budget_s = check_number("splitting_budget_s", splitting_budget_s, positive=True)
    seed = check_seed(seed)
    threads = check_threads(threads)
    if progress is not None and not isinstance(progress, (bool, np.bool_)):
        raise TypeError(f"progress must be True, False or None, got {type(progress).__name__}")
    net = _network(block, heads, tau0, gamma, bool(causal))
    has_sde = shaped  # shaped heads with alpha = 1 and the shaped MLP have an SDE limit

    settings: dict[str, Any] = {
        "width": width, "depth": depth, "T": T, "heads": heads, "tokens": m, "tau0": tau0, "gamma": gamma,
        "block": block, "causal": bool(causal), "norm": None, "input": input_what, "V0": V0_, "blowup": blowup,
        "collapse_eps": collapse_eps, "samples": samples, "sde_paths": sde_paths if (sde and has_sde) else 0,
        "sde_dt": dt, "seed": seed, "threads": threads,
    }
    if not has_sde:
        settings["sde_absent"] = "no SDE limit"
    elif not sde:
        settings["sde_absent"] = "not run"
    notes: list[str] = []
    timings: dict[str, float] = {}
    if collapsed(V0_, collapse_eps):
        notes.append(f"the input is already collapsed (mean correlation > {1 - collapse_eps:g})")

    stages = 1 + int(bool(sde and has_sde)) + 2 * int(bool(splitting and has_sde))
    with _bar(stages, progress) as bar, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # ---- the network: plain Monte Carlo of the exact chain --------------
        bar.set_description("assess: exact chain")
        t0 = time.perf_counter()
        net_final, net_blown = _run_chunks(
            lambda n_s, s: _simulate(net, V0_, width, depth, n_s, s, threads, blowup, progress), samples, m, seed, 0)
        timings["exact chain"] = time.perf_counter() - t0
        bar.update()
        blow_mc = _mc("exact chain", int(net_blown), samples, confidence)
        n_coll = int(np.sum(collapsed(net_final, collapse_eps)))
        coll = _mc("exact chain", n_coll, samples, confidence)
        final = _final_quantiles(net_final)

        # ---- the SDE --------------------------------------------------------
        sde_blow = sde_coll = None
        if sde and has_sde:
            bar.set_description("assess: SDE")
            t0 = time.perf_counter()
            sde_final, sde_blown = _run_chunks(
                lambda n_s, s: _solve_sde(net, V0_, T, dt, n_s, s, threads, blowup, progress), sde_paths, m, seed,
                1 << 20)
            timings["SDE"] = time.perf_counter() - t0
            bar.update()
            sde_blow = _mc("SDE", int(sde_blown), sde_paths, confidence)
            sde_coll = _mc("SDE", int(np.sum(collapsed(sde_final, collapse_eps))), sde_paths, confidence)

        # ---- splitting where plain Monte Carlo saw too few blow-ups -------------
        blow_spl = sde_spl = None
        if splitting and has_sde:
            if blow_mc.events is not None and blow_mc.events < splitting_below:
                bar.set_description("assess: splitting (exact chain)")
                t0 = time.perf_counter()
                per_step = timings["exact chain"] / (samples * depth)
                blow_spl = _splitting(net, V0_, T, 1.0 / width, "exact_chain", depth, per_step, blowup,
                                      splitting_particles, splitting_repeats,
                                      splitting_budget_s or max(30.0, 2 * timings["exact chain"]), level, confidence,
                                      derived_seed(seed, 2 << 20), threads)
                timings["splitting (exact chain)"] = time.perf_counter() - t0
            bar.update()
            if sde_blow is not None and sde_blow.events is not None and sde_blow.events < splitting_below:
                bar.set_description("assess: splitting (SDE)")
                t0 = time.perf_counter()
                steps = int(round(T / dt))
                per_step = timings["SDE"] / (sde_paths * steps)
                sde_spl = _splitting(net, V0_, T, dt, "euler", steps, per_step, blowup, splitting_particles,
                                     splitting_repeats, splitting_budget_s or max(30.0, 2 * timings["SDE"]), level,
                                     confidence,
                                     derived_seed(seed, 3 << 20), threads)
                timings["splitting (SDE)"] = time.perf_counter() - t0
            bar.update()
    from .simulate import BlowUpWarning

    for w in caught:
        if issubclass(w.category, BlowUpWarning):  # blow-ups are counted, not warned about
            continue
        if issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning)):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        else:  # e.g. the splitting estimator's own warnings: said in the printout
            notes.append(f"{w.category.__name__}: {w.message}")
    for e in (blow_spl, sde_spl):
        if e is not None and e.unresolved:
            notes.append(f"{e.method}: {e.note}; the plain Monte Carlo interval is used")

    blow = blow_spl if blow_spl is not None and not blow_spl.unresolved else blow_mc
    sde_best = _best(sde_blow, sde_spl)
    if blow is blow_mc:
        failure = _mc("exact chain", int(blow_mc.events or 0) + n_coll, samples, confidence)
    else:  # the events are disjoint: P(either) = P(blow-up) + P(collapse); the union of the intervals
        failure = Estimate(blow.p + coll.p, max(blow.low, coll.low), min(1.0, blow.high + coll.high),
                           "splitting + exact chain")
    verdicts: dict[str, Verdict] = {
        "blow-up": blow.verdict(level),
        "collapse": coll.verdict(level),
        "overall": failure.verdict(level),
    }
    return Assessment(
        settings=settings, level=level, confidence=confidence, blowup=blow, collapse=coll, blowup_mc=blow_mc,
        blowup_splitting=blow_spl, sde_blowup=sde_blow, sde_collapse=sde_coll, sde_blowup_splitting=sde_spl,
        failure=failure, gap_blowup=_gap(blow, sde_best), gap_collapse=_gap(coll, sde_coll), verdicts=verdicts,
        final=final, elapsed_s=time.perf_counter() - t_start, timings=timings, notes=notes,
    )


# ---------------------------------------------------------------------------
# Stages
# ---------------------------------------------------------------------------


def _mc(method: str, k: int, n: int, confidence: float) -> Estimate:
    lo, hi = _clopper_pearson(k, n, confidence)
    return Estimate(k / n, lo, hi, method, events=k, samples=n)


def _run_chunks(run: Callable[[int, int], tuple[np.ndarray, int]], total: int, m: int, seed: int,
                offset: int) -> tuple[np.ndarray, int]:
    """Runs ``run(count, seed)`` over the chunks of ``total`` samples; returns the
    final covariances (NaN where blown up) and the number blown up."""
    finals, blown = [], 0
    for i, count in _chunks(total, m):
        V, b = run(count, derived_seed(seed, offset + i))
        finals.append(V)
        blown += b
    return np.concatenate(finals), blown


def _simulate(net, V0, width, depth, samples, seed, threads, blowup, progress) -> tuple[np.ndarray, int]:
    from .simulate import simulate

    r = simulate(net, V0=V0, width=width, depth=depth, samples=samples, method="exact", seed=seed, threads=threads,
                 save_at=np.array([depth]), blowup=blowup, progress=progress)
    return r.V[:, -1], int(np.sum(r.exploded))


def _solve_sde(net, V0, T, dt, paths, seed, threads, blowup, progress) -> tuple[np.ndarray, int]:
    from .sde import solve_sde

    r = solve_sde(net, V0=V0, T=T, steps=int(round(T / dt)), paths=paths, seed=seed, threads=threads, save_at=[T],
                  blowup=blowup, progress=progress)
    return r.V[:, -1], int(np.sum(r.exploded))


def _final_quantiles(V: np.ndarray) -> dict[str, list[float]]:
    from .analysis import mean_correlation

    ok = np.all(np.isfinite(V), axis=(-2, -1))
    if not ok.any():
        return {}
    Vf = V[ok]
    scale = np.trace(Vf, axis1=-2, axis2=-1) / V.shape[-1]
    q = [0.05, 0.5, 0.95]
    return {"mean_rho": np.quantile(mean_correlation(Vf), q).tolist(), "scale": np.quantile(scale, q).tolist()}


def _splitting(net, V0, T, dt, scheme, steps, per_step_s, blowup, particles, repeats, budget_s, level, confidence,
               seed, threads) -> Estimate:
    """Repeated splitting runs (:func:`shaped_transformer.splitting.ams_repeat`)
    within about ``budget_s``, skipped when that cannot reach ``level``: the iteration cap follows from the measured cost
    of one step (a run of N particles with I iterations costs at most about
    steps (N + k I) steps, k = N / 10: each iteration replays and continues k
    paths, together at most one path each).  Runs that died out (estimate 0), hit
    the cap or carry the result's ``unresolved`` flag make the estimate unresolved."""
    from .splitting import ams_repeat

    method = f"splitting ({'exact chain' if scheme == 'exact_chain' else 'SDE'})"
    k = max(1, round(0.1 * particles))
    per_run = budget_s / (repeats * max(per_step_s, 1e-9) * steps)
    cap = int((per_run - particles) / k)
    # Each iteration multiplies the estimate by about 1 - k / N: a cap that cannot
    # take it below the verdict's level cannot resolve anything the verdict needs.
    reach = (1.0 - k / particles) ** max(cap, 0)
    if reach > level:
        return Estimate(math.nan, math.nan, math.nan, method, unresolved=True,
                        note=f"skipped: the budget of {budget_s:.0f} s (splitting_budget_s) allows about "
                             f"{max(cap, 0)} iterations of {repeats} runs of {particles} particles, which reach "
                             f"probabilities near {reach:.1g} only, above the level {level:g}")
    rep = ams_repeat(net, V0=V0, repeats=repeats, seed=seed, level=confidence, T=T, dt=dt, scheme=scheme,
                     blowup=blowup, particles=particles, threads=threads, max_iterations=cap)
    runs = tuple(float(p) for p in rep["runs"])
    results: Sequence[Any] = rep.get("results", ())
    flagged = not rep["resolved"] or any(not getattr(r, "resolved", True) for r in results)
    if flagged or min(runs) <= 0.0:
        why = (f"{sum(p <= 0 for p in runs)} of {len(runs)} runs died out (estimate 0)" if min(runs) <= 0.0
               else f"{rep['unresolved']} of {len(runs)} runs did not resolve P (extinction, zero weight or the "
                    f"iteration cap of {cap}, which fits the budget of {budget_s:.0f} s)")
        return Estimate(float(rep["p"]), math.nan, math.nan, method, runs=runs, unresolved=True, note=why)
    return Estimate(float(rep["p"]), float(rep["ci_low"]), float(rep["ci_high"]), method, runs=runs)
