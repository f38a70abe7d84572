"""Euler's discretization at the issue's question (issue 25): 48, 100 and 400 steps.

st.shaped_transformer(heads=8, tau0=1, gamma=0.5) from rho0 = 0.3 to T = 48/1024 (width
1024, depth 48) with steps = 48 (dt = 1/width: one step per layer), 100 (the default of
``assess`` and ``check``) and 400; the differences against 400 steps in the mean
correlation rho_T, the mean log(tr V / m) (both over the paths that did not blow up),
P(collapse: mean correlation > 0.99) and P(blow-up), with their standard errors.

The Brownian increments of step k are drawn from the stream (seed, path, k), whatever
the number of steps: runs with different steps and one seed share normals without
sharing a Brownian path (no coupling), so each step count gets its own seed and the
differences are unpaired (standard error sqrt(se_a^2 + se_b^2)).

    PYTHONPATH=python python benchmarks/sde_steps_question.py [--tokens 32] [--paths 10000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import shaped_transformer as st
from shaped_transformer.analysis import mean_correlation
from shaped_transformer.assess import collapsed

STEPS = (48, 100, 400)


def statistics_at(m: int, paths: int, steps: int, seed: int) -> dict[str, tuple[float, float]]:
    """(mean, standard error) of each statistic over `paths` paths."""
    net = st.shaped_transformer(heads=8, tau0=1.0, gamma=0.5)
    T, rho0 = 48 / 1024, 0.3
    V0 = (1 - rho0) * np.eye(m) + rho0
    r = st.solve_sde(net, V0=V0, T=T, steps=steps, paths=paths, seed=seed, save_at=[T], threads=1, progress=False)
    V = r.V[:, -1]
    ok = np.all(np.isfinite(V), axis=(-2, -1))
    per_path = {
        "mean rho_T": mean_correlation(V[ok]),
        "mean log(tr V / m)": np.log(np.trace(V[ok], axis1=-2, axis2=-1) / m),
        "P(collapse)": collapsed(V).astype(float),  # the rule of assess and check
        "P(blow-up)": (~ok).astype(float),
    }
    return {k: (float(np.mean(x)), float(np.std(x, ddof=1) / np.sqrt(len(x)))) for k, x in per_path.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--paths", type=int, default=10000)
    args = ap.parse_args()
    res = {}
    for i, steps in enumerate(STEPS):
        t0 = time.process_time()
        res[steps] = statistics_at(args.tokens, args.paths, steps, seed=101 + i)
        print(f"steps {steps}: {time.process_time() - t0:.1f} CPU-s", flush=True)
    print(f"\nm = {args.tokens}, {args.paths} paths per step count (own seeds), T = 48/1024, rho0 = 0.3")
    print("| statistic | 400 steps | 48 - 400 | 100 - 400 |")
    print("|---|---|---|---|")
    for k, (ref, se) in res[400].items():
        diff = [f"{res[s][k][0] - ref:+.2e} ± {np.hypot(res[s][k][1], se):.1e}" for s in (48, 100)]
        print(f"| {k} | {ref:.4g} ± {se:.1e} | {diff[0]} | {diff[1]} |")


if __name__ == "__main__":
    main()
