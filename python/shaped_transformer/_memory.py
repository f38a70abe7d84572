"""Refusing requests that cannot fit in memory, before they start.

A sweep that asks for, say, ``samples * saved * m * m`` covariances larger than the
machine would otherwise be killed by the kernel's out-of-memory killer after it
has run for a while (or thrash the swap).  The public entry points hand the core an
:func:`admission` check: the core converts the arguments, estimates the run's peak
memory (cpp/python/requests.hpp, from each block kind's own figures in
cpp/include/shaped_transformer/blocks/resources.hpp) and calls it before anything
large is built; it raises :class:`ResourceError` (a ``MemoryError`` that is also a
``ValueError``) at once, saying how much the request needs and how much is
available.

The estimates count the arrays whose size the caller controls (outputs, input
tokens, per-thread workspaces of the drivers); small constant overheads are
ignored.  They are upper bounds up to a small factor, not exact figures: a run
that is refused needs at least roughly the stated amount.
:func:`estimate_simulate_bytes` and :func:`estimate_sde_bytes` return the same
figures item by item.

Available memory is ``MemAvailable`` from ``/proc/meminfo`` (falling back to
``os.sysconf``), lowered to the remaining room of the cgroup (container) memory
limit when there is one.  The environment variable
``SHAPED_TRANSFORMER_MAX_MEMORY`` overrides it: a size such as ``"8G"``,
``"512M"`` or a byte count caps the budget; ``"off"`` disables the check.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

from ._blocks import ShapedAttention, make_network
from ._core_loader import core

__all__ = [
    "ResourceError",
    "available_bytes",
    "check_memory",
    "admission",
    "estimate_simulate_bytes",
    "estimate_sde_bytes",
    "format_bytes",
]

_ENV = "SHAPED_TRANSFORMER_MAX_MEMORY"
_UNLIMITED = 1 << 60  # cgroup v1 reports "no limit" as a number near 2^63


class ResourceError(MemoryError, ValueError):
    """A request needs more memory than the machine has; raised before it starts.

    It is a ``MemoryError`` (so ``except MemoryError`` catches it) and a
    ``ValueError`` (the arguments ask for too much).

    Parameters
    ----------
    message : str
        What was asked, what it needs and what is available, in words.
    needed, available : int
        The two byte counts of the message, kept as attributes of the same names.
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


def _detail(parts: dict[str, int]) -> str:
    return ", ".join(f"{key} {format_bytes(v)}" for key, v in parts.items() if v)


def admission(what: str, hint: str = _HINT) -> Callable[[dict[str, int]], None]:
    """The memory check the core calls with a run's estimate by item (``{"V": bytes,
    ...}``) before it allocates: raises :class:`ResourceError` naming ``what``, the
    items and ``hint`` when their sum does not fit."""

    def admit(parts: dict[str, int]) -> None:
        check_memory(sum(parts.values()), what, detail=_detail(parts), hint=hint)

    return admit


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
    """Peak memory of :func:`shaped_transformer.simulate`, by item, in bytes: what its
    memory check counts (the core's estimate, cpp/python/requests.hpp).

    - ``V``: the output, samples x saved x m x m float64 (the core's buffer is
      handed to NumPy without a copy).
    - ``X0``: the input tokens m x n float64 (made from V0 in Python) and the
      core's copy of them.
    - ``X``: the final tokens samples x m x n float64 when ``return_X``.
    - ``workspace``: per worker thread (at most ``min(threads, samples)``), the
      largest of the blocks' own figures (``workspace()`` of each kind,
      blocks/resources.hpp: explicit and law, O(H m n) per-head products and O(m n)
      MLP activations, plus the float64 copy of the tokens for V and per thread the
      tiles of ``gaussian_gemm``; exact, the O(H m^2) per-head factors or the MLP's
      m x tile tiles, workspace.hpp).
    """
    return dict(core.simulate_bytes(make_network(network), method, m, width, samples, saved, threads, dtype, return_X))


def estimate_sde_bytes(
    *, m: int, paths: int, saved: int, threads: int, network: Any = None, scheme: str = "euler"
) -> dict[str, int]:
    """Peak memory of :func:`shaped_transformer.solve_sde`, by item, in bytes: the saved
    covariances paths x saved x m x m float64 (handed to NumPy without a copy), 16
    bytes per path and a per-thread O(m^2) state (with the exact-chain scheme, the
    exact chain's workspace of the network's blocks)."""
    net = make_network(ShapedAttention() if network is None else network)
    return dict(core.sde_bytes(net, m, paths, saved, threads, scheme))
