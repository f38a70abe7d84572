"""Explicit network at large width: PyTorch CPU brute force vs shaped_transformer.

Runs both side by side in one process (so the ratio is measured under the same
load) for one shaped attention block and one shaped MLP block, m = 8 tokens,
n = 1024 .. 4096, float32 and float64, and prints the time per block and the
ratio: wall-clock time with --threads threads for both, and CPU time with one
thread for both (process_time; robust when the machine is shared, since it
counts only the work this process did).  Then runs a width-65536 network in a fresh subprocess (no torch loaded)
and reports its peak resident memory.

    PYTHONPATH=python python3 benchmarks/bench_explicit.py [--widths 1024 2048 4096]
        [--threads 2] [--repeats 3] [--wide-width 65536] [--wide-attention-only]

PyTorch is written the way a user would: torch.randn weights, then matmul.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time


def torch_attention(X, lam, gamma, tau0, dtype):
    import torch

    m, n = X.shape
    WQ = torch.randn(n, n, dtype=dtype)
    WK = torch.randn(n, n, dtype=dtype)
    WV = torch.randn(n, n, dtype=dtype)
    Q = X @ WQ / math.sqrt(n)
    K = X @ WK / math.sqrt(n)
    tau = tau0 * math.sqrt(n * n)
    A = torch.eye(m, dtype=dtype) + torch.softmax(Q @ K.T / tau, dim=1) - 1.0 / m
    return lam * X + gamma * A @ (X @ WV) / math.sqrt(n)


def torch_mlp(X, lam, gamma, c_plus, c_minus, dtype):
    import torch

    m, n = X.shape
    sp, sm = 1 + c_plus / math.sqrt(n), 1 + c_minus / math.sqrt(n)
    c = 2.0 / (sp * sp + sm * sm)
    W1 = torch.randn(n, n, dtype=dtype)
    W2 = torch.randn(n, n, dtype=dtype)
    K = X @ W1 / math.sqrt(n)
    phi = torch.where(K > 0, sp * K, sm * K)
    return lam * X + gamma * math.sqrt(c) * (phi @ W2) / math.sqrt(n)


def best_time(fn, repeats, clock=time.perf_counter):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = clock()
        fn()
        times.append(clock() - t)
    return min(times)


WIDE_SCRIPT = r"""
import json, resource, sys, time
import numpy as np
import shaped_transformer as st


def peak_mb():
    # VmHWM: this process's peak resident set (ru_maxrss is inherited across
    # execve on Linux, so it would report the parent's torch-sized peak).
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


n, layer, threads = int(sys.argv[1]), sys.argv[2] == "1", int(sys.argv[3])
net = st.shaped_transformer() if layer else st.Network([st.ShapedAttention()])
V0 = st.inputs.equicorrelated(8, 0.3)
before = peak_mb()
t = time.perf_counter()
res = st.simulate(net, V0=V0, width=n, depth=1, samples=1, seed=0, dtype="float32", threads=threads, progress=False)
dt = time.perf_counter() - t
print(json.dumps({"width": n, "blocks": len(net), "seconds": dt, "rss_before_mb": before,
                  "peak_rss_mb": peak_mb(), "finite": bool(np.isfinite(res.V).all())}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--widths", type=int, nargs="+", default=[1024, 2048, 4096])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--wide-width", type=int, default=65536, help="0 skips the wide run")
    ap.add_argument(
        "--wide-attention-only",
        action="store_true",
        help="wide run: one attention block instead of a full shaped Transformer layer",
    )
    ap.add_argument("--json", help="also write the numbers to this file")
    args = ap.parse_args()

    import torch

    import shaped_transformer as st
    from shaped_transformer._core_loader import core

    m, gamma, tau0 = 8, 0.5, 1.0
    lam = math.sqrt(1 - gamma**2)
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  {platform.processor() or platform.machine()}  "
        f"cores={os.cpu_count()}  load={os.getloadavg()[0]:.1f}  torch {torch.__version__}  "
        f"normal kernel={core.normal_kernel_name()}  threads={args.threads}"
    )
    print(
        f"{'block':>10} {'dtype':>8} {'n':>6} {'torch ms':>10} {'ours ms':>10} {'ratio':>7}"
        f" | 1 thread, CPU time: {'torch ms':>9} {'ours ms':>8} {'ratio':>6}"
    )
    rows = []
    V0 = st.inputs.equicorrelated(m, 0.3)
    for dtype in ("float32", "float64"):
        tdt = torch.float32 if dtype == "float32" else torch.float64
        for n in args.widths:
            X0 = st.inputs.tokens_from_covariance(V0, n)
            Xt = torch.tensor(X0, dtype=tdt)
            for name, tfn, block in [
                (
                    "attention",
                    lambda: torch_attention(Xt, lam, gamma, tau0, tdt),
                    st.ShapedAttention(tau0=tau0, gamma=gamma),
                ),
                ("mlp", lambda: torch_mlp(Xt, lam, gamma, 0.0, -1.0, tdt), st.ShapedMLP(gamma=gamma)),
            ]:
                net = st.Network([block])

                def ours(threads):
                    return lambda: st.simulate(
                        net, X0=X0, depth=1, samples=1, seed=0, dtype=dtype, threads=threads, progress=False
                    )

                torch.set_num_threads(args.threads)
                t_torch = best_time(tfn, args.repeats)
                t_ours = best_time(ours(args.threads), args.repeats)
                torch.set_num_threads(1)
                c_torch = best_time(tfn, args.repeats, time.process_time)
                c_ours = best_time(ours(1), args.repeats, time.process_time)
                rows.append(
                    dict(
                        block=name,
                        dtype=dtype,
                        n=n,
                        torch_ms=1e3 * t_torch,
                        ours_ms=1e3 * t_ours,
                        ratio=t_torch / t_ours,
                        torch_cpu_ms=1e3 * c_torch,
                        ours_cpu_ms=1e3 * c_ours,
                        cpu_ratio=c_torch / c_ours,
                    )
                )
                print(
                    f"{name:>10} {dtype:>8} {n:>6} {1e3 * t_torch:>10.1f} {1e3 * t_ours:>10.1f} {t_torch / t_ours:>7.1f}"
                    f" | {'':>19} {1e3 * c_torch:>9.1f} {1e3 * c_ours:>8.1f} {c_torch / c_ours:>6.1f}",
                    flush=True,
                )

    wide = None
    if args.wide_width:
        env = dict(os.environ)
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                WIDE_SCRIPT,
                str(args.wide_width),
                "0" if args.wide_attention_only else "1",
                str(args.threads),
            ],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        wide = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"# width {wide['width']}: {wide['blocks']} block(s), {wide['seconds']:.1f} s, peak RSS "
            f"{wide['peak_rss_mb']:.0f} MB (peak before the run, interpreter and imports: {wide['rss_before_mb']:.0f} MB), "
            f"finite={wide['finite']}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "wide": wide}, f, indent=1)


if __name__ == "__main__":
    main()
