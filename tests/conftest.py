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
        from _mutations import apply_core_mutation

        apply_core_mutation()


#: Under CI (.ci/run sets CI=true and installs every optional tool), a check that
#: would skip for want of a tool fails instead, so that it cannot go quiet.
CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def skip_unless_ci(reason: str) -> None:
    """Skips with ``reason`` locally; fails under CI, where the tool must be there."""
    if CI:
        pytest.fail(f"{reason}; .ci/run installs it, so CI must run this check")
    pytest.skip(reason)
