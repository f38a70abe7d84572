"""A/B timing of the SDE step at the issue's question (issue 25), two cores in one run.

The network of ``shaped-transformer check --width 1024 --depth 48 --heads 8 --tokens
128 --tau0 1 --gamma 0.5``: st.shaped_transformer(heads=8, tau0=1, gamma=0.5), T = 48/1024,
100 steps (the default of ``check``), rho0 = 0.3, one thread, V saved at T only.  m = 128
runs the per-path solver (Eigen's products), m = 32 the batched SIMD kernel.  CPU time
per path-step; each core in its own child process (both modules are called ``_core``),
alternating A, B, B, A, ... so that a change of load hits both alike; medians and B / A.

    python benchmarks/bench_sde_question.py --a BUILD_A:PYTHON_A --b BUILD_B:PYTHON_B \\
        [--sizes 128:16,32:400] [--repeats 5]

BUILD is a build directory holding ``_core*.so`` and PYTHON the ``python/`` folder of
the same commit; a size is m:paths.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from bench_core_ab import alternate, child_env, print_table  # benchmarks/: the A/B loop and table

CHILD = r"""
import json, sys, time
import numpy as np
import shaped_transformer as st

net = st.shaped_transformer(heads=8, tau0=1.0, gamma=0.5)
T, steps = 48 / 1024, 100
out = {}
for item in sys.argv[1].split(","):
    m, paths = (int(x) for x in item.split(":"))
    V0 = 0.7 * np.eye(m) + 0.3
    run = lambda p: st.solve_sde(net, V0=V0, T=T, steps=steps, save_at=[T], paths=p, seed=1, threads=1,
                                 progress=False)
    run(2)  # warm-up (allocations, dispatch)
    t0 = time.process_time()
    run(paths)
    out[m] = 1e3 * (time.process_time() - t0) / (paths * steps)
print(json.dumps(out))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", required=True, help="BUILD:PYTHON of the baseline")
    ap.add_argument("--b", required=True, help="BUILD:PYTHON of the candidate")
    ap.add_argument("--sizes", default="128:16,32:400", help="m:paths, comma-separated")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    builds = {"A": args.a.split(":"), "B": args.b.split(":")}

    def run(name: str) -> dict[str, float]:
        res = subprocess.run(
            [sys.executable, "-c", CHILD, args.sizes],
            env=child_env(*builds[name]),
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(res.stdout.strip().splitlines()[-1])

    print_table(alternate(run, args.repeats), "m", "CPU-ms per path-step", 4)


if __name__ == "__main__":
    main()
