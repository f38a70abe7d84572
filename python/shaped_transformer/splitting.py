"""Rare blow-up probabilities by adaptive multilevel splitting (AMS).

Plain Monte Carlo needs about 100/p paths to estimate a probability p to 10%:
10^8 paths for p = 10^-6.  Adaptive multilevel splitting (Cérou and Guyader 2007;
the generalized version of Bréhier, Gazeau, Goudenège, Lelièvre and Rousset 2016,
which stays unbiased with ties and discrete time) estimates the probability that a
path of the covariance SDE (or of the exact finite-width chain) blows up before T,
``P(max diag V_t > blowup for some t <= T)``, with a cost that grows like log(1/p):

1. Run ``particles`` = N independent paths to T (or to their blow-up).  The score of
   a path is the largest value along it of max diag V times a factor that
   decreases with time (see ``time_exponent``), +inf when it blew up.
2. Repeat until at least N - k + 1 paths blew up: let z be the k-th smallest score;
   kill the K >= k paths with score <= z; the weight is multiplied by (1 - K / N).
   Each killed path is replaced by a copy of a survivor (chosen uniformly) up to
   the first step at which the survivor's score exceeded z, continued from
   there with fresh noise.  If every path would be killed, the estimate is 0.
3. The estimate is the weight times the fraction of paths that blew up.

A run that ends without that many blow-ups has **not resolved** the probability,
and says so (``SplittingResult.resolved`` False, ``status`` naming why, and an
:class:`UnresolvedWarning`): "extinct" (every particle had the same score, so the
estimate is 0 whatever the probability), "max_iterations" (the iteration bound
was reached first) or "underflow" (the weight fell below the smallest double, so
``p`` reads 0; ``log10_weight`` still holds it).  Such a run still counts in an
average of runs (the estimator is unbiased with its zeros), but no interval
built from a handful of such runs bounds the probability: :func:`ams_repeat`
then reports the trivial interval [0, 1].

The estimator is unbiased for any N and k (the theorem of Bréhier et al. covers the
Markov chain of (step, V), which is what the solver simulates); its relative error
shrinks like sqrt(log(1/p) / N).  The same final particles estimate P(blow-up by t)
for every t <= T and the law of the blow-up time given a blow-up.

The copy "up to the first crossing of z" is obtained by replaying the survivor's
own segment: a segment's noise depends only on (seed, stream id, step), so the C++
core (``_core.continue_paths``) reproduces it bit for bit and stops at the first
state above z.  No path history is stored.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ._blocks import Block, Network
from ._core_loader import core
from ._time_grid import SCHEMES, sde_network, time_grid
from ._validate import (
    DEFAULT_BLOWUP,
    check_blowup,
    check_covariance,
    check_int,
    check_number,
    check_seed,
    check_threads,
    derived_seed,
    network_first,
)

__all__ = ["STATUSES", "SplittingResult", "UnresolvedWarning", "ams_blowup", "ams_repeat"]


class UnresolvedWarning(RuntimeWarning):
    """The splitting estimator ended without resolving the probability (extinction,
    the iteration bound, or a weight below the smallest double); see
    ``SplittingResult.status``."""


#: ``SplittingResult.status`` values; only "resolved" is an estimate to trust.
STATUSES = ("resolved", "extinct", "max_iterations", "underflow")


@dataclass
class SplittingResult:
    """One run of adaptive multilevel splitting (:func:`ams_blowup`).

    Parameters
    ----------
    p : float
        The estimate of P(blow-up by T); read it together with ``resolved``.
    weight : float
        The product over iterations of (1 - K_j / N); p = weight * blown / N.
    particles : int
        N.
    blown : int
        The final particles that blew up.
    iterations : int
        The number of kill-and-resample iterations.
    levels : ndarray, shape (iterations,)
        The levels z_j of the score (see ``time_exponent``), in order.
    blowup_times : ndarray, shape (blown,)
        The blow-up times of the final particles that blew up; each carries
        probability weight / N.
    path_steps : int
        The solver steps computed (replays included): the cost.
    elapsed_s : float
        The wall time.
    T, dt, steps, blowup, scheme, seed
        The settings of the run.
    info : dict
        More settings: the number killed per iteration ("kill"), "psd", "m" and
        "time_exponent".
    status : str
        "resolved" (at least N - k + 1 particles blew up), "extinct" (every
        particle had the same score: the estimate is 0 whatever the probability),
        "max_iterations" (the iteration bound came first: p is the weight times
        the share blown so far, not an estimate of P) or "underflow" (the weight
        fell below the smallest double: p reads 0).
    log10_weight : float
        log10 of the product of (1 - K_j / N) over the iterations run (before an
        extinction): the estimated probability that a path's score exceeds the
        last level reached, finite even where ``weight`` underflows.  For an
        unresolved run it is an order of magnitude to go by (P is below the
        probability of reaching that level), not a confidence bound.
    """

    p: float
    weight: float
    particles: int
    blown: int
    iterations: int
    levels: np.ndarray
    blowup_times: np.ndarray
    path_steps: int
    elapsed_s: float
    T: float
    dt: float
    steps: int
    blowup: float
    scheme: str
    seed: int
    info: dict[str, Any] = field(default_factory=dict)
    status: str = "resolved"
    log10_weight: float = 0.0

    @property
    def resolved(self) -> bool:
        """True when the run ended with enough blow-ups to estimate P (status "resolved")."""
        return self.status == "resolved"

    def explain(self) -> str:
        """One sentence on why the run did not resolve P ("" when it did)."""
        if self.resolved:
            return ""
        reached = f"the last level was reached with estimated probability 10^{self.log10_weight:.1f}"
        why = {
            "extinct": f"every particle had the same score after {self.iterations} iterations (extinction), so "
            "the estimate is 0 whatever the probability",
            "max_iterations": f"max_iterations={self.iterations} was reached with {self.blown} of "
            f"{self.particles} particles blown",
            "underflow": "the weight fell below the smallest double, so p reads 0",
        }[self.status]
        return f"{why}; {reached} (P is below that, but it is not a confidence bound)"

    def p_by(self, t: np.ndarray | Sequence[float] | float) -> np.ndarray:
        """P(blow-up by t) for times t <= T, from the same final particles.

        Parameters
        ----------
        t : float or array_like
            The times.

        Returns
        -------
        ndarray
        """
        t = np.atleast_1d(np.asarray(t, dtype=np.float64))
        bt = np.sort(self.blowup_times)
        return self.weight * np.searchsorted(bt, t + 1e-12 * self.dt, side="right") / self.particles

    def to_dict(self) -> dict:
        """Plain numbers for JSON.

        Returns
        -------
        dict
        """
        return {
            "p": self.p,
            "weight": self.weight,
            "particles": self.particles,
            "blown": self.blown,
            "iterations": self.iterations,
            "path_steps": self.path_steps,
            "elapsed_s": self.elapsed_s,
            "T": self.T,
            "dt": self.dt,
            "steps": self.steps,
            "blowup": self.blowup,
            "scheme": self.scheme,
            "seed": self.seed,
            "time_exponent": self.info.get("time_exponent"),
            "blowup_times": self.blowup_times.tolist(),
            "log10_levels": np.log10(np.maximum(self.levels, 1e-300)).tolist(),
            "status": self.status,
            "resolved": self.resolved,
            "log10_weight": self.log10_weight,
        }


def _mix(seed: int, salt: int) -> int:
    """A 64-bit key for the resampling generator, distinct from the Philox key."""
    return (seed * 0x9E3779B97F4A7C15 + salt) % (2**64)


@network_first("pass the initial covariance as V0= and the rest by name, e.g. ams_blowup(net, V0=V0, T=1.0)")
def ams_blowup(
    network: Network | Block | Sequence[Block],
    *,
    V0: np.ndarray,
    T: float,
    dt: float = 1e-3,
    scheme: Literal["euler", "tamed_euler", "exact_chain"] = "euler",
    psd: Literal["clip", "none"] = "clip",
    blowup: float = DEFAULT_BLOWUP,
    particles: int = 1000,
    kill_fraction: float = 0.1,
    time_exponent: float = 0.5,
    seed: int = 0,
    threads: int | None = None,
    max_iterations: int = 100_000,
) -> SplittingResult:
    """P(max diag V exceeds ``blowup`` or turns non-finite by time ``T``) by adaptive multilevel splitting.

    Parameters
    ----------
    network : Network, Block or sequence of Block
        As for :func:`shaped_transformer.solve_sde` (blocks with an SDE limit).
    V0 : array_like, shape (m, m)
        The initial covariance.
    T : float
        The final time.
    dt : float, default 1e-3
        The step; the grid has ceil(T / dt) steps landing on T (a dt that does not
        divide T is shortened, with a StepSizeWarning, as in
        :func:`shaped_transformer.solve_sde`).
    scheme : {"euler", "tamed_euler", "exact_chain"}, default "euler"
        Euler (tamed Euler bounds the drift increment and so suppresses
        blow-ups), or the exact finite-width chain at width 1/dt: the network's
        own blow-up probability.
    psd : {"clip", "none"}, default "clip"
        The PSD remedy of the Euler schemes.
    blowup : float, default 1e4
        The stopping threshold on max diag V (the same rule as
        :func:`shaped_transformer.simulate` and :func:`shaped_transformer.solve_sde`).
    particles : int, default 1000
        N; the relative error is about sqrt(log(1/p) / N), times a factor that
        depends on how well max diag V ranks paths (measure it with
        :func:`ams_repeat`).
    kill_fraction : float, default 0.1
        k / N, the share of particles resampled per iteration (at least 1).
    time_exponent : float, default 0.5
        a >= 0 in the score max diag V * ((steps - k + 1) / (steps + 1))^a of the
        state at step k.  a = 0 ranks paths by max diag V alone; then paths that
        climb late (with no time left to blow up) crowd out the ones that climb
        early, and at small probabilities the particles can collapse onto copies
        of one state at T (extinction, estimate 0).  a = 1/2 is the blow-up clock
        of the cubic drift (the ODE dv = c v^3 dt started at v blows up after
        1 / (2 c v^2)).  Any a gives an unbiased estimate; a only changes the
        variance.
    seed : int, default 0
        The Philox key of the noise; the resampling uses a NumPy generator seeded
        from it.
    threads : int, optional
        Worker threads of the core (None or 0: all cores).
    max_iterations : int, default 100000
        The bound on the iterations; a run that reaches it stops there unresolved
        (status "max_iterations").

    Returns
    -------
    SplittingResult
        A run that does not resolve P (extinction, the iteration bound, a weight
        below the smallest double) has ``resolved`` False and its ``status``, and
        issues an :class:`UnresolvedWarning` saying why.  Typical causes: a
        probability far below 10^(-100 k / N) (raise ``particles``), or paths that
        all end in the same state (a T so short that no path climbs).

    Raises
    ------
    ValueError
        For a network without an SDE limit or a bad argument (naming it).

    Examples
    --------
    >>> import shaped_transformer as st
    >>> r = ams_blowup(st.shaped_transformer(gamma=0.6), V0=st.inputs.equicorrelated(4, 0.3), T=1.0, dt=1 / 32,
    ...                particles=30, seed=3)
    >>> r.status, round(r.p, 4)
    ('resolved', 0.0223)
    """
    net = sde_network(network)
    V0 = check_covariance("V0", V0)
    if not isinstance(scheme, str) or scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    # solve_sde's grid: a dt that does not divide T gives a StepSizeWarning, and the
    # exact_chain scheme refuses a dt that is not 1 / (an integer width).
    T, dt, steps = time_grid(T, dt, None, scheme, "ams_blowup")
    if psd not in ("clip", "none"):
        raise ValueError(f"psd must be 'clip' or 'none', got {psd!r}")
    blowup = check_blowup(blowup, V0=V0)
    N = check_int("particles", particles, minimum=2)
    kill_fraction = check_number("kill_fraction", kill_fraction, positive=True)
    if kill_fraction >= 1:
        raise ValueError(f"kill_fraction must lie in (0, 1), got {kill_fraction}")
    k = max(1, int(round(kill_fraction * N)))
    a = check_number("time_exponent", time_exponent)
    if a < 0:
        raise ValueError(f"time_exponent must be >= 0, got {a}")
    seed = check_seed(seed)
    threads = check_threads(threads)
    max_iterations = check_int("max_iterations", max_iterations, minimum=1)
    t0 = time.perf_counter()
    segments = _Segments(net.to_core(), dt, steps, scheme, psd, seed, blowup, a, threads)
    particles_ = _Particles.start(segments, V0, N)
    rng = np.random.Generator(np.random.Philox(key=_mix(seed, 1)))
    it, log_w, levels, status = _split(segments, particles_, k, max_iterations, rng)
    nb = int(particles_.blown.sum())
    # Extinction ends with weight 0 (the estimator's value, unbiased in an average
    # of runs); log10_weight keeps how far the levels got before it.
    weight = 0.0 if status == "extinct" else math.exp(log_w)
    if status == "resolved" and weight == 0.0:
        status = "underflow"
    res = SplittingResult(
        p=weight * nb / N,
        weight=weight,
        particles=N,
        blown=nb,
        iterations=it,
        levels=np.asarray(levels),
        blowup_times=np.sort(particles_.end_step[particles_.blown] * dt),
        path_steps=segments.path_steps,
        elapsed_s=time.perf_counter() - t0,
        T=T,
        dt=dt,
        steps=steps,
        blowup=blowup,
        scheme=scheme,
        seed=seed,
        info={"kill": k, "psd": psd, "m": V0.shape[0], "time_exponent": a},
        status=status,
        log10_weight=log_w / math.log(10.0),
    )
    if not res.resolved:
        warnings.warn(
            f"ams_blowup did not resolve P(blow-up by T={T:g}): {res.explain()}; p = {res.p:.3g} is not "
            "an estimate to trust (see SplittingResult.status)",
            UnresolvedWarning,
            stacklevel=3,
        )
    return res


@dataclass
class _Segments:
    """Runs path segments in the core: each from its birth state and step with its
    own noise stream, until T, a blow-up or a first state above its stop level
    (``_core.continue_paths``); counts the steps taken."""

    blocks: Network
    dt: float
    steps: int
    scheme: str
    psd: str
    seed: int
    blowup: float
    time_exponent: float
    threads: int
    path_steps: int = 0

    def run(self, V, start, stream, stop):
        """(end states, end steps, peak scores, statuses; 2 = blew up) of the segments."""
        Vo, st, pk, status = core.continue_paths(
            self.blocks,
            np.ascontiguousarray(V),
            np.ascontiguousarray(start, np.int64),
            np.ascontiguousarray(stream, np.int64),
            np.ascontiguousarray(stop, np.float64),
            self.dt,
            self.steps,
            self.scheme,
            self.psd,
            self.seed,
            self.blowup,
            self.time_exponent,
            self.threads,
        )
        self.path_steps += int(np.sum(np.asarray(st) - start))
        return np.asarray(Vo), np.asarray(st), np.asarray(pk), np.asarray(status)


@dataclass
class _Particles:
    """The N particles of one run.  Each particle is its own segment: birth state,
    birth step, stream id; its score is the peak of max diag V over the segment
    (the part before the birth stayed below the level at which it was born, which
    is below the peak); ``end_step`` is its blow-up step (-1: none)."""

    birth_V: np.ndarray
    birth_step: np.ndarray
    stream: np.ndarray
    next_stream: int
    score: np.ndarray
    end_step: np.ndarray
    blown: np.ndarray

    @classmethod
    def start(cls, segments: _Segments, V0: np.ndarray, N: int) -> _Particles:
        """N independent paths from V0 to T (or their blow-up)."""
        birth_V = np.repeat(V0[None], N, axis=0)
        birth_step = np.zeros(N, dtype=np.int64)
        stream = np.arange(N, dtype=np.int64)
        _, end_step, score, status = segments.run(birth_V, birth_step, stream, np.full(N, np.inf))
        blown = status == 2
        return cls(birth_V, birth_step, stream, N, score, np.where(blown, end_step, -1), blown)

    def branch(self, segments: _Segments, killed: np.ndarray, parents: np.ndarray, z: float) -> None:
        """Replaces the ``killed`` particles by copies of ``parents`` up to their first
        state above ``z`` (a replay of the parent's own segment), continued from
        there with fresh noise streams."""
        K = killed.size
        Vc, sc, pc, stc = segments.run(
            self.birth_V[parents], self.birth_step[parents], self.stream[parents], np.full(K, z)
        )
        new_stream = np.arange(self.next_stream, self.next_stream + K, dtype=np.int64)
        self.next_stream += K
        if self.next_stream >= 2**32:
            raise RuntimeError("ams_blowup: ran out of 32-bit stream ids (use fewer particles)")
        self.birth_V[killed] = Vc
        self.birth_step[killed] = sc
        self.stream[killed] = new_stream
        # A parent that jumped from below z straight to a blow-up hands on a blown state.
        born_blown = stc == 2
        live = ~born_blown
        new_score = np.full(K, np.inf)
        new_end = np.where(born_blown, sc, -1)
        if live.any():
            _, e, pk, s = segments.run(Vc[live], sc[live], new_stream[live], np.full(int(live.sum()), np.inf))
            new_score[live] = pk
            new_end[live] = np.where(s == 2, e, -1)
        self.score[killed] = new_score
        self.end_step[killed] = new_end
        self.blown[killed] = new_end >= 0


def _log_weight_factor(killed: int, particles: int) -> float:
    """log(1 - K / N): one iteration that kills K of N particles multiplies the
    weight by 1 - K / N.  A function of its own so that the tests' mutation matrix
    (tests/_mutations.py) can replace it for a session."""
    return math.log1p(-killed / particles)


def _split(
    segments: _Segments, particles: _Particles, k: int, max_iterations: int, rng: np.random.Generator
) -> tuple[int, float, list[float], str]:
    """The iterations of AMS (step 2 of the module docstring) until N - k + 1 paths
    blew up, extinction or ``max_iterations``; returns (iterations, log weight,
    levels, status)."""
    N = particles.score.size
    log_w, it = 0.0, 0
    levels: list[float] = []
    while int(particles.blown.sum()) < N - k + 1:
        score = particles.score
        z = np.partition(score, k - 1)[k - 1]
        killed = np.flatnonzero(score <= z)
        K = killed.size
        if K >= N:  # extinction: every path had the same score
            return it, log_w, levels, "extinct"
        if it >= max_iterations:
            return it, log_w, levels, "max_iterations"
        it += 1
        levels.append(float(z))
        log_w += _log_weight_factor(K, N)
        survivors = np.flatnonzero(score > z)
        parents = survivors[rng.integers(0, survivors.size, size=K)]
        particles.branch(segments, killed, parents, float(z))
    return it, log_w, levels, "resolved"


@network_first("pass the initial covariance as V0= and the rest by name, e.g. ams_repeat(net, V0=V0, T=1.0)")
def ams_repeat(
    network: Network | Block | Sequence[Block],
    *,
    V0: np.ndarray,
    repeats: int = 8,
    seed: int = 0,
    level: float = 0.95,
    **kwargs,
) -> dict:
    """Repeated runs of :func:`ams_blowup`, combined.

    When any run did not resolve P (``SplittingResult.resolved``), the spread of
    the runs says nothing about the error (a run that died out reads 0 whatever
    the probability), so the interval is the trivial [0, 1], "resolved" is False
    and one :class:`UnresolvedWarning` says how many runs failed and why.

    Parameters
    ----------
    network : Network, Block or sequence of Block
        As for :func:`ams_blowup`.
    V0 : array_like, shape (m, m)
        The initial covariance.
    repeats : int, default 8
        The number of runs (>= 2).
    seed : int, default 0
        Run i uses the seed ``derived_seed(seed, i)``.
    level : float, default 0.95
        The confidence level of the t interval over runs.
    **kwargs
        Passed to :func:`ams_blowup` (T, dt, particles, ...).

    Returns
    -------
    dict
        "p" (the mean, unbiased), "se" (its standard error), "ci_low", "ci_high"
        and "interval" (the same as an :class:`~shaped_transformer.analysis.Interval`),
        "resolved", "unresolved" (runs that did not resolve P), "statuses",
        "rel_error_single" (std / mean of one run), "rel_error_mean", "runs" (the
        per-run estimates), "iterations", "path_steps" and "elapsed_s" (totals),
        "repeats", "particles" and "results" (the SplittingResults).
    """
    from .analysis import Interval, runs_interval

    repeats = check_int("repeats", repeats, minimum=2)
    seed = check_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnresolvedWarning)  # one summary below instead of one per run
        runs = [ams_blowup(network, V0=V0, seed=derived_seed(seed, i), **kwargs) for i in range(repeats)]
    ps = np.array([r.p for r in runs])
    mean = float(ps.mean())
    sd = float(ps.std(ddof=1))
    se = sd / math.sqrt(repeats)
    bad = [r for r in runs if not r.resolved]
    if bad:
        interval = Interval(mean, 0.0, 1.0, level, "trivial: unresolved runs")
        counts = {st_: sum(r.status == st_ for r in bad) for st_ in STATUSES if any(r.status == st_ for r in bad)}
        warnings.warn(
            f"ams_repeat: {len(bad)} of {repeats} runs did not resolve P ("
            + ", ".join(f"{c} {st_}" for st_, c in counts.items())
            + f"; e.g. {bad[0].explain()}); the interval is the trivial [0, 1]: raise particles or check that "
            "paths can blow up by T",
            UnresolvedWarning,
            stacklevel=3,
        )
    else:
        interval = runs_interval(ps, level=level)
    return {
        "p": mean,
        "se": se,
        "ci_low": interval.low,
        "ci_high": interval.high,
        "interval": interval,
        "resolved": not bad,
        "unresolved": len(bad),
        "statuses": [r.status for r in runs],
        "rel_error_single": sd / mean if mean > 0 else math.inf,
        "rel_error_mean": se / mean if mean > 0 else math.inf,
        "runs": ps.tolist(),
        "iterations": [r.iterations for r in runs],
        "path_steps": int(sum(r.path_steps for r in runs)),
        "elapsed_s": float(sum(r.elapsed_s for r in runs)),
        "repeats": repeats,
        "particles": runs[0].particles,
        "results": runs,
    }
