"""The neural covariance SDE (docs/model.md sections 5-6), integrated in the C++ core.

``solve_sde`` takes the same network description as :func:`simulate` and returns
the same :class:`Result` type, with time measured in layers / width (T = d / n).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from ._blocks import Block, Network, make_network
from ._core_loader import core
from ._device import check_device, sde_gpu
from ._memory import admission
from ._progress import progress_callback, total_of
from ._result import Result, SdeSummary
from ._time_grid import StepSizeWarning, time_grid
from ._validate import DEFAULT_BLOWUP, network_first
from .simulate import BlowUpWarning

__all__ = ["StepFailureWarning", "StepSizeWarning", "solve_sde", "sde_drift", "sde_noise"]


class StepFailureWarning(RuntimeWarning):
    """Paths of a normalized network's SDE stopped on a failed Euler step: the step
    left a diagonal entry <= 0 (or a non-finite entry) before the normalization to a
    correlation matrix (docs/norms.md section 5).  A numerical failure, not a blow-up
    (a normalized network cannot blow up); ``Result.info["step_failures"]`` counts the
    paths (they are in ``exploded_at`` too).  A smaller ``dt`` removes it."""


Scheme = Literal["euler", "tamed_euler", "exact_chain"]
_DEFAULT_SAVES = 101


def _save_steps(save_at, T: float, dt: float, steps: int) -> np.ndarray:
    if save_at is None:
        # At most 101 times: storing V at every step made the solver memory-bound
        # (512 bytes per path-step at m = 8, more than the step's own traffic).
        return (
            np.arange(steps + 1, dtype=np.int64)
            if steps < _DEFAULT_SAVES
            else np.unique(np.round(np.linspace(0, steps, _DEFAULT_SAVES)).astype(np.int64))
        )
    try:
        t = np.asarray(save_at, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("save_at must be a 1-d array of times") from None
    t = np.atleast_1d(t)
    if t.ndim != 1 or t.size == 0 or not np.all(np.isfinite(t)):
        raise ValueError("save_at must be a non-empty 1-d array of finite times")
    if t.min() < -1e-12 or t.max() > T * (1 + 1e-12):
        raise ValueError(f"save_at must lie in [0, T={T}], got values in [{t.min()}, {t.max()}]")
    return np.unique(np.clip(np.round(t / dt), 0, steps).astype(np.int64))


@network_first(
    "pass the initial covariance as V0= (m x m) and the rest by name, e.g. solve_sde(net, V0=V0, T=1.0, dt=1e-3)"
)
def solve_sde(
    network: Network | Block | Sequence[Block],
    *,
    V0: np.ndarray,
    T: float,
    dt: float | None = None,
    steps: int | None = None,
    paths: int = 1000,
    scheme: Scheme = "euler",
    psd: Literal["clip", "none"] = "clip",
    save_at: np.ndarray | Sequence[float] | None = None,
    save: Literal["paths", "summary"] = "paths",
    seed: int = 0,
    threads: int | None = None,
    blowup: float = DEFAULT_BLOWUP,
    progress: bool | None = None,
    device: str = "cpu",
) -> Result:
    """Integrates the covariance SDE of ``network`` from ``V0`` up to time ``T``.

    Parameters
    ----------
    network : a Network (or Block, or list of Blocks) whose blocks all have an SDE
        limit (shaped attention heads with alpha = 1 -- the paper's head, the general
        head with any beta, causal heads (docs/causal.md) -- any number of heads, and
        the shaped MLP).  Standard attention is refused with a ValueError.  The
        only positional argument: every other one is passed by name.
        Normalized blocks (``norm`` "pre_rms", "pre_layer", "post_rms" or
        "post_layer" on every block, docs/norms.md): the state is the correlation
        matrix C (unit diagonal, RMS and LayerNorm share the limit); each step is
        the Euler step at V = C, plus pre-norm's fast drift, then V <- corr(V).  The
        path starts from corr(V0) (post-norm) or from pre-norm's initial layer
        when diag V0 != 1.  A layer that mixes placements (a block without norm,
        or pre- with post-norm) and pre-norm on a causal or beta != 1 head are
        refused (ValueError naming norm); a step whose Euler increment makes a
        diagonal entry <= 0 (dt far too large) stops that path as in
        ``exploded_at``.
    V0 : (m, m) positive semi-definite initial covariance (from tokens X0 of
        width n: ``st.inputs.covariance(X0)``, X0 X0^T / n).
    T : final time (depth / width of the matched network).
    dt, steps : step size or number of steps (one of them; default dt = 1e-3).
        The grid is uniform with dt = T / steps: a dt that does not divide T is
        shortened to T / ceil(T / dt), with a :class:`StepSizeWarning` naming the
        dt used (``info["dt"]``).
    paths : independent paths, run in parallel.
    scheme : "euler" (Euler-Maruyama with the structured noise), "tamed_euler"
        (drift increment b dt / (1 + dt |b|_F), Hutzenthaler-Jentzen-Kloeden) or
        "exact_chain" (the exact finite-width chain at n_eff = 1/dt, PSD by
        construction; 1/dt and T/dt must be integers, else a ValueError naming dt).
    psd : Euler schemes: "clip" projects V onto the PSD cone (eigenvalue clipping)
        after a step that left it, counting projections per path in
        ``info["projections"]``; "none" leaves V as is (the noise then uses the root
        of the clipped spectrum).
    save_at : times in [0, T] at which V is recorded (snapped to the step grid; the
        actual times are ``Result.t``).  Default: every step when there are at most
        100 steps, else 101 evenly spaced steps (T/100 apart).
    save : "paths" stores V of every path at the saved times (``Result.V``, 8 m^2
        bytes per path and time).  "summary" stores nothing per path but the
        blow-up times: it accumulates, at every saved time, the count, moments
        (sums of x .. x^4), min, max and a 120-bin histogram of the off-diagonal
        correlations (pooled), the per-path mean correlation, log10 of the
        diagonal (pooled) and the effective rank, in ``Result.summary`` (an
        :class:`SdeSummary`); memory does not grow with ``paths`` beyond 16 bytes per
        path, so 10^6 paths x 1000 steps fit in a few tens of MB.  Its sums run
        over chunks of 256 paths in path order, merged in chunk order: the same
        numbers for any thread count.
    seed : the Philox key.  Path p's noise depends only on (seed, p, step).
    threads : worker threads (None or 0, the default: all cores).
    blowup : the stopping rule shared with :func:`simulate`: a path stops the
        first time its largest diagonal entry exceeds this or turns non-finite,
        and is reported in ``Result.exploded_at`` (its later V are NaN). Compare
        networks and the SDE with the same threshold (docs/model.md, section 6).
    progress : show a tqdm bar (None: only on a terminal).
    device : "cpu" or "cuda" (one GPU thread per path, m <= 16; the exact_chain
        scheme on the GPU covers shaped attention blocks only).  Same Brownian
        increments as the CPU, results equal to rounding; see docs/cuda.md.

    Returns
    -------
    Result with V of shape (paths, saved, m, m) (with save="summary": shape
    (0, saved, m, m) and ``Result.summary`` set), method = scheme, and info with
    "projections" (per path), "dt", "steps", "T", "psd", "scheme", "network",
    "kernel" (the integrator that ran: "avx512", "avx2" or "scalar" for the
    batched kernel that every network uses with the Euler schemes at
    m <= 32, "generic" for the per-path solver otherwise; all give the
    same distribution, and the batched kernels the same numbers as each other).
    """
    net = make_network(network)
    device = check_device(device)
    T, dt, steps = time_grid(T, dt, steps, scheme)
    if save == "summary" and device == "cuda":
        raise ValueError("save: 'summary' runs on the CPU only for now; use save='paths' with device='cuda'")
    save_steps = _save_steps(save_at, T, dt, steps)
    # Everything else is checked once, by the core, which also runs the memory check
    # (admit) before it allocates and reports in `info` the kernel that ran.
    info: dict[str, Any] = {}
    admit = admission("solve_sde", hint="reduce paths, the number of saved times (save_at) or threads")
    with progress_callback(total_of(paths), f"SDE ({scheme})", progress) as cb:
        if device == "cuda":
            V, exploded_step, projections = sde_gpu(
                net, V0, dt, steps, save_steps, scheme, psd, paths, seed, blowup, cb, admit, info
            )
        else:
            args = (net, V0, dt, steps, save_steps, scheme, psd, paths, seed, threads, blowup, cb, save)
            V, exploded_step, projections = core.solve_sde(*args, admit=admit, info=info)
    grid = dict(dt=dt, steps=steps, T=T, psd=psd, scheme=scheme, save_steps=save_steps, save=save, device=device)
    return _result(net, V, exploded_step, projections, info, paths, grid)


def _result(net: Network, V, exploded_step, projections, info: dict[str, Any], paths: int, grid: dict) -> Result:
    """The Result of a run (summary or paths), with a BlowUpWarning when paths blew up."""
    m, paths, blowup = int(info["m"]), int(paths), float(info["blowup"])
    dt, save_steps = grid["dt"], grid["save_steps"]
    summary = None
    if grid["save"] == "summary":
        summary = SdeSummary.from_core(V, t=save_steps * dt, paths=paths, m=m)
        V = np.empty((0, len(save_steps), m, m))
    exploded_step = np.asarray(exploded_step)
    exploded_at = np.where(exploded_step >= 0, exploded_step * dt, np.inf)
    n_exploded = int(np.sum(exploded_step >= 0))
    # A normalized network's SDE state is a correlation matrix (docs/norms.md section 5):
    # its diagonal is 1 after every step, so a stopped path is never a blow-up but an Euler
    # step that left a diagonal entry <= 0 (or non-finite) before the normalization.
    normalized = any(getattr(b, "norm", None) not in (None, "none") for b in net.blocks)
    step_failures = n_exploded if normalized else 0
    if n_exploded and normalized:
        warnings.warn(
            f"{n_exploded} of {paths} SDE paths of this normalized network stopped on a failed Euler step "
            f"(a diagonal entry <= 0 or non-finite before the normalization, at dt = {dt:g}): a numerical "
            "failure, not a blow-up (a normalized network cannot blow up). Their later covariances are NaN "
            "(Result.finite() drops them; Result.info['step_failures'] counts them); use a smaller dt.",
            StepFailureWarning,
            stacklevel=4,  # _result < solve_sde < network_first's wrapper < the caller
        )
    elif n_exploded:
        warnings.warn(
            f"{n_exploded} of {paths} SDE paths blew up (max diag V > {blowup:g} or non-finite); "
            "their later covariances are NaN. Use Result.finite() to drop them.",
            BlowUpWarning,
            stacklevel=4,  # _result < solve_sde < network_first's wrapper < the caller
        )
    extra = {
        "projections": np.asarray(projections),
        "seed": info["seed"],
        "network": net,
        "kernel": info["kernel"],
        "step_failures": step_failures,
    }
    return Result(
        V=V,
        t=save_steps * dt,
        exploded_at=exploded_at,
        method=grid["scheme"],
        X=None,
        info={**grid, **extra},
        summary=summary,
        kernel=info["kernel"],
    )


def sde_drift(network: Network | Block | Sequence[Block], V: np.ndarray) -> np.ndarray:
    """The drift b(V) of one layer of the SDE, summed over the blocks.

    For normalized blocks (``norm`` set on every block) the drift of the correlation
    SDE at C = corr(V) (docs/norms.md): beta_post (the first-order image of b plus the
    Ito term), plus pre-norm's fast drift beta_fast; zero on the diagonal.

    Parameters
    ----------
    network : Network, Block or sequence of Blocks
        One layer; every block must have an SDE limit (else ValueError with the
        core's reason, naming the block).
    V : array_like, shape (m, m)
        A covariance (symmetric positive semi-definite, positive diagonal).

    Returns
    -------
    ndarray, shape (m, m)
    """
    return np.asarray(core.sde_terms(make_network(network), V))


def sde_noise(network: Network | Block | Sequence[Block], V: np.ndarray, dW: np.ndarray) -> np.ndarray:
    """The structured noise increment of one layer at V from given N(0, dt) numbers.

    For normalized blocks this is the un-normalized increment dM at V; the solver
    applies it at V = C and then maps V to its correlation matrix (whose first-order
    noise is J_C(dM), docs/norms.md section 2).

    Parameters
    ----------
    network : Network, Block or sequence of Blocks
        One layer; every block must have an SDE limit.
    V : array_like, shape (m, m)
        A covariance (symmetric positive semi-definite, positive diagonal).
    dW : array_like
        ``Network.sde_noise_dim(m)`` numbers, block by block in order (the core's
        noise dimensions: a shaped attention head 2 m^2, dZ then dXi, row-major;
        the shaped MLP m^2); a ValueError naming dW otherwise.

    Returns
    -------
    ndarray, shape (m, m)
    """
    dW = np.ascontiguousarray(np.asarray(dW, dtype=np.float64).ravel())
    return np.asarray(core.sde_noise(make_network(network), V, dW))
