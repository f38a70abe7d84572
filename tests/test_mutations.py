"""The mutation harness (docs/validation.md, "Mutation matrix"): the statistical
suite must fail for every deliberate error in the model.

Each perturbation of tests/_mutations.py is injected in turn -- through the
parameters of the model side of each comparison, or, for formula sites the
parameters cannot reach, through a core built with
-DSHAPED_TRANSFORMER_MUTATIONS=ON (test-only; the default build has no such
switch) -- and the statistical tests run at CI size in a child pytest, which must
report at least one failed test.

Slow: ~10 child runs of up to a few minutes plus a build of the core (ccache helps).
It runs with SHAPED_TRANSFORMER_FULL=1 or SHAPED_TRANSFORMER_MUTATIONS=1 only.  Set
SHAPED_TRANSFORMER_MUTATION_BUILD_DIR to a folder holding a mutation-enabled _core to
skip the build.

``python tests/test_mutations.py [--out F.json] [names...]`` runs every statistical
test against each perturbation (no early stop) and prints the detection matrix as
Markdown.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from _mutations import ALL, CORE  # noqa: E402

FULL = os.environ.get("SHAPED_TRANSFORMER_FULL", "") not in ("", "0")
ENABLED = FULL or os.environ.get("SHAPED_TRANSFORMER_MUTATIONS", "") not in ("", "0")

# The statistical suite, fastest and sharpest first (the harness stops a child run
# at its first failure).
SUITE = [
    "tests/test_sde.py::test_one_step_is_drift_plus_noise",
    "tests/test_moments.py",
    "tests/test_sde.py",
    "tests/test_exact.py",
    "tests/test_sde_vs_network.py",
]


def _has_mutations(build_dir: str) -> bool:
    code = (
        "from shaped_transformer._core_loader import core; import sys; "
        "sys.exit(0 if hasattr(core, '_set_mutation') else 1)"
    )
    env = dict(os.environ, SHAPED_TRANSFORMER_BUILD_DIR=build_dir, PYTHONPATH=_pythonpath())
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True).returncode == 0


def _pythonpath() -> str:
    parts = [str(ROOT / "python")] if (ROOT / "python" / "shaped_transformer").is_dir() else []
    if os.environ.get("PYTHONPATH"):
        parts.append(os.environ["PYTHONPATH"])
    return os.pathsep.join(parts)


def mutation_build(workdir: str | None = None) -> str:
    """A folder holding a _core built with SHAPED_TRANSFORMER_MUTATIONS=ON (built here
    with CMake, through ccache when it is on PATH)."""
    given = os.environ.get("SHAPED_TRANSFORMER_MUTATION_BUILD_DIR")
    if given:
        if not _has_mutations(given):
            raise RuntimeError(f"SHAPED_TRANSFORMER_MUTATION_BUILD_DIR={given} holds no mutation-enabled _core")
        return given
    cmake = shutil.which("cmake")
    if cmake is None:
        raise RuntimeError("cmake is not on PATH")
    import pybind11

    build = workdir or tempfile.mkdtemp(prefix="st-mutations-")
    cfg = [
        cmake,
        "-S",
        str(ROOT),
        "-B",
        build,
        "-DCMAKE_BUILD_TYPE=Release",
        "-DSHAPED_TRANSFORMER_PYTHON=ON",
        "-DSHAPED_TRANSFORMER_MUTATIONS=ON",
        "-DSHAPED_TRANSFORMER_INSTALL=OFF",
        f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
    ]
    if shutil.which("ninja"):
        cfg += ["-G", "Ninja"]
    if shutil.which("ccache"):
        cfg.append("-DCMAKE_CXX_COMPILER_LAUNCHER=ccache")
    subprocess.run(cfg, check=True, capture_output=True, text=True)
    jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", "2")
    subprocess.run(
        [cmake, "--build", build, "--target", "_core", "-j", jobs], check=True, capture_output=True, text=True
    )
    if not glob.glob(os.path.join(build, "_core*")):
        raise RuntimeError(f"no _core module in {build}")
    return build


def run_suite(
    name: str, build_dir: str, *, first_failure: bool, junit: str | None = None, targets: list[str] | None = None
) -> subprocess.CompletedProcess:
    """Runs the statistical suite at CI size with mutation `name` ('' for none)."""
    env = dict(
        os.environ,
        SHAPED_TRANSFORMER_BUILD_DIR=build_dir,
        SHAPED_TRANSFORMER_FULL="0",
        PYTHONPATH=_pythonpath(),
        SHAPED_TRANSFORMER_MUTATIONS="0",
    )
    env.pop("SHAPED_TRANSFORMER_MUTATION", None)
    if name:
        env["SHAPED_TRANSFORMER_MUTATION"] = name
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore", "--tb=line", "-rN"]
    if first_failure:
        cmd.append("-x")
    if junit:
        cmd.append(f"--junitxml={junit}")
    cmd += targets or SUITE
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)


@pytest.mark.slow
@pytest.mark.skipif(not ENABLED, reason="set SHAPED_TRANSFORMER_FULL=1 or SHAPED_TRANSFORMER_MUTATIONS=1")
def test_every_mutation_fails_the_statistical_suite(tmp_path):
    build = mutation_build(str(tmp_path / "build"))
    # control: the mutation-enabled core with every factor at 1 passes (the sharp tests)
    ok = run_suite("", build, first_failure=True, targets=[SUITE[0], "tests/test_moments.py"])
    assert ok.returncode == 0, ok.stdout[-3000:]
    missed = []
    for name in ALL:
        r = run_suite(name, build, first_failure=True)
        # pytest exit code 1: tests ran and some failed; 0: none failed; > 1: an error
        assert r.returncode in (0, 1), (name, r.returncode, r.stdout[-3000:], r.stderr[-3000:])
        if r.returncode == 0:
            missed.append(name)
    assert not missed, f"mutations no statistical test detects: {missed}"


def _collect(names: list[str], out: str) -> None:
    """Runs every statistical test against each mutation (no early stop) and adds
    the outcomes to the JSON file `out` ({mutation: {test: pass/FAIL/skip}}).
    Parameter mutations run on SHAPED_TRANSFORMER_BUILD_DIR's core when no core
    mutation is asked for."""
    import json

    need_core = any(n in CORE for n in names)
    build = mutation_build() if need_core else os.environ.get("SHAPED_TRANSFORMER_BUILD_DIR", "")
    results = json.load(open(out)) if os.path.exists(out) else {}
    for name in names:
        with tempfile.TemporaryDirectory() as d:
            junit = os.path.join(d, "j.xml")
            run_suite("" if name == "none" else name, build, first_failure=False, junit=junit, targets=SUITE[1:])
            row = {}
            for case in ET.parse(junit).getroot().iter("testcase"):
                t = f"{case.get('classname').split('.')[-1]}::{case.get('name')}"
                if case.find("failure") is not None or case.find("error") is not None:
                    row[t] = "FAIL"
                elif case.find("skipped") is not None:
                    row[t] = "skip"
                else:
                    row[t] = "pass"
        results[name] = row
        json.dump(results, open(out, "w"), indent=1)
        print(f"done: {name}: {sum(v == 'FAIL' for v in row.values())} failed", file=sys.stderr, flush=True)


def _table(out: str) -> str:
    """The detection matrix of the JSON file as Markdown: one row per test function
    (parametrized cases grouped: "FAIL" all failed, "k/n" k of n failed) that fails
    under at least one mutation."""
    import json

    results = json.load(open(out))
    cols = [c for c in ["none"] + ALL if c in results]
    groups: dict[str, list[str]] = {}
    for c in cols:
        for t in results[c]:
            groups.setdefault(t.split("[")[0], [])
            if t not in groups[t.split("[")[0]]:
                groups[t.split("[")[0]].append(t)
    lines = ["| test | " + " | ".join(f"`{c}`" for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for g, cases in groups.items():
        cells = []
        for c in cols:
            k = sum(results[c].get(t) == "FAIL" for t in cases)
            cells.append("pass" if k == 0 else "**FAIL**" if k == len(cases) else f"**{k}/{len(cases)}**")
        if all(x == "pass" for x in cells):
            continue
        name = g + (f" ({len(cases)} cases)" if len(cases) > 1 else "")
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    counts = [str(sum(v == "FAIL" for v in results[c].values())) for c in cols]
    lines.append("| failed tests | " + " | ".join(counts) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="the detection matrix (docs/validation.md)")
    ap.add_argument("--out", default="mutation-matrix.json")
    ap.add_argument("--table", action="store_true", help="only print the table of --out")
    ap.add_argument("names", nargs="*", help=f"mutations (default: all), or 'none'; known: {ALL}")
    a = ap.parse_args()
    if not a.table:
        chosen = a.names or ALL
        for c in chosen:
            if c not in ALL and c != "none":
                raise SystemExit(f"unknown mutation {c}; known: {ALL}")
        _collect(chosen, a.out)
    print(_table(a.out))
