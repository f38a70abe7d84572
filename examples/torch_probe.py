"""Which Transformer collapses at initialization?  Probe torch models against the SDE.

Runs, at width n and depth n (T = 1), many random initializations of
  * torch's own nn.TransformerEncoder (post-LN, its default, and pre-LN),
  * the shaped Transformer of shaped_transformer.torch,
records V = X X^T / n after every layer with shaped_transformer.torch.probe, and
compares the token correlations with the shaped Transformer's covariance SDE
(and with the exact covariance chain of the same width).

    pip install '.[torch]'
    python examples/torch_probe.py            # n = 64, 200 initializations: about a minute of one core
    python examples/torch_probe.py --quick    # n = 32, 50 initializations
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from torch import nn

import shaped_transformer as st
from shaped_transformer import torch as stt


def torch_encoder(n: int, depth: int, heads: int, norm_first: bool) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        n, nhead=heads, dim_feedforward=n, dropout=0.0, batch_first=True, norm_first=norm_first
    )
    return nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--tokens", type=int, default=8)
    ap.add_argument("--inits", type=int, default=200, help="random initializations per torch model")
    ap.add_argument("--paths", type=int, default=4000, help="SDE paths")
    ap.add_argument("--quick", action="store_true", help="width 32, 50 initializations, 1000 SDE paths")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.quick:
        args.width, args.inits, args.paths = 32, 50, 1000
    n, m = args.width, args.tokens
    depth, heads, rho0 = n, 4, 0.3
    torch.set_num_threads(1)  # small tensors: more threads only contend
    warnings.simplefilter("ignore", st.BlowUpWarning)  # the table counts them

    V0 = st.inputs.equicorrelated(m, rho0)
    X0 = torch.tensor(st.inputs.tokens_from_covariance(V0, n), dtype=torch.float32)[None]  # (1, m, n)
    net = st.shaped_transformer(heads=heads, tau0=1.0, gamma=0.5)

    runs: dict[str, st.Result] = {}
    timing: dict[str, float] = {}
    models = {
        "torch post-LN": torch_encoder(n, depth, heads, norm_first=False),
        "torch pre-LN": torch_encoder(n, depth, heads, norm_first=True),
        "shaped (torch)": stt.from_network(net, width=n, depth=depth),
    }
    for name, model in models.items():
        t0 = time.perf_counter()
        runs[name] = stt.probe(model, X0, samples=args.inits, seed=args.seed, blowup=1e4)
        timing[name] = time.perf_counter() - t0
    t0 = time.perf_counter()
    runs["exact chain"] = st.simulate(
        net, V0=V0, width=n, depth=depth, samples=2000, method="exact", seed=args.seed, blowup=1e4
    )
    timing["exact chain"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    sde = st.solve_sde(
        net,
        V0=V0,
        T=1.0,
        dt=1.0 / (8 * n),
        paths=args.paths,
        scheme="tamed_euler",
        save_at=np.arange(depth + 1) / n,
        seed=args.seed,
        blowup=1e4,
    )
    timing["SDE"] = time.perf_counter() - t0

    print(f"m = {m} tokens, width n = {n}, depth {depth} (T = 1), rho0 = {rho0}, H = {heads}")
    print(f"shaped: tau0 = 1, gamma = 0.5; SDE: tamed Euler, dt = 1/{8 * n}, {args.paths} paths\n")
    marks = [0, depth // 4, depth // 2, depth]
    head = "".join(f"  t={k / n:<5.2f}" for k in marks)
    print(f"{'mean token correlation':<24}{head}   eff. rank at T=1   exploded   time")
    for name, res in list(runs.items()) + [("SDE", sde)]:
        rho = st.analysis.mean_correlation(res.V)  # (samples, saved)
        cols = "".join(f"  {np.nanmean(rho[:, k]):<7.3f}" for k in marks)
        er = np.nanmean(st.analysis.effective_rank(res.V[:, -1]))
        print(f"{name:<24}{cols}   {er:<17.2f}  {int(res.exploded.sum()):>4}/{res.samples:<5}  {timing[name]:.1f}s")

    print("\ndistance of the law of rho_T (T = 1) from the SDE's, 95% bootstrap CI:")
    for name, res in runs.items():
        d = st.analysis.compare(res, sde, bootstrap=300, seed=args.seed)
        w, k = d["wasserstein1"], d["ks"]
        print(
            f"  {name:<16} W1 = {w.value:.3f} [{w.low:.3f}, {w.high:.3f}]   KS = {k.value:.3f} [{k.low:.3f}, {k.high:.3f}]"
        )


if __name__ == "__main__":
    main()
