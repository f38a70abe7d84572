"""Running a network at random initialization: explicit weights, law-exact
activations, or the exact m x m covariance chain."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import numpy as np

from ._blocks import Block, Network, Norm, make_network
from ._core_loader import core
from ._device import check_device, exact_gpu, explicit_gpu
from ._memory import admission
from ._progress import progress_callback, total_of
from ._result import Result
from ._roots import tokens as _tokens_from_checked
from ._validate import DEFAULT_BLOWUP, network_first
from .inputs import covariance

__all__ = ["simulate", "simulate_network", "BlowUpWarning"]

Method = Literal["explicit", "law", "exact"]
_METHODS = ("explicit", "law", "exact")


class BlowUpWarning(RuntimeWarning):
    """Some samples crossed the blow-up threshold; see Result.exploded_at."""


@network_first(
    "pass the input as X0= (tokens, m x n) or V0= (their covariance, m x m), e.g. "
    "simulate(net, V0=V0, width=256, depth=256)"
)
def simulate(
    network: Network | Block | Sequence[Block],
    *,
    X0: np.ndarray | None = None,
    V0: np.ndarray | None = None,
    width: int | None = None,
    depth: int,
    samples: int = 1,
    method: Method = "explicit",
    seed: int = 0,
    dtype: str = "float64",
    threads: int | None = None,
    save_at: np.ndarray | None = None,
    save_every: int | None = None,
    return_X: bool = False,
    blowup: float = DEFAULT_BLOWUP,
    progress: bool | None = None,
    device: str = "cpu",
) -> Result:
    """Runs ``depth`` layers of ``network`` on ``samples`` independent initializations.

    Parameters
    ----------
    network : a Network, a Block or a list of Blocks (one layer); the only
        positional argument (every other one is passed by name).
    X0, V0 : the input tokens (m x n) or their covariance (m x m); exactly one.
        From V0 the tokens are X0 = L0 sqrt(n) [I, 0], whose Gram matrix is V0.
    width : n; required with V0, taken from X0 otherwise.
    depth : number of layers d (>= 0); time T = d / n.
    samples : independent initializations (weights keyed by seed and sample index).
    method : "explicit" (Gaussian weights, O(m n^2) per block), "law" (activations
        sampled exactly in law, O(m n) random numbers per block) or "exact" (the
        width-independent m x m chain of docs/model.md section 4).
    seed : the Philox key; the same seed gives the same numbers for any thread count.
    dtype : "float64" or "float32" arithmetic for the explicit and law methods.
    threads : worker threads (None or 0, the default: all cores); samples run in
        parallel.
    save_at, save_every : layers at which V is recorded (default: every layer).
    return_X : also return the final tokens (explicit and law methods).
    blowup : the stopping rule, the same for every method and for :func:`solve_sde`:
        a sample stops the first time the largest diagonal entry of V exceeds this
        (or turns non-finite) and is reported in ``Result.exploded_at``. The
        default, 1e4, is a level that finite networks of the usual widths can
        reach in T = 1 (a width-n block grows V by a bounded factor, so 1e30 is
        out of their reach while SDE paths get there): see docs/model.md,
        section 6. V0 must start below it.
    progress : show a tqdm bar (None: only on a terminal).
    device : "cpu" or "cuda" (methods "explicit" and "exact"; the exact chain on
        the GPU covers shaped attention blocks only).  Same random streams as the
        CPU, results equal to rounding; see docs/cuda.md.

    Returns
    -------
    Result with V of shape (samples, saved, m, m) and t = saved layers / width.
    """
    net = make_network(network)
    if not isinstance(method, str) or method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    device = check_device(device)
    if device == "cuda" and method == "law":
        raise ValueError("device='cuda' supports method='explicit' and method='exact', not 'law'")
    if method == "exact" and return_X:
        raise ValueError("return_X is not available with method='exact' (it tracks V only)")
    # Every other argument is checked once, by the core, which also runs the memory
    # check (admit) before anything large is built -- the list of saved layers, the
    # tokens made from V0 (by _tokens_from_checked, once V0 passed its
    # check) and the output -- and reports in `info` the kernel that ran.
    info: dict[str, Any] = {}
    run = _Run(net, X0, V0, width, depth, samples, seed, save_at, save_every, dtype, threads, return_X, blowup)
    with progress_callback(total_of(samples), f"{method} network", progress) as cb:
        V, X, exploded_layer = run.drive(method, device, cb, admission(f"simulate(method={method!r})"), info)
    return _result(net, method, device, depth, V, X, exploded_layer, info)


class _Run(NamedTuple):
    """The arguments every driver takes, as simulate received them (the core checks them)."""

    net: Network
    X0: Any
    V0: Any
    width: Any
    depth: Any
    samples: Any
    seed: Any
    save_at: Any
    save_every: Any
    dtype: Any
    threads: Any
    return_X: Any
    blowup: Any

    def drive(self, method: str, device: str, cb, admit, info: dict[str, Any]) -> tuple[Any, Any, Any]:
        """(V, X or None, exploded layer) from the driver of ``method`` on ``device``."""
        r, keep = self, dict(save_every=self.save_every, admit=admit, info=info)
        if method == "exact":
            exact = dict(X0=r.X0, covariance=covariance, dtype=r.dtype, **keep)
            if device == "cuda":
                V, exploded = exact_gpu(
                    r.net, r.V0, r.width, r.depth, r.samples, r.seed, r.save_at, r.blowup, cb, **exact
                )
            else:
                V, exploded = core.simulate_exact(
                    r.net, r.V0, r.width, r.depth, r.samples, r.seed, r.save_at, r.threads, r.blowup, cb, **exact
                )
            return V, None, exploded
        tokens = dict(V0=r.V0, width=r.width, tokens=_tokens_from_checked, **keep)
        if device == "cuda":
            return explicit_gpu(
                r.net, r.X0, r.depth, r.samples, r.seed, r.save_at, r.dtype, r.return_X, r.blowup, cb, **tokens
            )
        fn = core.simulate_explicit if method == "explicit" else core.simulate_law
        return fn(
            r.net, r.X0, r.depth, r.samples, r.seed, r.save_at, r.dtype, r.threads, r.return_X, r.blowup, cb, **tokens
        )


def _result(net: Network, method: str, device: str, depth: int, V, X, exploded_layer, info: dict[str, Any]) -> Result:
    """The Result of a run, with a BlowUpWarning when samples blew up."""
    width, layers, blowup = int(info["width"]), np.asarray(info["layers"]), float(info["blowup"])
    exploded_layer = np.asarray(exploded_layer)
    exploded_at = np.where(exploded_layer >= 0, exploded_layer / width, np.inf)
    n_exploded = int(np.sum(exploded_layer >= 0))
    if n_exploded:
        warnings.warn(
            f"{n_exploded} of {len(exploded_layer)} samples blew up (max diag V > {blowup:g} or non-finite); "
            "their later covariances are NaN. Use Result.finite() to drop them.",
            BlowUpWarning,
            stacklevel=4,  # _result < simulate < network_first's wrapper < the caller
        )
    keys = ("seed", "dtype", "kernel")
    return Result(
        V=V,
        t=layers / width,
        exploded_at=exploded_at,
        method=method,
        X=X,
        info={
            "width": width,
            "depth": int(depth),
            "layers": layers,
            **{k: info[k] for k in keys},
            **({"gemm": info["gemm"]} if "gemm" in info else {}),
            "network": net,
            "device": device,
        },
        kernel=info["kernel"],
    )


@network_first("pass the input as X0= (tokens) or V0= (covariance)", positional=0)
def simulate_network(
    *,
    X0: np.ndarray | None = None,
    V0: np.ndarray | None = None,
    width: int | None = None,
    depth: int,
    block: str | Network | Block | Sequence[Block] = "shaped_transformer",
    heads: int = 1,
    tau0: float = 1.0,
    gamma: float = 0.5,
    c_plus: float = 0.0,
    c_minus: float = -1.0,
    norm: Norm | None = None,
    samples: int = 1,
    method: Method = "explicit",
    seed: int = 0,
    **kwargs,
) -> Result:
    """:func:`simulate` with the network given by a block-kind name and parameters.

    Parameters
    ----------
    X0, V0 : ndarray or None
        The input tokens (m x n) or their covariance (m x m), as for :func:`simulate`.
    width, depth : int
        As for :func:`simulate`.
    block : str, Network, Block or sequence of Blocks, default "shaped_transformer"
        A kind of the core's registry ("shaped_attention", "standard_attention",
        "shaped_mlp", "relu_mlp"), a layer "shaped_transformer" or
        "standard_transformer", or a network (see :func:`make_network`).
    heads, tau0, gamma, c_plus, c_minus, norm
        The usual parameters, each given to the blocks that have it.
    samples, method, seed
        As for :func:`simulate`.
    **kwargs
        Any other argument of :func:`simulate`.

    Returns
    -------
    Result
    """
    net = make_network(block, heads=heads, tau0=tau0, gamma=gamma, c_plus=c_plus, c_minus=c_minus, norm=norm)
    return simulate(net, X0=X0, V0=V0, width=width, depth=depth, samples=samples, method=method, seed=seed, **kwargs)
