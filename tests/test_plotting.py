"""Plotting functions write valid PNGs; a missing matplotlib gives a clear error."""

from __future__ import annotations

import sys

import matplotlib  # noqa: E402,F401  (a dependency: never skipped)
import matplotlib.image as mpimg  # noqa: E402
import numpy as np
import pytest

from shaped_transformer import analysis as an  # noqa: E402
from shaped_transformer import plotting  # noqa: E402


def _png_ok(path):
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert np.all(np.isfinite(img))
    assert img[..., :3].std() > 0.01  # something was drawn


def _summary(rng, shift=0.0):
    t = np.linspace(0, 1, 9)
    x = rng.normal(size=(50, 9, 3)) * t[None, :, None] + shift
    return an.summarize(x, t=t)


def test_all_figures_write_pngs(tmp_path):
    rng = np.random.default_rng(0)
    fig = plotting.density_figure(
        {"a": np.tanh(rng.normal(size=500)), "SDE": np.tanh(rng.normal(0.2, size=400))}, reference="SDE"
    )
    _png_ok(plotting.save_figure(fig, tmp_path / "d.png"))
    fig = plotting.bands_figure({"shaped": _summary(rng), "standard": _summary(rng, 0.5)}, ylabel="rho")
    _png_ok(plotting.save_figure(fig, tmp_path / "b.png"))
    fig = plotting.parameter_effects_figure(
        {"tau0": {"0.5": _summary(rng), "2": _summary(rng, 0.1)}, "heads": {"1": _summary(rng)}}
    )
    _png_ok(plotting.save_figure(fig, tmp_path / "p.png"))
    d = [an.wasserstein(rng.normal(size=200), rng.normal(s, size=200), bootstrap=50) for s in (0.4, 0.2, 0.1)]
    fig = plotting.distance_figure([64, 256, 1024], {"W1": d})
    _png_ok(plotting.save_figure(fig, tmp_path / "sub" / "w.png"))


def test_draws_into_given_axes():
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.add_subplot(1, 1, 1)
    out = plotting.density_figure({"x": np.random.default_rng(1).normal(size=100)}, bounds=None, ax=ax)
    assert out is fig and len(ax.lines) == 1


def test_bad_input():
    with pytest.raises(ValueError, match="samples"):
        plotting.density_figure({})
    s = an.summarize(np.zeros((3, 4)))  # no times
    with pytest.raises(ValueError, match="no times"):
        plotting.bands_figure({"x": s})


def test_missing_matplotlib_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with pytest.raises(ImportError, match=r"pip install matplotlib"):
        plotting.require_matplotlib()
    with pytest.raises(ImportError, match="shaped-transformer"):
        plotting.density_figure({"x": np.zeros(3)})
