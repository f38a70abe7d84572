"""Ctrl-C stops a long run within a second with KeyboardInterrupt.

Each case starts a child Python process that prints "started" and then calls a
long simulation (huge depth or SDE time, a single sample included: the drivers
must check for cancellation once per block, not once per sample).  The parent
waits until the child is inside the C++ loop, sends SIGINT and measures the time
from the signal to (a) the moment the child's ``except KeyboardInterrupt`` runs
and (b) the child's exit.  The child also reports the innermost frame of the
traceback, which must be the call into the compiled core: the interrupt was
delivered by the core's polling, not by Python code before or after it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import shaped_transformer as st
from shaped_transformer._core_loader import core

CHILD = textwrap.dedent(
    r"""
    import json, signal, sys, time, traceback
    import numpy as np
    import shaped_transformer as st

    # Ctrl-C as at an interactive prompt, even when the runner started this test with
    # SIGINT ignored (a background job of a non-interactive shell is; Python then
    # installs no KeyboardInterrupt handler, and the child would never see the signal).
    signal.signal(signal.SIGINT, signal.default_int_handler)

    case = json.loads(sys.argv[1])
    V0 = st.inputs.equicorrelated(case.get("m", 4), 0.3)
    net = st.Network([eval("st." + b) for b in case["blocks"]])
    kind = case.pop("kind")
    print("started", flush=True)
    try:
        if kind == "sde":
            st.solve_sde(net, V0=V0, T=case["T"], dt=case["dt"], paths=case["samples"], threads=case["threads"],
                         seed=1, blowup=1e300, save_at=np.array([0.0, case["T"]]), progress=False)
        else:
            st.simulate(net, V0=V0, width=case["width"], depth=case["depth"], samples=case["samples"],
                        method=kind, threads=case["threads"], seed=1, blowup=1e300,
                        save_at=np.array([0, case["depth"]]), progress=False)
    except KeyboardInterrupt as exc:
        caught = time.time()
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        print(json.dumps({"caught": caught, "line": frame.line, "file": frame.filename}), flush=True)
        sys.exit(3)
    print("finished", flush=True)
    """
)

# (id, case, driver attribute of _core that must exist)
CASES = [
    # exact chain, one sample, 10^8 layers (attention only: width-independent blocks)
    (
        "exact-1-sample",
        dict(
            kind="exact", blocks=["ShapedAttention(heads=2, gamma=0.5)"], width=10**6, depth=10**8, samples=1, threads=1
        ),
        "simulate_exact",
    ),
    # exact chain with an MLP block at moderate width: O(m n) per block
    (
        "exact-transformer",
        dict(
            kind="exact",
            blocks=["ShapedAttention(gamma=0.3)", "ShapedMLP(gamma=0.3)"],
            width=10**4,
            depth=10**8,
            samples=2,
            threads=2,
        ),
        "simulate_exact",
    ),
    # explicit network, one huge run, moderate width
    (
        "explicit-1-sample",
        dict(
            kind="explicit",
            blocks=["ShapedAttention(gamma=0.3)", "ShapedMLP(gamma=0.3)"],
            width=512,
            depth=10**6,
            samples=1,
            threads=1,
        ),
        "simulate_explicit",
    ),
    # explicit network, several samples on 2 threads
    (
        "explicit-threads",
        dict(
            kind="explicit",
            blocks=["StandardAttention(gamma=0.3)", "ReluMLP(gamma=0.3)"],
            width=256,
            depth=10**6,
            samples=4,
            threads=2,
        ),
        "simulate_explicit",
    ),
    # law sampler, one huge run
    (
        "law-1-sample",
        dict(
            kind="law",
            blocks=["ShapedAttention(gamma=0.3)", "ShapedMLP(gamma=0.3)"],
            width=20000,
            depth=10**6,
            samples=1,
            threads=1,
        ),
        "simulate_law",
    ),
    # SDE, one path, 10^9 steps (MLP without drift, small gamma: no blow-up)
    (
        "sde-1-path",
        dict(
            kind="sde", blocks=["ShapedMLP(c_plus=0.0, c_minus=0.0, gamma=0.05)"], T=1e6, dt=1e-3, samples=1, threads=1
        ),
        "solve_sde",
    ),
    # SDE at m = 256: a step takes about 0.1 s, so cancellation must be checked every step
    (
        "sde-large-m",
        dict(
            kind="sde",
            blocks=["ShapedAttention(gamma=0.5)", "ShapedMLP(gamma=0.5)"],
            T=1e3,
            dt=1e-3,
            samples=1,
            threads=1,
            m=256,
        ),
        "solve_sde",
    ),
]

# A single block whose own work takes seconds: the exact chain's MLP step at width
# 10^9 draws m x n pre-activations, so it checks for cancellation between tiles.
SLOW_BLOCK_CASES = [
    pytest.param(
        "exact-mlp-huge-width",
        dict(kind="exact", blocks=["ShapedMLP(gamma=0.3)"], width=10**9, depth=10, samples=1, threads=1),
        "simulate_exact",
        id="exact-mlp-huge-width",
    )
]

LIMIT_S = 1.5  # from SIGINT to exit (1 s for the interrupt, slack for interpreter exit)
MEASURED: dict[str, tuple[float, float]] = {}


def _interrupt(case: dict, settle_s: float = 1.0, wait_s: float = 10.0) -> tuple[float, float, dict]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in [os.path.join(os.path.dirname(st.__file__), os.pardir), env.get("PYTHONPATH", "")] if p
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(case)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline()
        if line.strip() != "started":
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"child did not start: {line!r} {out!r} {err[-2000:]!r}")
        time.sleep(settle_s)  # validation is milliseconds; after this the child is in the core
        assert proc.poll() is None, f"child ended before the signal: {proc.communicate()}"
        t_signal = time.time()
        t0 = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"child ignored SIGINT for {wait_s} s")
        exit_s = time.perf_counter() - t0
        out, err = proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 3, f"child exit code {proc.returncode}; stdout {out!r}; stderr {err[-2000:]!r}"
    info = json.loads(out.strip().splitlines()[-1])
    return info["caught"] - t_signal, exit_s, info


@pytest.mark.parametrize("name, case, driver", CASES, ids=[c[0] for c in CASES])
def test_ctrl_c_stops_within_a_second(name, case, driver):
    assert hasattr(core, driver) or (driver == "solve_sde" and hasattr(st, "solve_sde")), driver
    for settle_s in (1.0, 4.0):
        caught_s, exit_s, info = _interrupt(dict(case), settle_s=settle_s)
        # On a loaded machine the signal can arrive before the child reached the
        # core (still in Python validation): that tests nothing, so try once more later.
        if re.search(r"core\.|\bfn\(", info["line"] or ""):
            break
    MEASURED[name] = (caught_s, exit_s)
    print(f"\n{name}: KeyboardInterrupt {caught_s * 1e3:.0f} ms after SIGINT, exit after {exit_s * 1e3:.0f} ms")
    # the interrupt came out of the core call, not from Python code around it
    assert re.search(r"core\.|\bfn\(", info["line"] or ""), info
    assert caught_s < 1.0, f"KeyboardInterrupt {caught_s:.3f} s after SIGINT"
    assert exit_s < LIMIT_S, f"exit {exit_s:.3f} s after SIGINT"


@pytest.mark.parametrize("name, case, driver", SLOW_BLOCK_CASES)
def test_ctrl_c_inside_one_long_block(name, case, driver):
    assert hasattr(core, driver) or (driver == "solve_sde" and hasattr(st, "solve_sde")), driver
    caught_s, exit_s, info = _interrupt(dict(case), wait_s=3.0)
    print(f"\n{name}: KeyboardInterrupt {caught_s * 1e3:.0f} ms after SIGINT, exit after {exit_s * 1e3:.0f} ms")
    assert exit_s < LIMIT_S
