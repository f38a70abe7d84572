"""P(blow-up by T) and P(collapse at T) against gamma, for each norm placement
(docs/norms.md, "What the norms do, measured").

    PYTHONPATH=python python benchmarks/norms_gamma_sweep.py [--samples 1000] [--width 256] [--T 1 3]
        [--norms none pre_rms ...] [--append] [--out docs/img/norms_gamma.png]
        [--data docs/data/norms_gamma.json] [--plot-only]

Each point is one ``st.assess`` call (shaped Transformer layers: shaped attention +
shaped MLP, one head, tau0 = 1, m = 8 tokens, equicorrelated input rho0 = 0.3,
depth = T * width, for each T given), so the network (the exact chain at the given width) and the
SDE use the same events, threshold and stopping rule as ``shaped-transformer
check``: blow-up is max diag V above 1e4 by the last layer, collapse a mean token
correlation above 1 - 0.01 at the last layer.  Splitting is off: the figure shows
plain Monte Carlo with its Clopper-Pearson intervals.  The numbers go to ``--data``
(JSON) first; ``--plot-only`` redraws from that file.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np

import shaped_transformer as st

NORMS = ("none", "pre_rms", "post_rms", "pre_layer", "post_layer")
LABELS = {
    "none": "no norm",
    "pre_rms": "pre-RMS",
    "post_rms": "post-RMS",
    "pre_layer": "pre-LayerNorm",
    "post_layer": "post-LayerNorm",
}
GAMMAS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def _estimate(e) -> dict | None:
    if e is None:
        return None
    return {"p": e.p, "low": e.low, "high": e.high, "events": e.events, "samples": e.samples}


def sweep(samples: int, width: int, Ts: list[float], tokens: int, seed: int, norms=NORMS) -> dict:
    """Runs every (T, norm, gamma) point; returns the JSON-ready results."""
    points = []
    for T in Ts:
        depth = int(round(T * width))
        for norm, g in itertools.product(norms, GAMMAS):
            t0 = time.perf_counter()
            a = st.assess(
                width=width,
                depth=depth,
                tokens=tokens,
                rho0=0.3,
                tau0=1.0,
                gamma=g,
                norm=None if norm == "none" else norm,
                samples=samples,
                sde_paths=samples,
                splitting=False,
                seed=seed,
                progress=False,
            )
            dt = time.perf_counter() - t0
            points.append(
                {
                    "T": T,
                    "depth": depth,
                    "norm": norm,
                    "gamma": g,
                    "network_method": a.settings["network_method"],
                    "blowup": _estimate(a.blowup),
                    "collapse": _estimate(a.collapse),
                    "sde_blowup": _estimate(a.sde_blowup),
                    "sde_collapse": _estimate(a.sde_collapse),
                    "seconds": dt,
                }
            )
            b, c = a.blowup, a.collapse
            sb, sc = a.sde_blowup, a.sde_collapse
            print(
                f"T {T:g} {norm:>10} gamma {g:.1f}: blow-up {b.p:.3f} [{b.low:.3f}, {b.high:.3f}]"
                + (f" SDE {sb.p:.3f} [{sb.low:.3f}, {sb.high:.3f}]" if sb is not None else "")
                + f"; collapse {c.p:.3f} [{c.low:.3f}, {c.high:.3f}]"
                + (f" SDE {sc.p:.3f} [{sc.low:.3f}, {sc.high:.3f}]" if sc is not None else "")
                + f"  ({dt:.1f} s)",
                flush=True,
            )
    return {"samples": samples, "width": width, "T": list(Ts), "tokens": tokens, "seed": seed, "points": points}


def plot(data: dict, out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    Ts = data["T"]
    fig, grid = plt.subplots(len(Ts), 2, figsize=(10, 3.6 * len(Ts)), sharex=True, squeeze=False)
    colors = dict(zip(NORMS, ("k", "C0", "C1", "C2", "C3")))
    panels = [
        (ax, T, event, f"{title}, T = {T:g}")
        for T, axes in zip(Ts, grid)
        for ax, (event, title) in zip(axes, (("blowup", "P(blow-up by T)"), ("collapse", "P(collapse at T)")))
    ]
    for ax, T, event, title in panels:
        for i, norm in enumerate(NORMS):
            pts = [p for p in data["points"] if p["norm"] == norm and p["T"] == T]
            if not pts:
                continue
            g = np.array([p["gamma"] for p in pts]) + (i - 2) * 0.006  # side by side
            net = [p[event] for p in pts]
            y = np.array([e["p"] for e in net])
            err = np.array([[e["p"] - e["low"], e["high"] - e["p"]] for e in net]).T
            label = LABELS[norm] + (
                "" if pts[0]["network_method"] == "exact chain" else f" ({pts[0]['network_method']})"
            )
            ax.errorbar(g, y, yerr=err, fmt="o-", ms=3, lw=1, capsize=2, color=colors[norm], label=label)
            sde = [p["sde_" + event] for p in pts]
            if all(e is not None for e in sde):
                ax.plot(g, [e["p"] for e in sde], "--", lw=1, color=colors[norm])
        ax.set_title(title)
        ax.set_xlabel("gamma")
        ax.set_ylim(bottom=-0.005)
    grid[0][0].legend(title="network (exact chain), SDE dashed", fontsize=8)
    fig.suptitle(
        f"shaped Transformer, tau0 = 1, m = {data['tokens']}, rho0 = 0.3, width {data['width']}, "
        f"depth T x width, {data['samples']} samples (95% intervals)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print("wrote", out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--T", type=float, nargs="+", default=[1.0, 3.0])
    ap.add_argument("--tokens", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="docs/img/norms_gamma.png")
    ap.add_argument("--data", default="docs/data/norms_gamma.json")
    ap.add_argument("--norms", nargs="+", choices=NORMS, default=list(NORMS), help="placements to run")
    ap.add_argument("--append", action="store_true", help="add the points to those of --data (same sizes)")
    ap.add_argument("--plot-only", action="store_true")
    a = ap.parse_args()
    if a.plot_only:
        data = json.loads(Path(a.data).read_text())
    else:
        data = sweep(a.samples, a.width, a.T, a.tokens, a.seed, a.norms)
        if a.append:
            old = json.loads(Path(a.data).read_text())
            if any(old[k] != data[k] for k in ("samples", "width", "T", "tokens", "seed")):
                raise SystemExit(f"--append: {a.data} was run at other sizes")
            data["points"] = [p for p in old["points"] if p["norm"] not in a.norms] + data["points"]
        Path(a.data).parent.mkdir(parents=True, exist_ok=True)
        Path(a.data).write_text(json.dumps(data, indent=1))
    plot(data, a.out)


if __name__ == "__main__":
    main()
