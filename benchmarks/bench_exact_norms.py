"""The exact chain of normalized shaped Transformer layers: the batched SIMD kernels
(exact/batch.hpp, one sample per lane) against the per-sample path, for every norm
placement, in one run (docs/norms.md section 8: LayerNorm's chain carries the state s
on both paths).

    PYTHONPATH=python python benchmarks/bench_exact_norms.py [--m 8] [--width 1024]
        [--depth 1024] [--samples 256] [--norms none,pre_rms,pre_layer,post_layer]
        [--layers transformer,attention]

One thread, CPU seconds (the machine may be shared: quote the ratios, measured in the
same run).  "transformer" is shaped attention + shaped MLP (the layer of docs/norms.md
section 7.3; the MLP's O(m^2 n) Gram costs the same on both paths), "attention" the
attention block alone.  It also prints the largest |V_batch - V_per-sample| / max |V|.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import shaped_transformer as st
from shaped_transformer._core_loader import core


def layer(kind: str, norm: str | None) -> st.Network:
    att = st.ShapedAttention(gamma=0.5, tau0=1.0, norm=norm)
    if kind == "attention":
        return st.Network([att])
    return st.Network([att, st.ShapedMLP(c_plus=0.0, c_minus=-1.0, gamma=0.5, norm=norm)])


def timed(net, V0, a, kernel: str):
    t0 = time.process_time()
    V, _ = core.simulate_exact(net, V0, a.width, a.depth, a.samples, 1, [a.depth], 1, 1e30, None, kernel)
    return time.process_time() - t0, np.asarray(V)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--m", type=int, default=8)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--depth", type=int, default=1024)
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--norms", default="none,pre_rms,pre_layer,post_layer")
    ap.add_argument("--layers", default="transformer,attention")
    a = ap.parse_args()
    V0 = st.inputs.equicorrelated(a.m, 0.3)
    print(f"m = {a.m}, width {a.width}, depth {a.depth}, {a.samples} samples, one thread; CPU seconds")
    print("| layer | norm | batch kernel | batch | per-sample | speed-up | max rel. diff |")
    print("|---|---|---|---|---|---|---|")
    for kind in a.layers.split(","):
        for norm in a.norms.split(","):
            net = layer(kind, None if norm == "none" else norm).to_core()
            name = core.exact_kernel(net, a.m, a.width)
            tb, Vb = timed(net, V0, a, "")
            tg, Vg = timed(net, V0, a, "generic")
            ok = ~np.isnan(Vg)
            rel = np.max(np.abs(Vb[ok] - Vg[ok])) / np.max(np.abs(Vg[ok]))
            print(f"| {kind} | {norm} | {name} | {tb:.2f} | {tg:.2f} | {tg / tb:.2f}x | {rel:.1e} |", flush=True)


if __name__ == "__main__":
    main()
