"""Covariance SDE and exact chain timings (docs/performance.md, "Exact chain and SDE").

    PYTHONPATH=python python benchmarks/bench_sde.py [--paths 1000] [--steps 1000] [--no-torch]

1. The shaped attention block's SDE (m = 8, gamma = 0.5, tau0 = 1, rho0 = 0.3),
   `paths` x `steps` Euler steps to T = 1: solve_sde against a vectorized NumPy
   Euler-Maruyama with the same structured noise, and against torchsde's Euler
   with general noise and the (m^2 x 2 m^2) diffusion matrix a user would build.
2. The exact chain for a shaped attention network at n = d = 10^5 (T = 1, m = 8),
   per sample, and the cost of one exact MLP block at that width.
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
        V = V + b * dt + GAMMA * np.sqrt(2 - g2) / np.sqrt(2) * (S + np.swapaxes(S, 1, 2)) + g2 / (TAU0 * m) * (Tm + np.swapaxes(Tm, 1, 2))
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--paths", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--exact-width", type=int, default=100000)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    V0 = st.inputs.equicorrelated(M, RHO0)
    net = st.Network([st.ShapedAttention(heads=1, tau0=TAU0, gamma=GAMMA)])
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.processor() or platform.machine()}, "
          f"{len(__import__('os').sched_getaffinity(0))} cores; m = {M}, {args.paths} paths x {args.steps} steps")

    t = time.perf_counter()
    r = st.solve_sde(net, V0, T=1.0, steps=args.steps, paths=args.paths, seed=0, save_at=[1.0])
    t_core = time.perf_counter() - t
    t, c = time.perf_counter(), time.process_time()
    st.solve_sde(net, V0, T=1.0, steps=args.steps, paths=args.paths, seed=0, save_at=[1.0], threads=1)
    t_core1, c_core = time.perf_counter() - t, time.process_time() - c
    print(f"solve_sde (Euler, all cores): {t_core:.3f} s wall  (1 thread: {t_core1:.3f} s wall, {c_core:.3f} CPU-s), "
          f"blown-up paths {int(r.exploded.sum())}")

    t, c = time.perf_counter(), time.process_time()
    Vn, lost = numpy_euler(V0, args.paths, args.steps)
    t_np, c_np = time.perf_counter() - t, time.process_time() - c
    print(f"NumPy Euler-Maruyama: {t_np:.3f} s wall, {c_np:.3f} CPU-s (lost {lost}); ratio wall {t_np / t_core:.1f}x "
          f"(vs 1 thread: {t_np / t_core1:.1f}x), CPU {c_np / c_core:.1f}x")
    print(f"  E[rho_01(1)]: core {np.nanmean(r.finite().rho[:, -1, 0, 1]):.4f}, NumPy {np.nanmean(st.correlations(Vn)[:, 0, 1]):.4f}")

    if not args.no_torch:
        try:
            t, c = time.perf_counter(), time.process_time()
            Vt = torchsde_euler(V0, args.paths, args.steps)
            t_t, c_t = time.perf_counter() - t, time.process_time() - c
            lost_t = int((~torch_finite(Vt)).sum())
            print(f"torchsde Euler (general noise): {t_t:.3f} s wall, {c_t:.3f} CPU-s (lost {lost_t}); ratio wall "
                  f"{t_t / t_core:.1f}x (vs 1 thread: {t_t / t_core1:.1f}x), CPU {c_t / c_core:.1f}x")
        except ImportError as exc:
            print(f"torchsde not available: {exc}")

    n = args.exact_width
    t, c = time.perf_counter(), time.process_time()
    e = st.simulate(net, V0=V0, width=n, depth=n, samples=2, method="exact", seed=0, save_at=np.array([n]), threads=1)
    t_e, c_e = (time.perf_counter() - t) / 2, (time.process_time() - c) / 2
    print(f"exact chain, shaped attention, n = d = {n}, m = {M}: {t_e:.3f} s wall, {c_e:.3f} CPU-s per sample (1 thread), "
          f"{t_e / n * 1e6:.2f} us per block; exploded {int(e.exploded.sum())}")
    mlp = st.Network([st.ShapedMLP(gamma=GAMMA)])
    t = time.perf_counter()
    st.simulate(mlp, V0=V0, width=n, depth=20, samples=1, method="exact", seed=0, save_at=np.array([20]), threads=1)
    t_m = (time.perf_counter() - t) / 20
    print(f"exact chain, one shaped MLP block at n = {n}: {t_m * 1e3:.2f} ms (O(m^2 n)); "
          f"a full shaped Transformer to T = 1 would take ~{t_m * n + t_e:.0f} s per sample")


if __name__ == "__main__":
    main()
