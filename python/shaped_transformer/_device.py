"""The ``device`` argument of :func:`simulate` and :func:`solve_sde`: checks and the
GPU runs (the CUDA backend, docs/cuda.md).

A build without CUDA (the default wheel) has ``cuda_available() == False``; asking
for ``device="cuda"`` then raises :class:`CudaUnavailableError` saying why.  The
GPU results have the layout of the CPU ones, from the same random streams: they
agree with the CPU to rounding.
"""

from __future__ import annotations

from typing import Any, Callable

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


def explicit_gpu(net, X0: np.ndarray, depth: int, samples: int, seed: int, layers: np.ndarray, dtype: str,
                 return_X: bool, blowup: float, cb: Callable | None):
    """The explicit network on the GPU; returns (V, X or None, exploded layer)."""
    m, n = X0.shape
    need = int(_cuda_core.cuda_explicit_bytes(net.to_core(), m, n, dtype))
    check_gpu_memory(need, "simulate(method='explicit', device='cuda')", "tokens and product workspace, O(m n)")
    return _cuda_core.cuda_simulate_explicit(
        net.to_core(), np.ascontiguousarray(X0, dtype=np.float64), depth, samples, seed,
        np.asarray(layers, dtype=np.int64), dtype, bool(return_X), blowup, cb,
    )


def exact_gpu(net, V0: np.ndarray, width: int, depth: int, samples: int, seed: int, layers: np.ndarray,
              blowup: float, cb: Callable | None):
    """The exact chain (attention-only networks) on the GPU; returns (V, exploded layer)."""
    bad = [(i, b) for i, b in enumerate(net) if getattr(b, "kind", "") != "shaped_attention"]
    if bad:
        raise ValueError(
            f"device='cuda' with method='exact' covers networks of shaped attention blocks only; "
            f"block {bad[0][0]} is {type(bad[0][1]).__name__} (use device='cpu')"
        )
    _check_m(V0)
    return _cuda_core.cuda_simulate_exact(
        net.to_core(), V0, width, depth, samples, seed, np.asarray(layers, dtype=np.int64), blowup, cb
    )


def sde_gpu(net, V0: np.ndarray, dt: float, steps: int, save_steps: np.ndarray, scheme: str, psd: str,
            paths: int, seed: int, blowup: float, cb: Callable | None):
    """The SDE on the GPU; returns (V, exploded step, projections)."""
    _check_m(V0)
    if scheme == "exact_chain":
        bad = [(i, b) for i, b in enumerate(net) if getattr(b, "kind", "") != "shaped_attention"]
        if bad:
            raise ValueError(
                "scheme: 'exact_chain' with device='cuda' covers networks of shaped attention blocks only "
                f"(block {bad[0][0]} is {type(bad[0][1]).__name__}); use scheme='euler' or device='cpu'"
            )
    return _cuda_core.cuda_solve_sde(
        net.to_core(), V0, dt, steps, np.asarray(save_steps, dtype=np.int64), scheme, psd, paths, seed, blowup, cb
    )


def _check_m(V0: np.ndarray) -> None:
    if V0.shape[0] > 16:
        raise ValueError(f"V0: device='cuda' supports m <= 16 tokens, got m = {V0.shape[0]} (use device='cpu')")
