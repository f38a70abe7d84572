"""Figures for the report, callable on their own.

matplotlib is a dependency of the package; it is imported only when a function
here is called, so that ``import shaped_transformer`` stays fast.  The figures are built with
the object-oriented API on the non-interactive Agg canvas, so they work without
a display and never touch pyplot's global state; each function returns a
``matplotlib.figure.Figure`` (save it with :func:`save_figure` or
``fig.savefig``), or draws into ``ax`` when one is given.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .analysis import DepthSummary, kde

__all__ = [
    "require_matplotlib",
    "density_figure",
    "bands_figure",
    "parameter_effects_figure",
    "distance_figure",
    "loglog_distance_figure",
    "blowup_figure",
    "save_figure",
]


def require_matplotlib():
    """Imports matplotlib (Agg canvas) or raises an ImportError that says how to get it."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "plotting needs matplotlib (a dependency of shaped-transformer that is missing here): pip install matplotlib"
        ) from exc
    return Figure, FigureCanvasAgg


def _new(ax, figsize=(6.0, 4.0)):
    Figure, Canvas = require_matplotlib()
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=figsize, layout="constrained")
    Canvas(fig)
    return fig, fig.add_subplot(1, 1, 1)


def density_figure(
    samples: Mapping[str, np.ndarray],
    *,
    bounds: tuple[float, float] | None = (-1.0, 1.0),
    title: str = "",
    xlabel: str = r"$\rho_T$",
    reference: str | None = None,
    grid: int = 256,
    ax: Any = None,
):
    """Kernel density estimates of several samples on one axis.

    ``samples``: label -> 1-d values (e.g. pooled token correlations at time T);
    ``bounds``: the support (the kernel is reflected there), None for unbounded;
    ``reference``: the label drawn in black and dashed (e.g. the SDE).
    """
    fig, ax = _new(ax)
    if not samples:
        raise ValueError("samples must not be empty")
    for label, x in samples.items():
        x = np.asarray(x, dtype=float).ravel()
        x = x[np.isfinite(x)]
        if x.size < 2:
            continue
        g, d = kde(x, grid, bounds=bounds)
        if label == reference:
            ax.plot(g, d, color="black", linestyle="--", linewidth=2.0, label=label, zorder=5)
        else:
            ax.plot(g, d, linewidth=1.5, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    if title:
        ax.set_title(title)
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return fig


def bands_figure(
    curves: Mapping[str, DepthSummary],
    *,
    ylabel: str = r"$\rho$",
    xlabel: str = "t = depth / width",
    title: str = "",
    outer: tuple[float, float] = (0.05, 0.95),
    inner: tuple[float, float] | None = (0.25, 0.75),
    ylim: tuple[float, float] | None = None,
    ax: Any = None,
):
    """Median (line) and quantile bands (shaded) against time, one colour per curve.

    Each :class:`~shaped_transformer.analysis.DepthSummary` must have ``t`` and the
    quantile levels of ``outer`` (and ``inner``).
    """
    fig, ax = _new(ax)
    if not curves:
        raise ValueError("curves must not be empty")
    for i, (label, s) in enumerate(curves.items()):
        if s.t is None:
            raise ValueError(f"curve {label!r} has no times (DepthSummary.t is None)")
        color = f"C{i % 10}"
        ax.plot(s.t, s.median, color=color, label=label, linewidth=1.8)
        ax.fill_between(s.t, s.quantile(outer[0]), s.quantile(outer[1]), color=color, alpha=0.15, linewidth=0)
        if inner is not None:
            ax.fill_between(s.t, s.quantile(inner[0]), s.quantile(inner[1]), color=color, alpha=0.3, linewidth=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    if title:
        ax.set_title(title)
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return fig


def parameter_effects_figure(
    panels: Mapping[str, Mapping[str, DepthSummary]],
    *,
    ylabel: str = r"$\rho$",
    title: str = "",
    ylim: tuple[float, float] | None = None,
    band: tuple[float, float] = (0.25, 0.75),
):
    """One panel per parameter (e.g. tau0, gamma, heads), each with one median-and-band
    curve per parameter value: ``panels[name][value label] = DepthSummary``.
    ``band``: the quantile levels of the shaded band (default: the quartiles)."""
    Figure, Canvas = require_matplotlib()
    if not panels:
        raise ValueError("panels must not be empty")
    k = len(panels)
    fig = Figure(figsize=(4.2 * k, 3.8), layout="constrained")
    Canvas(fig)
    axes = fig.subplots(1, k, squeeze=False, sharey=True)[0]
    for ax, (name, curves) in zip(axes, panels.items()):
        bands_figure(curves, ylabel=ylabel, title=name, outer=band, inner=None, ylim=ylim, ax=ax)
    if title:
        fig.suptitle(title)
    return fig


def distance_figure(
    widths: Sequence[float],
    distances: Mapping[str, Sequence[Any]],
    *,
    title: str = "",
    ax: Any = None,
):
    """Distances against width on a log axis: the bias-corrected estimate with its
    bootstrap interval (error bars) and the plug-in value (crosses).

    ``distances``: metric label -> a sequence of :class:`~shaped_transformer.analysis.Distance`
    (one per width).
    """
    fig, ax = _new(ax)
    w = np.asarray(widths, dtype=float)
    for i, (label, ds) in enumerate(distances.items()):
        color = f"C{i % 10}"
        x = w * (1 + 0.04 * i)
        v = np.array([float(d.value) for d in ds])
        c = np.array([getattr(d, "corrected", float("nan")) for d in ds])
        lo = np.array([d.low for d in ds])
        hi = np.array([d.high for d in ds])
        if np.all(np.isfinite(c)) and np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)):
            err = np.vstack([np.clip(c - lo, 0, None), np.clip(hi - c, 0, None)])
            ax.errorbar(x, c, yerr=err, marker="o", capsize=3, color=color, label=f"{label} (bias-corrected, CI)")
            ax.plot(x, v, linestyle="none", marker="x", color=color, label=f"{label} (plug-in)")
        else:
            ax.plot(x, v, marker="o", color=color, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("width n (network)")
    ax.set_ylabel("distance to the SDE")
    ax.set_ylim(bottom=0)
    if title:
        ax.set_title(title)
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return fig


def loglog_distance_figure(
    widths: Sequence[float],
    distances: Mapping[str, Sequence[Any]],
    slopes: Mapping[str, Any] | None = None,
    *,
    title: str = "",
    ax: Any = None,
):
    """Distances against width on log-log axes: the plug-in value (points) with its
    bootstrap interval (error bars, zero lower ends not drawn on a log axis) and,
    where ``slopes[label]`` is an :class:`~shaped_transformer.analysis.Interval`,
    the fitted power law with the slope and its interval in the legend."""
    fig, ax = _new(ax, figsize=(6.5, 4.5))
    w = np.asarray(widths, dtype=float)
    positive = False
    for i, (label, ds) in enumerate(distances.items()):
        color = f"C{i % 10}"
        x = w * (1 + 0.03 * i)
        v = np.array([float(d.value) for d in ds])
        lo = np.array([d.low for d in ds])
        hi = np.array([d.high for d in ds])
        s = None if slopes is None else slopes.get(label)
        name = label if s is None else f"{label}: slope {s.value:.2f} [{s.low:.2f}, {s.high:.2f}]"
        if np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)):
            low = np.where(lo > 0, lo, v)  # an interval reaching 0 has no lower end on a log axis
            err = np.vstack([np.clip(v - low, 0, None), np.clip(hi - v, 0, None)])
            ax.errorbar(x, v, yerr=err, marker="o", capsize=3, linestyle="none", color=color, label=name)
        else:
            ax.plot(x, v, marker="o", linestyle="none", color=color, label=name)
        ok = np.isfinite(v) & (v > 0)
        positive |= bool(ok.any())
        if s is not None and ok.sum() >= 2:
            # the least-squares line through the log values, drawn over the widths
            b = float(np.mean(np.log(v[ok])) - s.value * np.mean(np.log(w[ok])))
            ax.plot(w, np.exp(b) * w**s.value, color=color, linewidth=1.0, alpha=0.8)
    ax.set_xscale("log", base=2)
    if positive:
        ax.set_yscale("log")
    else:  # e.g. every sample blew up: nothing given survival to show
        ax.text(0.5, 0.5, "no positive distance to show", transform=ax.transAxes, ha="center")
    ax.set_xlabel("width n (network)")
    ax.set_ylabel("Wasserstein-1 distance to the SDE")
    if title:
        ax.set_title(title, fontsize="medium")
    ax.legend(fontsize="x-small")
    ax.grid(alpha=0.3, which="both")
    return fig


def blowup_figure(
    networks: Mapping[int, Any],
    sdes: Mapping[str, Any],
    *,
    level: float = 0.95,
    title: str = "",
):
    """Two panels: P(blow-up by T) against width (networks, Wilson intervals) with
    the SDE runs as horizontal bands; and P(blow-up by t) against t for every run.
    ``networks``: width -> Result; ``sdes``: label -> Result."""
    from .analysis import blowup_probability

    Figure, Canvas = require_matplotlib()
    fig = Figure(figsize=(11.0, 4.2), layout="constrained")
    Canvas(fig)
    ax1, ax2 = fig.subplots(1, 2)
    w = np.array(sorted(networks), dtype=float)
    ps = [blowup_probability(networks[int(n)], level=level)[2] for n in w]
    v = np.array([p.value for p in ps])
    err = np.vstack([v - np.array([p.low for p in ps]), np.array([p.high for p in ps]) - v])
    ax1.errorbar(w, 100 * v, yerr=100 * err, marker="o", capsize=3, color="C0", label=f"network ({level:.0%} CI)")
    for i, (label, res) in enumerate(sdes.items()):
        p = blowup_probability(res, level=level)[2]
        color = "black" if i == 0 else "0.5"
        ax1.axhline(100 * p.value, color=color, linestyle="--", label=f"{label}: {100 * p.value:.2f}%")
        ax1.axhspan(100 * p.low, 100 * p.high, color=color, alpha=0.12, linewidth=0)
    ax1.set_xscale("log", base=2)
    ax1.set_xlabel("width n")
    ax1.set_ylabel("P(blow-up by T) [%]")
    ax1.set_ylim(bottom=0)
    ax1.legend(fontsize="small")
    ax1.grid(alpha=0.3)
    for i, n in enumerate(w):
        res = networks[int(n)]
        ax2.plot(res.t, [100 * np.mean(res.exploded_at <= t + 1e-12) for t in res.t], color=f"C{(i + 1) % 10}",
                 label=f"network n={int(n)}")
    for i, (label, res) in enumerate(sdes.items()):
        ax2.plot(res.t, [100 * np.mean(res.exploded_at <= t + 1e-12) for t in res.t], color="black" if i == 0 else "0.5",
                 linestyle="--", linewidth=2, label=label)
    ax2.set_xlabel("t = depth / width")
    ax2.set_ylabel("P(blow-up by t) [%]")
    ax2.legend(fontsize="small")
    ax2.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return fig


def save_figure(fig, path: str | os.PathLike, *, dpi: int = 100) -> Path:
    """Writes ``fig`` (PNG by the file suffix) and returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path
