"""Cost floor of one exact layer (shaped attention, H heads, + shaped MLP) at NumPy's BLAS rate.

Not the model: the same m x m and m x tile operations the exact step performs (key
product from a 2m Bartlett factor, L M L^T, softmax, A_h L, C_h Z_h, C C^T, the m x m
value Wishart, the MLP's hidden Gram in column tiles, the final assembly), in float64,
batched over samples with ``np.matmul`` (OpenBLAS, one thread), on random inputs. The
normals are drawn once and reused, since the core's Philox kernel draws them ~30 times
faster than NumPy; what is timed is the dense algebra. It answers: at the machine's
dgemm rate, how many CPU-seconds does the exact chain need for a given question?

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_step_floor.py --tokens 64 128 256

docs/performance.md quotes its output.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _layer(L: np.ndarray, heads: int, width: int, normals, tile: int = 256) -> np.ndarray:
    batch, m, _ = L.shape
    Lt = L.transpose(0, 2, 1)
    CC = np.zeros_like(L)
    P = np.zeros_like(L)
    for _ in range(heads):
        T = normals((batch, 2 * m, 2 * m))
        M = T[:, m:, :m] @ T[:, :m, :m].transpose(0, 2, 1)
        A = np.exp((L @ M @ Lt) / np.sqrt(width))
        A /= A.sum(-1, keepdims=True)
        C = A @ L
        P += C @ normals((batch, m, m))
        CC += C @ C.transpose(0, 2, 1)
    F = np.linalg.cholesky(CC + 1e-9 * np.eye(m))
    CB = F @ np.tril(normals((batch, m, m)))
    out = P @ P.transpose(0, 2, 1) + CB @ CB.transpose(0, 2, 1) + L @ P.transpose(0, 2, 1)
    gram = np.zeros_like(L)
    for _ in range(0, width, tile):
        K = L @ normals((batch, m, tile))
        K = np.maximum(K, 0) + 0.1 * np.minimum(K, 0)
        gram += K @ K.transpose(0, 2, 1)
    P2 = np.linalg.cholesky(gram / width + np.eye(m)) @ normals((batch, m, m))
    return out + P2 @ P2.transpose(0, 2, 1) + L @ P2.transpose(0, 2, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--layer-samples", type=float, default=48 * 2000, help="depth x samples of the question")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    cache: dict = {}

    def normals(shape):
        if shape not in cache:
            cache[shape] = rng.standard_normal(shape)
        return cache[shape]

    print("| m | NumPy dgemm (CPU) | layer, per sample (CPU) | in dgemms | question on 2 cores |")
    print("|---|---|---|---|---|")
    for m in args.tokens:
        V = 0.7 * np.eye(m) + 0.3
        L = np.broadcast_to(np.linalg.cholesky(V), (args.batch, m, m)).copy()
        _layer(L, args.heads, args.width, normals)
        t = time.process_time()
        reps = 3
        for _ in range(reps):
            _layer(L, args.heads, args.width, normals)
        per = (time.process_time() - t) / reps / args.batch
        a = rng.random((m, m))
        t = time.process_time()
        for _ in range(200):
            a @ a
        g = (time.process_time() - t) / 200
        print(f"| {m} | {g * 1e3:.3f} ms | {per * 1e3:.2f} ms | {per / g:.0f} | {args.layer_samples * per / 2:.0f} s |")


if __name__ == "__main__":
    main()
