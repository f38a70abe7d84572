"""
Convergence in width at fixed T = depth / width
===============================================

The covariance SDE is the limit of the network as the width n grows with the
depth d = T n.  A network of width n differs from it by terms that vanish as n
grows; this example measures two of them against n at T = 1, where the attention's
physics is visible (one head, tau0 = 0.7, gamma = 0.6, m = 4, rho0 = 0.3):

* the probability of blow-up by T (max diag V > 1e4, the stopping rule of both
  sides): finite networks blow up later than the SDE, so their probability
  approaches the SDE's from below;
* given survival, the Wasserstein-1 distance between the laws of the token
  correlation rho_T.

Each is fitted by a least-squares line on log-log axes
(:func:`shaped_transformer.analysis.loglog_slope`); the slope's interval says
whether a decrease is resolved.  A distance that has reached the noise floor of
the sample sizes stops decreasing: a slope whose interval includes 0 then says
"at the noise floor", not "no convergence".
"""

import os
import warnings

import matplotlib.pyplot as plt
import numpy as np

import shaped_transformer as st
from shaped_transformer import analysis as an

SIZE = os.environ.get("SHAPED_TRANSFORMER_GALLERY_SIZE", "full")  # "ci": a reduced run for the tests
if SIZE not in ("full", "ci"):
    raise ValueError(f"SHAPED_TRANSFORMER_GALLERY_SIZE must be 'full' or 'ci', got {SIZE!r}")
if SIZE == "full":
    WIDTHS, SAMPLES, PATHS, STEPS, BOOTSTRAP = [64, 128, 256, 512, 1024], 4000, 8000, 1024, 200
else:
    WIDTHS, SAMPLES, PATHS, STEPS, BOOTSTRAP = [16, 32, 64], 300, 600, 64, 50
warnings.simplefilter("ignore", st.BlowUpWarning)  # the blow-ups are counted below

net = st.Network([st.ShapedAttention(heads=1, tau0=0.7, gamma=0.6)])
V0 = st.inputs.equicorrelated(4, 0.3)

# %%
# The SDE (Euler-Maruyama) and the exact chain at each width
sde = st.solve_sde(net, V0=V0, T=1.0, steps=STEPS, paths=PATHS, seed=1, save_at=[0.0, 1.0], progress=False)
networks = {
    n: st.simulate(
        net, V0=V0, width=n, depth=n, samples=SAMPLES, method="exact", seed=100 + n, save_at=[0, n], progress=False
    )
    for n in WIDTHS
}

# %%
# The numbers: the blow-up probability and its gap to the SDE (Newcombe
# interval), and the distance of rho_T given survival (basic bootstrap interval)
k_sde, n_sde, p_sde = an.blowup_probability(sde)
print(
    f"SDE: P(blow-up by T = 1) = {p_sde.value:.4f} [{p_sde.low:.4f}, {p_sde.high:.4f}] ({n_sde} paths, dt = 1/{STEPS})"
)
gaps, w1s = [], []
for n, res in networks.items():
    k, total, p = an.blowup_probability(res)
    gap = an.newcombe_interval(k_sde, n_sde, k, total)
    w1 = an.wasserstein(an.final_pairs(res), an.final_pairs(sde), bootstrap=BOOTSTRAP, seed=n)
    gaps.append(gap)
    w1s.append(w1)
    print(
        f"n = {n:>5}: P = {p.value:.4f} [{p.low:.4f}, {p.high:.4f}], SDE - network = {gap.value:+.4f} "
        f"[{gap.low:+.4f}, {gap.high:+.4f}]; W1(rho_T) = {w1.value:.4f} [{w1.low:.4f}, {w1.high:.4f}]"
    )
slopes = {
    "P(blow-up) gap": an.loglog_slope(WIDTHS, [g.value for g in gaps]),
    "W1 of rho_T": an.loglog_slope(WIDTHS, [d.value for d in w1s]),
}
for name, s in slopes.items():
    if s is None:
        print(f"{name}: fewer than three positive values, no slope")
    else:
        trend = "decreases" if s.high < 0 else ("increases" if s.low > 0 else "no trend resolved")
        print(f"{name}: log-log slope {s.value:.2f} [{s.low:.2f}, {s.high:.2f}] (95%): {trend}")

# %%
# The figure: both against width on log-log axes, with the fitted lines
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
for ax, (name, ivs) in zip(axes, (("P(blow-up) gap", gaps), ("W1 of rho_T", w1s))):
    w = np.array(WIDTHS, dtype=float)
    v = np.array([iv.value for iv in ivs])
    low = np.array([iv.low if iv.low > 0 else iv.value for iv in ivs])  # no lower end at 0 on a log axis
    high = np.array([iv.high for iv in ivs])
    ok = v > 0
    ax.errorbar(w[ok], v[ok], yerr=[v[ok] - low[ok], high[ok] - v[ok]], fmt="o", capsize=3)
    s = slopes[name]
    if s is not None:
        b = np.mean(np.log(v[ok])) - s.value * np.mean(np.log(w[ok]))
        ax.plot(w, np.exp(b) * w**s.value, "k--", label=f"slope {s.value:.2f} [{s.low:.2f}, {s.high:.2f}]")
        ax.legend()
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("width n (depth = n)")
    ax.set_title(name)
axes[0].set_ylabel("SDE minus network")
axes[1].set_ylabel("distance to the SDE")
plt.show()
