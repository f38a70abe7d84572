"""The ``device`` argument of :func:`simulate` and :func:`solve_sde`: checks and the
GPU runs (the CUDA backend, docs/cuda.md).

A build without CUDA (the default wheel) has ``cuda_available() == False``; asking
for ``device="cuda"`` then raises :class:`CudaUnavailableError` saying why.  The
GPU results have the layout of the CPU ones, from the same random streams: they
agree with the CPU to rounding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ._core_loader import core
from ._memory import ResourceError, format_bytes

# The cuda_* drivers exist only in a CUDA build (CMake option SHAPED_TRANSFORMER_CUDA);
# the type stub describes the CPU build, so they are reached through an untyped
# name, after check_device() has confirmed the backend.
_cuda_core: Any = core

__all__ = ["CudaUnavailableError", "cuda_available", "cuda_reason", "check_device", "check_gpu_memory"]

DEVICES = ("cpu", "cuda")


class CudaUnavailableError(RuntimeError):
    """``device="cuda"`` was asked for, but this build has no CUDA backend or no GPU is present."""


def cuda_available() -> bool:
    """True when this build has the CUDA backend and the CUDA runtime sees a GPU."""
    return bool(core.cuda_available())


def cuda_reason() -> str:
    """Why :func:`cuda_available` is False ('' when it is True)."""
    return str(core.cuda_reason())


def check_device(device: Any) -> str:
    """Returns ``"cpu"`` or ``"cuda"``; ValueError for anything else,
    :class:`CudaUnavailableError` for ``"cuda"`` without a usable GPU backend."""
    if not isinstance(device, str) or device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "cuda" and not cuda_available():
        raise CudaUnavailableError(f"device='cuda' is not available: {cuda_reason()}")
    return device


def check_gpu_memory(needed: int, what: str, detail: str = "") -> None:
    """Raises :class:`ResourceError` when ``needed`` bytes exceed 90% of the GPU's free memory."""
    info = _cuda_core.cuda_device_info()
    free = int(info["free_bytes"] * 0.9)
    if needed > free:
        raise ResourceError(
            f"{what} needs about {format_bytes(needed)} of GPU memory ({detail}), but {info['name']} has "
            f"{format_bytes(info['free_bytes'])} free; reduce the width or use device='cpu'",
            needed=needed,
            available=free,
        )


# The GPU drivers take the arguments of their CPU counterparts and check them the
# same way, once, in the core (cpp/python/requests.hpp); what the device code does
# not cover (m > 16, blocks other than shaped attention in the exact chain) is
# refused there too, naming the parameter.


def explicit_gpu(net, X0, depth, samples, seed, save_at, dtype, return_X, blowup, cb: Callable | None, **kw: Any):
    """The explicit network on the GPU; returns (V, X or None, exploded layer)."""

    def admit_gpu(need: int) -> None:
        check_gpu_memory(
            int(need), "simulate(method='explicit', device='cuda')", "tokens and product workspace, O(m n)"
        )

    return _cuda_core.cuda_simulate_explicit(
        net, X0, depth, samples, seed, save_at, dtype, return_X, blowup, cb, admit_gpu=admit_gpu, **kw
    )


def exact_gpu(net, V0, width, depth, samples, seed, save_at, blowup, cb: Callable | None, **kw: Any):
    """The exact chain (attention-only networks) on the GPU; returns (V, exploded layer)."""
    return _cuda_core.cuda_simulate_exact(net, V0, width, depth, samples, seed, save_at, blowup, cb, **kw)


def sde_gpu(
    net,
    V0,
    dt: float,
    steps: int,
    save_steps: np.ndarray,
    scheme,
    psd,
    paths,
    seed,
    blowup,
    cb: Callable | None,
    admit: Callable | None = None,
    info: dict | None = None,
):
    """The SDE on the GPU; returns (V, exploded step, projections)."""
    return _cuda_core.cuda_solve_sde(
        net,
        V0,
        dt,
        steps,
        np.asarray(save_steps, dtype=np.int64),
        scheme,
        psd,
        paths,
        seed,
        blowup,
        cb,
        admit=admit,
        info=info,
    )
