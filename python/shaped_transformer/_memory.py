"""Refusing requests that cannot fit in memory, before they start.

A sweep that asks for, say, ``samples * saved * m * m`` covariances larger than the
machine would otherwise be killed by the kernel's out-of-memory killer after it
has run for a while (or thrash the swap).  The public entry points call
:func:`check_memory` with an estimate of their peak memory right after validating
their arguments and before any large allocation, and raise :class:`ResourceError`
(a ``MemoryError`` that is also a ``ValueError``) at once, saying how much the
request needs and how much is available.

The estimates count the arrays whose size the caller controls (outputs, input
tokens, per-thread workspaces of the drivers); small constant overheads are
ignored.  They are upper bounds up to a small factor, not exact figures: a run
that is refused needs at least roughly the stated amount.

Available memory is ``MemAvailable`` from ``/proc/meminfo`` (falling back to
``os.sysconf``), lowered to the remaining room of the cgroup (container) memory
limit when there is one.  The environment variable
``SHAPED_TRANSFORMER_MAX_MEMORY`` overrides it: a size such as ``"8G"``,
``"512M"`` or a byte count caps the budget; ``"off"`` disables the check.
"""

from __future__ import annotations

import os
import re
from typing import Any, Iterable

import numpy as np

from ._core_loader import core

__all__ = [
    "ResourceError",
    "available_bytes",
    "check_memory",
    "estimate_simulate_bytes",
    "estimate_sde_bytes",
    "check_simulate",
    "saved_count",
    "check_sde",
    "format_bytes",
]

_ENV = "SHAPED_TRANSFORMER_MAX_MEMORY"
_UNLIMITED = 1 << 60  # cgroup v1 reports "no limit" as a number near 2^63


class ResourceError(MemoryError, ValueError):
    """A request needs more memory than the machine has; raised before it starts.

    It is a ``MemoryError`` (so ``except MemoryError`` catches it) and a
    ``ValueError`` (the arguments ask for too much).  ``needed`` and ``available``
    hold the two byte counts of the message.
    """

    def __init__(self, message: str, needed: int = 0, available: int = 0):
        super().__init__(message)
        self.needed = int(needed)
        self.available = int(available)


def format_bytes(n: float) -> str:
    """A byte count in readable binary units (``'1.5 GiB'``)."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if abs(n) < 1024.0 or unit == "EiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024.0
    return f"{n:.3g} EiB"  # pragma: no cover


def _parse_size(text: str) -> int | None:
    """'8G', '512M', '1.5GiB', '123' -> bytes; 'off'/'none'/'' -> None (no check)."""
    t = text.strip().lower()
    if t in ("", "off", "none", "no", "0", "false", "unlimited"):
        return None
    mt = re.fullmatch(r"([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([kmgtp]?)(i?b)?", t)
    if not mt:
        raise ValueError(f"{_ENV}: cannot read {text!r} as a memory size (e.g. '8G', '512M', 'off')")
    mult = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}[mt.group(2)]
    return int(float(mt.group(1)) * mult)


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _sysconf_available() -> int | None:
    try:
        pages = os.sysconf("SC_AVPHYS_PAGES")
        size = os.sysconf("SC_PAGE_SIZE")
        if pages > 0 and size > 0:
            return int(pages) * int(size)
    except (AttributeError, ValueError, OSError):
        pass
    return None


def _read_int(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as f:
            text = f.read().strip()
    except OSError:
        return None
    if not text or text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _cgroup_room() -> int | None:
    """Bytes left under the cgroup memory limit (v2, then v1), or None if unlimited."""
    for limit_path, usage_path in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        limit = _read_int(limit_path)
        if limit is None or limit >= _UNLIMITED:
            continue
        usage = _read_int(usage_path) or 0
        return max(0, limit - usage)
    return None


def available_bytes() -> int | None:
    """Memory a new request may use, in bytes; None when the check is disabled.

    ``MemAvailable`` (or ``os.sysconf`` where /proc is missing), capped by the
    room left in the cgroup limit and by ``SHAPED_TRANSFORMER_MAX_MEMORY``.
    """
    override = os.environ.get(_ENV)
    cap: int | None = None
    if override is not None:
        cap = _parse_size(override)
        if cap is None:
            return None
    avail = _meminfo_available()
    if avail is None:
        avail = _sysconf_available()
    room = _cgroup_room()
    candidates = [v for v in (avail, room, cap) if v is not None]
    if not candidates:  # nothing known: do not refuse
        return None
    return min(candidates)


_HINT = "reduce samples, the number of saved layers (save_every / save_at), width or threads"


def check_memory(
    needed: float, what: str, *, available: int | None = None, detail: str = "", hint: str = _HINT
) -> None:
    """Raises :class:`ResourceError` if ``needed`` bytes exceed the available memory.

    ``what`` names the request in the message (e.g. ``"simulate(method='explicit')"``);
    ``detail`` says where the bytes go, ``hint`` what to reduce.  ``available``
    defaults to :func:`available_bytes`.
    """
    if available is None:
        available = available_bytes()
        if available is None:
            return
    needed_i = int(min(float(needed), 2.0**126))
    if needed_i > available:
        msg = (
            f"{what} needs about {format_bytes(needed_i)} ({needed_i} bytes) of memory but only "
            f"{format_bytes(available)} ({available} bytes) is available"
        )
        if detail:
            msg += f" ({detail})"
        msg += f"; {hint} (set {_ENV}=off to skip this check)"
        raise ResourceError(msg, needed_i, available)


def _blocks(network: Any) -> list[Any]:
    try:
        return list(network)
    except TypeError:
        return [network]


def _block_sizes(network: Any, width: int) -> tuple[int, int]:
    """(largest head count, largest key dimension) over the blocks of a network."""
    heads, kdim = 1, 1
    for b in _blocks(network):
        h = int(getattr(b, "heads", 1) or 1)
        kd = getattr(b, "key_dim", None)
        heads = max(heads, h)
        if getattr(b, "kind", "").endswith("attention"):
            kdim = max(kdim, width if kd in (None, 0) else int(kd))
    return heads, kdim


def estimate_simulate_bytes(
    network: Any,
    method: str,
    *,
    m: int,
    width: int,
    samples: int,
    saved: int,
    threads: int,
    dtype: str = "float64",
    return_X: bool = False,
) -> dict[str, int]:
    """Peak memory of :func:`shaped_transformer.simulate`, by item, in bytes.

    - ``V``: the output, samples x saved x m x m float64 (the core's buffer is
      handed to NumPy without a copy).
    - ``X0``: the input tokens m x n float64 (made from V0 in Python) and the
      core's copy of them.
    - ``X``: the final tokens samples x m x n float64 when ``return_X``.
    - ``workspace``: per worker thread (at most ``min(threads, samples)``):
      explicit and law: the tokens, their float64 copy for V and the O(H m n)
      per-head products, plus per thread the tiles of ``gaussian_gemm`` (the
      explicit weights are generated tile by tile and never stored); exact:
      O((H m)^2) for the Wishart draw and the per-head factors, plus the MLP's
      m x tile pre-activation tiles.  The tile sizes come from the core
      (``_core.gemm_workspace_bytes``, ``_core.exact_mlp_workspace_bytes``;
      cpp/include/shaped_transformer/workspace.hpp).
    """
    S, k, m, n = int(samples), int(saved), int(m), int(width)
    workers = max(1, min(int(threads), S))
    b = 4 if str(dtype) == "float32" else 8
    heads, kdim = _block_sizes(network, n)
    out: dict[str, int] = {"V": S * k * m * m * 8}
    if method == "exact":
        hm = heads * m
        out["workspace"] = workers * ((8 * hm * hm + 4 * heads * m * m) * 8 + int(core.exact_mlp_workspace_bytes(m)))
        return out
    out["X0"] = 2 * m * n * 8
    if return_X:
        out["X"] = S * m * n * 8
    acts = (8 + 4 * heads) * m * n * b + 2 * heads * m * kdim * b + m * n * 8
    # gaussian_gemm's tiles: one set per thread (a sample's product may use the
    # threads that have no sample of their own).
    tiles = max(1, int(threads)) * int(core.gemm_workspace_bytes(m, b))
    out["workspace"] = workers * acts + tiles
    return out


def estimate_sde_bytes(*, m: int, paths: int, saved: int, threads: int, heads: int = 1) -> dict[str, int]:
    """Peak memory of :func:`shaped_transformer.solve_sde`, by item, in bytes.

    The saved covariances paths x saved x m x m float64 (handed to NumPy
    without a copy) and a per-thread O(m^2) workspace (O((H m)^2) and the MLP's
    tiles, sized by the core, when the exact-chain scheme is used).
    """
    P, k, m = int(paths), int(saved), int(m)
    workers = max(1, min(int(threads), P))
    hm = max(1, int(heads)) * m
    per_worker = (16 * m * m + 8 * hm * hm) * 8 + int(core.exact_mlp_workspace_bytes(m))
    return {"V": P * k * m * m * 8, "workspace": workers * per_worker}


def _detail(parts: dict[str, int]) -> str:
    return ", ".join(f"{key} {format_bytes(v)}" for key, v in parts.items() if v)


def saved_count(save_at: Any, save_every: Any, depth: int) -> int:
    """How many layers simulate() will save, computed without building the list
    (``np.arange(depth + 1)`` alone is 8 GB at depth 10^9).  Invalid values count
    as the default; check_save_at reports them right after."""
    if save_at is not None:
        try:
            return max(1, int(np.size(save_at)))
        except Exception:  # ragged and the like: check_save_at names it
            return 1
    k = 1
    if save_every is not None and not isinstance(save_every, bool) and hasattr(save_every, "__index__"):
        k = max(1, int(save_every))
    d = max(0, int(depth))
    return d // k + 1 + (1 if d % k else 0)


def check_simulate(
    network: Any,
    method: str,
    V0: np.ndarray,
    width: int,
    samples: int,
    layers: Iterable[int] | np.ndarray | int | None = None,
    threads: int = 1,
    dtype: str = "float64",
    return_X: bool = False,
    *,
    depth: int | None = None,
    save_at: Any = None,
    save_every: Any = None,
) -> None:
    """The memory check of :func:`shaped_transformer.simulate` (arguments already
    validated): raises :class:`ResourceError` when the run cannot fit.

    The saved layers are ``layers`` (a list or a count) or, when it is None,
    counted from ``depth``, ``save_at`` and ``save_every`` without allocating.
    """
    if layers is None:
        saved = saved_count(save_at, save_every, int(depth or 0))
    else:
        saved = layers if isinstance(layers, int) else len(layers)  # type: ignore[arg-type]
    parts = estimate_simulate_bytes(
        network,
        method,
        m=int(np.shape(V0)[0]),
        width=width,
        samples=samples,
        saved=saved,
        threads=threads,
        dtype=dtype,
        return_X=return_X,
    )
    check_memory(sum(parts.values()), f"simulate(method={method!r})", detail=_detail(parts))


def check_sde(V0: np.ndarray, paths: int, saved: int | Iterable[Any], threads: int, network: Any = None) -> None:
    """The memory check of :func:`shaped_transformer.solve_sde` (arguments already
    validated): raises :class:`ResourceError` when the run cannot fit."""
    k = saved if isinstance(saved, int) else len(saved)  # type: ignore[arg-type]
    heads = _block_sizes(network, 1)[0] if network is not None else 1
    parts = estimate_sde_bytes(m=int(np.shape(V0)[0]), paths=paths, saved=k, threads=threads, heads=heads)
    check_memory(
        sum(parts.values()),
        "solve_sde",
        detail=_detail(parts),
        hint="reduce paths, the number of saved times (save_at) or threads",
    )
