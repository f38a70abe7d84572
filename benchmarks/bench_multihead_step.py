"""Cost of the exact chain's multi-head attention step against the number of tokens m,
the m x m Wishart value part (today) against the Hm x Hm one (earlier versions), with
NumPy's m x m dgemm as the yardstick, all in one run (docs/performance.md,
"Multi-head exact step").

    PYTHONPATH=python python benchmarks/bench_multihead_step.py [--build build/dev]
        [--sizes 64,128,256,512] [--heads 8] [--width 1024] [--min-seconds 1]

It compiles bench_multihead_step.cpp against the core library of ``--build`` (the
static library of a CMake build; the same -O3 as the core), runs it on one thread and
times NumPy's m x m product on one OpenBLAS thread in between.  Columns: seconds per
call of the whole step (``exact_block``, one block, one sample), of its value part
drawn the new way and the old way, the old whole step (the new step minus the new
value part plus the old: the rest of the step is the same code), and each as a
multiple of one NumPy dgemm of the same m.  Timings on a shared machine: quote the
ratios, which are measured in the same run.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one thread, as the core's step

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def eigen_include() -> str:
    import cmeel  # noqa: F401  (cmeel-eigen: the Eigen the core builds with)

    prefix = Path(sys.prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    inc = prefix / "cmeel.prefix" / "include" / "eigen3"
    if not inc.is_dir():
        raise SystemExit(f"Eigen headers not found at {inc}")
    return str(inc)


def compile_bench(build: Path) -> Path:
    lib = build / "libshaped_transformer_core.a"
    if not lib.is_file():
        raise SystemExit(f"{lib} not found: build the core first (cmake --build; see CONTRIBUTING or the README)")
    exe = build / "bench_multihead_step"
    src = HERE / "bench_multihead_step.cpp"
    if not exe.is_file() or exe.stat().st_mtime < max(src.stat().st_mtime, lib.stat().st_mtime):
        cmd = [
            "c++",
            "-std=c++17",
            "-O3",
            "-DNDEBUG",
            f"-I{ROOT / 'cpp' / 'include'}",
            f"-I{eigen_include()}",
            str(src),
            str(lib),
            "-lpthread",
            "-o",
            str(exe),
        ]
        subprocess.run(cmd, check=True)
    return exe


def numpy_gemm_seconds(m: int, min_s: float, clock=time.perf_counter) -> float:
    """Seconds of `clock` (wall by default; time.process_time: CPU) per NumPy m x m product."""
    A = np.random.default_rng(0).standard_normal((m, m))
    calls, t0 = 0, clock()
    while True:
        A @ A
        calls += 1
        el = clock() - t0
        if el >= min_s:
            return el / calls


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=str(ROOT / "build" / "dev"))
    ap.add_argument("--sizes", default="64,128,256,512")
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--min-seconds", type=float, default=1.0)
    args = ap.parse_args()
    exe = compile_bench(Path(args.build))
    print(f"load averages at start: {os.getloadavg()}", flush=True)
    rows = []
    for m in [int(x) for x in args.sizes.split(",")]:
        g = numpy_gemm_seconds(m, args.min_seconds / 4)
        out = subprocess.run(
            [str(exe), str(args.heads), str(args.width), str(args.min_seconds), str(m)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        f = dict(kv.split("=") for kv in out.split())
        step, new, old = float(f["step_new"]), float(f["value_new"]), float(f["value_old"])
        g2 = numpy_gemm_seconds(m, args.min_seconds / 4)  # before and after: the machine's load moves
        gemm = min(g, g2)
        rows.append((m, step, step - new + old, new, old, gemm))
        print(f"m={m}: {out.strip()} numpy_gemm={gemm:.6e}", flush=True)
    print(f"load averages at end: {os.getloadavg()}")
    H, n = args.heads, args.width
    print(f"\nH = {H}, n = {n}, one thread; ms per call, and (in brackets) per NumPy m x m dgemm\n")
    print(
        "| m | NumPy dgemm | step, m x m value part | step, Hm x Hm value part | speed-up | value part new | "
        "value part old |"
    )
    print("|---|---|---|---|---|---|---|")
    for m, step, old_step, new, old, gemm in rows:
        print(
            f"| {m} | {gemm * 1e3:.3g} | {step * 1e3:.3g} ({step / gemm:.0f}) | {old_step * 1e3:.3g} "
            f"({old_step / gemm:.0f}) | {old_step / step:.2f} | {new * 1e3:.3g} ({new / gemm:.1f}) | "
            f"{old * 1e3:.3g} ({old / gemm:.0f}) |"
        )


if __name__ == "__main__":
    main()
