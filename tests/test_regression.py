"""Numbers do not move: every output of tests/regression/cases.py is bit for bit
the one recorded in tests/regression/fixture.npz (every block kind, every method,
float32 and float64, SDE schemes, kernels and summary saving)."""

from __future__ import annotations

import pathlib
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).with_name("regression")))
import cases  # noqa: E402


@pytest.fixture(scope="module")
def recorded() -> dict[str, np.ndarray]:
    with np.load(cases.FIXTURE, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def now() -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in cases.outputs().items()}


def test_fixture_covers_every_case(recorded, now):
    assert sorted(recorded) == sorted(now)
    # The fixture is not degenerate: every covariance, token and summary array holds
    # finite, non-constant numbers, and the stopping rule stops some samples of each method.
    flat = [
        k
        for k, v in recorded.items()
        if "exploded" not in k and "alive" not in k and not (v.size > 1 and np.isfinite(v).any() and np.nanstd(v) > 0)
    ]
    assert not flat
    for method in ("explicit", "exact", "sde"):
        stopped = np.isfinite(recorded[f"stop/{method}/exploded"])
        assert 0 < stopped.sum() < stopped.size, method


def test_outputs_are_bit_identical(recorded, now):
    moved = []
    for key in sorted(recorded):
        a, b = recorded[key], now[key]
        if a.shape != b.shape or a.dtype != b.dtype or a.tobytes() != b.tobytes():
            diff = np.nanmax(np.abs(a.astype(float) - b.astype(float))) if a.shape == b.shape else "shape"
            moved.append(f"{key} (max |diff| {diff})")
    assert not moved, "outputs moved:\n" + "\n".join(moved)
