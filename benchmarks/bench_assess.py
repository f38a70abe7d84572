"""What ``st.assess`` costs today, per method, against the number of tokens m
(the baseline of the core work on long sequences, issue "Real sizes").

    PYTHONPATH=python python benchmarks/bench_assess.py [--sizes 8,16,32,64,128,256] [--heads 1,8]
        [--width 1024] [--threads 2] [--budget 20]

For each m and H it times, on the shaped Transformer layer (attention + shaped
MLP, tau0 = 1, gamma = 0.5, rho0 = 0.3):

1. the exact chain (``simulate(method="exact")``): seconds per layer and sample;
2. the SDE (Euler, ``solve_sde``): seconds per path and step;
3. the NumPy reference of the m x m multi-head attention step
   (tests/_reduced_numpy.py, ``attention_block``, batched over samples) against
   the core's attention block alone: what the O(H m^3) form gains before any
   C++ work;
4. NumPy's dgemm rate at m x m (one product, and a batch of 64), for the ratio
   flop / s of each method later;

and extrapolates the issue's question (48 layers, width 1024, 8 heads, 128 tokens,
2000 samples) from the per-step costs.  Each measurement runs for at least
``--budget`` / (number of cells) seconds or one step, whichever is longer.
Timings on a shared machine: the script prints the load averages it saw; quote
ratios measured in one run.  It pins OpenBLAS to one thread (set before NumPy
loads): OpenBLAS's idle threads spin after each NumPy product and, on 2 busy
cores, slowed the core's own threads by up to 3x at m = 128 in one run.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy loads: see the docstring

import argparse
import sys
import time
import warnings

import numpy as np

import shaped_transformer as st

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))


def timed(fn, min_s: float) -> tuple[float, int]:
    """(seconds per call, calls): repeats fn until min_s has passed (at least once)."""
    calls, t0 = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        el = time.perf_counter() - t0
        if el >= min_s:
            return el / calls, calls


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="8,16,32,64,128,256")
    ap.add_argument("--heads", default="1,8")
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--budget", type=float, default=20.0, help="rough seconds per table cell group")
    ap.add_argument("--skip-numpy", action="store_true")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    heads = [int(x) for x in args.heads.split(",")]
    n, thr = args.width, args.threads
    warnings.simplefilter("ignore")
    print(f"load averages at start: {os.getloadavg()}; threads = {thr}; width = {n}", flush=True)
    rows = []
    for H in heads:
        for m in sizes:
            V0 = st.inputs.equicorrelated(m, 0.3)
            net = st.shaped_transformer(heads=H, tau0=1.0, gamma=0.5)
            att = st.ShapedAttention(heads=H, tau0=1.0, gamma=0.5)
            cell = args.budget / 4

            samples = max(thr, 2)

            def exact(net=net, V0=V0, samples=samples):
                st.simulate(
                    net,
                    V0=V0,
                    width=n,
                    depth=1,
                    samples=samples,
                    method="exact",
                    seed=0,
                    threads=thr,
                    save_at=np.array([1]),
                    progress=False,
                )

            t_exact, _ = timed(exact, cell)
            t_exact /= samples

            def exact_att(att=att, V0=V0, samples=samples):
                st.simulate(
                    att,
                    V0=V0,
                    width=n,
                    depth=1,
                    samples=samples,
                    method="exact",
                    seed=0,
                    threads=thr,
                    save_at=np.array([1]),
                    progress=False,
                )

            t_att, _ = timed(exact_att, cell)
            t_att /= samples
            paths, steps = max(thr, 4), 10

            def sde(net=net, V0=V0, steps=steps, paths=paths):
                st.solve_sde(
                    net, V0=V0, T=0.01, steps=steps, paths=paths, seed=0, threads=thr, save_at=[0.01], progress=False
                )

            t_sde, _ = timed(sde, cell)
            t_sde /= paths * steps
            t_np = float("nan")
            if not args.skip_numpy:
                from _reduced_numpy import attention_block

                rng = np.random.default_rng(0)
                batch = max(2, min(256, int(2e7 / (H * m**3))))
                Vb = np.repeat(V0[None], batch, axis=0)
                t_np, _ = timed(
                    lambda rng=rng, Vb=Vb, H=H: attention_block(rng, Vb, n=n, heads=H, tau0=1.0, gamma=0.5), cell
                )
                t_np /= batch
            A = np.random.default_rng(0).standard_normal((m, m))
            t_mm, _ = timed(lambda A=A: A @ A, 0.05)
            Ab = np.random.default_rng(0).standard_normal((64, m, m))
            t_bmm, _ = timed(lambda Ab=Ab: Ab @ Ab, 0.05)
            gf = 2 * m**3 / t_mm / 1e9
            gfb = 64 * 2 * m**3 / t_bmm / 1e9
            rows.append((H, m, t_exact, t_att, t_np, t_sde, gf, gfb))
            print(
                f"H={H:2d} m={m:4d}: exact chain {t_exact * 1e3:10.3f} ms/layer-sample (attention block alone "
                f"{t_att * 1e3:9.3f} ms; NumPy m x m attention step {t_np * 1e3:9.3f} ms, ratio core/NumPy "
                f"{t_att / t_np:6.2f}); SDE {t_sde * 1e3:8.4f} ms/path-step; NumPy dgemm {gf:6.1f} GF/s "
                f"(batch of 64: {gfb:6.1f})",
                flush=True,
            )
    print(f"load averages at end: {os.getloadavg()}")
    # The question: 48 layers, width 1024, 8 heads, 128 tokens, 2000 samples, T = 48/1024, SDE 100 steps.
    for H, m, t_exact, _t_att, _t_np, t_sde, *_ in rows:
        if H == 8 and m == 128:
            ex = t_exact * 48 * 2000
            sd = t_sde * 100 * 2000
            print(
                f"issue question (H=8, m=128, n=1024, d=48, 2000 samples): exact chain {ex / 60:.1f} min, "
                f"SDE (100 steps) {sd / 60:.1f} min, on {thr} threads"
            )


if __name__ == "__main__":
    main()
