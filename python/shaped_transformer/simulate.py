"""Running a network at random initialization: explicit weights, law-exact
activations, or the exact m x m covariance chain."""

from __future__ import annotations

import warnings
from typing import Literal, Sequence

import numpy as np

from ._blocks import Block, Network, Norm, make_network
from ._core_loader import core
from ._device import check_device, exact_gpu, explicit_gpu
from ._memory import check_simulate
from ._progress import progress_callback
from ._result import Result
from ._validate import (
    DEFAULT_BLOWUP,
    check_blowup,
    check_covariance,
    check_int,
    check_number,
    check_save_at,
    check_seed,
    check_threads,
    check_tokens,
    network_first,
)
from .inputs import tokens_from_covariance

__all__ = ["simulate", "simulate_network", "BlowUpWarning"]

Method = Literal["explicit", "law", "exact"]
_METHODS = ("explicit", "law", "exact")


class BlowUpWarning(RuntimeWarning):
    """Some samples crossed the blow-up threshold; see Result.exploded_at."""


def _inputs(X0, V0, width) -> tuple[np.ndarray | None, np.ndarray, int]:
    """Returns (X0 or None, V0, width) after validation.  The messages name the
    argument that was given and, where the shape says the other one was meant
    (a square X0 with a width that does not match it, a non-square V0), say so."""
    if (X0 is None) == (V0 is None):
        raise ValueError("give exactly one of X0 (tokens, m x n) or V0 (covariance, m x m)")
    if X0 is not None:
        X0 = check_tokens("X0", X0)
        m, n = X0.shape
        if width is not None and check_int("width", width, minimum=1) != n:
            hint = (
                f"; X0 is {m} x {n}: if it is the covariance of the tokens, pass it as V0= with width={width}"
                if m == n else ""
            )
            raise ValueError(f"width={width} does not match X0.shape[1]={n} (X0 holds the tokens, m x width){hint}")
        if n < m:
            raise ValueError(f"width (X0.shape[1]={n}) must be >= the number of tokens m={m}")
        V = X0 @ X0.T / n
        if np.max(np.diag(V)) <= 0:
            raise ValueError("X0 must not be all zeros")
        return X0, V, n
    V0 = check_covariance("V0", V0, tokens_as="X0")
    if width is None:
        raise ValueError("width must be given with V0 (the covariance does not say the width)")
    width = check_int("width", width, minimum=1)
    if width < V0.shape[0]:
        raise ValueError(f"width must be >= the number of tokens m={V0.shape[0]}, got {width}")
    return None, V0, width


@network_first("pass the input as X0= (tokens, m x n) or V0= (their covariance, m x m), e.g. "
               "simulate(net, V0=V0, width=256, depth=256)")
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
    X0, V0, width = _inputs(X0, V0, width)
    depth = check_int("depth", depth, minimum=0)
    samples = check_int("samples", samples, minimum=1)
    # The core counts layers and samples in 32-bit words (the Philox counter holds
    # block = layer * blocks + b and the sample index) and widths in 64-bit ones.
    if depth * len(net) >= 2**32 or depth >= 2**31:
        raise ValueError(f"depth must be < 2^31 and depth x blocks per layer < 2^32, got depth={depth} with {len(net)} blocks")
    if samples >= 2**31:
        raise ValueError(f"samples must be < 2^31, got {samples}")
    if width >= 2**62:
        raise ValueError(f"width must be < 2^62, got {width}")
    seed = check_seed(seed)
    threads = check_threads(threads)
    if dtype not in ("float64", "float32", np.float64, np.float32):
        raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    dtype = np.dtype(dtype).name
    blowup = check_blowup(blowup, V0, X0)
    if method == "exact" and return_X:
        raise ValueError("return_X is not available with method='exact' (it tracks V only)")
    # Refuse impossible requests (ResourceError) before allocating anything: the
    # tokens from V0, the list of saved layers and the core's output buffers.
    check_simulate(
        net, method, V0, width, samples, threads=threads, dtype=dtype, return_X=bool(return_X),
        depth=depth, save_at=save_at, save_every=save_every,
    )
    layers = check_save_at(save_at, save_every, depth)
    for i, b in enumerate(net):
        if getattr(b, "concat", False) and width % b.heads != 0:
            raise ValueError(
                f"heads: block {i} concatenates {b.heads} heads of width n/H, so heads must divide width={width}"
            )
    if method == "exact":
        if not net.exact_chain:
            bad = [type(b).__name__ for b in net if not b.exact_chain]
            raise ValueError(f"method='exact' does not cover {bad} (LayerNorm or concatenated heads); use 'explicit'")
        if return_X:
            raise ValueError("return_X is not available with method='exact' (it tracks V only)")
    if X0 is None and method != "exact":
        X0 = tokens_from_covariance(V0, width)

    with progress_callback(samples, f"{method} network", progress) as cb:
        if device == "cuda" and method == "exact":
            V, exploded_layer = exact_gpu(net, V0, width, depth, samples, seed, layers, blowup, cb)
            X = None
        elif device == "cuda":
            assert X0 is not None  # made from V0 above for every method but "exact"
            V, X, exploded_layer = explicit_gpu(net, X0, depth, samples, seed, layers, dtype, bool(return_X), blowup, cb)
        elif method == "exact":
            V, exploded_layer = core.simulate_exact(
                net.to_core(), V0, width, depth, samples, seed, layers.tolist(), threads, blowup, cb
            )
            X = None
        else:
            assert X0 is not None
            fn = core.simulate_explicit if method == "explicit" else core.simulate_law
            V, X, exploded_layer = fn(
                net.to_core(), X0, depth, samples, seed, layers, dtype, threads, bool(return_X), blowup, cb
            )
    exploded_layer = np.asarray(exploded_layer)
    exploded_at = np.where(exploded_layer >= 0, exploded_layer / width, np.inf)
    n_exploded = int(np.sum(exploded_layer >= 0))
    if n_exploded:
        warnings.warn(
            f"{n_exploded} of {samples} samples blew up (max diag V > {blowup:g} or non-finite); "
            "their later covariances are NaN. Use Result.finite() to drop them.",
            BlowUpWarning,
            stacklevel=3,  # the caller of simulate (network_first wraps it)
        )
    return Result(
        V=V,
        t=layers / width,
        exploded_at=exploded_at,
        method=method,
        X=X,
        info={"width": width, "depth": depth, "layers": layers, "seed": seed, "dtype": dtype, "network": net,
              "device": device},
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

    ``block`` is one of "shaped_attention", "standard_attention", "shaped_mlp",
    "relu_mlp", "shaped_transformer" (default) or "standard_transformer".
    """
    net = make_network(block, heads=heads, tau0=tau0, gamma=gamma, c_plus=c_plus, c_minus=c_minus, norm=norm)
    return simulate(net, X0=X0, V0=V0, width=width, depth=depth, samples=samples, method=method, seed=seed, **kwargs)
