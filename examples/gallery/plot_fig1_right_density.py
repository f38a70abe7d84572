"""
Figure 1, right: the final-layer correlation, network against SDE
=================================================================

The paper's Figure 1 (right) compares the density of the token correlation at the
last layer of a shaped-attention network with that of its neural covariance SDE,
in the setting the paper states: width n = 200, depth d = 150 (so T = d / n = 0.75),
gamma = 1/sqrt(8), tau0 = 1, input correlation rho0 = 0.2, SDE step 0.01 and 2^12
samples.  (The number of tokens is not part of that statement; we use m = 8.)

The network side is the exact covariance chain, exact in law at any width
(docs/model.md section 4); the SDE is integrated by Euler-Maruyama.  Both are
stopped by the same rule (max diag V > 1e4), which no sample reaches here.  The
distance between the two laws is the Wasserstein-1 distance of the pooled token
pairs, with a basic bootstrap interval that resamples whole networks
(:func:`shaped_transformer.analysis.wasserstein`).
"""

import os

import matplotlib.pyplot as plt
import numpy as np

import shaped_transformer as st
from shaped_transformer import analysis as an
from shaped_transformer.plotting import density_figure

SIZE = os.environ.get("SHAPED_TRANSFORMER_GALLERY_SIZE", "full")  # "ci": a reduced run for the tests
if SIZE not in ("full", "ci"):
    raise ValueError(f"SHAPED_TRANSFORMER_GALLERY_SIZE must be 'full' or 'ci', got {SIZE!r}")
SAMPLES, BOOTSTRAP = (2**12, 400) if SIZE == "full" else (2**8, 100)
WIDTH, DEPTH, GAMMA, TAU0, RHO0, DT, M = 200, 150, 1 / np.sqrt(8), 1.0, 0.2, 0.01, 8

# %%
# The network (exact chain) and the SDE, from the same input covariance
net = st.Network([st.ShapedAttention(gamma=GAMMA, tau0=TAU0)])
V0 = st.inputs.equicorrelated(M, RHO0)
network = st.simulate(
    net, V0=V0, width=WIDTH, depth=DEPTH, samples=SAMPLES, method="exact", seed=0, save_at=[0, DEPTH], progress=False
)
sde = st.solve_sde(net, V0=V0, T=DEPTH / WIDTH, dt=DT, paths=SAMPLES, seed=1, progress=False)
rho_net, rho_sde = an.final_pairs(network), an.final_pairs(sde)

# %%
# The numbers: the two laws of rho_T and the distance between them
w1 = an.wasserstein(rho_net, rho_sde, bootstrap=BOOTSTRAP, level=0.95, seed=2)
ks = an.ks(rho_net, rho_sde, bootstrap=BOOTSTRAP, level=0.95, seed=2)
print(f"n = {WIDTH}, d = {DEPTH} (T = {DEPTH / WIDTH:g}), m = {M}, {SAMPLES} samples each, SDE dt = {DT}")
print(f"stopped by the blow-up rule: network {network.exploded.sum()}, SDE {sde.exploded.sum()}")
for name, x in (("network", rho_net), ("SDE", rho_sde)):
    q = np.quantile(x, [0.05, 0.5, 0.95])
    print(f"{name:<8} rho_T: mean {x.mean():.4f}, 5% {q[0]:.4f}, median {q[1]:.4f}, 95% {q[2]:.4f}")
print(
    f"W1(network, SDE) = {w1.value:.4f}, bias-corrected {w1.corrected:.4f}, "
    f"95% basic bootstrap interval [{w1.low:.4f}, {w1.high:.4f}] ({BOOTSTRAP} replicates)"
)
print(f"KS(network, SDE) = {ks.value:.4f}, 95% interval [{ks.low:.4f}, {ks.high:.4f}]")

# %%
# Two samples of one law are at a positive plug-in distance: the noise floor.
# Splitting the network's own samples in two shows its size at these sample sizes.
half = len(rho_net) // 2
floor = an.wasserstein(rho_net[:half], rho_net[half:], bootstrap=BOOTSTRAP, seed=3)
print(f"noise floor: W1(network, network) between two halves = {floor.value:.4f} [{floor.low:.4f}, {floor.high:.4f}]")

# %%
# The figure: kernel density estimates of rho_T (reflected at +-1)
fig, ax = plt.subplots(figsize=(6.5, 4))
density_figure(
    {f"shaped attention network (n = {WIDTH}, d = {DEPTH})": rho_net, "neural covariance SDE": rho_sde},
    reference="neural covariance SDE",
    bounds=(-1.0, 1.0),
    ax=ax,
    title=f"W1 = {w1.value:.4f} [{w1.low:.4f}, {w1.high:.4f}]",
)
plt.show()
