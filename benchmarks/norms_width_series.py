"""Normalized shaped Transformers, network against the library's SDE across widths
(issue 24's width series; docs/norms.md section 7.5).

    SHAPED_TRANSFORMER_BUILD_DIR=build/dev PYTHONPATH=python python benchmarks/norms_width_series.py \\
        [--norms none,pre_rms,post_rms] [--samples 256:8000,1024:3000,4096:500] [--paths 16000] \\
        [--steps 512,2048] [--threads 2] [--data docs/data/norms_width_series.json] \\
        [--out docs/img/norms_width_series.png] [--plot-only]

LayerNorm (``--norms pre_layer,post_layer``, with its own ``--data`` and ``--out``:
docs/data/norms_width_series_layernorm.json, docs/img/norms_width_series_layernorm.png)
runs on the same seeds, so its networks share their random numbers with the RMS ones.

The setting of tests/test_norms_vs_sde.py (docs/norms.md section 7.4): shaped
Transformer layers (shaped attention + shaped MLP, gamma = 0.5, tau0 = 1, H = 1,
c_+ = 0, c_- = -1), every block with the same placement (``--norms``: none, pre_rms,
post_rms by default; pre_layer, post_layer), m = 8 tokens, V0 = equicorrelated(8, 0.3),
T = 1.  The network is the library's exact chain at width n and depth n
(``simulate(method="exact")``) for n = 256, 1024, 4096; the SDE is ``solve_sde`` of the same network at two steps dt
(the finer one is the reference; their difference shows that the step's own error
is below the network's standard errors).  LayerNorm's exact chain carries the state
s = X 1_n / sqrt(n) from the tokens' s_0 (docs/norms.md section 6).

One stopping rule (max diag V > 1e4) and the same per-sample observables on both
sides (those of tests/test_norms_vs_sde.py, plus the effective rank): the mean over
token pairs of rho_T and of rho_T^2, log tr V_T, the effective rank of the
correlation matrix C_T, (tr C)^2 / tr C^2 = m^2 / tr C^2
(``analysis.effective_rank`` of C_T), and whether the sample blew up.  The means
are over the samples that did not blow up (the same conditioning on both sides);
P(blow-up) has a Clopper-Pearson interval (``analysis.binomial_interval``), its
network - SDE gap Newcombe's (``analysis.newcombe_interval``), the mean gaps
Welch's (``analysis.mean_difference``); all at 95%.  Within one width the
placements share the network's seed (common random numbers), as do the SDEs.

The numbers go to ``--data`` (JSON) first, the table is printed, and the figure
(network - SDE gap against n, one panel per observable) goes to ``--out``;
``--plot-only`` redraws from the JSON.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np

import shaped_transformer as st
from shaped_transformer.analysis import (
    binomial_interval,
    correlations,
    effective_rank,
    mean_difference,
    newcombe_interval,
    off_diagonal,
)

M, RHO0, T = 8, 0.3, 1.0
NORMS = ("none", "pre_rms", "post_rms", "pre_layer", "post_layer")
STATS = ("mean rho", "mean rho^2", "log trace", "effective rank")
SEED_NETWORK, SEED_SDE = 11, 12


def network(norm: str) -> st.Network:
    """The layer of docs/norms.md section 7.3 with every block at placement ``norm``."""
    return st.shaped_transformer(heads=1, tau0=1.0, gamma=0.5, c_plus=0.0, c_minus=-1.0, norm=norm)


def observables(res) -> dict[str, np.ndarray]:
    """Per sample at T (NaN once blown up): the observables of
    tests/test_norms_vs_sde.py and the effective rank of C_T."""
    V = np.asarray(res.V[:, -1], dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        C = correlations(V)
        r = off_diagonal(C)
        return {
            "mean rho": r.mean(-1),
            "mean rho^2": (r**2).mean(-1),
            "log trace": np.log(np.trace(V, axis1=-2, axis2=-1)),
            "effective rank": effective_rank(C),
            "blown": np.asarray(res.exploded, dtype=bool),
        }


def summary(obs: dict[str, np.ndarray]) -> dict:
    """Mean and standard error of each observable (finite samples), blow-ups with
    their Clopper-Pearson interval."""
    out = {}
    for s in STATS:
        x = obs[s][np.isfinite(obs[s])]
        out[s] = [float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x)))] if len(x) > 1 else [np.nan, np.nan]
    k, n = int(obs["blown"].sum()), len(obs["blown"])
    iv = binomial_interval(k, n)
    out["blow-ups"] = [k, n, iv.low, iv.high]
    return out


def gaps(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict:
    """a - b per observable with its 95% interval [value, low, high]."""
    out = {}
    for s in STATS:
        with warnings.catch_warnings():
            # post-norm's log tr V_T is log m on both sides to rounding: scipy warns
            # of cancellation, and the interval is 0 to rounding, as it should be.
            warnings.simplefilter("ignore", RuntimeWarning)
            iv = mean_difference(a[s], b[s])
        out[s] = [iv.value, iv.low, iv.high]
    iv = newcombe_interval(int(a["blown"].sum()), len(a["blown"]), int(b["blown"].sum()), len(b["blown"]))
    out["P(blow-up)"] = [iv.value, iv.low, iv.high]
    return out


def run_network(norm: str, n: int, samples: int, threads: int):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", st.BlowUpWarning)  # blow-ups are counted
        return st.simulate(network(norm), V0=st.inputs.equicorrelated(M, RHO0), width=n, depth=int(T * n),
                           samples=samples, method="exact", seed=SEED_NETWORK, save_at=np.array([int(T * n)]),
                           progress=False, threads=threads)  # fmt: skip


def run_sde(norm: str, steps: int, paths: int, threads: int):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", st.BlowUpWarning)
        return st.solve_sde(network(norm), V0=st.inputs.equicorrelated(M, RHO0), T=T, steps=steps, paths=paths,
                            seed=SEED_SDE, save_at=[T], progress=False, threads=threads)  # fmt: skip


def compute(args) -> dict:
    norms = args.norms.split(",")
    samples = {int(k): int(v) for k, v in (p.split(":") for p in args.samples.split(","))}
    steps = sorted(int(s) for s in args.steps.split(","))
    data: dict = {"setting": {"m": M, "rho0": RHO0, "T": T, "gamma": 0.5, "tau0": 1.0, "c_plus": 0.0,
                              "c_minus": -1.0, "heads": 1, "samples": samples, "paths": args.paths,
                              "steps": steps, "threads": args.threads, "seeds": [SEED_NETWORK, SEED_SDE],
                              "effective rank": "(tr C_T)^2 / tr C_T^2"},
                  "norms": norms, "sde": {}, "network": {}}  # fmt: skip
    t0 = time.time()
    sde_obs = {}
    for norm in norms:
        data["sde"][norm] = {}
        for k in steps:
            t = time.time()
            sde_obs[norm, k] = observables(run_sde(norm, k, args.paths, args.threads))
            data["sde"][norm][str(k)] = {"summary": summary(sde_obs[norm, k]), "seconds": time.time() - t}
        # The step's own error: coarse - fine SDE.
        data["sde"][norm]["dt gap"] = gaps(sde_obs[norm, steps[0]], sde_obs[norm, steps[-1]])
        print(f"SDE {norm}: {data['sde'][norm]}", flush=True)
    for n, s in sorted(samples.items()):
        data["network"][str(n)] = {}
        for norm in norms:
            if network(norm).exact_refusal is not None:
                continue
            t = time.time()
            obs = observables(run_network(norm, n, s, args.threads))
            data["network"][str(n)][norm] = {
                "summary": summary(obs),
                "gap to SDE": gaps(obs, sde_obs[norm, steps[-1]]),
                "gap to SDE, coarse dt": gaps(obs, sde_obs[norm, steps[0]]),
                "seconds": time.time() - t,
            }
            print(f"n = {n} {norm}: {time.time() - t:.0f} s", flush=True)
            data["wall seconds"] = time.time() - t0
            save(data, args.data)  # partial results survive an interrupted run
    data["wall seconds"] = time.time() - t0
    save(data, args.data)
    return data


def save(data: dict, path: str) -> None:
    with open(path, "w") as f:
        json.dump(data, f, indent=1)


def fmt(v: list[float], digits: int = 4) -> str:
    return f"{v[0]:+.{digits}f} [{v[1]:+.{digits}f}, {v[2]:+.{digits}f}]"


def table(data: dict) -> str:
    """The markdown table of docs/norms.md section 7.5."""
    steps = data["setting"]["steps"]
    fine = str(steps[-1])
    lines = []
    for norm in data["sde"]:
        sde = data["sde"][norm][fine]["summary"]
        lines.append(f"\n{norm} (SDE at dt = 1/{fine}, {data['setting']['paths']} paths):\n")
        lines.append("| | " + " | ".join(STATS) + " | P(blow-up) |")
        lines.append("|---|" + "---|" * (len(STATS) + 1))
        row = [f"{sde[s][0]:.4f} +- {sde[s][1]:.4f}" for s in STATS]
        k, n, lo, hi = sde["blow-ups"]
        lines.append("| SDE | " + " | ".join(row) + f" | {k}/{n} [{lo:.4f}, {hi:.4f}] |")
        dg = data["sde"][norm]["dt gap"]
        lines.append(f"| SDE dt = 1/{steps[0]} - 1/{fine} | " + " | ".join(fmt(dg[s]) for s in STATS)
                     + f" | {fmt(dg['P(blow-up)'])} |")  # fmt: skip
        for w, rows in sorted(data["network"].items(), key=lambda kv: int(kv[0])):
            if norm not in rows:
                continue
            su, g = rows[norm]["summary"], rows[norm]["gap to SDE"]
            k, n, lo, hi = su["blow-ups"]
            lines.append(f"| network n = {w} | " + " | ".join(f"{su[s][0]:.4f} +- {su[s][1]:.4f}" for s in STATS)
                         + f" | {k}/{n} [{lo:.4f}, {hi:.4f}] |")  # fmt: skip
            lines.append(f"| network - SDE, n = {w} | " + " | ".join(fmt(g[s]) for s in STATS)
                         + f" | {fmt(g['P(blow-up)'])} |")  # fmt: skip
    return "\n".join(lines)


def plot(data: dict, out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (*STATS, "P(blow-up)")
    fig, grid = plt.subplots(2, 3, figsize=(12.0, 7.2))
    axes = grid.ravel()
    axes[-1].axis("off")
    widths = sorted(int(w) for w in data["network"])
    norms = list(data["sde"])
    for i, norm in enumerate(norms):
        ws = [w for w in widths if norm in data["network"][str(w)]]
        x = np.array(ws, dtype=float) * (1.0 + 0.06 * (i - (len(norms) - 1) / 2))  # offset the placements
        for ax, s in zip(axes, panels):
            g = np.array([data["network"][str(w)][norm]["gap to SDE"][s] for w in ws])
            if len(g):
                ax.errorbar(x, g[:, 0], yerr=[g[:, 0] - g[:, 1], g[:, 2] - g[:, 0]], fmt="o-", capsize=3, label=norm)
    for ax, s in zip(axes, panels):
        ax.axhline(0.0, color="k", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xticks(widths, [str(w) for w in widths])
        ax.set_xlabel("width n (depth n)")
        ax.set_title(f"network - SDE: {s}")
    axes[0].legend(title="placement")
    fig.suptitle("Shaped Transformer, m = 8, T = 1: network (exact chain) minus SDE, 95% intervals", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--norms", default="none,pre_rms,post_rms", help=f"placements, comma separated, of {NORMS}")
    p.add_argument("--samples", default="256:8000,1024:3000,4096:500", help="width:networks, comma separated")
    p.add_argument("--paths", type=int, default=16000, help="SDE paths per placement and step")
    p.add_argument("--steps", default="512,2048", help="SDE steps over [0, T] (two values: the dt check)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data", default="docs/data/norms_width_series.json")
    p.add_argument("--out", default="docs/img/norms_width_series.png")
    p.add_argument("--plot-only", action="store_true", help="redraw from --data without running")
    args = p.parse_args()
    if bad := set(args.norms.split(",")) - set(NORMS):
        p.error(f"--norms: unknown placements {sorted(bad)}; choose from {NORMS}")
    if args.plot_only:
        with open(args.data) as f:
            data = json.load(f)
    else:
        data = compute(args)
    print(table(data))
    print(f"\nwall time {data.get('wall seconds', float('nan')):.0f} s")
    plot(data, args.out)


if __name__ == "__main__":
    main()
