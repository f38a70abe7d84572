"""
Figure 1, left: rank collapse of standard attention
===================================================

The paper's Figure 1 (left) follows the mean token correlation through depth for
standard softmax attention, standard attention with pre-LayerNorm, and shaped
attention.  Standard attention drives every pair of tokens to correlation 1 (rank
collapse) within a few dozen layers, with or without pre-LN; shaped attention
(``A = I + Softmax(Y / tau) - 1 1^T / m`` with ``tau = tau0 sqrt(n n_k)``) keeps the
correlation near its input value all the way to depth = width.

Every network here has attention blocks only (``gamma = 1/sqrt(8)``, one head),
m = 8 tokens with input correlation 0.2, run with activations sampled exactly in
law (``method="law"``: LayerNorm is not rotation invariant, so the width-free exact
chain does not cover it).
"""

import os

import matplotlib.pyplot as plt
import numpy as np

import shaped_transformer as st
from shaped_transformer import analysis as an

SIZE = os.environ.get("SHAPED_TRANSFORMER_GALLERY_SIZE", "full")  # "ci": a reduced run for the tests
if SIZE not in ("full", "ci"):
    raise ValueError(f"SHAPED_TRANSFORMER_GALLERY_SIZE must be 'full' or 'ci', got {SIZE!r}")
WIDTH, SAMPLES = (256, 32) if SIZE == "full" else (32, 4)
GAMMA, M, RHO0 = 1 / np.sqrt(8), 8, 0.2

# %%
# The three networks, one layer each, run to depth = width (T = 1)
networks = {
    "standard attention": st.Network([st.StandardAttention(gamma=GAMMA)]),
    "standard attention, pre-LN": st.Network([st.StandardAttention(gamma=GAMMA, norm="pre_layer")]),
    "shaped attention": st.Network([st.ShapedAttention(gamma=GAMMA, tau0=1.0)]),
}
V0 = st.inputs.equicorrelated(M, RHO0)
curves = {}
for name, net in networks.items():
    res = st.simulate(net, V0=V0, width=WIDTH, depth=WIDTH, samples=SAMPLES, method="law", seed=0, progress=False)
    curves[name] = an.summarize(an.mean_correlation(res.V), t=np.arange(WIDTH + 1))

# %%
# The numbers: mean token correlation (over samples, +- one standard error) at a few depths
depths = [0, WIDTH // 16, WIDTH // 4, WIDTH // 2, WIDTH]
print(f"width n = {WIDTH}, {SAMPLES} networks each, m = {M}, rho0 = {RHO0}, gamma = 1/sqrt(8)")
print(f"{'layer':<28}" + "".join(f"{d:>16d}" for d in depths))
for name, s in curves.items():
    print(f"{name:<28}" + "".join(f"{s.mean[d]:>9.3f} +-{s.sem[d]:.3f}" for d in depths))

# %%
# The figure: median over samples and the 5-95% band
fig, ax = plt.subplots(figsize=(6.5, 4))
for i, (name, s) in enumerate(curves.items()):
    ax.plot(s.t, s.median, color=f"C{i}", label=name)
    ax.fill_between(s.t, s.quantile(0.05), s.quantile(0.95), color=f"C{i}", alpha=0.2, lw=0)
ax.set_xlabel("layer")
ax.set_ylabel("mean token correlation")
ax.set_ylim(0, 1.05)
ax.set_title(f"rank collapse at initialization (n = {WIDTH}, m = {M})")
ax.legend()
plt.show()
