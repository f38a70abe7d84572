"""A/B timing of two builds of the core in the same run (issue 22: "speed held").

Each build is measured in its own child process (both modules are called ``_core``),
alternating A, B, A, B, ... so that a change of machine load hits both alike; the
table gives the median of the repeats and the ratio B / A.  Three workloads, one
thread each: the explicit network (one shaped attention block at width 1024, 8 layers x 4 samples), the
batched SDE (m = 8, 2000 paths x 200 steps) and the exact chain (m = 8, width 1024,
200 layers x 500 samples).

    python benchmarks/bench_core_ab.py --a BUILD_A:PYTHON_A --b BUILD_B:PYTHON_B [--repeats 5]

BUILD is a build directory holding ``_core*.so`` and PYTHON the ``python/`` folder of
the same commit (the package and its core must match).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

CHILD = r"""
import json, time
import numpy as np
import shaped_transformer as st

rng = np.random.default_rng(0)
A = rng.standard_normal((8, 8))
V0 = A @ A.T / 8 + np.eye(8)
att = st.ShapedAttention(gamma=0.5, tau0=1.0)

def best(f, reps=3):
    t = []
    for _ in range(reps):
        t0 = time.perf_counter(); f(); t.append(time.perf_counter() - t0)
    return min(t)

out = {
    "explicit block": best(lambda: st.simulate(att, V0=V0, width=1024, depth=8, samples=4, method="explicit",
                                              seed=1, threads=1, progress=False)),
    "batched SDE": best(lambda: st.solve_sde(att, V0=V0, T=1.0, steps=200, paths=2000, seed=1, threads=1,
                                             progress=False)),
    "exact chain": best(lambda: st.simulate(att, V0=V0, width=1024, depth=200, samples=500, method="exact",
                                           seed=1, threads=1, progress=False)),
}
print(json.dumps(out))
"""


def child_env(build: str, python: str) -> dict[str, str]:
    """The environment of a child process that imports the core in `build`."""
    return dict(os.environ, SHAPED_TRANSFORMER_BUILD_DIR=build, PYTHONPATH=python, OPENBLAS_NUM_THREADS="1")


def _run(build: str, python: str) -> dict[str, float]:
    res = subprocess.run(
        [sys.executable, "-c", CHILD], env=child_env(build, python), capture_output=True, text=True, check=True
    )
    return json.loads(res.stdout.strip().splitlines()[-1])


def alternate(run: Callable[[str], dict[str, float]], repeats: int) -> dict[str, dict[str, list[float]]]:
    """run("A") and run("B") `repeats` times each, alternating A B, B A, ...: the
    timings of each workload per build."""
    times: dict[str, dict[str, list[float]]] = {"A": {}, "B": {}}
    print(time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load", os.getloadavg())
    for r in range(repeats):
        for name in ("A", "B") if r % 2 == 0 else ("B", "A"):
            for k, v in run(name).items():
                times[name].setdefault(k, []).append(v)
    return times


def print_table(times: dict[str, dict[str, list[float]]], first: str, unit: str, digits: int) -> None:
    """The medians of A and B per workload, B / A and its value per repeat."""
    print(f"| {first} | A ({unit}, median) | B ({unit}, median) | B / A | B / A per repeat |")
    print("|---|---|---|---|---|")
    for k in times["A"]:
        a, b = statistics.median(times["A"][k]), statistics.median(times["B"][k])
        per = ", ".join(f"{y / x:.2f}" for x, y in zip(times["A"][k], times["B"][k]))
        print(f"| {k} | {a:.{digits}f} | {b:.{digits}f} | {b / a:.2f} | {per} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", required=True, help="BUILD:PYTHON of the baseline")
    ap.add_argument("--b", required=True, help="BUILD:PYTHON of the candidate")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    builds = {"A": args.a.split(":"), "B": args.b.split(":")}
    print_table(alternate(lambda name: _run(*builds[name]), args.repeats), "workload", "s", 3)


if __name__ == "__main__":
    main()
