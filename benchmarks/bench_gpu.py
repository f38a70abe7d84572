"""GPU benchmark of the CUDA backend against PyTorch CUDA (run by benchmarks/gpu_check.sh).

    SHAPED_TRANSFORMER_BUILD_DIR=build/gpu PYTHONPATH=python python benchmarks/bench_gpu.py [--quick]

1. One shaped attention block (m = 8, n_k = n), float32 and float64, n = 4096 ..
   262144 (and 1048576 in float32): simulate(method="explicit", device="cuda"), the
   weights generated inside the products, against PyTorch brute force (torch.randn
   weights, then matmul; each weight matrix freed after use, so the baseline needs
   one n x n matrix at a time, not three).
2. The attention SDE (m = 8, gamma 0.5, tau0 1, rho0 0.3, T = 1, dt = 1e-3, float64):
   solve_sde(device="cuda") at 1e4 .. 1e6 paths against a batched PyTorch Euler with
   the same structured noise (Cholesky per path, eigh where it fails), and 1e7
   paths x 100 steps as a "runs without failure" check; the CPU solver at 1e4
   paths for reference.
Prints one table (ratios are from the same run on the same card).
"""

from __future__ import annotations

import argparse
import math
import os
import time
import warnings

import numpy as np

import shaped_transformer as st
from shaped_transformer._core_loader import core

M, GAMMA, TAU0, RHO0 = 8, 0.5, 1.0, 0.3
ROWS: list[tuple[str, str, str, str, str]] = []


def row(what, size, ours, other, ratio):
    ROWS.append((what, size, ours, other, ratio))
    print(f"  {what:34s} {size:>14s} {ours:>16s} {other:>22s} {ratio:>8s}", flush=True)


def equicorrelated(m, rho):
    V = np.full((m, m), rho)
    np.fill_diagonal(V, 1.0)
    return V


def best_of(fn, reps):
    t = math.inf
    out = None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        t = min(t, time.perf_counter() - t0)
    return t, out


# ---- 1. attention block -------------------------------------------------------------------


def ours_block(n, dtype, reps):
    V0 = equicorrelated(M, RHO0)
    X0 = st.inputs.tokens_from_covariance(V0, n)
    net = st.ShapedAttention(gamma=GAMMA, tau0=TAU0)

    def go():
        return st.simulate(
            net, X0=X0, depth=1, samples=1, seed=1, dtype=dtype, device="cuda", blowup=1e30, save_at=[1], progress=False
        )

    return best_of(go, reps)[0]


def torch_block(torch, n, dtype, reps):
    tdt = torch.float32 if dtype == "float32" else torch.float64
    free, _ = torch.cuda.mem_get_info()
    if n * n * (4 if dtype == "float32" else 8) > 0.9 * free:
        return None
    gen = torch.Generator(device="cuda").manual_seed(0)
    X = torch.randn(M, n, device="cuda", dtype=tdt, generator=gen)
    C = torch.full((M, M), 1.0 / M, device="cuda", dtype=tdt)
    eye = torch.eye(M, device="cuda", dtype=tdt)
    lam = math.sqrt(1 - GAMMA**2)

    def go():
        W = torch.randn(n, n, device="cuda", dtype=tdt, generator=gen)
        Q = X @ W / math.sqrt(n)
        del W
        W = torch.randn(n, n, device="cuda", dtype=tdt, generator=gen)
        K = X @ W / math.sqrt(n)
        del W
        A = eye + torch.softmax(Q @ K.T / (TAU0 * n), dim=1) - C
        W = torch.randn(n, n, device="cuda", dtype=tdt, generator=gen)
        out = lam * X + GAMMA * (A @ (X @ W / math.sqrt(n)))
        del W
        torch.cuda.synchronize()
        return out

    try:
        go()  # warm-up (allocator, kernels)
        return best_of(go, reps)[0]
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return None


# ---- 2. SDE ----------------------------------------------------------------------------------


def torch_euler(torch, paths, steps, T=1.0):
    """Batched Euler-Maruyama of the attention SDE with the structured noise (float64)."""
    dt = T / steps
    dev, f64 = "cuda", torch.float64
    m = M
    P = torch.eye(m, device=dev, dtype=f64) - 1.0 / m
    V0 = torch.tensor(equicorrelated(m, RHO0), device=dev, dtype=f64)
    V = V0.expand(paths, m, m).clone()
    lost = torch.zeros(paths, dtype=torch.bool, device=dev)
    g2 = GAMMA**2
    c1, c2 = GAMMA * math.sqrt(2 - g2) / math.sqrt(2), g2 / (TAU0 * m)
    gen = torch.Generator(device=dev).manual_seed(0)
    for _ in range(steps):
        VP = V @ P
        PVP = P @ VP
        tr = PVP.diagonal(dim1=1, dim2=2).sum(-1)
        w = (PVP.diagonal(dim1=1, dim2=2) - tr[:, None] / m) / (2 * m)
        D = V.diagonal(dim1=1, dim2=2)[:, :, None] * w[:, None, :]
        trVPVP = (VP * VP.transpose(1, 2)).sum((1, 2))
        DV = D @ V
        b = g2 / TAU0**2 * (DV + DV.transpose(1, 2) + (trVPVP / m**2)[:, None, None] * V)
        L, info = torch.linalg.cholesky_ex(V)
        bad = info != 0
        if bool(bad.any()):
            wv, Qv = torch.linalg.eigh(V[bad])
            L[bad] = (Qv * wv.clamp_min(0).sqrt()[:, None, :]) @ Qv.transpose(1, 2)
        dZ = torch.randn(paths, m, m, device=dev, dtype=f64, generator=gen) * math.sqrt(dt)
        dX = torch.randn(paths, m, m, device=dev, dtype=f64, generator=gen) * math.sqrt(dt)
        Lt = L.transpose(1, 2)
        S = L @ dZ @ Lt
        Tm = L @ dX @ Lt @ P @ V
        V = V + b * dt + c1 * (S + S.transpose(1, 2)) + c2 * (Tm + Tm.transpose(1, 2))
        V = 0.5 * (V + V.transpose(1, 2))
        # blow-up rule of solve_sde (max diag V > 1e4 or non-finite): count the path as
        # lost and restart it from V0 so that no NaN reaches the factorisations
        badp = ~torch.isfinite(V).all(dim=2).all(dim=1) | (V.diagonal(dim1=1, dim2=2).amax(-1) > 1e4)
        if bool(badp.any()):
            lost |= badp
            V[badp] = V0
    torch.cuda.synchronize()
    return V, lost


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller sizes (a smoke test)")
    ap.add_argument("--no-torch", action="store_true")
    a = ap.parse_args()
    warnings.simplefilter("ignore", st.BlowUpWarning)
    info = core.cuda_device_info()
    try:
        import torch

        have_torch = (not a.no_torch) and torch.cuda.is_available()
    except ImportError:
        torch, have_torch = None, False
    print(
        f"GPU: {info['name']}, {info['total_bytes'] / 2**30:.0f} GiB; PyTorch: "
        f"{torch.__version__ if torch is not None else 'absent'}; CPU threads: {os.cpu_count()}"
    )
    print(f"  {'what':34s} {'size':>14s} {'ours (GPU)':>16s} {'PyTorch CUDA':>22s} {'ratio':>8s}")

    # warm-up: CUDA context, module load
    st.simulate(st.ShapedAttention(), V0=equicorrelated(M, RHO0), width=512, depth=1, device="cuda", progress=False)

    sizes = [4096, 16384, 65536] if a.quick else [4096, 8192, 16384, 32768, 65536, 131072, 262144]
    for dtype in ("float32", "float64"):
        ns = sizes + ([1048576] if dtype == "float32" and not a.quick else [])
        for n in ns:
            reps = 3 if n <= 65536 else 1
            t = ours_block(n, dtype, reps)
            tt = torch_block(torch, n, dtype, reps) if have_torch else None
            normals = 3 * n * n
            row(
                f"attention block {dtype}",
                f"n={n}",
                f"{t * 1e3:.1f} ms ({normals / t / 1e9:.0f} G/s)",
                f"{tt * 1e3:.1f} ms" if tt else ("does not fit" if have_torch else "-"),
                f"{tt / t:.1f}x" if tt else "-",
            )

    V0 = equicorrelated(M, RHO0)
    net = st.ShapedAttention(gamma=GAMMA, tau0=TAU0)
    kw = dict(T=1.0, dt=1e-3, save_at=[0.0, 1.0], seed=0, blowup=1e4, progress=False)
    cpu_paths = 2000 if a.quick else 10000
    t_cpu, r_cpu = best_of(lambda: st.solve_sde(net, V0=V0, paths=cpu_paths, device="cpu", **kw), 1)
    r_gpu_small = st.solve_sde(net, V0=V0, paths=cpu_paths, device="cuda", **kw)
    fin = np.isfinite(r_cpu.V).all(axis=(1, 2, 3))
    agree = float(np.nanmax(np.abs(r_cpu.V - r_gpu_small.V)) / np.nanmax(np.abs(r_cpu.V)))
    row(
        "SDE, CPU solver (all threads)", f"{cpu_paths:.0e} paths", "-", f"CPU {cpu_paths * 1000 / t_cpu:.2e} p-s/s", "-"
    )
    print(
        f"    CPU vs GPU on the same {cpu_paths} paths: max relative difference {agree:.1e}, "
        f"blow-ups {int((~fin).sum())} vs {int(np.sum(np.isfinite(r_gpu_small.exploded_at)))}"
    )
    for paths in [10**4, 10**5] if a.quick else [10**4, 10**5, 10**6]:
        t, r = best_of(lambda: st.solve_sde(net, V0=V0, paths=paths, device="cuda", **kw), 1)
        VT = r.V[:, -1]
        rho = VT[:, 0, 1] / np.sqrt(VT[:, 0, 0] * VT[:, 1, 1])
        ok = np.isfinite(rho)
        tt = None
        if have_torch:
            steps_t = 200
            try:
                t0 = time.perf_counter()
                torch_euler(torch, paths, steps_t)
                tt = (time.perf_counter() - t0) / steps_t * 1000  # per 1000 steps
            except Exception as e:  # noqa: BLE001 (cusolver's batched eigh has crashed at 1e6 paths)
                print(f"    PyTorch Euler at {paths} paths failed: {type(e).__name__}: {str(e)[:100]}")
                torch.cuda.empty_cache()
        row(
            "SDE Euler m=8 float64 (path-steps/s)",
            f"{paths:.0e} paths",
            f"{paths * 1000 / t:.2e}",
            f"{paths * 1000 / tt:.2e}" if tt else "-",
            f"{tt / t:.1f}x" if tt else "-",
        )
        print(
            f"    mean rho_T {rho[ok].mean():.4f} +- {rho[ok].std() / math.sqrt(ok.sum()):.4f}, "
            f"blown up {100 * (1 - ok.mean()):.2f}%"
        )
    big = 10**6 if a.quick else 10**7
    t, r = best_of(lambda: st.solve_sde(net, V0=V0, paths=big, device="cuda", **{**kw, "dt": 1e-2}), 1)
    row(
        "SDE Euler, 100 steps",
        f"{big:.0e} paths",
        f"{big * 100 / t:.2e} p-s/s",
        "-",
        "ok" if r.V.shape[0] == big else "FAIL",
    )

    print("\nTABLE")
    print("| what | size | ours (GPU) | PyTorch CUDA | ratio |")
    print("|---|---|---|---|---|")
    for w, s, o, p, q in ROWS:
        print(f"| {w} | {s} | {o} | {p} | {q} |")


if __name__ == "__main__":
    main()
