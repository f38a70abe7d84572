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

A ``norm`` placement (docs/norms.md) is run on both sides: the exact chain covers
every placement (LayerNorm at width >= tokens + 1; at width = tokens LayerNorm runs
through the law sampler, exact in law too).  A
normalized network cannot blow up (post-norm keeps diag V = 1, pre-norm keeps the
token scales within O(width^-1/2) of 1; docs/norms.md section 8): P(blow-up) is
still estimated, by plain Monte Carlo on both sides alike, and reads 0 with its
interval; splitting is not run for either side (it has no levels to climb).

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

__all__ = ["BLOCKS", "COLLAPSE_EPS", "NORMS", "Assessment", "Estimate", "assess", "collapsed", "verdict"]

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

#: The norm placements ``assess`` takes (docs/norms.md) and how the printout names them.
NORMS: dict[str, str] = {
    "none": "no norm",
    "pre_rms": "pre-RMS norm",
    "post_rms": "post-RMS norm",
    "pre_layer": "pre-LayerNorm",
    "post_layer": "post-LayerNorm",
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
    """Whether covariances are collapsed: mean off-diagonal token correlation
    above 1 - eps.

    Parameters
    ----------
    V : numpy.ndarray
        Covariances, shape ``(..., m, m)``.
    eps : float, default COLLAPSE_EPS
        The threshold's distance from 1.

    Returns
    -------
    numpy.ndarray
        Booleans of shape ``(...)``; NaN covariances (samples that blew up) give False.
    """
    from .analysis import mean_correlation

    with np.errstate(invalid="ignore"):
        r = mean_correlation(V)
    return np.asarray(np.isfinite(r) & (r > 1.0 - eps))


def verdict(low: float, high: float, level: float, *, unresolved: bool = False) -> Verdict:
    """The package's one verdict rule (:func:`shaped_transformer.analysis.verdict`)
    for an interval against a level.

    Parameters
    ----------
    low, high : float
        The interval.
    level : float
        The level the probability is judged against.
    unresolved : bool, default False
        The estimate did not resolve: its interval is not used.

    Returns
    -------
    str
        "safe" when the whole interval lies below ``level``, "unsafe" when it lies
        above, "undecided" otherwise, and always "undecided" when ``unresolved``.
    """
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
    lies below ``level``.

    Parameters
    ----------
    level : float
        The verdict's level.
    confidence : float, default 0.95
        The interval's confidence.

    Returns
    -------
    int
        The smallest n with 1 - ((1 - confidence) / 2)^(1/n) < level.
    """
    return int(math.floor(math.log((1.0 - confidence) / 2.0) / math.log1p(-level))) + 1


# ---------------------------------------------------------------------------
# Result types
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """A probability with its interval.

    Parameters
    ----------
    p, low, high : float
        The estimate and its interval at the assessment's confidence.
    method : str
        What produced it ("exact chain", "SDE", "splitting (exact chain)",
        "splitting (SDE)").
    events, samples : int, optional
        Plain Monte Carlo counts (None for splitting).
    runs : tuple of float, optional
        The splitting runs' estimates (None for plain Monte Carlo).
    unresolved : bool, default False
        The estimate did not resolve the probability (splitting runs that died
        out or hit their iteration cap); its interval is then not used.
    note : str, default ""
        Why, when unresolved or skipped.
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
        """The verdict (:func:`verdict`) of this estimate at ``level``."""
        return verdict(self.low, self.high, level, unresolved=self.unresolved)

    def __str__(self) -> str:
        if self.unresolved:
            return "unresolved (see the notes)"
        if self.events is not None:
            return f"{_g(self.p)} [{_g(self.low)}, {_g(self.high)}]  ({self.events} of {self.samples})"
        runs = f"{len(self.runs)} runs" if self.runs else "splitting"
        return f"{_g(self.p)} [{_g(self.low)}, {_g(self.high)}]  ({runs})"

    def to_dict(self) -> dict:
        """The fields as a JSON-ready dict."""
        return {
            "p": self.p,
            "low": self.low,
            "high": self.high,
            "method": self.method,
            "events": self.events,
            "samples": self.samples,
            "runs": None if self.runs is None else list(self.runs),
            "unresolved": self.unresolved,
            "note": self.note,
        }


@dataclass(frozen=True)
class Gap:
    """network - SDE, with an interval from the two printed intervals (the
    MOVER construction: Newcombe's method 10 when both are Wilson intervals,
    Zou and Donner 2008 in general).

    Parameters
    ----------
    value, low, high : float
        The difference of the two estimates and its interval.
    """

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

    Parameters
    ----------
    settings : dict
        The configuration (width, depth, T, heads, tokens, tau0, gamma, block,
        causal, norm, input, blowup, collapse_eps, samples, seed, ...).
    level, confidence : float
        The verdict's level and the intervals' confidence.
    blowup, collapse : Estimate
        The network's answers (the splitting estimate where it ran and resolved,
        else plain Monte Carlo of the exact chain).
    blowup_mc : Estimate
        Plain Monte Carlo of the exact chain.
    blowup_splitting : Estimate or None
        Its splitting estimate (None when not run).
    sde_blowup, sde_collapse, sde_blowup_splitting : Estimate or None
        The same for the SDE (None when the block kind has no SDE limit or
        ``sde=False``).
    failure : Estimate
        P(blow-up or collapse), the events being disjoint.
    gap_blowup, gap_collapse : Gap or None
        network - SDE.
    verdicts : dict
        {"blow-up": .., "collapse": .., "overall": ..}; ``verdict`` is the overall
        one (from ``failure``).
    final : dict
        The network's last layer over the samples that did not blow up: quantiles
        (5%, 50%, 95%) of the mean token correlation and of tr V / m.
    elapsed_s : float
        Wall time in all, in seconds.
    timings : dict
        Seconds per stage.
    notes : list of str
        What the reader should know (skipped stages, warnings).
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
        """The overall verdict (from ``failure``)."""
        return self.verdicts["overall"]

    def to_dict(self) -> dict:
        """The same numbers as ``str()`` shows, as a JSON-ready dict."""

        def est(e):
            return None if e is None else e.to_dict()

        def gap(g):
            return None if g is None else {"value": g.value, "low": g.low, "high": g.high}

        return {
            "settings": {k: v for k, v in self.settings.items() if k != "V0"},
            "V0": np.asarray(self.settings["V0"]).tolist(),
            "level": self.level,
            "confidence": self.confidence,
            "blowup": est(self.blowup),
            "collapse": est(self.collapse),
            "blowup_mc": est(self.blowup_mc),
            "blowup_splitting": est(self.blowup_splitting),
            "sde_blowup": est(self.sde_blowup),
            "sde_collapse": est(self.sde_collapse),
            "sde_blowup_splitting": est(self.sde_blowup_splitting),
            "failure": est(self.failure),
            "gap_blowup": gap(self.gap_blowup),
            "gap_collapse": gap(self.gap_collapse),
            "verdicts": dict(self.verdicts),
            "final": self.final,
            "elapsed_s": self.elapsed_s,
            "timings": dict(self.timings),
            "notes": list(self.notes),
        }

    def __str__(self) -> str:
        stages = ", ".join(f"{k} {_secs(t)}" for k, t in self.timings.items())
        time_line = f"  time: {_secs(self.elapsed_s)} ({stages})"
        return "\n".join([*self._header_lines(), "", *self._table_lines(), "", *self._verdict_lines(), time_line])

    def _header_lines(self) -> list[str]:
        """The configuration, the events and the intervals' kind."""
        s = self.settings
        conf = f"{100 * self.confidence:g}%"
        head = (
            f"{s['block']} ({BLOCKS[s['block']]}), width {s['width']}, depth {s['depth']} "
            f"(T = depth / width = {s['T']:.4g}), {s['heads']} head{'s' if s['heads'] > 1 else ''}, "
            f"{s['tokens']} tokens"
        )
        shaped = s["block"].startswith("shaped")
        params = (
            (f"tau0 {s['tau0']:g}, " if shaped else "")
            + f"gamma {s['gamma']:g}, "
            + ("causal" if s["causal"] else "bidirectional")
            + f", {NORMS[s['norm']]}"
        )
        lines = [
            head,
            f"  {params}; input: {s['input']}",
            f"  blow-up: max diag V > {s['blowup']:g} (or non-finite) by layer {s['depth']}; collapse: mean token "
            f"correlation > {1 - s['collapse_eps']:g} at layer {s['depth']}",
            f"  {conf} intervals (Clopper-Pearson; splitting: t-interval over its runs); level {self.level:g}",
        ]
        return lines

    def _table_lines(self) -> list[str]:
        """Network, SDE and their gap, event by event."""
        s = self.settings
        net = f"network ({s['network_method']}, n = {s['width']})"
        sde = f"SDE (Euler, dt = {s['sde_dt']:.3g})" if self.sde_blowup is not None else "SDE"
        rows: list[tuple[str, str, str, str]] = [("", net, sde, "gap (network - SDE)")]

        def cell(e: Estimate | None, absent: str = "-") -> str:
            return absent if e is None else str(e)

        no_sde = s.get("sde_absent", "-")
        rows.append(
            (
                "P(blow-up)",
                cell(self.blowup_mc),
                cell(self.sde_blowup, no_sde),
                ""
                if self.blowup_splitting or self.sde_blowup_splitting
                else _gs(_gap(self.blowup_mc, self.sde_blowup)),
            )
        )
        if self.blowup_splitting is not None or self.sde_blowup_splitting is not None:
            rows.append(
                (
                    "  by splitting",
                    cell(self.blowup_splitting, "not run"),
                    cell(self.sde_blowup_splitting, "not run" if self.sde_blowup is not None else no_sde),
                    "",
                )
            )
            rows.append(
                (
                    "  best estimate",
                    str(self.blowup),
                    cell(_best(self.sde_blowup, self.sde_blowup_splitting), no_sde),
                    _gs(self.gap_blowup),
                )
            )
        rows.append(("P(collapse)", cell(self.collapse), cell(self.sde_collapse, no_sde), _gs(self.gap_collapse)))
        rows.append(("P(either)", str(self.failure), "", ""))
        w = [max(len(r[i]) for r in rows) for i in range(4)]
        return ["  " + "  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip() for r in rows]

    def _verdict_lines(self) -> list[str]:
        """The verdict and what it rests on, the last layer, the notes."""
        conf = f"{100 * self.confidence:g}%"
        v = self.verdicts
        lines = []
        lines.append(
            f"  verdict at level {self.level:g}: {v['overall'].upper()} "
            f"(blow-up {v['blow-up']}, collapse {v['collapse']}; safe = the whole interval below the level, "
            "unsafe = above it)"
        )
        if v["overall"] == "undecided" and self.blowup.events == 0 and self.collapse.events == 0:
            lines.append(
                f"    with no event seen, plain Monte Carlo needs {samples_to_certify(self.level, self.confidence)}"
                f" samples to certify P < {self.level:g} at {conf}; this run had {self.blowup_mc.samples}"
            )
        f = self.final
        if f:
            lines.append(
                f"  last layer (network, samples that did not blow up): mean correlation {f['mean_rho'][1]:.3g} "
                f"(5%..95%: {f['mean_rho'][0]:.3g}..{f['mean_rho'][2]:.3g}), tr V / m {f['scale'][1]:.3g} "
                f"({f['scale'][0]:.3g}..{f['scale'][2]:.3g})"
            )
        for note in self.notes:
            lines.append(f"  note: {note}")
        return lines


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
        raise ValueError(
            f"{given[0] if given else 'V0'}: every token needs a positive mean square (a zero token has no correlation)"
        )
    return m, V, what


def _network(block: str, heads: int, tau0: float, gamma: float, causal: bool, norm: str):
    """The network of a block kind, every block with the norm placement ``norm``."""
    from ._blocks import Network, Norm, ReluMLP, ShapedAttention, ShapedMLP, StandardAttention

    nm = None if norm == "none" else cast(Norm, norm)  # checked against NORMS by _check_model
    if block == "shaped_attention":
        return Network([ShapedAttention(heads=heads, tau0=tau0, gamma=gamma, causal=causal, norm=nm)])
    if block == "shaped_transformer":
        att = ShapedAttention(heads=heads, tau0=tau0, gamma=gamma, causal=causal, norm=nm)
        return Network([att, ShapedMLP(gamma=gamma, norm=nm)])
    if block == "standard_attention":
        return Network([StandardAttention(heads=heads, gamma=gamma, norm=nm)])
    return Network([StandardAttention(heads=heads, gamma=gamma, norm=nm), ReluMLP(gamma=gamma, norm=nm)])


def _chunks(total: int, m: int) -> Iterator[tuple[int, int]]:
    """(index, count) of the chunks of samples whose final covariances fit in _CHUNK_BYTES."""
    size = max(1, _CHUNK_BYTES // (8 * m * m))
    for i, start in enumerate(range(0, total, size)):
        yield i, min(size, total - start)


def _bar(total: int, enabled: bool | None):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="assess", unit="stage", disable=None if enabled is None else not enabled, leave=False)


# ---------------------------------------------------------------------------
# The plan: every argument checked before any compute
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """The checked arguments of one assessment, the network they describe and
    the SDE's grid.  Built by :func:`_plan`; read by the stages."""

    width: int
    depth: int
    heads: int
    m: int
    V0: np.ndarray
    input_what: str
    block: str
    tau0: float
    gamma: float
    causal: bool
    norm: str
    samples: int
    level: float
    confidence: float
    blowup: float
    collapse_eps: float
    sde: bool
    sde_paths: int
    dt: float
    splitting: bool
    splitting_below: int
    particles: int
    repeats: int
    budget_s: float | None
    seed: int
    threads: int
    progress: bool | None
    net: Any

    @property
    def T(self) -> float:
        return self.depth / self.width

    @property
    def has_sde(self) -> bool:
        """Whether the library's SDE covers the network (the core's answer:
        shaped heads with alpha = 1 and the shaped MLP, with their norm)."""
        return bool(self.net.has_sde)

    @property
    def runs_sde(self) -> bool:
        return self.sde and self.has_sde

    @property
    def normalized(self) -> bool:
        return self.norm != "none"

    @property
    def runs_splitting(self) -> bool:
        """Splitting runs (where plain Monte Carlo saw too few blow-ups) for
        networks with an SDE limit and no norm: a normalized network cannot blow
        up, so splitting has no levels to climb; the rule is the same for the
        network and the SDE."""
        return self.splitting and self.has_sde and not self.normalized

    @property
    def exact_refusal(self) -> str | None:
        """Why the exact chain does not run the network at this width (None: it does)."""
        if self.net.exact_refusal is not None:
            return self.net.exact_refusal
        if self.norm in ("pre_layer", "post_layer") and self.width < self.m + 1:
            return f"LayerNorm's exact step needs width >= tokens + 1 = {self.m + 1} (docs/norms.md section 6)"
        return None

    @property
    def network_method(self) -> str:
        """How the network runs at its width: the exact chain where it covers the
        network, else the law sampler (LayerNorm at width = tokens; both exact in law)."""
        return "exact chain" if self.exact_refusal is None else "law sampler"

    @property
    def stages(self) -> int:
        return 1 + int(self.runs_sde) + 2 * int(self.runs_splitting)

    def settings(self) -> dict[str, Any]:
        """The configuration as :class:`Assessment` keeps and prints it."""
        s: dict[str, Any] = {
            "width": self.width,
            "depth": self.depth,
            "T": self.T,
            "heads": self.heads,
            "tokens": self.m,
            "tau0": self.tau0,
            "gamma": self.gamma,
            "block": self.block,
            "causal": self.causal,
            "norm": self.norm,
            "network_method": self.network_method,
            "input": self.input_what,
            "V0": self.V0,
            "blowup": self.blowup,
            "collapse_eps": self.collapse_eps,
            "samples": self.samples,
            "sde_paths": self.sde_paths if self.runs_sde else 0,
            "sde_dt": self.dt,
            "seed": self.seed,
            "threads": self.threads,
        }
        if not self.block.startswith("shaped"):
            s["sde_absent"] = "no SDE limit"
        elif not self.has_sde:
            s["sde_absent"] = "not covered"
        elif not self.sde:
            s["sde_absent"] = "not run"
        return s


def _check_flag(name: str, value: Any, *, none: bool = False) -> None:
    if none and value is None:
        return
    if not isinstance(value, (bool, np.bool_)):
        allowed = "True, False or None" if none else "True or False"
        raise TypeError(f"{name} must be {allowed}, got {type(value).__name__}")


def _check_fraction(name: str, value: Any) -> float:
    """A number strictly inside (0, 1)."""
    x = check_number(name, value)
    if not 0.0 < x < 1.0:
        raise ValueError(f"{name} must lie in (0, 1), got {x}")
    return x


def _check_model(width, depth, heads, tokens, tau0, gamma, block, causal, norm, rho0, X0, V0) -> dict[str, Any]:
    """The model's arguments, checked: the fields of :class:`_Plan` that describe
    the network and its input."""
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
    _check_flag("causal", causal)
    if causal and not shaped:
        raise ValueError(f"causal: only shaped heads can be causal (block={block!r})")
    if norm is None:
        norm = "none"
    elif not isinstance(norm, str) or norm not in NORMS:
        raise ValueError(f"norm must be None or one of {tuple(NORMS)}, got {norm!r}")
    m, V, input_what = _check_input(tokens, rho0, X0, V0, width)
    if width < m:
        raise ValueError(f"width={width} must be >= tokens={m} (the token Gram matrix has rank at most width)")
    return dict(
        width=width,
        depth=depth,
        heads=heads,
        m=m,
        V0=V,
        input_what=input_what,
        block=block,
        tau0=tau0,
        gamma=gamma,
        causal=bool(causal),
        norm=norm,
    )


def default_dt(T: float, depth: int) -> float:
    """The SDE's default step for a network of ``depth`` layers at T = depth / width:
    T / max(ceil(T / 1e-3), min(depth, 100)).  The step is at most 1e-3 (the
    library's accuracy default) and, for short runs, no coarser than the network's
    own layer step 1 / width (up to 100 steps).  At the issue's question (T = 48 /
    1024) 48 steps and 400 agree in mean rho_T, mean log(tr V / m) and the event
    probabilities within their standard errors (docs/performance.md,
    benchmarks/sde_steps_question.py)."""
    return T / max(math.ceil(T / 1e-3 - 1e-9), min(int(depth), 100))


def _check_run(
    T,
    depth,
    V0,
    samples,
    level,
    confidence,
    blowup,
    collapse_eps,
    sde,
    sde_paths,
    dt,
    splitting,
    splitting_below,
    splitting_particles,
    splitting_repeats,
    splitting_budget_s,
    seed,
    threads,
    progress,
) -> dict[str, Any]:
    """The run's arguments, checked (the SDE's step against T = depth / width):
    the fields of :class:`_Plan` that say how to estimate."""
    from ._validate import check_blowup

    samples = check_int("samples", samples, minimum=1)
    _check_flag("sde", sde)
    if dt is None:
        dt = default_dt(T, depth)
    else:
        dt = check_number("dt", dt, positive=True)
        if dt > T:
            raise ValueError(f"dt must be <= T = depth / width = {T:g}, got {dt}")
    _check_flag("splitting", splitting)
    _check_flag("progress", progress, none=True)
    return dict(
        samples=samples,
        level=_check_fraction("level", level),
        confidence=_check_fraction("confidence", confidence),
        blowup=check_blowup(blowup, V0),
        collapse_eps=_check_fraction("collapse_eps", collapse_eps),
        sde=bool(sde),
        sde_paths=samples if sde_paths is None else check_int("sde_paths", sde_paths, minimum=1),
        dt=dt,
        splitting=bool(splitting),
        splitting_below=check_int("splitting_below", splitting_below, minimum=0),
        particles=check_int("splitting_particles", splitting_particles, minimum=10),
        repeats=check_int("splitting_repeats", splitting_repeats, minimum=2),
        budget_s=None
        if splitting_budget_s is None
        else check_number("splitting_budget_s", splitting_budget_s, positive=True),
        seed=check_seed(seed),
        threads=check_threads(threads),
        progress=progress,
    )


#: The arguments of assess that describe the model (the others say how to estimate).
_MODEL_ARGUMENTS = ("width", "depth", "heads", "tokens", "tau0", "gamma", "block", "causal", "norm", "rho0", "X0", "V0")


def _plan(arguments: dict[str, Any]) -> _Plan:
    """The plan from assess's arguments, by name: the model's checked first, then the run's."""
    run = dict(arguments)
    model = _check_model(**{k: run.pop(k) for k in _MODEL_ARGUMENTS})
    run = _check_run(model["depth"] / model["width"], model["depth"], model["V0"], **run)
    net = _network(model["block"], model["heads"], model["tau0"], model["gamma"], model["causal"], model["norm"])
    return _Plan(**model, **run, net=net)


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

    Every argument is checked before any compute: a bad one raises ValueError
    (or TypeError) naming it.  Then four stages run, each timed: plain Monte
    Carlo of the exact chain, the SDE, and splitting for the network and the SDE
    where plain Monte Carlo saw too few blow-ups.

    Parameters
    ----------
    width, depth : int
        The embedding dimension n and the number of layers d; the SDE runs to
        T = d / n.
    heads : int, default 1
        Attention heads H (summed heads, docs/model.md section 2).
    tokens : int, optional
        The sequence length m; required with ``rho0``, implied by X0 / V0.
    tau0 : float, optional
        The shaped heads' temperature (tau = tau0 sqrt(n n_k)); default 1.  Not a
        parameter of standard attention (refused there).
    gamma : float, default 0.5
        The branch weight (lambda^2 + gamma^2 = 1), in (0, 1].
    block : str, default "shaped_transformer"
        "shaped_transformer" (shaped attention + shaped MLP), "shaped_attention",
        or for contrast "standard_transformer" / "standard_attention" (softmax
        heads; no SDE, no splitting).
    causal : bool, default False
        Causal shaped heads (docs/causal.md).
    norm : str, optional
        The per-token norm of every block (docs/norms.md): None (or "none"),
        "pre_rms", "post_rms", "pre_layer" or "post_layer".  The exact chain runs
        every placement (LayerNorm at width >= tokens + 1; below, the law sampler,
        exact in law too).  A normalized network cannot blow up:
        P(blow-up) is still estimated by plain Monte Carlo on both sides and
        splitting is not run; collapse is the informative event.
    rho0 : float, optional
        An equicorrelated input Gram matrix with unit diagonal and correlation
        rho0 (default 0.3 when neither X0 nor V0 is given).
    X0 : numpy.ndarray, optional
        The user's token embeddings (tokens x width; V0 = X0 X0^T / width).
    V0 : numpy.ndarray, optional
        A Gram matrix.  At most one of rho0, X0, V0; the scale counts: the network
        sees V0 as given (docs/assess.md).
    samples : int, default 2000
        Initializations of the exact chain (plain Monte Carlo).
    level : float, default 1e-3
        The verdict's level for each probability.
    confidence : float, default 0.95
        Of every interval.
    blowup : float, default 1e4
        The stopping rule's threshold on max diag V (docs/model.md section 6).
    collapse_eps : float, default 0.01
        Collapse = mean token correlation > 1 - collapse_eps at the last layer.
    sde : bool, default True
        Also run the SDE (shaped blocks only).
    sde_paths : int, optional
        SDE paths (default: ``samples``, like with like).
    dt : float, optional
        The SDE's step (default T / max(ceil(T / 1e-3), min(depth, 100)):
        at most 1e-3, and no coarser than the network's layers for short runs).
    splitting : bool, default True
        Run adaptive multilevel splitting where plain Monte Carlo saw fewer than
        ``splitting_below`` blow-ups (network and SDE separately).
    splitting_below : int, default 10
        The blow-up count below which splitting runs.
    splitting_particles, splitting_repeats : int, default 100 and 4
        Particles per splitting run, and runs (>= 2).
    splitting_budget_s : float, optional
        A rough time budget per splitting estimate (network or SDE); it bounds the
        iterations from the measured cost of a step, and a run that needs more is
        reported unresolved, and the stage is skipped (unresolved) when the budget
        cannot reach ``level``.  Default: the time of the plain Monte Carlo stage
        it follows, at least 30 s (so splitting at most about doubles a call).
    seed : int, default 0
        The Philox key of every stage (same seed, same numbers, any thread count).
    threads : int, optional
        Worker threads (None or 0: all cores).
    progress : bool, optional
        tqdm bars (None: only on a terminal).

    Returns
    -------
    Assessment
        The estimates, intervals, gaps, verdicts and notes; ``str()`` of it is
        what ``shaped-transformer check`` prints.
    """
    arguments = dict(locals())  # every argument by name, all checked by _plan before any compute
    t_start = time.perf_counter()
    plan = _plan(arguments)
    timings: dict[str, float] = {}
    with _bar(plan.stages, progress) as bar, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        network = _timed(bar, timings, plan.network_method, lambda: _network_stage(plan))
        sde_run = _timed(bar, timings, "SDE", lambda: _sde_stage(plan)) if plan.runs_sde else None
        blow_spl = sde_spl = None
        if plan.runs_splitting:
            if _too_few(network, plan):
                blow_spl = _timed(
                    bar, timings, "splitting (exact chain)", lambda: _network_splitting(plan, timings["exact chain"])
                )
            else:
                bar.update()
            if _too_few(sde_run, plan):
                sde_spl = _timed(bar, timings, "splitting (SDE)", lambda: _sde_splitting(plan, timings["SDE"]))
            else:
                bar.update()
    notes = _notes(plan, caught, blow_spl, sde_spl)
    return _conclude(plan, network, sde_run, blow_spl, sde_spl, notes, timings, time.perf_counter() - t_start)


def _timed(bar, timings: dict[str, float], stage: str, run: Callable[[], Any]) -> Any:
    """Runs one stage under its name in the progress bar and records its seconds."""
    bar.set_description(f"assess: {stage}")
    t0 = time.perf_counter()
    out = run()
    timings[stage] = time.perf_counter() - t0
    bar.update()
    return out


def _too_few(events: _Events | None, plan: _Plan) -> bool:
    """Plain Monte Carlo ran and saw fewer blow-ups than ``splitting_below``."""
    return events is not None and events.blowup.events is not None and events.blowup.events < plan.splitting_below


def _notes(
    plan: _Plan, caught: list[warnings.WarningMessage], blow_spl: Estimate | None, sde_spl: Estimate | None
) -> list[str]:
    """What the reader should know: an input already collapsed, the warnings of
    the stages (blow-ups are counted, not warned about; deprecations go on as
    warnings), splitting that did not resolve."""
    from .simulate import BlowUpWarning

    notes = []
    if collapsed(plan.V0, plan.collapse_eps):
        notes.append(f"the input is already collapsed (mean correlation > {1 - plan.collapse_eps:g})")
    for w in caught:
        if issubclass(w.category, BlowUpWarning):
            continue
        if issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning)):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        else:  # e.g. the splitting estimator's own warnings: said in the printout
            notes.append(f"{w.category.__name__}: {w.message}")
    for e in (blow_spl, sde_spl):
        if e is not None and e.unresolved:
            notes.append(f"{e.method}: {e.note}; the plain Monte Carlo interval is used")
    notes.extend(_norm_notes(plan))
    return notes


def _norm_notes(plan: _Plan) -> list[str]:
    """What a norm placement changes: the law sampler for LayerNorm at width = tokens, no splitting,
    and the SDE's reason when it does not cover the network."""
    if not plan.normalized:
        return []
    notes = []
    if plan.network_method == "law sampler":
        notes.append(
            f"{NORMS[plan.norm]}: the exact chain does not cover it ({plan.exact_refusal}); the network runs "
            "through the law sampler (exact in law at this width, cost ~ width^2 per sample)"
        )
    if plan.splitting:
        notes.append(
            "splitting not run (network and SDE alike): a normalized network cannot blow up (post-norm keeps "
            "diag V = 1, pre-norm keeps the token scales near 1; docs/norms.md section 8), so P(blow-up) is plain "
            "Monte Carlo's on both sides and collapse is the informative event"
        )
    if plan.sde and plan.block.startswith("shaped") and not plan.has_sde:
        notes.append(f"SDE not run: {plan.net.sde_refusal}")
    return notes


def _conclude(
    plan: _Plan,
    network: _Events,
    sde_run: _Events | None,
    blow_spl: Estimate | None,
    sde_spl: Estimate | None,
    notes: list[str],
    timings: dict[str, float],
    elapsed: float,
) -> Assessment:
    """The best estimates, P(either), the gaps and the verdicts, by one rule."""
    blow_mc, coll = network.blowup, network.collapse
    blow = _best(blow_mc, blow_spl)
    assert blow is not None
    sde_blow = None if sde_run is None else sde_run.blowup
    sde_coll = None if sde_run is None else sde_run.collapse
    if blow is blow_mc:
        failure = _mc(
            plan.network_method, int(blow_mc.events or 0) + int(coll.events or 0), plan.samples, plan.confidence
        )
    else:  # the events are disjoint: P(either) = P(blow-up) + P(collapse); the union of the intervals
        failure = Estimate(
            blow.p + coll.p, max(blow.low, coll.low), min(1.0, blow.high + coll.high), "splitting + exact chain"
        )
    verdicts: dict[str, Verdict] = {
        "blow-up": blow.verdict(plan.level),
        "collapse": coll.verdict(plan.level),
        "overall": failure.verdict(plan.level),
    }
    return Assessment(
        settings=plan.settings(),
        level=plan.level,
        confidence=plan.confidence,
        blowup=blow,
        collapse=coll,
        blowup_mc=blow_mc,
        blowup_splitting=blow_spl,
        sde_blowup=sde_blow,
        sde_collapse=sde_coll,
        sde_blowup_splitting=sde_spl,
        failure=failure,
        gap_blowup=_gap(blow, _best(sde_blow, sde_spl)),
        gap_collapse=_gap(coll, sde_coll),
        verdicts=verdicts,
        final=network.final,
        elapsed_s=elapsed,
        timings=timings,
        notes=notes,
    )


# ---------------------------------------------------------------------------
# Stages
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Events:
    """What plain Monte Carlo of one model (exact chain or SDE) saw."""

    blowup: Estimate
    collapse: Estimate
    final: dict[str, list[float]]


def _network_stage(plan: _Plan) -> _Events:
    """Plain Monte Carlo of the exact chain at the given width."""

    method: Literal["exact", "law"] = "exact" if plan.network_method == "exact chain" else "law"

    def run(count: int, seed: int) -> tuple[np.ndarray, int]:
        return _simulate(plan.net, plan.V0, plan.width, plan.depth, count, seed, plan.threads, plan.blowup,
                         plan.progress, method)  # fmt: skip

    return _plain_monte_carlo(plan, plan.network_method, run, plan.samples, 0, quantiles=True)


def _sde_stage(plan: _Plan) -> _Events:
    """Plain Monte Carlo of the SDE at T = depth / width, same rules."""

    def run(count: int, seed: int) -> tuple[np.ndarray, int]:
        return _solve_sde(plan.net, plan.V0, plan.T, plan.dt, count, seed, plan.threads, plan.blowup, plan.progress)

    return _plain_monte_carlo(plan, "SDE", run, plan.sde_paths, 1 << 20, quantiles=False)


def _plain_monte_carlo(plan: _Plan, method: str, run: Callable[[int, int], tuple[np.ndarray, int]], total: int,
                       seed_offset: int, *, quantiles: bool) -> _Events:  # fmt: skip
    """The blow-up and collapse counts of ``total`` runs (in chunks, seeds from
    ``seed_offset``) with their intervals: one rule for the network and the SDE."""
    final, blown = _run_chunks(run, total, plan.m, plan.seed, seed_offset)
    n_coll = int(np.sum(collapsed(final, plan.collapse_eps)))
    return _Events(
        _mc(method, int(blown), total, plan.confidence),
        _mc(method, n_coll, total, plan.confidence),
        _final_quantiles(final) if quantiles else {},
    )


def _network_splitting(plan: _Plan, mc_seconds: float) -> Estimate:
    """Splitting on the exact chain (scheme "exact_chain" at dt = 1 / width)."""
    per_step = mc_seconds / (plan.samples * plan.depth)
    return _splitting(
        plan.net,
        plan.V0,
        plan.T,
        1.0 / plan.width,
        "exact_chain",
        plan.depth,
        per_step,
        plan.blowup,
        plan.particles,
        plan.repeats,
        plan.budget_s or max(30.0, mc_seconds),
        plan.level,
        plan.confidence,
        derived_seed(plan.seed, 2 << 20),
        plan.threads,
    )


def _sde_splitting(plan: _Plan, mc_seconds: float) -> Estimate:
    """Splitting on the SDE (Euler at the plan's dt)."""
    steps = int(round(plan.T / plan.dt))
    per_step = mc_seconds / (plan.sde_paths * steps)
    return _splitting(
        plan.net,
        plan.V0,
        plan.T,
        plan.dt,
        "euler",
        steps,
        per_step,
        plan.blowup,
        plan.particles,
        plan.repeats,
        plan.budget_s or max(30.0, mc_seconds),
        plan.level,
        plan.confidence,
        derived_seed(plan.seed, 3 << 20),
        plan.threads,
    )


def _mc(method: str, k: int, n: int, confidence: float) -> Estimate:
    lo, hi = _clopper_pearson(k, n, confidence)
    return Estimate(k / n, lo, hi, method, events=k, samples=n)


def _run_chunks(
    run: Callable[[int, int], tuple[np.ndarray, int]], total: int, m: int, seed: int, offset: int
) -> tuple[np.ndarray, int]:
    """Runs ``run(count, seed)`` over the chunks of ``total`` samples; returns the
    final covariances (NaN where blown up) and the number blown up."""
    finals, blown = [], 0
    for i, count in _chunks(total, m):
        V, b = run(count, derived_seed(seed, offset + i))
        finals.append(V)
        blown += b
    return np.concatenate(finals), blown


def _simulate(
    net, V0, width, depth, samples, seed, threads, blowup, progress, method: Literal["exact", "law"] = "exact"
) -> tuple[np.ndarray, int]:
    from .simulate import simulate

    r = simulate(
        net,
        V0=V0,
        width=width,
        depth=depth,
        samples=samples,
        method=method,
        seed=seed,
        threads=threads,
        save_at=np.array([depth]),
        blowup=blowup,
        progress=progress,
    )
    return r.V[:, -1], int(np.sum(r.exploded))


def _solve_sde(net, V0, T, dt, paths, seed, threads, blowup, progress) -> tuple[np.ndarray, int]:
    from .sde import solve_sde

    r = solve_sde(
        net,
        V0=V0,
        T=T,
        steps=int(round(T / dt)),
        paths=paths,
        seed=seed,
        threads=threads,
        save_at=[T],
        blowup=blowup,
        progress=progress,
    )
    # a normalized network's failed Euler steps are not blow-ups (sde.StepFailureWarning,
    # which becomes a note): they count as neither event
    return r.V[:, -1], int(np.sum(r.exploded)) - int(r.info["step_failures"])


def _final_quantiles(V: np.ndarray) -> dict[str, list[float]]:
    from .analysis import mean_correlation

    ok = np.all(np.isfinite(V), axis=(-2, -1))
    if not ok.any():
        return {}
    Vf = V[ok]
    scale = np.trace(Vf, axis1=-2, axis2=-1) / V.shape[-1]
    q = [0.05, 0.5, 0.95]
    return {"mean_rho": np.quantile(mean_correlation(Vf), q).tolist(), "scale": np.quantile(scale, q).tolist()}


def _splitting(
    net, V0, T, dt, scheme, steps, per_step_s, blowup, particles, repeats, budget_s, level, confidence, seed, threads
) -> Estimate:
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
        return Estimate(
            math.nan,
            math.nan,
            math.nan,
            method,
            unresolved=True,
            note=f"skipped: the budget of {budget_s:.0f} s (splitting_budget_s) allows about "
            f"{max(cap, 0)} iterations of {repeats} runs of {particles} particles, which reach "
            f"probabilities near {reach:.1g} only, above the level {level:g}",
        )
    rep = ams_repeat(
        net,
        V0=V0,
        repeats=repeats,
        seed=seed,
        level=confidence,
        T=T,
        dt=dt,
        scheme=scheme,
        blowup=blowup,
        particles=particles,
        threads=threads,
        max_iterations=cap,
    )
    runs = tuple(float(p) for p in rep["runs"])
    results: Sequence[Any] = rep.get("results", ())
    flagged = not rep["resolved"] or any(not getattr(r, "resolved", True) for r in results)
    if flagged or min(runs) <= 0.0:
        why = (
            f"{sum(p <= 0 for p in runs)} of {len(runs)} runs died out (estimate 0)"
            if min(runs) <= 0.0
            else f"{rep['unresolved']} of {len(runs)} runs did not resolve P (extinction, zero weight or the "
            f"iteration cap of {cap}, which fits the budget of {budget_s:.0f} s)"
        )
        return Estimate(float(rep["p"]), math.nan, math.nan, method, runs=runs, unresolved=True, note=why)
    return Estimate(float(rep["p"]), float(rep["ci_low"]), float(rep["ci_high"]), method, runs=runs)
