"""Thread scaling of solve_sde (default saving) and of the exact chain: wall time
on 1 and 2 threads, alternated and repeated in one run (best of `--repeat`), so
that a burst of load from other processes hits both sides.

    python benchmarks/bench_threads.py [--paths 20000] [--steps 1000] [--samples 2048] [--repeat 3]

The exact chain (n = d = 4000, attention) saves every 40th layer (101 times, like
the SDE's default) and runs 2048 samples by default: about 5 s on one thread and
2.6 s on two on idle cores, long enough that thread start-up does not matter (64
samples, 0.2 s, did not mean anything).  The MLP exact step's fused Gram kernel
has no same-run baseline here: at m <= 32 no option reaches the previous
per-tile Eigen path any more (docs/performance.md).

Meaningful only on otherwise idle cores (check `uptime` before and after; the script
prints the load averages it saw).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np

import shaped_transformer as st


def best_wall(fn, repeat: int) -> float:
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--paths", type=int, default=20000)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=2048)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", default="", help="run only the works whose name contains this text")
    a = ap.parse_args()
    warnings.simplefilter("ignore", st.BlowUpWarning)  # a few paths blow up at these parameters
    m = 8
    V0 = 0.7 * np.eye(m) + 0.3
    net = st.shaped_transformer(heads=1, tau0=1.0, gamma=0.5)
    att = st.ShapedAttention(tau0=1.0, gamma=0.5)
    print(f"load before: {os.getloadavg()}")
    works = {
        f"solve_sde, m = 8, {a.paths} paths x {a.steps} steps, default saving": lambda t: st.solve_sde(
            att, V0=V0, T=1.0, steps=a.steps, paths=a.paths, seed=1, threads=t, progress=False
        ),
        f"solve_sde, shaped Transformer layer (generic solver), {a.paths // 10} paths": lambda t: st.solve_sde(
            net, V0=V0, T=1.0, steps=a.steps, paths=a.paths // 10, seed=1, threads=t, progress=False
        ),
        f"exact chain, attention, n = d = 4000, {a.samples} samples, 101 saves": lambda t: st.simulate(
            att,
            V0=V0,
            width=4000,
            depth=4000,
            samples=a.samples,
            method="exact",
            seed=1,
            threads=t,
            save_every=40,
            progress=False,
        ),
    }
    for name, fn in works.items():
        if a.only not in name:
            continue
        fn(1)  # warm-up
        w1 = w2 = np.inf
        for _ in range(a.repeat):  # alternate 1 and 2 threads
            w1 = min(w1, best_wall(lambda: fn(1), 1))
            w2 = min(w2, best_wall(lambda: fn(2), 1))
        print(
            f"{name}: 1 thread {w1:.3f} s, 2 threads {w2:.3f} s, speed-up {w1 / w2:.2f}x "
            f"(load {os.getloadavg()[0]:.2f})",
            flush=True,
        )
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
