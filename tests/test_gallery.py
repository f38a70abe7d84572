"""Every example of the gallery (examples/gallery, the site's executed examples)
runs at its reduced size (SHAPED_TRANSFORMER_GALLERY_SIZE=ci) and prints its
numbers; the two Figure 1 examples also show what the paper's figure shows.

About 35 s in all on 2 loaded cores (the site build runs them at full size).
"""

from __future__ import annotations

import contextlib
import io
import re
import runpy
import warnings
from pathlib import Path

import pytest

from conftest import skip_unless_ci

GALLERY = Path(__file__).resolve().parent.parent / "examples" / "gallery"
EXAMPLES = sorted(GALLERY.glob("plot_*.py"))


def run_example(path: Path, monkeypatch, tmp_path) -> str:
    """Runs one example at the reduced size in a scratch folder; returns what it printed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.setenv("SHAPED_TRANSFORMER_GALLERY_SIZE", "ci")
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*non-interactive.*")  # plt.show() on the Agg canvas
            runpy.run_path(str(path), run_name="__main__")
        assert plt.get_fignums(), f"{path.name} drew no figure"
    finally:
        plt.close("all")
    return out.getvalue()


def test_the_gallery_has_its_examples():
    names = {p.stem for p in EXAMPLES}
    assert {
        "plot_fig1_left_rank_collapse",
        "plot_fig1_right_density",
        "plot_width_convergence",
        "plot_stability_atlas",
        "plot_causal_attention",
        "plot_torch_probe",
    } <= names
    assert (GALLERY / "README.rst").is_file()  # sphinx-gallery's index of the folder


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs_and_prints_its_numbers(path, monkeypatch, tmp_path):
    if path.stem == "plot_torch_probe":
        try:
            import torch  # noqa: F401
        except ImportError:
            skip_unless_ci("plot_torch_probe needs torch")
    text = run_example(path, monkeypatch, tmp_path)
    numbers = re.findall(r"\d+\.\d+", text)
    assert len(numbers) >= 10, f"{path.name} printed too few numbers:\n{text}"


def test_figure_1_left_shows_rank_collapse(monkeypatch, tmp_path):
    """Standard attention (with or without pre-LN) reaches correlation near 1 by
    depth = width; shaped attention stays near its input correlation 0.2."""
    text = run_example(GALLERY / "plot_fig1_left_rank_collapse.py", monkeypatch, tmp_path)
    last = {}
    for line in text.splitlines():
        m = re.match(r"(standard attention, pre-LN|standard attention|shaped attention)\s+(.*)", line)
        if m:
            last[m.group(1)] = float(m.group(2).split()[-2])  # the mean at the last layer
    assert last["standard attention"] > 0.9 and last["standard attention, pre-LN"] > 0.9, text
    assert last["shaped attention"] < 0.6, text


def test_figure_1_right_reports_the_distance_and_its_interval(monkeypatch, tmp_path):
    """The page states W1 between network and SDE with its interval, and at the
    paper's setting they agree: the interval's upper end is small."""
    text = run_example(GALLERY / "plot_fig1_right_density.py", monkeypatch, tmp_path)
    m = re.search(
        r"W1\(network, SDE\) = ([\d.]+), bias-corrected ([\d.]+), 95% basic bootstrap interval "
        r"\[([\d.]+), ([\d.]+)\]",
        text,
    )
    assert m, text
    value, corrected, low, high = map(float, m.groups())
    assert 0 <= low <= high < 0.05 and corrected <= value, text
    assert "n = 200, d = 150 (T = 0.75)" in text and "SDE dt = 0.01" in text
