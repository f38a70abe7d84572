"""The ``shaped-transformer report`` command at a reduced size: every figure and
number file exists and is valid, and the numbers lie in their ranges."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")
import matplotlib.image as mpimg  # noqa: E402

from shaped_transformer import cli  # noqa: E402
from shaped_transformer.report import DEFAULT_STUDY, SIZES, study_config  # noqa: E402

# The folder holding the package these tests imported (site-packages in CI, python/ in
# development), so that child processes import the same build.
_PKG_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__import__('shaped_transformer').__file__)))
ROOT = Path(__file__).resolve().parent.parent
FIGURES = ["density_rhoT.png", "distances.png", "rho_vs_depth.png", "effective_rank.png", "parameter_effects.png"]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [_PKG_PARENT, env.get("PYTHONPATH", "")] if p)
    return env


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    """One tiny report, run through the command's main() with a --config file on top of --size tiny."""
    tmp = tmp_path_factory.mktemp("report")
    cfg = tmp / "study.toml"
    cfg.write_text('[study]\nm = 5\nseed = 3\n[network]\nheads = 2\n[effects]\nheads = [1, 4]\n')
    out = tmp / "out"
    rc = cli.main(["report", "--size", "tiny", "--config", str(cfg), "--out", str(out), "--no-progress"])
    assert rc == 0
    return out


def test_every_file_exists_and_pngs_decode(report_dir):
    for name in FIGURES + ["results.json", "distances.csv", "summaries.csv", "report.md"]:
        assert (report_dir / name).is_file(), name
    for name in FIGURES:
        img = mpimg.imread(report_dir / name)
        assert img.ndim == 3 and min(img.shape[:2]) > 200, name
        assert np.all(np.isfinite(img)) and img[..., :3].std() > 0.01, name


def test_results_json_numbers_are_finite_and_in_range(report_dir):
    res = json.loads((report_dir / "results.json").read_text())  # strict JSON: no NaN/Infinity
    assert res["config"]["study"]["m"] == 5 and res["config"]["study"]["seed"] == 3
    assert res["config"]["network"]["heads"] == 2 and res["size"] == "tiny"
    assert res["compute_seconds"] > 0
    comparisons = {r["comparison"] for r in res["distances"]}
    assert {"exact n=16 vs SDE", "exact n=32 vs SDE"} <= comparisons and len(comparisons) == 4
    for r in res["distances"]:
        v, lo, hi = r["value"], r["low"], r["high"]
        assert all(isinstance(x, float) and math.isfinite(x) for x in (v, lo, hi)), r
        bound = 1.0 if r["metric"] == "ks" else 2.0  # KS <= 1; W1 of values in [-1, 1] <= 2
        assert 0 <= lo <= hi <= bound and 0 < v <= bound, r
        assert r["bootstrap"] == SIZES["tiny"]["study"]["bootstrap"] and r["level"] == 0.95
    m = 5
    for run, obs in res["summaries"].items():
        for name, s in obs.items():
            med = np.array([np.nan if x is None else x for x in s["median"]])
            count = np.array(s["count"])
            assert np.all(np.isfinite(med[count > 0])), (run, name)
            assert np.all(count + np.array(s["dropped"]) == count[0] + s["dropped"][0])
            if name == "rho":
                assert np.all(np.abs(med[count > 0]) <= 1 + 1e-12)
                assert med[0] == pytest.approx(0.3)  # rho0 at t = 0
            elif name == "effective_rank":
                assert np.all((med[count > 0] >= 1 - 1e-9) & (med[count > 0] <= m + 1e-9))
            elif name == "min_eig":
                assert np.all(med[count > 0] >= -1e-6) and np.all(med[count > 0] <= 1 + 1e-9)
    for run, info in res["runs"].items():
        assert 0 <= info["exploded"] <= info["samples"], run
    # rank collapse: standard attention ends far more correlated than shaped attention
    s_std = res["summaries"]["standard"]["rho"]["median"][-1]
    s_shaped = res["summaries"]["exact n=32"]["rho"]["median"][-1]
    assert s_std > s_shaped + 0.2


def test_csv_files_parse(report_dir):
    with open(report_dir / "distances.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and {r["metric"] for r in rows} == {"ks", "wasserstein1"}
    assert all(0 <= float(r["low"]) <= float(r["high"]) for r in rows)
    with open(report_dir / "summaries.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"run", "observable", "t", "median", "q0.05", "q0.95", "mean", "sem", "count", "dropped"} <= set(rows[0])
    assert {r["observable"] for r in rows} == {"rho", "effective_rank", "min_eig"}
    assert all(0.0 <= float(r["t"]) <= 1.0 + 1e-12 for r in rows)


def test_markdown_embeds_figures_and_states_distances(report_dir):
    md = (report_dir / "report.md").read_text()
    for name in FIGURES:
        assert f"]({name})" in md
    assert "| exact n=32 vs SDE |" in md and "KS" in md and "Wasserstein-1" in md and "bootstrap CI" in md


def test_config_schema_and_example():
    cfg = study_config("default", ROOT / "examples" / "study.toml")
    assert cfg["network"]["heads"] == 4 and cfg["exact"]["widths"] == [32, 128, 512]
    assert set(cfg) == set(DEFAULT_STUDY)
    for size in SIZES:
        study_config(size)
    with pytest.raises(ValueError, match="unknown key network.tua0"):
        study_config("tiny", {"network": {"tua0": 1.0}})
    with pytest.raises(ValueError, match="unknown table"):
        study_config("tiny", {"netwrk": {}})
    with pytest.raises(ValueError, match="exact.samples must be of type int"):
        study_config("tiny", {"exact": {"samples": "many"}})
    with pytest.raises(ValueError, match="size must be one of"):
        study_config("huge")
    with pytest.raises(ValueError, match="study.rho0"):
        study_config("tiny", {"study": {"rho0": 1.0}})


def test_cli_help_version_and_errors(tmp_path, capsys):
    out = subprocess.run([sys.executable, "-m", "shaped_transformer.cli", "--version"], capture_output=True, text=True,
                         env=_env(), timeout=60)
    assert out.returncode == 0 and out.stdout.strip().startswith("shaped-transformer ")
    out = subprocess.run([sys.executable, "-m", "shaped_transformer.cli", "--help"], capture_output=True, text=True,
                         env=_env(), timeout=60)
    assert out.returncode == 0 and "report" in out.stdout and "sweep" in out.stdout
    with pytest.raises(SystemExit) as e:
        cli.main(["report", "--help"])
    assert e.value.code == 0
    assert "--size" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text("[network]\ngama = 0.5\n")
    assert cli.main(["report", "--config", str(bad), "--out", str(tmp_path / "x")]) == 2
    assert "unknown key network.gama" in capsys.readouterr().err
    assert cli.main(["report", "--config", str(tmp_path / "missing.toml")]) == 2
    with pytest.raises(SystemExit):
        cli.main(["report", "--size", "huge"])
