"""The collapse threshold of ``st.assess`` (docs/assess.md, "Collapse"): where
standard attention's tokens collapse and shaped attention's do not.

    PYTHONPATH=python python benchmarks/collapse_threshold.py [--samples 1000] [--out docs/img/collapse_threshold.png]
        [--data docs/data/collapse_threshold.json] [--plot-only]

Exact chains (docs/model.md section 4) from equicorrelated inputs (rho0 = 0.3,
unit diagonal), gamma = 0.5, one head:

* the standard Transformer layer (softmax attention + ReLU MLP, no norm) at
  widths 256 and 1024, up to 64 layers;
* the shaped Transformer layer (shaped attention + shaped MLP) at tau0 = 1 and
  0.5, width 256, up to 512 layers (T = 2);

at m = 8 and 32 tokens.  It records, at each saved layer, the quantiles of
1 - (mean off-diagonal token correlation) over the samples that have not blown
up, and the share of all samples with mean correlation above 1 - eps for
eps = 0.1, 0.01, 0.001, prints them, and draws the figure (left: the quantiles
against the layer; right: P(collapse) at eps = 0.01 against the layer).  The
numbers go to ``--data`` (JSON) first; ``--plot-only`` redraws from that file.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np

import shaped_transformer as st
from shaped_transformer.analysis import mean_correlation

EPS = (1e-1, 1e-2, 1e-3)


def run(net, m: int, width: int, depth: int, every: int, samples: int, seed: int):
    V0 = st.inputs.equicorrelated(m, 0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", st.BlowUpWarning)
        r = st.simulate(
            net,
            V0=V0,
            width=width,
            depth=depth,
            samples=samples,
            method="exact",
            seed=seed,
            save_every=every,
            progress=False,
        )
    with np.errstate(invalid="ignore"):
        gap = 1.0 - mean_correlation(r.V)  # (samples, saved); NaN after a blow-up
    layers = np.asarray(r.info["layers"])
    q = np.array(
        [
            np.nanquantile(gap[:, j], [0.01, 0.5, 0.99]) if np.isfinite(gap[:, j]).any() else [np.nan] * 3
            for j in range(len(layers))
        ]
    )
    p = {
        eps: np.array([np.mean(np.nan_to_num(gap[:, j], nan=np.inf) < eps) for j in range(len(layers))]) for eps in EPS
    }
    blown = np.array([np.mean(~np.isfinite(gap[:, j])) for j in range(len(layers))])
    return layers, q, p, blown


def compute(samples: int, sizes: list[int]) -> list[dict]:
    cases = []
    for m in sizes:
        cases += [
            ("standard, n=256", st.standard_transformer(gamma=0.5), m, 256, 64, 1),
            ("standard, n=1024", st.standard_transformer(gamma=0.5), m, 1024, 64, 1),
            ("shaped tau0=1, n=256", st.shaped_transformer(tau0=1.0, gamma=0.5), m, 256, 512, 8),
            ("shaped tau0=0.5, n=256", st.shaped_transformer(tau0=0.5, gamma=0.5), m, 256, 512, 8),
        ]
    results = []
    for i, (label, net, m, n, d, every) in enumerate(cases):
        t0 = time.perf_counter()
        layers, q, p, blown = run(net, m, n, d, every, samples, seed=100 + i)
        results.append(
            {
                "label": label,
                "m": m,
                "width": n,
                "samples": samples,
                "layers": layers.tolist(),
                "quantiles_1_50_99": q.tolist(),
                "p_collapse": {f"{e:g}": p[e].tolist() for e in EPS},
                "blown": blown.tolist(),
                "seconds": time.perf_counter() - t0,
            }
        )
    return results


def report(results: list[dict]) -> None:
    for r in results:
        print(f"{r['label']}, m={r['m']} ({r['samples']} samples, {r['seconds']:.0f} s):")
        q, p = np.array(r["quantiles_1_50_99"]), r["p_collapse"]
        for j, layer in enumerate(r["layers"]):
            if layer in (8, 16, 24, 32, 48, 64, 128, 256, 384, 512):
                print(
                    f"   layer {layer:4d}: 1 - mean rho quantiles (1%, 50%, 99%) {q[j, 0]:.2e} {q[j, 1]:.2e} "
                    f"{q[j, 2]:.2e};  P(collapse) at eps 0.1 / 0.01 / 0.001: {p['0.1'][j]:.4f} / "
                    f"{p['0.01'][j]:.4f} / {p['0.001'][j]:.4f};  blown up {r['blown'][j]:.4f}"
                )


def plot(results: list[dict], out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = {
        "standard, n=256": "tab:red",
        "standard, n=1024": "tab:orange",
        "shaped tau0=1, n=256": "tab:blue",
        "shaped tau0=0.5, n=256": "tab:green",
    }
    m_min = min(r["m"] for r in results)
    for r in results:
        c = colors.get(r["label"], "k")
        ls = "-" if r["m"] == m_min else "--"
        x = np.maximum(np.array(r["layers"], dtype=float), 0.7)
        q = np.maximum(np.array(r["quantiles_1_50_99"], dtype=float), 1e-12)
        label = f"{r['label']}, m={r['m']}"
        axes[0].plot(x, q[:, 1], color=c, ls=ls, label=label)
        axes[0].fill_between(x, q[:, 0], q[:, 2], color=c, alpha=0.12, lw=0)
        axes[1].plot(x, r["p_collapse"]["0.01"], color=c, ls=ls, label=label)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("layer")
    axes[0].set_yscale("log")
    axes[0].set_ylim(1e-8, 2)
    axes[0].axhline(1e-2, color="k", lw=1)
    axes[0].text(1, 1.3e-2, "collapse threshold eps = 0.01", fontsize=8)
    axes[0].set_ylabel("1 - mean token correlation (median, 1%..99%)")
    axes[1].set_ylabel("P(mean correlation > 0.99)")
    axes[1].legend(fontsize=7)
    fig.suptitle(
        "exact chains, rho0 = 0.3, gamma = 0.5, H = 1: solid m = 8, dashed m = 32; shaped: T = layer / 256", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"figure: {out}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--out", default="docs/img/collapse_threshold.png")
    ap.add_argument("--data", default="docs/data/collapse_threshold.json")
    ap.add_argument("--sizes", default="8,32")
    ap.add_argument("--plot-only", action="store_true", help="redraw the figure from --data")
    args = ap.parse_args()
    if args.plot_only:
        with open(args.data) as f:
            results = json.load(f)
    else:
        results = compute(args.samples, [int(x) for x in args.sizes.split(",")])
        with open(args.data, "w") as f:
            json.dump(results, f, indent=1)
    report(results)
    plot(results, args.out)


if __name__ == "__main__":
    main()
