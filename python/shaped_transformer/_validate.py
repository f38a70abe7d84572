"""Argument checking of the Python-side parameters: every bad input becomes a
ValueError or TypeError that names the parameter.

The arguments that simulate() and solve_sde() hand to the core (V0, X0, width,
depth, samples, seed, threads, blowup, save_at, ...) are checked there, once
(cpp/python/requests.hpp); these checks serve what Python computes itself (the
SDE's time grid, the inputs helpers, the splitting estimator, the report and the
atlas)."""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import numpy as np

__all__ = [
    "check_int",
    "check_number",
    "check_seed",
    "derived_seed",
    "SEED_LIMIT",
    "all_cores",
    "check_threads",
    "check_square_psd",
    "check_covariance",
    "check_tokens",
    "check_blowup",
    "DEFAULT_BLOWUP",
    "network_first",
]

_P = ParamSpec("_P")
_R = TypeVar("_R")


def network_first(hint: str, positional: int = 1) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Makes a function whose arguments after the network are keyword-only say so
    when called with more positional arguments than ``positional``.

    Python's own message ("takes 1 positional argument but 2 were given") does not
    say which argument was meant; ``simulate(net, V0)`` used to run with the
    covariance taken as tokens.  ``hint`` names the arguments to pass by name.
    """

    def wrap(fn: Callable[_P, _R]) -> Callable[_P, _R]:
        @functools.wraps(fn)
        def call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            if len(args) > positional:
                takes = "the network by position and everything else" if positional == 1 else "every argument"
                got = f"{len(args)} positional argument{'s' if len(args) > 1 else ''}"
                raise TypeError(f"{fn.__name__}() takes {takes} by name, got {got}: {hint}")
            return fn(*args, **kwargs)

        return call

    return wrap


#: The default blow-up threshold of every method (simulate and solve_sde): a level
#: that finite networks of the studied widths reach in T = 1, so that networks and
#: the SDE are stopped by one rule (docs/model.md, section 6).
DEFAULT_BLOWUP = 1e4


def _reject_arrays_and_complex(name: str, value: object, what: str) -> None:
    """Multi-element arrays and complex numbers (Python or NumPy) are not scalars."""
    if isinstance(value, (complex, np.complexfloating)) or (isinstance(value, np.ndarray) and np.iscomplexobj(value)):
        raise TypeError(f"{name} must be a real {what}, got the complex value {value!r}")
    if isinstance(value, np.ndarray) and value.ndim > 0:
        raise TypeError(f"{name} must be a single {what}, got an array of shape {value.shape}")


def check_number(name: str, value: object, *, positive: bool = False, nonneg: bool = False) -> float:
    """A finite real number (a Python or NumPy scalar), optionally > 0 or >= 0."""
    _reject_arrays_and_complex(name, value, "number")
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a real number: {exc}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    if positive and v <= 0:
        raise ValueError(f"{name} must be > 0, got {v}")
    if nonneg and v < 0:
        raise ValueError(f"{name} must be >= 0, got {v}")
    return v


def check_int(name: str, value: object, *, minimum: int) -> int:
    """An integer (not a bool, not a float) >= minimum."""
    _reject_arrays_and_complex(name, value, "integer")
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    try:
        v = int(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be an integer: {exc}") from None
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    return v


#: Seeds are Philox keys: integers in [0, SEED_LIMIT), the same range for
#: simulate, solve_sde, the splitting estimator, the report and the atlas.
SEED_LIMIT = 2**64


def check_seed(seed: Any, name: str = "seed") -> int:
    """Seeds are non-negative integers below 2^64 (the Philox key)."""
    if seed is None:
        raise ValueError(f"{name} must be given explicitly (an integer in [0, 2^64)) for reproducible results")
    if isinstance(seed, bool) or not hasattr(seed, "__index__"):
        raise TypeError(f"{name} must be an integer in [0, 2^64), got {type(seed).__name__}")
    s = int(seed)
    if not 0 <= s < SEED_LIMIT:
        raise ValueError(f"{name} must lie in [0, 2^64), got {s}")
    return s


def derived_seed(seed: int, offset: int) -> int:
    """The seed of one run of a study seeded by ``seed``: ``seed + offset``, wrapped
    into [0, 2^64) so that every study seed in the accepted range gives valid run
    seeds (the same numbers as plain addition below 2^64 - offset)."""
    return (int(seed) + int(offset)) % SEED_LIMIT


def all_cores() -> int:
    """The number of cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def check_threads(threads: Any) -> int:
    """Worker threads: a positive count, or None or 0 for all available cores (the
    meaning 0 has in the C++ core and in the report's and atlas's TOML configs)."""
    if threads is None:
        return all_cores()
    t = check_int("threads", threads, minimum=0)
    return all_cores() if t == 0 else t


def _as_float_array(name: str, a: Any, ndim: int) -> np.ndarray:
    try:
        arr = np.asarray(a)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name} must be a {ndim}-d array of real numbers: {exc}") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must be an array of real numbers, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise TypeError(f"{name} must be real, got a complex array")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-d array, got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite values (NaN or Inf)")
    return arr


def check_square_psd(name: str, V: Any, *, rtol: float = 1e-10) -> np.ndarray:
    """A symmetric positive semi-definite m x m float64 array (m >= 1)."""
    arr = _as_float_array(name, V, 2)
    m = arr.shape[0]
    if arr.shape != (m, m) or m == 0:
        raise ValueError(f"{name} must be a non-empty square matrix, got shape {arr.shape}")
    scale = max(1.0, float(np.max(np.abs(arr))))
    if not np.allclose(arr, arr.T, rtol=0.0, atol=rtol * scale * 10):
        raise ValueError(f"{name} must be symmetric")
    arr = 0.5 * (arr + arr.T)
    w = np.linalg.eigvalsh(arr)
    if w[0] < -1e-9 * max(scale, float(w[-1])):
        raise ValueError(f"{name} must be positive semi-definite; its smallest eigenvalue is {w[0]:.3g}")
    if np.max(np.diag(arr)) <= 0:
        raise ValueError(f"{name} must have a positive diagonal (all tokens are zero)")
    return arr


def check_covariance(name: str, V: Any, *, tokens_as: str | None = None) -> np.ndarray:
    """:func:`check_square_psd` for an input covariance, saying when a non-square
    array (tokens, m x n) was passed where the m x m covariance belongs: pass
    them as ``tokens_as`` (simulate's X0) or, where no argument takes tokens,
    take their covariance."""
    arr = _as_float_array(name, V, 2)
    if arr.shape[0] != arr.shape[1]:
        fix = (
            f"to start from tokens (m x n) pass them as {tokens_as}="
            if tokens_as
            else "from tokens X0 (m x n) it is shaped_transformer.inputs.covariance(X0) = X0 X0^T / n"
        )
        raise ValueError(f"{name} must be the m x m covariance of the tokens, got shape {arr.shape}; {fix}")
    return check_square_psd(name, arr)


def check_tokens(name: str, X: Any) -> np.ndarray:
    """An m x n float64 token matrix with finite entries."""
    arr = _as_float_array(name, X, 2)
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must have at least one token and one feature, got shape {arr.shape}")
    return arr


def check_blowup(blowup: Any, V0: np.ndarray | None = None, X0: np.ndarray | None = None) -> float:
    """The blow-up threshold: positive, and above the largest diagonal entry of the
    input covariance (a sample that starts above it would be stopped at t = 0)."""
    b = check_number("blowup", blowup, positive=True)
    if V0 is not None:
        start = float(np.max(np.diag(V0)))
    elif X0 is not None:
        start = float(np.max(np.mean(np.square(X0), axis=1)))
    else:
        return b
    if not start < b:
        raise ValueError(
            f"blowup={b:g} must exceed the largest diagonal entry of the input covariance ({start:.6g}): "
            "samples would stop at t = 0; raise blowup or rescale the input"
        )
    return b
