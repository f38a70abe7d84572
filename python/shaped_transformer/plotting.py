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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

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
    "atlas_curves_figure",
    "atlas_width_figure",
    "atlas_heatmap_figure",
    "atlas_blowup_times_figure",
    "atlas_collapse_figure",
    "atlas_figures",
]


def require_matplotlib():
    """Imports matplotlib's Figure and its Agg canvas.

    Returns
    -------
    Figure, FigureCanvasAgg : type
        The classes.

    Raises
    ------
    ImportError
        Saying how to install matplotlib, when it is missing.
    """
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "plotting needs matplotlib (a dependency of shaped-transformer that is missing here): "
            "pip install matplotlib"
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
    r"""Kernel density estimates of several samples on one axis.

    Parameters
    ----------
    samples : mapping of str to array_like
        Label -> 1-d values (e.g. pooled token correlations at time T);
        non-finite values are dropped, and a sample with fewer than 2 values is
        not drawn.
    bounds : (float, float) or None, default (-1, 1)
        The support: the kernel is reflected there (:func:`~shaped_transformer.analysis.kde`).
        None for unbounded values.
    title : str, optional
        The title.
    xlabel : str, default "$\rho_T$"
        The x label.
    reference : str, optional
        The label drawn in black and dashed (e.g. the SDE).
    grid : int, default 256
        The number of points of each curve.
    ax : matplotlib.axes.Axes, optional
        Draw into this axis instead of a new figure.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        If ``samples`` is empty.
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
    r"""Median (line) and quantile bands (shaded) against time, one colour per curve.

    Parameters
    ----------
    curves : mapping of str to DepthSummary
        Label -> :class:`~shaped_transformer.analysis.DepthSummary` with ``t`` and
        the quantile levels of ``outer`` (and ``inner``).
    ylabel : str, default "$\rho$"
        The y label.
    xlabel : str, default "t = depth / width"
        The x label.
    title : str, optional
        The title.
    outer : (float, float), default (0.05, 0.95)
        The quantile levels of the light band.
    inner : (float, float) or None, default (0.25, 0.75)
        The quantile levels of the dark band (None: none).
    ylim : (float, float), optional
        The y range.
    ax : matplotlib.axes.Axes, optional
        Draw into this axis instead of a new figure.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        If ``curves`` is empty or a summary has no times.
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
    r"""One panel per parameter (e.g. tau0, gamma, heads), each with one curve per value.

    Parameters
    ----------
    panels : mapping of str to mapping of str to DepthSummary
        ``panels[name][value label]`` is the summary of one run.
    ylabel : str, default "$\rho$"
        The y label.
    title : str, optional
        The figure's title.
    ylim : (float, float), optional
        The y range (shared).
    band : (float, float), default (0.25, 0.75)
        The quantile levels of the shaded band.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        If ``panels`` is empty.
    """
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
    widths: Sequence[float], distances: Mapping[str, Sequence[Any]], *, title: str = "", ax: Any = None
):
    """Distances against width on a log axis, with their bootstrap intervals.

    The bias-corrected estimate with its interval (error bars) and the plug-in
    value (crosses); distances without an interval are drawn as plain points.

    Parameters
    ----------
    widths : sequence of float
        The widths.
    distances : mapping of str to sequence of Distance
        Metric label -> one :class:`~shaped_transformer.analysis.Distance` per width.
    title : str, optional
        The title.
    ax : matplotlib.axes.Axes, optional
        Draw into this axis instead of a new figure.

    Returns
    -------
    matplotlib.figure.Figure
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
    """Distances against width on log-log axes, with fitted power laws.

    The plug-in value (points) with its bootstrap interval (error bars; a lower
    end at 0 is not drawn on a log axis) and, where ``slopes[label]`` is an
    :class:`~shaped_transformer.analysis.Interval`, the fitted power law with the
    slope and its interval in the legend.

    Parameters
    ----------
    widths : sequence of float
        The widths.
    distances : mapping of str to sequence of Distance
        Label -> one :class:`~shaped_transformer.analysis.Distance` per width.
    slopes : mapping of str to Interval or None, optional
        Label -> the fitted slope (:func:`~shaped_transformer.analysis.loglog_slope`).
    title : str, optional
        The title.
    ax : matplotlib.axes.Axes, optional
        Draw into this axis instead of a new figure.

    Returns
    -------
    matplotlib.figure.Figure
    """
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


def blowup_figure(networks: Mapping[int, Any], sdes: Mapping[str, Any], *, level: float = 0.95, title: str = ""):
    """Blow-up probabilities of networks of several widths and of SDE runs.

    Two panels: P(blow-up by T) against width (networks, Wilson intervals) with
    the SDE runs as horizontal bands; and P(blow-up by t) against t for every run.

    Parameters
    ----------
    networks : mapping of int to Result
        Width -> network run.
    sdes : mapping of str to Result
        Label -> SDE run (the first in black, the others grey).
    level : float, default 0.95
        The confidence level of the intervals.
    title : str, optional
        The figure's title.

    Returns
    -------
    matplotlib.figure.Figure
    """
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
        ax2.plot(
            res.t,
            [100 * np.mean(res.exploded_at <= t + 1e-12) for t in res.t],
            color=f"C{(i + 1) % 10}",
            label=f"network n={int(n)}",
        )
    for i, (label, res) in enumerate(sdes.items()):
        ax2.plot(
            res.t,
            [100 * np.mean(res.exploded_at <= t + 1e-12) for t in res.t],
            color="black" if i == 0 else "0.5",
            linestyle="--",
            linewidth=2,
            label=label,
        )
    ax2.set_xlabel("t = depth / width")
    ax2.set_ylabel("P(blow-up by t) [%]")
    ax2.legend(fontsize="small")
    ax2.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return fig


def save_figure(fig, path: str | os.PathLike, *, dpi: int = 100) -> Path:
    """Writes a figure (PNG by the file suffix), creating the folder.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure.
    path : str or PathLike
        The file.
    dpi : int, default 100
        The resolution.

    Returns
    -------
    Path
        The file written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


# ---------------------------------------------------------------------------
# The stability atlas (shaped_transformer.atlas): its points table and raw records
# ---------------------------------------------------------------------------


def _figure(figsize: tuple[float, float]):
    Figure, Canvas = require_matplotlib()
    fig = Figure(figsize=figsize)
    Canvas(fig)
    return fig


def _legend(ax: Any, **kw: Any) -> None:
    """A legend when the panel has labelled curves, else a note that it has no
    data (matplotlib warns about an empty legend)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kw)
    else:
        ax.text(
            0.5, 0.5, "no run at this point", transform=ax.transAxes, ha="center", va="center", fontsize=8, color="grey"
        )


def _select(rows: Sequence[Mapping], **kw: Any) -> list:
    """The rows whose fields equal ``kw`` (a row without a norm has none)."""
    return [r for r in rows if all({"norm": "none", **r}.get(k) == v for k, v in kw.items())]


def _reference_point(cfg: Mapping) -> dict:
    """The atlas's reference point (the shaped MLP has no tau0 or heads)."""
    ref = cfg["reference"]
    mlp = ref["block"] == "shaped_mlp"
    return {
        "block": ref["block"],
        "tau0": 1.0 if mlp else float(ref["tau0"]),
        "gamma": float(ref["gamma"]),
        "heads": 1 if mlp else int(ref["heads"]),
        "norm": ref.get("norm", "none"),
    }


def _raw_for(raw: Sequence[Mapping], **kw: Any) -> list:
    """The raw records of one point, one per (method, width): the reference runs
    (more samples) win."""
    best: dict = {}
    for x in raw:
        params = {"norm": "none", **x["params"]}  # the atlas leaves norm "none" out of a point's parameters
        if params.get("collapse") or not all(params.get(k) == v for k, v in kw.items()):
            continue
        key = (x["params"]["method"], x["params"].get("width"))
        if key not in best or x["result"]["samples"] > best[key]["result"]["samples"]:
            best[key] = x
    return list(best.values())


def _curve(x: Mapping, tgrid: np.ndarray, confidence: float):
    from .analysis import proportion_curve

    return proportion_curve(x["result"]["blowup_times"], x["result"]["samples"], tgrid, level=confidence)


def atlas_curves_figure(cfg: Mapping, raw: Sequence[Mapping]):
    """P(blow-up by t) at the atlas's reference point, one panel per block: the
    networks of each width and the SDE, with Clopper-Pearson bands.

    Parameters
    ----------
    cfg : mapping
        The atlas configuration (:func:`shaped_transformer.atlas.atlas_config`).
    raw : sequence of mapping
        The atlas's raw records (``atlas.json["raw"]``: ``params`` and ``result``
        of every point).

    Returns
    -------
    matplotlib.figure.Figure
    """
    s, ref_kw = cfg["study"], _reference_point(cfg)
    blocks = list(cfg["grid"]["blocks"])
    tgrid = np.linspace(0.0, s["T"], 201)
    fig = _figure((4.6 * len(blocks), 3.8))
    axes = fig.subplots(1, len(blocks), squeeze=False)
    cmap = _colormap("viridis")
    for ax, b in zip(axes[0], blocks):
        kw = dict(ref_kw, block=b)
        if b == "shaped_mlp":
            kw.update(tau0=1.0, heads=1)
        xs = sorted(_raw_for(raw, **kw, method="exact"), key=lambda x: x["params"]["width"])
        for i, x in enumerate(xs):
            p, lo, hi = _curve(x, tgrid, s["confidence"])
            c = cmap(i / max(1, len(xs) - 1) * 0.85)
            ax.plot(tgrid, p, color=c, label=f"network n={x['params']['width']}")
            ax.fill_between(tgrid, lo, hi, color=c, alpha=0.15, lw=0)
        for x in _raw_for(raw, **kw, method="sde"):
            p, lo, hi = _curve(x, tgrid, s["confidence"])
            ax.plot(tgrid, p, color="crimson", lw=2, label=f"SDE ({x['params']['scheme']}, dt={x['params']['dt']:g})")
            ax.fill_between(tgrid, lo, hi, color="crimson", alpha=0.15, lw=0)
        ax.set_title(f"{b}\ntau0={kw['tau0']:g}, gamma={kw['gamma']:g}, H={kw['heads']}", fontsize=9)
        ax.set_xlabel("t = depth / width")
        ax.set_ylabel(f"P(max diag V > {s['blowup']:g} by t)")
        _legend(ax, fontsize=7)
    fig.tight_layout()
    return fig


def _colormap(name: str):
    import matplotlib

    return matplotlib.colormaps[name]


def atlas_width_figure(cfg: Mapping, rows: Sequence[Mapping]):
    """P(blow-up by T) against width at the atlas's reference point (networks with
    their intervals), the SDE as a horizontal band.

    Parameters
    ----------
    cfg : mapping
        The atlas configuration.
    rows : sequence of mapping
        The atlas's points table (``atlas_points.csv``, ``atlas.json["points"]``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    s, ref_kw = cfg["study"], _reference_point(cfg)
    fig = _figure((5.5, 4))
    ax = fig.subplots()
    best: dict = {}
    for r in _select(rows, **ref_kw, method="exact"):  # the reference runs (more samples) win
        if r["width"] not in best or r["samples"] > best[r["width"]]["samples"]:
            best[r["width"]] = r
    xs = sorted(best.values(), key=lambda r: r["width"])
    if xs:
        w = np.array([r["width"] for r in xs])
        p = np.array([r["p"] for r in xs])
        ax.errorbar(
            w,
            p,
            yerr=[p - np.array([r["ci_low"] for r in xs]), np.array([r["ci_high"] for r in xs]) - p],
            fmt="o-",
            capsize=3,
            label="network (exact chain), 95% CI",
        )
        ax.set_xscale("log", base=2)
    for r in _select(rows, **ref_kw, method="sde"):
        ax.axhline(r["p"], color="crimson", label=f"SDE (Euler, dt={r['dt']:g})")
        ax.axhspan(r["ci_low"], r["ci_high"], color="crimson", alpha=0.15)
    ax.set_xlabel("width n (depth = T n)")
    ax.set_ylabel(f"P(blow-up by T={s['T']:g})")
    ax.set_title(
        f"{ref_kw['block']}, tau0={ref_kw['tau0']:g}, gamma={ref_kw['gamma']:g}, H={ref_kw['heads']}", fontsize=9
    )
    _legend(ax, fontsize=8)
    fig.tight_layout()
    return fig


def atlas_heatmap_figure(cfg: Mapping, rows: Sequence[Mapping], block: str, norm: str = "none"):
    """log10 P(blow-up by T) over (tau0, gamma) for one block: one panel per number
    of heads for the SDE and for the widest network, each cell marked with its
    estimate and verdict (``*`` unsafe, ``?`` undecided, ``u`` splitting
    unresolved), the safe level as a contour.

    Parameters
    ----------
    cfg : mapping
        The atlas configuration.
    rows : sequence of mapping
        The atlas's points table.
    block : str
        One of the grid's blocks other than "shaped_mlp".
    norm : str, default "none"
        The norm placement of the points drawn (one of the grid's).

    Returns
    -------
    matplotlib.figure.Figure
    """
    s, grid = cfg["study"], cfg["grid"]
    tau0s = sorted({float(v) for v in grid["tau0"]})
    gammas = sorted({float(v) for v in grid["gamma"]})
    width = max(cfg["network"]["widths"])
    panels = [(h, "sde", None) for h in grid["heads"]] + [(h, "exact", width) for h in grid["heads"]]
    fig = _figure((3.6 * len(panels), 3.4))
    axes = fig.subplots(1, len(panels), squeeze=False)
    cm = _colormap("magma_r").with_extremes(bad="lightgrey")  # grey: no blow-up seen
    im = None
    for ax, (h, meth, w) in zip(axes[0], panels):
        Z, txt = _heatmap_cells(rows, block, int(h), meth, w, tau0s, gammas, norm)
        im = ax.imshow(np.ma.masked_invalid(Z), origin="lower", cmap=cm, vmin=-7, vmax=0, aspect="auto")
        for (i, j), t in txt.items():
            ax.text(
                j,
                i,
                t,
                ha="center",
                va="center",
                fontsize=6.5,
                color="white" if np.isfinite(Z[i, j]) and Z[i, j] > -3.5 else "black",
            )
        lvl = np.log10(s["level"])
        if np.isfinite(Z).all() and len(tau0s) > 1 and len(gammas) > 1 and Z.min() < lvl < Z.max():
            ax.contour(Z, levels=[lvl], colors="cyan", linewidths=1.5)
        ax.set_xticks(range(len(tau0s)), [f"{v:g}" for v in tau0s])
        ax.set_yticks(range(len(gammas)), [f"{v:g}" for v in gammas])
        ax.set_xlabel("tau0")
        if ax is axes[0][0]:
            ax.set_ylabel("gamma")
        ax.set_title(f"{'SDE' if meth == 'sde' else f'network n={w}'}, H={h}", fontsize=9)
    fig.colorbar(im, ax=list(axes[0]), label=f"log10 P(blow-up by T={s['T']:g})", shrink=0.9)
    fig.suptitle(
        f"{block}{'' if norm == 'none' else f', {norm}'}: cyan line P = {s['level']:g}; * interval above it, ? interval straddles it, "
        "u splitting unresolved; grey: no blow-up seen (< upper bound)",
        fontsize=9,
    )
    return fig


def _heatmap_cells(rows, block, heads, method, width, tau0s, gammas, norm="none"):
    """log10 of each cell's best estimate (NaN: no blow-up seen) and its label."""
    Z = np.full((len(gammas), len(tau0s)), np.nan)
    txt = {}
    for i, g in enumerate(gammas):
        for j, t0 in enumerate(tau0s):
            sel = _select(rows, block=block, heads=heads, tau0=t0, gamma=g, method=method, norm=norm)
            if width is not None:
                sel = [r for r in sel if r["width"] == width]
            if not sel:
                continue
            r = max(sel, key=lambda x: x["samples"])
            Z[i, j] = np.log10(r["p_best"]) if r["p_best"] > 0 else np.nan
            mark = {"safe": "", "unsafe": "*", "undecided": "?"}[r["verdict"]] + (
                "u" if r["ams"].startswith("unresolved") else ""
            )
            txt[i, j] = (f"<{r['best_high']:.0e}" if r["p_best"] == 0 else f"{r['p_best']:.1e}") + mark
    return Z, txt


def atlas_blowup_times_figure(cfg: Mapping, raw: Sequence[Mapping]):
    """The distribution of the blow-up time at the atlas's reference point, given a
    blow-up by T: one histogram per width and one for the SDE.

    Parameters
    ----------
    cfg : mapping
        The atlas configuration.
    raw : sequence of mapping
        The atlas's raw records.

    Returns
    -------
    matplotlib.figure.Figure
    """
    s, ref_kw = cfg["study"], _reference_point(cfg)
    fig = _figure((5.5, 4))
    ax = fig.subplots()
    bins = np.linspace(0.0, s["T"], 21).tolist()
    xs = sorted(_raw_for(raw, **ref_kw, method="exact"), key=lambda x: x["params"]["width"])
    for x in xs + _raw_for(raw, **ref_kw, method="sde"):
        bt = np.asarray(x["result"]["blowup_times"], dtype=float)
        if bt.size == 0:
            continue
        lab = "SDE" if x["params"]["method"] == "sde" else f"n={x['params']['width']}"
        ax.hist(
            bt,
            bins=bins,
            histtype="step",
            density=True,
            lw=2 if lab == "SDE" else 1,
            label=f"{lab} ({bt.size} blow-ups)",
            color="crimson" if lab == "SDE" else None,
        )
    ax.set_xlabel("blow-up time t")
    ax.set_ylabel("density given a blow-up by T")
    ax.set_title("distribution of the blow-up time", fontsize=9)
    _legend(ax, fontsize=7)
    fig.tight_layout()
    return fig


def atlas_collapse_figure(cfg: Mapping, raw: Sequence[Mapping]):
    """The atlas's scaling test: P(blow-up by t) of the SDE against gamma^2 t (the
    noise clock) and gamma^2 t / tau0^2 (the drift clock), one curve per (tau0,
    gamma); None when the atlas ran no scaling test.

    Parameters
    ----------
    cfg : mapping
        The atlas configuration.
    raw : sequence of mapping
        The atlas's raw records (those with ``params["collapse"]`` are drawn).

    Returns
    -------
    matplotlib.figure.Figure or None
    """
    xs = [x for x in raw if x["params"].get("collapse")]
    if not xs:
        return None
    c, confidence = cfg["collapse"], cfg["study"]["confidence"]
    ct = sorted({float(v) for v in c["tau0"]})
    cg = sorted({float(v) for v in c["gamma"]})
    fig = _figure((10, 4))
    axes = fig.subplots(1, 2)
    cmap = _colormap("plasma")
    for x in xs:
        pr = x["params"]
        tg = np.linspace(0.0, pr["T"], 301)
        p, lo, hi = _curve(x, tg, confidence)
        col = cmap(ct.index(pr["tau0"]) / max(1, len(ct) - 1) * 0.85)
        ls = ["-", "--", ":", "-."][cg.index(pr["gamma"]) % 4]
        for ax, scale in zip(axes, (pr["gamma"] ** 2, pr["gamma"] ** 2 / pr["tau0"] ** 2)):
            ax.plot(
                tg * scale,
                np.where(p > 0, p, np.nan),
                color=col,
                ls=ls,
                label=f"tau0={pr['tau0']:g}, gamma={pr['gamma']:g}",
            )
            ax.fill_between(
                tg * scale, np.where(p > 0, lo, np.nan), np.where(p > 0, hi, np.nan), color=col, alpha=0.08, lw=0
            )
    axes[0].set_xlabel("gamma^2 t (the noise clock)")
    axes[1].set_xlabel("gamma^2 t / tau0^2 (the drift clock)")
    axes[1].set_xscale("log")
    for ax in axes:
        ax.set_yscale("log")
        ax.set_ylabel("P(blow-up by t), SDE")
    _legend(axes[0], fontsize=6, ncol=2)
    fig.suptitle(
        f"shaped_transformer, H=1, SDE: colour = tau0, line style = gamma; each curve runs to gamma^2 T = {c['s']:g}",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def atlas_figures(out: str | os.PathLike, cfg: Mapping, rows: Sequence[Mapping], raw: Sequence[Mapping]) -> list[str]:
    """Writes the atlas's PNG figures into ``out`` and returns their file names.

    ``curves.png`` (:func:`atlas_curves_figure`), ``width.png``
    (:func:`atlas_width_figure`), ``heatmap_<block>.png`` for each attention block
    (``heatmap_<block>_<norm>.png`` for each norm placement of the grid other than
    "none"; :func:`atlas_heatmap_figure`), ``blowup_times.png``
    (:func:`atlas_blowup_times_figure`) and, when the atlas ran its scaling test,
    ``collapse.png`` (:func:`atlas_collapse_figure`).

    Parameters
    ----------
    out : str or PathLike
        The atlas folder.
    cfg : mapping
        The atlas configuration.
    rows : sequence of mapping
        The atlas's points table.
    raw : sequence of mapping
        The atlas's raw records.

    Returns
    -------
    list of str
        The file names written, in this order.
    """
    out = Path(out)
    figs = {"curves.png": atlas_curves_figure(cfg, raw), "width.png": atlas_width_figure(cfg, rows)}
    for norm in cfg["grid"].get("norm", ["none"]):
        for b in cfg["grid"]["blocks"]:
            if b != "shaped_mlp":
                name = f"heatmap_{b}.png" if norm == "none" else f"heatmap_{b}_{norm}.png"
                figs[name] = atlas_heatmap_figure(cfg, rows, b, norm)
    figs["blowup_times.png"] = atlas_blowup_times_figure(cfg, raw)
    figs["collapse.png"] = atlas_collapse_figure(cfg, raw)
    written = []
    for name, fig in figs.items():
        if fig is None:
            continue
        fig.savefig(out / name, dpi=120, bbox_inches="tight" if name.startswith("heatmap_") else None)
        written.append(name)
    return written
