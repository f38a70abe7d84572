"""
PyTorch's TransformerEncoder against the shaped modules
=======================================================

:func:`shaped_transformer.torch.probe` records the token covariance
V = X X^T / n after every layer of any torch model, over many random
initializations.  Here it probes PyTorch's own ``nn.TransformerEncoder`` (post-LN,
its default, and pre-LN) and the shaped Transformer of
:mod:`shaped_transformer.torch` built by
:func:`~shaped_transformer.torch.from_network`, all at width n and depth n
(T = 1, 4 heads, m = 8 tokens, rho0 = 0.3), and compares their token correlations
with the shaped Transformer's covariance SDE.  The torch encoders collapse towards
correlation 1; the shaped modules follow the SDE.

This example needs PyTorch (``pip install 'shaped-transformer[torch]'``); the
gallery leaves it out when torch is not installed.
"""

import os
import warnings

import matplotlib.pyplot as plt
import numpy as np

try:
    import torch
    from torch import nn
except ImportError:  # pragma: no cover - the gallery and its test skip this example
    raise SystemExit("this example needs PyTorch: pip install 'shaped-transformer[torch]'") from None

import shaped_transformer as st
from shaped_transformer import analysis as an
from shaped_transformer import torch as stt

SIZE = os.environ.get("SHAPED_TRANSFORMER_GALLERY_SIZE", "full")  # "ci": a reduced run for the tests
if SIZE not in ("full", "ci"):
    raise ValueError(f"SHAPED_TRANSFORMER_GALLERY_SIZE must be 'full' or 'ci', got {SIZE!r}")
WIDTH, INITS, PATHS, BOOTSTRAP = (64, 100, 4000, 300) if SIZE == "full" else (16, 8, 200, 50)
M, RHO0, HEADS = 8, 0.3, 4
torch.set_num_threads(1)  # small tensors: more threads only contend
warnings.simplefilter("ignore", st.BlowUpWarning)  # counted below


def torch_encoder(norm_first: bool) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        WIDTH, nhead=HEADS, dim_feedforward=WIDTH, dropout=0.0, batch_first=True, norm_first=norm_first
    )
    return nn.TransformerEncoder(layer, WIDTH, enable_nested_tensor=False)


# %%
# Probe each model over INITS initializations; the SDE of the shaped Transformer
V0 = st.inputs.equicorrelated(M, RHO0)
X0 = torch.tensor(st.inputs.tokens_from_covariance(V0, WIDTH), dtype=torch.float32)[None]  # (1, m, n)
net = st.shaped_transformer(heads=HEADS, tau0=1.0, gamma=0.5)
models = {
    "torch post-LN": torch_encoder(norm_first=False),
    "torch pre-LN": torch_encoder(norm_first=True),
    "shaped (torch modules)": stt.from_network(net, width=WIDTH, depth=WIDTH),
}
runs = {name: stt.probe(model, X0, samples=INITS, seed=0, blowup=1e4) for name, model in models.items()}
sde = st.solve_sde(
    net, V0=V0, T=1.0, dt=1.0 / (8 * WIDTH), paths=PATHS, save_at=np.arange(WIDTH + 1) / WIDTH, seed=0, progress=False
)

# %%
# The numbers: the mean token correlation through depth, and the distance of the
# law of rho_T from the SDE's (95% basic bootstrap interval)
marks = [0, WIDTH // 4, WIDTH // 2, WIDTH]
print(f"m = {M}, n = {WIDTH}, depth {WIDTH} (T = 1), {HEADS} heads, {INITS} initializations, SDE {PATHS} paths")
print(f"{'mean token correlation':<26}" + "".join(f"  t={k / WIDTH:<6.2f}" for k in marks) + "  stopped")
for name, res in [*runs.items(), ("SDE (shaped)", sde)]:
    rho = an.mean_correlation(res.V)
    print(
        f"{name:<26}"
        + "".join(f"  {np.nanmean(rho[:, k]):<8.3f}" for k in marks)
        + f"  {int(res.exploded.sum())}/{res.samples}"
    )
for name, res in runs.items():
    w1 = an.compare(res, sde, bootstrap=BOOTSTRAP, seed=1)["wasserstein1"]
    print(f"W1(rho_T) {name:<24} to the SDE: {w1.value:.3f} [{w1.low:.3f}, {w1.high:.3f}]")

# %%
# The figure: median token correlation through depth, with the 25-75% band
fig, ax = plt.subplots(figsize=(6.5, 4))
for i, (name, res) in enumerate([*runs.items(), ("SDE (shaped)", sde)]):
    s = an.summarize(an.off_diagonal(an.correlations(res.V)), t=res.t)
    ax.plot(s.t, s.median, color=f"C{i}", label=name, ls="--" if name.startswith("SDE") else "-")
    ax.fill_between(s.t, s.quantile(0.25), s.quantile(0.75), color=f"C{i}", alpha=0.2, lw=0)
ax.set_xlabel("t = layer / width")
ax.set_ylabel("token correlation")
ax.set_ylim(-1.05, 1.05)
ax.legend(fontsize=8)
plt.show()
