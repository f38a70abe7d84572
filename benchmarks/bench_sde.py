"""Covariance SDE and exact chain timings (docs/performance.md, "Exact chain and SDE").

    PYTHONPATH=python python benchmarks/bench_sde.py [--paths 1000] [--steps 1000] [--no-torch]
        [--summary-paths 1000000] [--summary-steps 100] [--sizes 8,32,128] [--skip-exact]

1. The shaped attention block's SDE (m = 8, gamma = 0.5, tau0 = 1, rho0 = 0.3),
   `paths` x `steps` Euler steps to T = 1, one thread, CPU time: solve_sde (the
   batched SIMD kernel), the generic per-path solver (the previous release's
   algorithm, kernel="generic"), a vectorized NumPy Euler-Maruyama with the same
   structured noise, and torchsde's Euler with general noise and the
   (m^2 x 2 m^2) diffusion matrix a user would build.  Path-steps per second per
   core and the fraction of the double-precision flop bound.
2. Threads: 1 and 2 threads with the default saving (and with save="summary").
3. save="summary" on `summary-paths` paths: peak resident memory of a child process.
4. m = 8, 32, 128: the SDE per path-step, the exact chain per block (batched kernel
   and per-sample path), the explicit network and the law sampler per block (n = 1024).
5. The exact chain for a shaped attention network at n = d = 10^5 (T = 1, m = 8),
   per sample: the batched SIMD kernel (exact/batch.hpp) and the per-sample path
   (kernel="generic") in the same run, 1 and 2 threads; the cost of one exact MLP
   block at that width.
Timings on a shared machine: quote the ratios measured in one run.
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings

import numpy as np

import shaped_transformer as st

M, GAMMA, TAU0, RHO0 = 8, 0.5, 1.0, 0.3


def numpy_euler(V0, paths, steps, T=1.0, seed=0):
    """Vectorized NumPy Euler-Maruyama of the attention SDE (docs/model.md section 5)."""
    rng = np.random.default_rng(seed)
    m = V0.shape[0]
    dt = T / steps
    P = np.eye(m) - 1.0 / m
    V = np.broadcast_to(V0, (paths, m, m)).copy()
    g2 = GAMMA**2
    lost = np.zeros(paths, bool)
    for _ in range(steps):
        VP = V @ P
        PVP = P @ VP
        tr = np.trace(PVP, axis1=1, axis2=2)
        w = (np.diagonal(PVP, axis1=1, axis2=2) - tr[:, None] / m) / (2 * m)
        D = np.diagonal(V, axis1=1, axis2=2)[:, :, None] * w[:, None, :]
        trVPVP = np.einsum("pij,pji->p", VP, VP)
        DV = D @ V
        b = g2 / TAU0**2 * (DV + np.swapaxes(DV, 1, 2) + (trVPVP / m**2)[:, None, None] * V)
        try:
            L = np.linalg.cholesky(V)
        except np.linalg.LinAlgError:
            wv, Q = np.linalg.eigh(V)
            L = Q * np.sqrt(np.clip(wv, 0, None))[:, None, :] @ np.swapaxes(Q, 1, 2)
        dZ = rng.standard_normal((paths, m, m)) * np.sqrt(dt)
        dX = rng.standard_normal((paths, m, m)) * np.sqrt(dt)
        S = L @ dZ @ np.swapaxes(L, 1, 2)
        Tm = L @ dX @ np.swapaxes(L, 1, 2) @ P @ V
        V = (
            V
            + b * dt
            + GAMMA * np.sqrt(2 - g2) / np.sqrt(2) * (S + np.swapaxes(S, 1, 2))
            + g2 / (TAU0 * m) * (Tm + np.swapaxes(Tm, 1, 2))
        )
        V = 0.5 * (V + np.swapaxes(V, 1, 2))
        bad = ~np.isfinite(V).all(axis=(1, 2)) | (np.abs(V).max(axis=(1, 2)) > 1e30)
        if bad.any():
            lost |= bad
            V[bad] = V0
    return V, int(lost.sum())


def torchsde_euler(V0, paths, steps, T=1.0, seed=0):
    import torch
    import torchsde

    torch.manual_seed(seed)
    m = V0.shape[0]
    Pm = torch.eye(m, dtype=torch.float64) - 1.0 / m
    g2 = GAMMA**2

    class SDE(torch.nn.Module):
        noise_type = "general"
        sde_type = "ito"

        @staticmethod
        def state(y):
            # paths that ran off (no blow-up handling in torchsde) are parked at I
            V = y.view(-1, m, m)
            bad = ~torch.isfinite(V).all(dim=(1, 2)) | (V.abs().amax(dim=(1, 2)) > 1e15)
            return torch.where(bad[:, None, None], torch.eye(m, dtype=V.dtype), V)

        def f(self, t, y):
            V = self.state(y)
            VP = V @ Pm
            PVP = Pm @ VP
            tr = torch.diagonal(PVP, dim1=1, dim2=2).sum(-1)
            w = (torch.diagonal(PVP, dim1=1, dim2=2) - tr[:, None] / m) / (2 * m)
            D = torch.diagonal(V, dim1=1, dim2=2)[:, :, None] * w[:, None, :]
            trVPVP = torch.einsum("pij,pji->p", VP, VP)
            DV = D @ V
            b = g2 / TAU0**2 * (DV + DV.transpose(1, 2) + (trVPVP / m**2)[:, None, None] * V)
            return b.reshape(-1, m * m)

        def g(self, t, y):
            # the (m^2 x 2 m^2) matrix mapping (dZ, dXi) to the noise increment
            V = self.state(y)
            V = 0.5 * (V + V.transpose(1, 2))
            wv, Q = torch.linalg.eigh(V)
            L = Q * wv.clamp_min(0).sqrt()[:, None, :] @ Q.transpose(1, 2)
            c1 = GAMMA * (2 - g2) ** 0.5 / 2**0.5
            Jz = c1 * (torch.einsum("pai,pbj->pabij", L, L) + torch.einsum("pbi,paj->pabij", L, L))
            R = L.transpose(1, 2) @ Pm @ V  # T = L Xi R
            c2 = g2 / (TAU0 * m)
            Jx = c2 * (torch.einsum("pai,pjb->pabij", L, R) + torch.einsum("pbi,pja->pabij", L, R))
            return torch.cat([Jz.reshape(-1, m * m, m * m), Jx.reshape(-1, m * m, m * m)], dim=2)

    y0 = torch.tensor(V0, dtype=torch.float64).reshape(1, -1).repeat(paths, 1)
    ts = torch.tensor([0.0, T], dtype=torch.float64)
    with torch.no_grad():
        ys = torchsde.sdeint(SDE(), y0, ts, method="euler", dt=T / steps)
    return ys[-1].view(-1, m, m)


def torch_finite(V):
    import torch

    return (torch.isfinite(V).all(dim=(1, 2)) & (V.abs().amax(dim=(1, 2)) <= 1e15)).numpy()


def sde_flops(m: int) -> float:
    """Floating-point operations of one batched-kernel path-step (one attention
    block): the products with the triangular factor L (R = L^T P V, dZ L^T, L Q)
    m^2 (m + 1) each, dXi R 2 m^3, the Cholesky m^3 / 3, drift and updates ~15 m^2."""
    return 3 * m * m * (m + 1) + 2 * m**3 + m**3 / 3 + 15 * m * m


def cpu_ghz() -> float:
    try:
        with open("/proc/cpuinfo") as f:
            mhz = [float(line.split(":")[1]) for line in f if line.startswith("cpu MHz")]
        return max(mhz) / 1e3 if mhz else float("nan")
    except OSError:
        return float("nan")


def timed(fn):
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t, time.process_time() - c


def summary_memory(paths: int, steps: int, threads: int | None) -> tuple[float, float, float]:
    """Peak RSS (MB) of a child process before and after a save="summary" run, and its wall time."""
    import subprocess
    import sys

    code = f"""
import time, numpy as np, shaped_transformer as st, warnings
warnings.simplefilter("ignore")
V0 = st.inputs.equicorrelated({M}, {RHO0})
net = st.ShapedAttention(gamma={GAMMA}, tau0={TAU0})
st.solve_sde(net, V0=V0, T=1.0, steps=2, paths=8, save="summary", progress=False)
def hwm():  # this process's peak RSS in MB (ru_maxrss would include the parent's, kept across exec)
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024
before = hwm()
t = time.perf_counter()
r = st.solve_sde(net, V0=V0, T=1.0, steps={steps}, paths={paths}, save="summary", threads={threads}, progress=False)
t = time.perf_counter() - t
after = hwm()
print(before, after, t, r.summary.mean("rho")[-1], int(r.summary.exploded[-1]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1]), float(out[2]), float(out[3]), int(out[4])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--paths", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--exact-width", type=int, default=100000)
    ap.add_argument("--summary-paths", type=int, default=1000000)
    ap.add_argument("--summary-steps", type=int, default=100)
    ap.add_argument("--sizes", default="8,32,128")
    ap.add_argument("--skip-exact", action="store_true")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    V0 = st.inputs.equicorrelated(M, RHO0)
    net = st.Network([st.ShapedAttention(heads=1, tau0=TAU0, gamma=GAMMA)])
    ps = args.paths * args.steps
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.processor() or platform.machine()}, "
        f"{len(__import__('os').sched_getaffinity(0))} cores; m = {M}, {args.paths} paths x {args.steps} steps"
    )

    # ---- 1. one thread, CPU time ----
    kw = dict(T=1.0, steps=args.steps, paths=args.paths, seed=0, save_at=[1.0], threads=1, progress=False)
    r, _, c_core = timed(lambda: st.solve_sde(net, V0=V0, **kw))
    from shaped_transformer._core_loader import core

    ss = np.array([args.steps])
    _, _, c_gen = timed(
        lambda: core.solve_sde(
            net.to_core(),
            V0,
            1.0 / args.steps,
            args.steps,
            ss,
            "euler",
            "clip",
            args.paths,
            0,
            1,
            1e30,
            None,
            "paths",
            "generic",
        )
    )
    (Vn, lost), _, c_np = timed(lambda: numpy_euler(V0, args.paths, args.steps))
    ghz = cpu_ghz()
    rate = ps / c_core
    peak = 16 * ghz * 1e9  # Zen 4: two 256-bit FMA pipes = 16 double flops per cycle
    print(
        f"solve_sde, kernel {r.info['kernel']}, 1 thread: {c_core:.3f} CPU-s = {c_core / ps * 1e6:.3f} us per path-step, "
        f"{rate / 1e6:.2f} M path-steps/s/core, {sde_flops(M) * rate / 1e9:.1f} GFLOP/s "
        f"= {sde_flops(M) * rate / peak:.0%} of {peak / 1e9:.0f} GFLOP/s at {ghz:.2f} GHz; blown-up {int(r.exploded.sum())}"
    )
    print(f"generic per-path solver (previous release): {c_gen:.3f} CPU-s; batched kernel {c_gen / c_core:.1f}x faster")
    print(f"NumPy Euler-Maruyama: {c_np:.3f} CPU-s (lost {lost}); solve_sde {c_np / c_core:.1f}x faster in CPU time")
    print(
        f"  E[rho_01(1)]: core {np.nanmean(r.finite().rho[:, -1, 0, 1]):.4f}, NumPy {np.nanmean(st.correlations(Vn)[:, 0, 1]):.4f}"
    )

    if not args.no_torch:
        try:
            Vt, t_t, c_t = timed(lambda: torchsde_euler(V0, args.paths, args.steps))
            lost_t = int((~torch_finite(Vt)).sum())
            print(
                f"torchsde Euler (general noise): {t_t:.3f} s wall, {c_t:.3f} CPU-s (lost {lost_t}); CPU {c_t / c_core:.1f}x"
            )
        except ImportError as exc:
            print(f"torchsde not available: {exc}")

    # ---- 2. threads, default saving (101 times) and summary ----
    for save in ("paths", "summary"):
        kw = dict(T=1.0, steps=args.steps, paths=4 * args.paths, seed=0, progress=False, save=save)
        _, w1, c1 = timed(lambda: st.solve_sde(net, V0=V0, threads=1, **kw))
        _, w2, c2 = timed(lambda: st.solve_sde(net, V0=V0, threads=2, **kw))
        print(
            f"threads, save={save!r}, {4 * args.paths} paths: 1 thread {w1:.3f} s wall ({c1:.3f} CPU-s), "
            f"2 threads {w2:.3f} s wall ({c2:.3f} CPU-s): speed-up {w1 / w2:.2f}x"
        )

    # ---- 3. summary memory ----
    if args.summary_paths:
        before, after, t_s, mrho, nexp = summary_memory(args.summary_paths, args.summary_steps, None)
        print(
            f"save='summary', {args.summary_paths} paths x {args.summary_steps} steps (m = {M}, all cores): "
            f"{t_s:.1f} s wall, peak RSS {after:.0f} MB (interpreter + library before the run: {before:.0f} MB); "
            f"E[rho(1)] {mrho:.4f}, blown up {nexp}"
        )

    # ---- 4. sequence length ----
    for m in [int(x) for x in args.sizes.split(",") if x]:
        Vm = st.inputs.equicorrelated(m, RHO0)
        paths, steps = (64, 200) if m <= 32 else (4, 20)
        for kern in ("", "generic"):
            _, _, c = timed(
                lambda: core.solve_sde(
                    net.to_core(),
                    Vm,
                    1.0 / steps,
                    steps,
                    np.array([steps]),
                    "euler",
                    "clip",
                    paths,
                    0,
                    1,
                    1e30,
                    None,
                    "paths",
                    kern,
                )
            )
            name = kern or core.sde_kernel(net.to_core(), m, "euler")
            print(f"m = {m}: SDE ({name}) {c / (paths * steps) * 1e6:.2f} us per path-step")
            if name == "generic":
                break
        n = 2000 if m <= 32 else 300
        d = 2000 if m <= 32 else 10
        S = 8 if m <= 32 else 1  # the batched kernel advances 8 samples at once (AVX-512)
        for kern in ("", "generic"):
            _, _, c = timed(lambda: core.simulate_exact(net.to_core(), Vm, n, d, S, 0, [d], 1, 1e30, None, kern))
            name = kern or core.exact_kernel(net.to_core(), m, n)
            print(f"m = {m}: exact chain ({name}) {c / (S * d) * 1e6:.1f} us per block and sample")
            if name == "generic":
                break
        n, d = 1024, 4
        _, _, c = timed(
            lambda: st.simulate(
                net,
                V0=Vm,
                width=n,
                depth=d,
                samples=1,
                method="explicit",
                seed=0,
                save_at=np.array([d]),
                threads=1,
                progress=False,
            )
        )
        print(f"m = {m}: explicit network (n = {n}) {c / d * 1e3:.2f} ms per block")
        _, _, c = timed(
            lambda: st.simulate(
                net,
                V0=Vm,
                width=n,
                depth=d,
                samples=1,
                method="law",
                seed=0,
                save_at=np.array([d]),
                threads=1,
                progress=False,
            )
        )
        print(f"m = {m}: law sampler (n = {n}) {c / d * 1e3:.2f} ms per block")

    if args.skip_exact:
        return
    n = args.exact_width
    S = 8  # one AVX-512 batch

    def exact(kernel, threads=1, samples=S):
        return core.simulate_exact(net.to_core(), V0, n, n, samples, 0, [n], threads, 1e30, None, kernel)

    (Ve, e), t_e, c_e = timed(lambda: exact(""))
    (Vg, _), t_g, c_g = timed(lambda: exact("generic"))
    kname = core.exact_kernel(net.to_core(), M, n)
    print(
        f"exact chain, shaped attention, n = d = {n}, m = {M}, kernel {kname}: {c_e / S:.3f} CPU-s per sample "
        f"(1 thread, {S} samples), {c_e / S / n * 1e6:.2f} us per block; exploded {int((e >= 0).sum())}"
    )
    print(
        f"  per-sample path (kernel='generic'): {c_g / S:.3f} CPU-s per sample; batched {c_g / c_e:.2f}x faster; "
        f"previous release 0.39 CPU-s: {0.39 / (c_e / S):.1f}x; max |V_batch - V_generic| / max |V| = "
        f"{np.max(np.abs(Ve - Vg)) / np.max(np.abs(Vg)):.1e}"
    )
    _, w1, c1 = timed(lambda: exact("", 1, 2 * S))
    _, w2, c2 = timed(lambda: exact("", 2, 2 * S))
    print(
        f"  threads, {2 * S} samples: 1 thread {w1:.2f} s wall ({c1:.2f} CPU-s), 2 threads {w2:.2f} s wall "
        f"({c2:.2f} CPU-s): speed-up {w1 / w2:.2f}x"
    )
    mlp = st.Network([st.ShapedMLP(gamma=GAMMA)])
    _, _, c_m = timed(
        lambda: st.simulate(
            mlp,
            V0=V0,
            width=n,
            depth=20,
            samples=1,
            method="exact",
            seed=0,
            save_at=np.array([20]),
            threads=1,
            progress=False,
        )
    )
    c_m /= 20
    print(
        f"exact chain, one shaped MLP block at n = {n}: {c_m * 1e3:.2f} CPU-ms (O(m^2 n)); "
        f"a full shaped Transformer to T = 1 would take ~{c_m * n + c_e / S:.0f} CPU-s per sample"
    )


if __name__ == "__main__":
    main()
