"""Resumable sweeps: local processes, a real dask.distributed cluster, and a sweep
killed with SIGKILL midway that resumes without recomputing finished points."""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from shaped_transformer import sweep as sw

# The folder holding the package these tests imported (site-packages in CI, python/ in
# development), so that child processes import the same build.
_PKG_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__import__("shaped_transformer").__file__)))
HERE = Path(__file__).resolve().parent


# Module-level (picklable) point functions.  Each records that it ran by creating a
# uniquely named file in ``log_dir``, so the tests can count computations per point.
def quadratic(*, a: float, b: int, log_dir: str = "", delay: float = 0.0) -> dict:
    if log_dir:
        Path(log_dir, f"{a}_{b}_{os.getpid()}_{time.monotonic_ns()}").touch()
    if delay:
        time.sleep(delay)
    rng = np.random.default_rng(b)
    return {"value": a * a + b, "noise": float(rng.normal()), "nested": {"twice": 2 * a}}


def failing(*, a: int) -> dict:
    if a == 2:
        raise RuntimeError("point 2 fails")
    return {"a2": a * a}


def _runs(log_dir: Path) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for p in log_dir.iterdir():
        a, b = p.name.split("_")[:2]
        counts[(a, b)] = counts.get((a, b), 0) + 1
    return counts


def test_grid_points_and_stable_keys():
    pts = sw.grid_points({"a": [1, 2], "b": [3], "c": "x"})
    assert pts == [{"a": 1, "b": 3, "c": "x"}, {"a": 2, "b": 3, "c": "x"}]
    assert sw.grid_points([{"a": 1}]) == [{"a": 1}]
    # key: independent of dict order and of NumPy scalar types; depends on values and function
    k = sw.point_key({"a": 1, "b": 0.5}, "f")
    assert k == sw.point_key({"b": 0.5, "a": np.int64(1)}, "f")
    assert k != sw.point_key({"a": 1, "b": 0.25}, "f") and k != sw.point_key({"a": 1, "b": 0.5}, "g")
    assert len(k) == 20 and int(k, 16) >= 0
    with pytest.raises(ValueError, match="no values"):
        sw.grid_points({"a": []})


def test_local_sweep_writes_one_file_per_point_and_resumes(tmp_path):
    out, log = tmp_path / "out", tmp_path / "log"
    log.mkdir()
    grid = {"a": [0.5, 1.0, 2.0], "b": [1, 2], "log_dir": [str(log)]}
    res = sw.sweep(quadratic, grid, out, max_workers=2, progress=False)
    assert len(res) == 6
    files = sorted(out.glob("*.json"))
    assert len(files) == 6 and not list(out.glob(".tmp-*"))
    for f in files:
        rec = json.loads(f.read_text())
        assert f.stem == rec["key"] == sw.point_key(rec["params"], rec["function"])
    np.testing.assert_allclose(res.column("value"), [a * a + b for a in (0.5, 1.0, 2.0) for b in (1, 2)])
    np.testing.assert_allclose(res.column("nested.twice"), [2 * a for a in (0.5, 1.0, 2.0) for b in (1, 2)])
    assert all(c == 1 for c in _runs(log).values())
    # rerun with a larger grid: only the new points are computed
    grid["a"] = [0.5, 1.0, 2.0, 3.0]
    res2 = sw.sweep(quadratic, grid, out, executor=cf.ThreadPoolExecutor(2), progress=False)
    assert len(res2) == 8 and sum(_runs(log).values()) == 8
    assert [r["value"] for r in res2.rows[:6]] == [r["value"] for r in res.rows]
    # load() reads the folder back; to_csv writes the table
    loaded = sw.load(out)
    assert len(loaded) == 8 and set(loaded.columns) >= {"a", "b", "value", "noise", "nested.twice"}
    csv = res2.to_csv(tmp_path / "t.csv").read_text().splitlines()
    assert len(csv) == 9 and "value" in csv[0]


def test_points_of_another_version_or_configuration_are_not_reused(tmp_path):
    """A saved point is reused only when the same version of the package made it and
    its parameters still hash to its name: after a fix to the model, old numbers
    must not come back silently (they used to)."""
    out, log = tmp_path / "out", tmp_path / "log"
    log.mkdir()
    grid = {"a": [1.0, 2.0, 3.0], "b": [1], "log_dir": [str(log)]}
    ex = cf.ThreadPoolExecutor(1)
    sw.sweep(quadratic, grid, out, executor=ex, progress=False)
    files = {json.loads(f.read_text())["params"]["a"]: f for f in out.glob("*.json")}
    rec = json.loads(files[1.0].read_text())
    assert rec["version"] == sw._version() and rec["format"] == 2
    # an older version of the package; a file without a version (the old layout);
    # a point whose saved parameters no longer hash to its file name
    files[1.0].write_text(json.dumps(dict(rec, version="0.0.1", result={"value": -1.0})))
    old = json.loads(files[2.0].read_text())
    files[2.0].write_text(json.dumps({k: v for k, v in old.items() if k != "version"} | {"format": 1}))
    edited = json.loads(files[3.0].read_text())
    edited["params"]["b"] = 7
    files[3.0].write_text(json.dumps(edited))
    with pytest.raises(ValueError, match="3 saved point.*cannot be reused.*0.0.1.*remove them"):
        sw.sweep(quadratic, grid, out, executor=ex, progress=False, stale="refuse")
    assert sum(_runs(log).values()) == 3  # refused before anything ran
    with pytest.warns(sw.SweepWarning, match="3 saved point.*made by shaped-transformer 0.0.1.*recomputed"):
        res = sw.sweep(quadratic, grid, out, executor=ex, progress=False)
    assert sum(_runs(log).values()) == 6 and list(res.column("value")) == [2.0, 5.0, 10.0]
    assert all(json.loads(f.read_text())["version"] == sw._version() for f in out.glob("*.json"))
    # load() leaves such points out, and says so
    files[1.0].write_text(json.dumps(dict(json.loads(files[1.0].read_text()), version="0.0.1")))
    with pytest.warns(sw.SweepWarning, match="1 saved point.*left out"):
        assert len(sw.load(out)) == 2


def test_stale_temporary_files_are_removed(tmp_path):
    stale, fresh = tmp_path / ".tmp-old.json", tmp_path / ".tmp-new.json"
    stale.write_text("{")
    fresh.write_text("{")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    res = sw.sweep(failing, {"a": [1]}, tmp_path, executor=cf.ThreadPoolExecutor(1), progress=False)
    assert len(res) == 1 and not stale.exists() and fresh.exists()


def test_failures_keep_the_other_points(tmp_path):
    with pytest.raises(sw.SweepError, match="1 of 3 points failed") as info:
        sw.sweep(failing, {"a": [1, 2, 3]}, tmp_path, executor=cf.ThreadPoolExecutor(1), progress=False)
    assert len(info.value.failures) == 1
    assert len(list(tmp_path.glob("*.json"))) == 2
    res = sw.sweep(
        failing, {"a": [1, 2, 3]}, tmp_path, executor=cf.ThreadPoolExecutor(1), errors="skip", progress=False
    )
    assert [r["a"] for r in res] == [1, 3]


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="errors"):
        sw.sweep(quadratic, {"a": [1]}, tmp_path, errors="ignore")
    with pytest.raises(ValueError, match="unknown parameters"):
        sw.sweep({"widht": 3}, {"seed": [0]}, tmp_path)
    with pytest.raises(ValueError, match="grid must be given"):
        sw.sweep(quadratic, None, tmp_path)
    with pytest.raises(ValueError, match="executor"):
        sw.sweep(quadratic, {"a": [1]}, tmp_path, executor=object())


def test_sweep_on_a_dask_local_cluster(tmp_path):
    distributed = pytest.importorskip("distributed")
    log = tmp_path / "log"
    log.mkdir()
    grid = {"a": [1.0, 2.0], "b": [0, 1, 2], "log_dir": [str(log)]}
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None, death_timeout=20
        ) as cluster,
        distributed.Client(cluster, timeout=20) as client,
    ):
        res = sw.sweep(quadratic, grid, tmp_path / "out", executor=client.get_executor(), progress=False)
    assert len(res) == 6 and sum(_runs(log).values()) == 6
    local = sw.sweep(quadratic, grid, tmp_path / "out2", executor=cf.ThreadPoolExecutor(2), progress=False)
    assert res.rows == local.rows


_KILL_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from test_sweep import quadratic
    from shaped_transformer.sweep import sweep
    grid = {{"a": [0.0, 1.0, 2.0, 3.0], "b": [0, 1, 2], "log_dir": [{log!r}], "delay": [{delay!r}]}}
    sweep(quadratic, grid, {out!r}, max_workers=2, progress=False)
    """
)


def _run_script(tmp_path, out, log, delay):
    script = tmp_path / f"sweep_{delay}.py"
    script.write_text(_KILL_SCRIPT.format(tests=str(HERE), log=str(log), out=str(out), delay=delay))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [_PKG_PARENT, env.get("PYTHONPATH", "")] if p)
    return subprocess.Popen([sys.executable, str(script)], env=env, start_new_session=True)


def test_killed_sweep_resumes_without_recomputing(tmp_path):
    out, log = tmp_path / "out", tmp_path / "log"
    log.mkdir()
    proc = _run_script(tmp_path, out, log, 0.4)
    try:
        deadline = time.monotonic() + 60
        while (
            time.monotonic() < deadline and len([p for p in out.glob("*.json") if not p.name.startswith(".tmp-")]) < 4
        ):
            time.sleep(0.05)
            assert proc.poll() is None, "the sweep finished before it could be killed"
    finally:
        # SIGKILL the sweep and its worker processes (its own process group, started above)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:  # it already exited: let the assertion above report why
            pass
        proc.wait(timeout=30)
    time.sleep(0.5)  # let orphaned workers notice their parent is gone
    # a kill between writing a temporary file and renaming it leaves a ".tmp-*" file:
    # it is not a finished point (the sweep ignores it and recomputes that point)
    done_before = {p.stem for p in out.glob("*.json") if not p.name.startswith(".tmp-")}
    tmp_before = set(out.glob(".tmp-*"))
    assert len(tmp_before) <= 2
    assert 4 <= len(done_before) < 12, len(done_before)
    records_before = {k: json.loads((out / f"{k}.json").read_text()) for k in done_before}
    runs_before = _runs(log)

    proc = _run_script(tmp_path, out, log, 0.4)
    assert proc.wait(timeout=120) == 0
    runs_after = _runs(log)
    final = sw.load(out)
    assert len(final) == 12
    for key, rec in records_before.items():
        a, b = str(rec["params"]["a"]), str(rec["params"]["b"])
        # a finished point was never computed again, and its file was kept as it was
        assert runs_after[(a, b)] == runs_before[(a, b)]
        assert json.loads((out / f"{key}.json").read_text()) == rec
    # identical to an uninterrupted sweep
    ref = sw.sweep(
        quadratic,
        {"a": [0.0, 1.0, 2.0, 3.0], "b": [0, 1, 2], "log_dir": [str(log)], "delay": [0.4]},
        tmp_path / "ref",
        executor=cf.ThreadPoolExecutor(4),
        progress=False,
    )
    strip = lambda rows: sorted((r["a"], r["b"], r["value"], r["noise"]) for r in rows)  # noqa: E731
    assert strip(final.rows) == strip(ref.rows)
    assert set(out.glob(".tmp-*")) == tmp_before  # the resumed run left no temporary file


def test_built_in_point_from_config(tmp_path):
    """The config form of sweep (dict of run_point parameters) on the exact chain."""
    res = sw.sweep(
        {"m": 4, "width": 16, "T": 0.5, "samples": 40, "method": "exact"},
        {"gamma": [0.3, 0.6], "seed": [1]},
        tmp_path,
        executor=cf.ThreadPoolExecutor(2),
        progress=False,
    )
    assert len(res) == 2
    for row in res:
        assert -1 <= row["rho_mean"] <= 1 and 1 <= row["effective_rank"] <= 4 and row["samples"] == 40


def test_sweep_command_from_toml(tmp_path, capsys):
    from shaped_transformer import cli

    cfg = tmp_path / "sweep.toml"
    cfg.write_text(
        '[base]\nm = 4\nwidth = 16\nT = 0.5\nsamples = 30\nmethod = "exact"\n[grid]\ntau0 = [0.5, 2.0]\nseed = [0]\n'
    )
    assert cli.main(["sweep", str(cfg), "--out", str(tmp_path / "o"), "--workers", "1", "--no-progress"]) == 0
    assert "2 points" in capsys.readouterr().out
    lines = (tmp_path / "o" / "results.csv").read_text().splitlines()
    assert len(lines) == 3 and "rho_mean" in lines[0]
    bad = tmp_path / "bad.toml"
    bad.write_text("[base]\nwidht = 3\n[grid]\nseed = [0]\n")
    assert cli.main(["sweep", str(bad), "--out", str(tmp_path / "b")]) == 2
    assert "unknown parameters" in capsys.readouterr().err
