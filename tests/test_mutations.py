"""The mutation matrix (docs/validation.md): every deliberate error in the model
must make the test meant to catch it fail, on that test's assertion.

tests/_mutations.py holds one table: (mutation, the test node id, a fragment of
the assertion).  For each row a child pytest runs that one test at CI size with
SHAPED_TRANSFORMER_MUTATION set, against a core built with the test-only switches
(-DSHAPED_TRANSFORMER_MUTATIONS=ON), and writes an outcome report
(tests/_outcome_report.py).  A mutation counts as caught only when the report says
that its test failed in its call phase on an AssertionError of the test's own
assertion whose statement holds the fragment: a crash, a build error, an error in
setup, an exception elsewhere, another assertion or another test failing is a
miss.  Before the rows, a control: tests/test_regression.py with every switch at 1
on that core (its outputs bit for bit those of the release build).

The matrix runs in CI (.ci/run: ``python3 tests/test_mutations.py``) and here
with SHAPED_TRANSFORMER_FULL=1 or SHAPED_TRANSFORMER_MUTATIONS=1 (slow: a build of
the core, ccache helps, and one child pytest per mutation).  Set
SHAPED_TRANSFORMER_MUTATION_BUILD_DIR to a folder holding a mutation-enabled _core
to skip the build.

    python tests/test_mutations.py [--build-dir D] [names...]   # the matrix, with verdicts
    python tests/test_mutations.py --detection [--out F.json] [names...]
        # every statistical test against each mutation, no early stop: the
        # detection matrix of docs/validation.md (Markdown)
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from _mutations import ALL, BY_NAME, CORE, TABLE, Mutation, markdown_table  # noqa: E402

FULL = os.environ.get("SHAPED_TRANSFORMER_FULL", "") not in ("", "0")
ENABLED = FULL or os.environ.get("SHAPED_TRANSFORMER_MUTATIONS", "") not in ("", "0")

#: The control: every output of the release build bit for bit (the switches at 1
#: change no number, so each row's test passes unperturbed as it does in the suite).
CONTROL = "tests/test_regression.py"

#: The statistical tests of the detection matrix (--detection).
DETECTION_SUITE = [
    "tests/test_moments.py",
    "tests/test_sde.py",
    "tests/test_exact.py",
    "tests/test_sde_vs_network.py",
    "tests/test_causal_sde.py",
    "tests/test_splitting.py",
]


def _has_mutations(build_dir: str) -> bool:
    code = (
        "from shaped_transformer._core_loader import core; import sys; "
        "sys.exit(0 if hasattr(core, '_set_mutation') else 1)"
    )
    env = dict(os.environ, SHAPED_TRANSFORMER_BUILD_DIR=build_dir, PYTHONPATH=_pythonpath())
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True).returncode == 0


def _pythonpath() -> str:
    """The checkout's package (its Python code with the mutation core) and tests/
    (for the outcome-report plugin)."""
    parts = [str(ROOT / "python"), str(HERE)]
    if os.environ.get("PYTHONPATH"):
        parts.append(os.environ["PYTHONPATH"])
    return os.pathsep.join(parts)


def mutation_build(workdir: str | None = None) -> str:
    """A folder holding a _core built with SHAPED_TRANSFORMER_MUTATIONS=ON: the
    extension only (no C++ tests, no install rules), through ccache when it is on
    PATH (CCACHE_* settings from the environment)."""
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
        "-DSHAPED_TRANSFORMER_TESTS=OFF",
        f"-DPython_EXECUTABLE={sys.executable}",
        f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
    ]
    if shutil.which("ninja"):
        cfg += ["-G", "Ninja"]
    if shutil.which("ccache"):
        cfg.append("-DCMAKE_CXX_COMPILER_LAUNCHER=ccache")
    jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", "2")
    for cmd in (cfg, [cmake, "--build", build, "--target", "_core", "-j", jobs]):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(
                f"the mutation build failed: {' '.join(cmd)}\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
            )
    if not glob.glob(os.path.join(build, "_core*")):
        raise RuntimeError(f"no _core module in {build}")
    return build


def run_pytest(
    targets: list[str],
    build_dir: str,
    *,
    mutation: str = "",
    report: str | None = None,
    junit: str | None = None,
    first_failure: bool = False,
) -> subprocess.CompletedProcess:
    """A child pytest at CI size on the mutation core, with mutation ``mutation``
    ('' for none) and, with ``report``, the outcome report written there."""
    env = dict(
        os.environ,
        SHAPED_TRANSFORMER_BUILD_DIR=build_dir,
        SHAPED_TRANSFORMER_FULL="0",
        PYTHONPATH=_pythonpath(),
        SHAPED_TRANSFORMER_MUTATIONS="0",
    )
    env.pop("SHAPED_TRANSFORMER_MUTATION", None)
    if mutation:
        env["SHAPED_TRANSFORMER_MUTATION"] = mutation
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore", "--tb=short", "-rN"]
    if report:
        cmd += ["-p", "_outcome_report", f"--outcome-report={report}"]
    if first_failure:
        cmd.append("-x")
    if junit:
        cmd.append(f"--junitxml={junit}")
    return subprocess.run(cmd + targets, cwd=ROOT, env=env, capture_output=True, text=True)


def _normalized(s: str) -> str:
    return " ".join(s.split())


def verdict(m: Mutation, records: list[dict], returncode: int) -> str:
    """'caught', or why the run does not count as a detection of ``m``."""
    mine = [r for r in records if r["nodeid"] == m.test]
    if not mine:
        return f"not run: no outcome for {m.test} (pytest exit {returncode}: crash, build or collection error)"
    failed = [r for r in mine if r["outcome"] == "failed"]
    if not failed:
        return "missed: the test passed"
    r = failed[0]
    if r["when"] != "call":
        return f"not an assertion of the test: it failed in {r['when']} ({r.get('type')}: {r.get('message')})"
    if not r.get("own_assertion"):
        where = f"{r['file']}:{r['line']}" if "file" in r else "outside the tests"
        return f"not an assertion of the test: {r.get('type')} at {where} ({r.get('message')})"
    if _normalized(m.assertion) not in _normalized(r["statement"]):
        return f"another assertion failed: {r['statement']!r} (line {r['line']})"
    return "caught"


def run_mutation(m: Mutation, build_dir: str) -> tuple[str, float, subprocess.CompletedProcess, str]:
    """Runs the test of row ``m`` with the mutation; (verdict, seconds, the child,
    the failure's message)."""
    with tempfile.TemporaryDirectory() as d:
        report = os.path.join(d, "outcomes.jsonl")
        t0 = time.perf_counter()
        proc = run_pytest([m.test], build_dir, mutation=m.name, report=report)
        dt = time.perf_counter() - t0
        with open(report) as f:
            records = [json.loads(line) for line in f if line.strip()]
    failed = [r for r in records if r["nodeid"] == m.test and r["outcome"] == "failed"]
    message = f"{failed[0].get('explanation') or ''} {failed[0].get('message', '')}".strip() if failed else ""
    return verdict(m, records, proc.returncode), dt, proc, message


def run_matrix(
    build_dir: str, names: list[str] | None = None, log=print, jobs: int = 1
) -> dict[str, tuple[str, float]]:
    """The control, then every row of the table (or those named), ``jobs`` child
    runs at a time (the results do not depend on it: fixed seeds, the same numbers
    for any thread count): {name: (verdict, seconds)}; the control's verdict is
    'caught' when it passed."""
    from concurrent.futures import ThreadPoolExecutor

    t0 = time.perf_counter()
    control = run_pytest([CONTROL], build_dir)
    log(f"control ({CONTROL}, every switch at 1): pytest exit {control.returncode}, {time.perf_counter() - t0:.1f} s")
    out = {
        "control": (
            "caught"
            if control.returncode == 0
            else f"the control failed: {control.stdout[-2000:]}{control.stderr[-1000:]}",
            0.0,
        )
    }
    rows = [m for m in TABLE if not names or m.name in names]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for m, (v, dt, proc, message) in zip(rows, pool.map(lambda m: run_mutation(m, build_dir), rows)):
            log(f"{m.name:26s} {dt:6.1f} s  {v}" + (f" ({message[:150]})" if message else ""))
            if v != "caught":
                log(proc.stdout[-2500:] + proc.stderr[-1500:])
            out[m.name] = (v, dt)
    return out


# ---- the tests -------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not ENABLED, reason="set SHAPED_TRANSFORMER_FULL=1 or SHAPED_TRANSFORMER_MUTATIONS=1 (CI: .ci/run)")
def test_every_mutation_is_caught_by_its_test(tmp_path):
    build = mutation_build(str(tmp_path / "build"))
    results = run_matrix(build, jobs=int(os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", "2")))
    assert results.pop("control")[0] == "caught", "the mutation build with every switch at 1 fails the control"
    missed = {k: v for k, (v, _) in results.items() if v != "caught"}
    assert not missed, missed


def test_docs_show_the_table_of_the_code():
    """docs/validation.md renders tests/_mutations.TABLE (between its markers) as
    markdown_table() prints it."""
    text = (ROOT / "docs" / "validation.md").read_text()
    m = re.search(r"<!-- mutation-table begin.*?-->\n(.*?)\n<!-- mutation-table end -->", text, re.S)
    assert m, "docs/validation.md has no mutation-table markers"
    assert m.group(1).strip() == markdown_table(), "docs/validation.md: regenerate with python tests/_mutations.py"


def test_every_row_names_a_test_and_an_assertion_that_exist():
    """Each row's test function is defined in its file and each fragment is the
    text of an assertion there; core switches are the names mutation.hpp knows."""
    names = re.search(
        r"kNames\[kCount\] = \{(.*?)\};", (ROOT / "cpp/include/shaped_transformer/mutation.hpp").read_text(), re.S
    )
    known = set(re.findall(r'"([a-z_]+)"', names.group(1)))
    for m in TABLE:
        path, _, func = m.test.partition("::")
        src = (ROOT / path).read_text()
        assert re.search(rf"^def {re.escape(func.split('[')[0])}\(", src, re.M), m
        asserts = [_normalized(s) for s in re.findall(r"^\s*(assert .*?|np\.testing\.assert_.*?)$", src, re.M)]
        assert any(_normalized(m.assertion) in s for s in asserts), (m.name, m.assertion)
        assert (m.kind == "core") == (m.switch is not None), m
        if m.kind == "core":
            assert m.switch[0] in known, (m.name, m.switch, known)
    assert len(ALL) == len(set(ALL)) and set(CORE) <= set(BY_NAME)


_SYNTHETIC = """
import numpy as np
import pytest

def _helper(x):
    assert x < 1, "helper"

def _raises():
    raise ValueError("not an assertion")

def test_assert():
    x = 2
    assert x < 1, "the test's own"

def test_other_assert():
    assert 1 + 1 == 3

def test_helper_assert():
    _helper(5)

def test_numpy_assert():
    np.testing.assert_allclose(1.0, 2.0)

def test_exception():
    _raises()

def test_library_assertion():
    import mylib
    assert mylib.check(2) == 1

def test_passes():
    pass

@pytest.fixture
def broken():
    assert False, "in setup"

def test_setup_fails(broken):
    pass

def test_crash():
    import os
    os.abort()
"""


def test_only_the_expected_assertion_counts(tmp_path):
    """The harness's verdict on a synthetic test file: the expected assertion failing
    (in the test, a helper of its folder or an np.testing call of the test) is a
    detection; a pass, another assertion, an exception, a failing fixture, an
    AssertionError raised inside a library and a crash are not."""
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "mylib.py").write_text("def check(x):\n    assert x < 1, 'inside the library'\n    return 1\n")
    (tmp_path / "tests").mkdir()
    f = tmp_path / "tests" / "test_synthetic.py"
    f.write_text(_SYNTHETIC)
    report = tmp_path / "out.jsonl"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([_pythonpath(), str(tmp_path / "lib")]))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "_outcome_report",
            f"--outcome-report={report}",
            "--rootdir",
            str(tmp_path / "tests"),
            str(f),
        ],
        cwd=tmp_path / "tests",
        env=env,
        capture_output=True,
        text=True,
    )
    records = [json.loads(line) for line in report.read_text().splitlines()]

    def v(test, assertion):
        return verdict(Mutation("x", "python", "", f"test_synthetic.py::{test}", assertion), records, proc.returncode)

    assert v("test_assert", "x < 1") == "caught"
    assert v("test_numpy_assert", "np.testing.assert_allclose(1.0, 2.0)") == "caught"
    assert v("test_helper_assert", "x < 1") == "caught"  # a helper in the test's folder is the test's own code
    assert v("test_assert", "y > 3").startswith("another assertion failed")
    assert v("test_other_assert", "x < 1").startswith("another assertion failed")
    assert v("test_passes", "x < 1") == "missed: the test passed"
    assert v("test_exception", "x < 1").startswith("not an assertion of the test: ValueError")
    assert v("test_setup_fails", "False").startswith("not an assertion of the test: it failed in setup")
    # the crash takes the session down: no outcome for it (nor for tests after it)
    assert v("test_crash", "x < 1").startswith("not run")
    assert v("test_library_assertion", "mylib.check(2) == 1").startswith("not an assertion of the test")
    assert proc.returncode != 0


# ---- the detection matrix (no early stop), for docs/validation.md -----------------


def _collect(names: list[str], out: str, build_dir: str | None = None, targets: list[str] | None = None) -> None:
    """Runs every statistical test (or ``targets``) against each mutation (no early
    stop) and adds the outcomes to the JSON file `out` ({mutation: {test: pass/FAIL/skip}})."""
    need_core = any(n in CORE for n in names)
    build = build_dir or (mutation_build() if need_core else os.environ.get("SHAPED_TRANSFORMER_BUILD_DIR", ""))
    results = json.load(open(out)) if os.path.exists(out) else {}
    for name in names:
        with tempfile.TemporaryDirectory() as d:
            junit = os.path.join(d, "j.xml")
            run_pytest(targets or DETECTION_SUITE, build, mutation="" if name == "none" else name, junit=junit)
            row = dict(results.get(name, {}))
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


def _detection_table(out: str) -> str:
    """The detection matrix of the JSON file as Markdown: one row per test function
    (parametrized cases grouped: "FAIL" all failed, "k/n" k of n failed) that fails
    under at least one mutation."""
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


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="the mutation matrix (docs/validation.md)")
    ap.add_argument("--build-dir", help="where to build the mutation core (default: a temporary folder)")
    ap.add_argument("--build-only", action="store_true", help="only build the mutation core (into --build-dir)")
    ap.add_argument(
        "--jobs",
        type=int,
        default=int(os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", "2")),
        help="child test runs at a time (default: CMAKE_BUILD_PARALLEL_LEVEL or 2)",
    )
    ap.add_argument("--detection", action="store_true", help="the detection matrix: every statistical test")
    ap.add_argument("--out", default="mutation-matrix.json", help="--detection: the JSON file of outcomes")
    ap.add_argument("--table", action="store_true", help="--detection: only print the table of --out")
    ap.add_argument("--targets", nargs="+", help="--detection: these tests instead of the statistical suite")
    ap.add_argument("names", nargs="*", help=f"mutations (default: all); --detection also 'none'; known: {ALL}")
    a = ap.parse_args(argv)
    for c in a.names:
        if c not in ALL and not (a.detection and c == "none"):
            raise SystemExit(f"unknown mutation {c}; known: {ALL}")
    if a.detection:
        if not a.table:
            _collect(a.names or ["none"] + ALL, a.out, a.build_dir and mutation_build(a.build_dir), a.targets)
        print(_detection_table(a.out))
        return 0
    t0 = time.perf_counter()
    build = mutation_build(a.build_dir)
    print(f"mutation core built in {time.perf_counter() - t0:.1f} s: {build}", flush=True)
    if a.build_only:
        return 0
    results = run_matrix(build, a.names, log=lambda s: print(s, flush=True), jobs=a.jobs)
    bad = {k: v for k, (v, _) in results.items() if v != "caught"}
    print(
        f"{len(results) - 1 - len(bad)} of {len(results) - 1} mutations caught by their tests; "
        f"{time.perf_counter() - t0:.1f} s in all"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
