"""
The stability atlas and a rare blow-up probability
==================================================

Deep shaped networks can blow up: the attention drift grows like the cube of V, and some
networks (and SDE paths) run off to very large V before T.  The atlas
(:func:`shaped_transformer.atlas.run_atlas`, ``shaped-transformer atlas``) estimates
P(max diag V > 1e4 by T) over a grid of tau0 and gamma, for the SDE and for the
exact chain of networks of several widths, and calls each point *safe*, *unsafe*
or *undecided* at a level by one rule: its interval lies below, above, or across
it (:func:`shaped_transformer.analysis.verdict`).  Where plain Monte Carlo sees
few blow-ups, adaptive multilevel splitting (:mod:`shaped_transformer.splitting`)
estimates the probability; one "rare" point far below what plain Monte Carlo
reaches is estimated by repeated splitting runs.

Here: the shaped Transformer layer (attention then shaped MLP, one head), m = 8
tokens, rho0 = 0.3, T = 1, on a small grid (docs/atlas.md runs the full one).
"""

import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np

from shaped_transformer.atlas import run_atlas

SIZE = os.environ.get("SHAPED_TRANSFORMER_GALLERY_SIZE", "full")  # "ci": a reduced run for the tests
if SIZE not in ("full", "ci"):
    raise ValueError(f"SHAPED_TRANSFORMER_GALLERY_SIZE must be 'full' or 'ci', got {SIZE!r}")
CONFIG = {
    "study": {"level": 1e-3},
    "grid": {"blocks": ["shaped_transformer"], "tau0": [0.5, 1.0, 2.0], "gamma": [0.3, 0.5, 0.7], "heads": [1]},
    "reference": {"block": "shaped_transformer", "tau0": 1.0, "gamma": 0.5, "heads": 1},
    "sde": {"samples": 2000, "dt": 1e-3},
    "network": {"widths": [128], "samples": 1000, "reference_widths": [128], "reference_samples": 1000},
    "splitting": {"particles": 100, "repeats": 4, "below": 10},
    "collapse": {"samples": 0},
    "rare": {"gamma": 0.3, "particles": 300, "repeats": 4, "dt": 1e-3},
}
if SIZE == "ci":
    CONFIG |= {
        "grid": {**CONFIG["grid"], "tau0": [1.0, 2.0], "gamma": [0.5, 0.7]},
        "sde": {"samples": 200, "dt": 1 / 32},
        "network": {"widths": [32], "samples": 100, "reference_widths": [32], "reference_samples": 100},
        "splitting": {"particles": 20, "repeats": 2, "below": 2},
        "rare": {"gamma": 0.5, "particles": 20, "repeats": 2, "dt": 1 / 32},
    }

# %%
# Run the atlas into a scratch folder: its points run in two worker processes
# (any ``concurrent.futures`` executor can be passed as ``executor=``)
with tempfile.TemporaryDirectory() as tmp:
    atlas = run_atlas(os.path.join(tmp, "atlas"), size="default", config=CONFIG, workers=2, plots=False, progress=False)
rows = atlas["points"]

# %%
# The numbers: every point with its estimate, interval and verdict at P = 1e-3
print(
    f"{'method':<14}{'tau0':>6}{'gamma':>7}{'samples':>9}{'blown':>7}  {'P (best)':>10}  {'95% interval':<24}"
    f"{'from':<6}verdict"
)
for r in sorted(rows, key=lambda r: (r["method"], r["width"] or 0, r["tau0"], r["gamma"])):
    method = "SDE" if r["method"] == "sde" else f"network n={r['width']}"
    interval = f"[{r['best_low']:.3g}, {r['best_high']:.3g}]"
    unresolved = f" ({r['ams']})" if r["ams"].startswith("unresolved") else ""
    print(
        f"{method:<14}{r['tau0']:>6g}{r['gamma']:>7g}{r['samples']:>9}{r['blown']:>7}  {r['p_best']:>10.3g}  "
        f"{interval:<24}{r['best_method']:<6}{r['verdict']}{unresolved}"
    )
rare = atlas["rare"]
c = rare["config"]
print(
    f"\nrare point (tau0 = {c['tau0']}, gamma = {c['gamma']}, dt = {c['dt']}): P = {rare['p']:.3g}, "
    f"95% interval [{rare['ci_low']:.3g}, {rare['ci_high']:.3g}] from {rare['repeats']} splitting runs of "
    f"{rare['particles']} particles" + ("" if rare["resolved"] else f" -- UNRESOLVED ({rare['unresolved']} runs)")
)
print(f"relative error of one run {rare['rel_error_single']:.2f}, of the mean {rare['rel_error_mean']:.2f}")

# %%
# The figure: log10 P(blow-up by T) over (tau0, gamma), SDE and network, with the verdicts
tau0s, gammas = sorted(set(CONFIG["grid"]["tau0"])), sorted(set(CONFIG["grid"]["gamma"]))
fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
for ax, method in zip(axes, ("sde", "exact")):
    Z = np.full((len(gammas), len(tau0s)), np.nan)
    for r in rows:
        if r["method"] == method:
            i, j = gammas.index(r["gamma"]), tau0s.index(r["tau0"])
            Z[i, j] = np.log10(r["p_best"]) if r["p_best"] > 0 else np.nan
            value = f"{r['p_best']:.1e}" if r["p_best"] > 0 else f"none seen (< {r['best_high']:.0e})"
            ax.text(j, i, f"{value}\n{r['verdict']}", ha="center", va="center", fontsize=8, color="grey")
    im = ax.imshow(Z, origin="lower", cmap="magma_r", vmin=-7, vmax=0, aspect="auto")
    ax.set_xticks(range(len(tau0s)), [f"{v:g}" for v in tau0s])
    ax.set_yticks(range(len(gammas)), [f"{v:g}" for v in gammas])
    ax.set_xlabel("tau0")
    ax.set_ylabel("gamma")
    ax.set_title("SDE" if method == "sde" else f"network n = {CONFIG['network']['widths'][0]}")
fig.colorbar(im, ax=axes, label="log10 P(blow-up by T = 1)")
plt.show()
