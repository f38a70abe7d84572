"""Shared test settings.

Long statistical checks are marked ``slow``; CI runs them at a reduced size.
Set SHAPED_TRANSFORMER_FULL=1 to run them at full size.
"""

from __future__ import annotations

import os

import pytest

FULL = os.environ.get("SHAPED_TRANSFORMER_FULL", "") not in ("", "0")


def size(reduced: int, full: int) -> int:
    """A sample count: ``full`` when SHAPED_TRANSFORMER_FULL=1, else ``reduced``."""
    return full if FULL else reduced


@pytest.fixture
def full_size() -> bool:
    return FULL


def pytest_configure(config) -> None:
    """Test-only fault injection (tests/_mutations.py): off unless
    SHAPED_TRANSFORMER_MUTATION is set."""
    if os.environ.get("SHAPED_TRANSFORMER_MUTATION"):
        import sys

        sys.path.insert(0, os.path.dirname(__file__))
        from _mutations import apply_mutation

        apply_mutation()


#: Under CI (.ci/run sets CI=true and installs every optional tool), a check that
#: would skip for want of a tool fails instead, so that it cannot go quiet.
CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def skip_unless_ci(reason: str) -> None:
    """Skips with ``reason`` locally; fails under CI, where the tool must be there."""
    if CI:
        pytest.fail(f"{reason}; .ci/run installs it, so CI must run this check")
    pytest.skip(reason)


#: CPU features each SIMD kernel needs (the CPUID checks of cpp/src/sde_kernels.cpp
#: and normal_kernels.cpp); the portable "scalar" kernel needs none.
KERNEL_FLAGS = {"scalar": (), "avx2": ("avx2", "fma"), "avx512": ("avx512f", "avx512dq", "avx512bw", "avx512vl")}


def _cpu_flags() -> set[str] | None:
    """The CPU's feature flags (Linux x86-64: /proc/cpuinfo), or None where unknown."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64"):
        return set()  # no x86 kernel is compiled there
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def require_kernel(kernel: str, available: bool) -> None:
    """For a test that compares SIMD kernels: returns when ``kernel`` is available;
    fails when it is missing although this CPU has its features (every x86-64 build
    compiles every kernel, cpp CMakeLists: a missing one is a bug, not a skip);
    skips, saying why, only when the CPU lacks them (or they cannot be read: then it
    fails under CI, which runs on Linux)."""
    if available:
        return
    flags = _cpu_flags()
    need = KERNEL_FLAGS[kernel]
    if flags is None:
        skip_unless_ci(f"kernel {kernel!r} is not available and the CPU flags cannot be read")
    if all(f in flags for f in need):
        pytest.fail(f"kernel {kernel!r} is missing although this CPU has {', '.join(need) or 'no requirement'}")
    pytest.skip(f"this CPU lacks {', '.join(f for f in need if f not in flags)} for kernel {kernel!r}")
