"""
Causal against bidirectional attention
======================================

With a causal mask, token i attends only to tokens 1..i, and the shaped head
centres the softmax by the uniform causal matrix (row i is 1/i on its first i
entries) instead of ``1 1^T / m`` (docs/causal.md).  The limit is still a
covariance SDE, but the tokens are no longer exchangeable: the first token sees
only itself, later ones average over more.  This example compares, token by
token at T = 1, the correlation of token i with the tokens before it and the
token's scale V_ii, and the probability of blow-up by T, for causal and
bidirectional shaped attention: the network (exact chain at n = 256) against its
SDE.

Shaped attention only, tau0 = 0.8, gamma = 0.5, m = 8, rho0 = 0.3, blow-up rule
max diag V > 1e4 on both sides (the statistics are given survival).
"""

import os
import warnings

import matplotlib.pyplot as plt
import numpy as np

import shaped_transformer as st
from shaped_transformer import analysis as an
from shaped_transformer.analysis import position_statistics

SIZE = os.environ.get("SHAPED_TRANSFORMER_GALLERY_SIZE", "full")  # "ci": a reduced run for the tests
if SIZE not in ("full", "ci"):
    raise ValueError(f"SHAPED_TRANSFORMER_GALLERY_SIZE must be 'full' or 'ci', got {SIZE!r}")
WIDTH, SAMPLES, PATHS, STEPS = (256, 2000, 4000, 1024) if SIZE == "full" else (32, 100, 200, 64)
M, RHO0, TAU0, GAMMA = 8, 0.3, 0.8, 0.5
warnings.simplefilter("ignore", st.BlowUpWarning)  # counted below

# %%
# Network and SDE, causal and bidirectional
V0 = st.inputs.equicorrelated(M, RHO0)
stats = {}
for causal in (True, False):
    net = st.Network([st.ShapedAttention(tau0=TAU0, gamma=GAMMA, causal=causal)])
    network = st.simulate(
        net,
        V0=V0,
        width=WIDTH,
        depth=WIDTH,
        samples=SAMPLES,
        method="exact",
        seed=2,
        save_at=[0, WIDTH],
        progress=False,
    )
    sde = st.solve_sde(net, V0=V0, T=1.0, steps=STEPS, paths=PATHS, seed=1, save_at=[0.0, 1.0], progress=False)
    name = "causal" if causal else "bidirectional"
    stats[name] = {
        "network": position_statistics(network),
        "SDE": position_statistics(sde),
        "drift": np.diag(st.sde.sde_drift(net, V0)),
        "runs": {"network": network, "SDE": sde},
    }

# %%
# The numbers, by token position: the attention drift of V_ii at V0, and at T = 1
# the mean correlation with the earlier tokens (+- one standard error) and the
# median scale V_ii
for name, s in stats.items():
    print(f"{name}: drift of V_ii at V0 {np.round(s['drift'], 4).tolist()}")
    for side in ("network", "SDE"):
        p = s[side]
        corr = " ".join(f"{v:.3f}+-{e:.3f}" for v, e in zip(p.token_mean[1:], p.token_se[1:]))
        print(f"  {side:<8} ({p.samples} kept, {p.dropped} blew up) corr with earlier tokens, i = 2..{M}: {corr}")
        print(f"  {side:<8} median V_ii, i = 1..{M}: {np.round(p.scale_median, 3).tolist()}")

# %%
# The blow-up probability by T = 1, causal minus bidirectional (Newcombe interval)
for side in ("network", "SDE"):
    (k1, n1, p1), (k2, n2, p2) = (an.blowup_probability(stats[name]["runs"][side]) for name in stats)
    d = an.newcombe_interval(k1, n1, k2, n2)
    print(
        f"{side:<8} P(blow-up by T): causal {p1.value:.4f}, bidirectional {p2.value:.4f}; "
        f"difference {d.value:+.4f} [{d.low:+.4f}, {d.high:+.4f}] ({'excludes' if d.excludes(0) else 'includes'} 0)"
    )

# %%
# The figure: by token position, network (points) against SDE (lines)
pos = np.arange(1, M + 1)
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
for (name, s), color in zip(stats.items(), ("C3", "C0")):
    net_, sde_ = s["network"], s["SDE"]
    axes[0].plot(pos, sde_.token_mean, "-", color=color, label=f"{name}, SDE")
    axes[0].errorbar(
        pos + 0.08,
        net_.token_mean,
        2 * net_.token_se,
        fmt="o",
        color=color,
        ms=4,
        capsize=2,
        label=f"{name}, network n={WIDTH}",
    )
    axes[1].plot(pos, sde_.scale_median, "-", color=color, label=f"{name}, SDE")
    axes[1].plot(pos + 0.08, net_.scale_median, "o", color=color, ms=4, label=f"{name}, network n={WIDTH}")
axes[0].axhline(RHO0, color="grey", lw=0.8, ls=":")
axes[0].set_title("mean correlation of token i with tokens 1..i-1 at T = 1")
axes[1].set_title("median V_ii at T = 1")
for ax in axes:
    ax.set_xlabel("token position i")
    ax.set_xticks(pos)
    ax.legend(fontsize=7)
plt.show()
