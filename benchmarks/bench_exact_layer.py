"""Cost of one layer of the per-sample exact chain (shaped attention with H heads +
shaped MLP, width n) and of its parts, with the large products in the portable build
and in the build for this CPU (AVX2 / AVX-512, gemm.hpp), in one run
(docs/performance.md, "Per-sample exact layer: the products' instruction set").

    PYTHONPATH=python python benchmarks/bench_exact_layer.py [--build build/dev]
        [--sizes 64,128] [--heads 8] [--width 1024] [--min-seconds 1]

It compiles bench_exact_layer.cpp against the core library of ``--build`` and runs it
twice per m, one thread each: with SHAPED_TRANSFORMER_KERNEL=scalar (the portable
products, and the portable normal generator too) and without (the widest builds this
CPU runs), then times NumPy's m x m product (OpenBLAS, one thread).  With
``--baseline-build`` (and ``--baseline-include``, its headers) it first runs the same
program compiled against another core, e.g. one from before the SIMD products: the
speed-up column is then against it (else against the first row).  CPU seconds (the machine is shared): quote the
ratios, measured in the same run.  The parts: "products" is the layer's m x m
products and the m x (H m) product C C^T, at the measured cost of one each: 4 per
head with a triangular factor (L_in B_h, then E Z_h and L_in (E Z_h)^T, A_h L_in) and
10 more triangular or symmetric (the value part's P = K Z, K B, L P^T, P P^T, F F^T,
and the MLP's five), each costed as one with a triangular factor; a core from before
the value part's one root (no ``value_root`` in its wishart_quad.hpp) is costed with
its own count, 2 per head of full matrices (C_h Z_h, (L_in M_h) L_in^T) and 3 per head
and 9 more triangular.  "MLP Gram" is the MLP's O(m^2 n) Gram.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one thread, as the core's step

import argparse
import subprocess
import time
from pathlib import Path

from bench_multihead_step import ROOT, eigen_include, numpy_gemm_seconds

HERE = Path(__file__).resolve().parent


def compile_bench(build: Path, include: Path, exe: Path) -> Path:
    lib = build / "libshaped_transformer_core.a"
    if not lib.is_file():
        raise SystemExit(f"{lib} not found: build the core first (cmake --build; see CONTRIBUTING or the README)")
    src = HERE / "bench_exact_layer.cpp"
    if not exe.is_file() or exe.stat().st_mtime < max(src.stat().st_mtime, lib.stat().st_mtime):
        inc = [f"-I{include}", f"-I{eigen_include()}"]
        subprocess.run(
            ["c++", "-std=c++17", "-O3", "-DNDEBUG", *inc, str(src), str(lib), "-lpthread", "-o", str(exe)], check=True
        )
    return exe


def numpy_gemm_cpu_seconds(m: int, min_s: float) -> float:
    return numpy_gemm_seconds(m, min_s, time.process_time)


def run(exe: Path, level: str, H: int, n: int, min_s: float, m: int) -> dict[str, float | str]:
    env = dict(os.environ)
    env.pop("SHAPED_TRANSFORMER_KERNEL", None)
    if level:
        env["SHAPED_TRANSFORMER_KERNEL"] = level
    out = subprocess.run(
        [str(exe), str(H), str(n), str(min_s), str(m)], check=True, capture_output=True, text=True, env=env
    ).stdout
    f: dict[str, float | str] = {}
    for kv in out.split():
        k, v = kv.split("=")
        f[k] = v if k == "products" else float(v)
    return f


def one_root(include: Path) -> bool:
    """Whether the core of these headers draws the value part from one root K
    (wishart_quad.hpp's value_root): its products' count (module docstring)."""
    quad = include / "shaped_transformer" / "wishart_quad.hpp"
    return quad.is_file() and "value_root" in quad.read_text()


def parts(f: dict, H: int, root: bool = True) -> tuple[float, float, float]:
    """(layer, products, MLP Gram) in seconds; root: the core draws P = K Z (one_root)."""
    if root:
        products = (4 * H + 10) * f["trmm"] + f["cct"]
    else:
        products = 2 * H * f["gemm"] + (3 * H + 9) * f["trmm"] + f["cct"]
    return f["attention"] + f["mlp"], products, f["mlp_gram"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=str(ROOT / "build" / "dev"))
    ap.add_argument("--sizes", default="64,128")
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--min-seconds", type=float, default=1.0)
    ap.add_argument("--baseline-build", help="also time the core of this build (e.g. one of an earlier commit)")
    ap.add_argument("--baseline-include", help="its headers (default: cpp/include of the checkout around it)")
    args = ap.parse_args()
    build = Path(args.build)
    exe = compile_bench(build, ROOT / "cpp" / "include", build / "bench_exact_layer")
    base_exe, base_root = None, True
    if args.baseline_build:
        bb = Path(args.baseline_build).resolve()
        inc = Path(args.baseline_include) if args.baseline_include else bb.parent.parent / "cpp" / "include"
        base_exe = compile_bench(bb, inc, build / "bench_exact_layer_baseline")
        base_root = one_root(inc)
    print(f"load averages at start: {os.getloadavg()}", flush=True)
    H, n = args.heads, args.width
    rows = []
    for m in [int(x) for x in args.sizes.split(",")]:
        g = numpy_gemm_cpu_seconds(m, args.min_seconds / 4)
        runs = [run(base_exe, "", H, n, args.min_seconds, m)] if base_exe else []
        runs += [run(exe, "scalar", H, n, args.min_seconds, m), run(exe, "", H, n, args.min_seconds, m)]
        gemm = min(g, numpy_gemm_cpu_seconds(m, args.min_seconds / 4))
        print(f"m={m} numpy_gemm={gemm:.6e}", *(f"  {f}" for f in runs), sep="\n", flush=True)
        rows.append((m, gemm, runs))
    print(f"load averages at end: {os.getloadavg()}")
    print(f"\nH = {H}, n = {n}, one thread; CPU-ms per layer and sample, (in brackets) in NumPy m x m dgemms\n")
    print("| m | NumPy dgemm | products | layer | products' share | MLP Gram | rest | speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    for m, gemm, runs in rows:
        base = parts(runs[0], H, base_root if base_exe else True)[0]
        for i, f in enumerate(runs):
            layer, products, gram = parts(f, H, base_root if base_exe and i == 0 else True)
            print(
                f"| {m} | {gemm * 1e3:.3f} | {f['products']} | {layer * 1e3:.2f} ({layer / gemm:.0f}) | "
                f"{products * 1e3:.2f} ({products / layer:.0%}) | {gram * 1e3:.2f} ({gram / layer:.0%}) | "
                f"{(layer - products - gram) * 1e3:.2f} | {base / layer:.2f} |"
            )


if __name__ == "__main__":
    main()
