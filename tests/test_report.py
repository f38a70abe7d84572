"""The ``shaped-transformer report`` command at a reduced size: every figure and
number file exists and is valid, and the numbers lie in their ranges."""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import matplotlib  # noqa: E402,F401  (a dependency: never skipped)
import matplotlib.image as mpimg  # noqa: E402
import numpy as np
import pytest
from scipy.stats import binomtest

from shaped_transformer import cli  # noqa: E402
from shaped_transformer.report import DEFAULT_STUDY, SIZES, study_config  # noqa: E402

# The folder holding the package these tests imported (site-packages in CI, python/ in
# development), so that child processes import the same build.
_PKG_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__import__("shaped_transformer").__file__)))
ROOT = Path(__file__).resolve().parent.parent
FIGURES = [
    "density_rhoT.png",
    "blowup.png",
    "distances.png",
    "rho_vs_depth.png",
    "effective_rank.png",
    "parameter_effects.png",
]
FILES = ["results.json", "differences.csv", "distances.csv", "summaries.csv", "report.md"]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [_PKG_PARENT, env.get("PYTHONPATH", "")] if p)
    return env


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    """One tiny report, run through the command's main() with a --config file on top of --size tiny."""
    tmp = tmp_path_factory.mktemp("report")
    cfg = tmp / "study.toml"
    cfg.write_text("[study]\nm = 5\nseed = 3\n[network]\nheads = 2\n[effects]\nheads = [1, 4]\n")
    out = tmp / "out"
    rc = cli.main(["report", "--size", "tiny", "--config", str(cfg), "--out", str(out), "--no-progress"])
    assert rc == 0
    return out


def test_every_file_exists_and_pngs_decode(report_dir):
    for name in FIGURES + FILES + [".shaped-transformer-report"]:
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
    assert comparisons == {"network n=16 vs SDE", "network n=32 vs SDE", "explicit vs exact n=16", "SDE dt vs dt/2"}
    assert {r["observable"] for r in res["distances"]} == {
        "rho_T",
        "mean_rho",
        "log_trace",
        "effective_rank",
        "log_max_diag",
    }
    for r in res["distances"]:
        v, lo, hi = r["value"], r["low"], r["high"]
        assert all(isinstance(x, float) and math.isfinite(x) for x in (v, lo, hi)), r
        bound = 1.0 if r["metric"] == "ks" else (2.0 if r["observable"] in ("rho_T", "mean_rho") else math.inf)
        assert 0 <= lo <= hi <= bound and 0 <= v <= bound, r
        assert r["bootstrap"] == SIZES["tiny"]["study"]["bootstrap"] and r["level"] == 0.95
    # every run reports its blow-up probability with an interval around it
    for info in res["runs"].values():
        p = info["p_blowup"]
        # the Wilson interval of this run's own counts (scipy, independently); "value
        # inside its interval" could not fail, every Wilson interval holds k / n
        ref = binomtest(info["exploded"], info["samples"]).proportion_ci(confidence_level=p["level"], method="wilson")
        assert p["value"] == pytest.approx(info["exploded"] / info["samples"])
        assert p["low"] == pytest.approx(ref.low, rel=1e-9, abs=1e-15) and p["high"] == pytest.approx(
            ref.high, rel=1e-9
        )
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
            elif name in ("effective_rank", "correlation_rank"):
                assert np.all((med[count > 0] >= 1 - 1e-9) & (med[count > 0] <= m + 1e-9))
            elif name == "scale_ratio":
                assert np.all(med[count > 0] >= 1 - 1e-12)
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
    assert len(rows) == 4 * 5 * 2 and {r["metric"] for r in rows} == {"ks", "wasserstein1"}
    assert all(0 <= float(r["low"]) <= float(r["high"]) for r in rows)
    with open(report_dir / "summaries.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"run", "observable", "t", "median", "q0.05", "q0.95", "mean", "sem", "count", "dropped"} <= set(rows[0])
    assert {r["observable"] for r in rows} == {"rho", "effective_rank", "correlation_rank", "scale_ratio", "min_eig"}
    assert all(0.0 <= float(r["t"]) <= 1.0 + 1e-12 for r in rows)


def test_markdown_embeds_figures_and_states_distances(report_dir):
    md = (report_dir / "report.md").read_text()
    for name in FIGURES:
        assert f"]({name})" in md
    assert "| network n=32 vs SDE |" in md and "KS" in md and "Wasserstein-1" in md and "bootstrap CI" in md
    assert "## Verdict" in md and "Stopping rule" in md and "P(blow-up by T)" in md


def test_verdicts_follow_from_the_printed_intervals(report_dir):
    """A comparison is said to differ exactly when one of its printed intervals of a
    difference excludes 0, and the sentence of report.md says so."""
    res = json.loads((report_dir / "results.json").read_text())
    md = (report_dir / "report.md").read_text()
    with open(report_dir / "differences.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 * 5
    for cname, v in res["verdicts"].items():
        mine = [r for r in rows if r["comparison"] == cname]
        excl = [r["statistic"] for r in mine if not float(r["low"]) <= 0.0 <= float(r["high"])]
        assert excl == [r["statistic"] for r in mine if r["excludes_0"] == "True"]
        assert sorted(excl) == sorted(v["differs"]), cname
        assert f"- **{cname}**: {v['text']}." in md
        assert v["text"].startswith("differs") == bool(excl)


def _section(md: str, start: str, end: str) -> str:
    return md[md.index(start) : md.index(end, md.index(start))]


def test_markdown_explains_its_verdicts_from_the_printed_intervals(report_dir):
    """Issue 23: the page says why a finite-width difference is expected, what must
    shrink as n grows, and, per statistic, what the intervals say about it; every
    claim of that list follows from the intervals in differences.csv."""
    md = (report_dir / "report.md").read_text()
    verdict = _section(md, "## Verdict", "## 1.")
    assert "expected and is not a failure" in verdict and "shrinks towards 0 as n grows" in verdict
    with open(report_dir / "differences.csv") as f:
        rows = list(csv.DictReader(f))
    widths = [16, 32]
    for label in (
        "P(blow-up by T)",
        "mean rho_T",
        "mean log tr(V_T)/m",
        "mean effective rank",
        "q90 of log max diag V_T",
    ):
        line = next(x for x in verdict.splitlines() if x.startswith(f"- {label}: "))
        excl = [
            w
            for w in widths
            for r in rows
            if r["comparison"] == f"network n={w} vs SDE" and r["statistic"] == label and r["excludes_0"] == "True"
        ]
        if not excl:
            assert "every interval includes 0" in line, line
        else:
            assert f"excludes 0 at n = {', '.join(map(str, excl))}" in line, line
            assert ("has not closed" in line) == (widths[-1] in excl), line


def test_markdown_reads_collapse_from_the_correlations_and_names_every_width(report_dir):
    """Section 4 reports the correlation matrix's effective rank apart from V's (the
    token scales spread, so V's effective rank is low without any collapse); every
    table says which width it shows."""
    md = (report_dir / "report.md").read_text()
    res = json.loads((report_dir / "results.json").read_text())
    cfg = res["config"]
    sec4 = _section(md, "## 4.", "## 5.")
    shaped = res["summaries"]["exact n=32"]  # standard.width = 32 at --size tiny: the shaped run of that width
    corr, vrank = shaped["correlation_rank"]["median"][-1], shaped["effective_rank"]["median"][-1]
    assert "effective rank of the correlation matrix" in sec4 and f"{corr:.2f} (shaped)" in sec4
    assert f"effective rank of V itself, (tr V)^2 / tr V^2, is {vrank:.2f}" in sec4
    assert corr > vrank  # unequal token scales lower V's effective rank, not the correlations'
    assert f"width n = {cfg['standard']['width']}" in sec4
    sec1 = _section(md, "## 1.", "## 2.")
    assert "| run | width n (depth = T n) or SDE step |" in sec1
    for line in sec1.splitlines():
        if line.startswith(("| exact n=", "| explicit", "| effect")):
            assert "| n = " in line, line
        if line.startswith("| sde"):
            assert "| SDE, dt = " in line, line
    sec5 = _section(md, "## 5.", "![parameter effects]")
    w = cfg["effects"]["width"]
    assert f"width n = {w}" in sec5 and f"| variation (n = {w}) |" in sec5


def test_print_config_is_a_template_for_config(tmp_path, capsys):
    assert cli.main(["report", "--size", "tiny", "--seed", "5", "--print-config"]) == 0
    text = capsys.readouterr().out
    cfg = tmp_path / "study.toml"
    cfg.write_text(text)
    assert study_config("default", cfg) == study_config("tiny", seed=5)
    assert cli.main(["atlas", "--size", "tiny", "--print-config"]) == 0
    from shaped_transformer.atlas import atlas_config

    (tmp_path / "atlas.toml").write_text(capsys.readouterr().out)
    assert atlas_config("default", tmp_path / "atlas.toml") == atlas_config("tiny")


def test_help_points_to_what_a_pip_user_has(capsys):
    """The help names no file of the source tree (a pip user has no docs/), and
    prints percent signs once (atlas --help printed "95%%")."""
    for cmd in ("report", "atlas", "sweep"):
        with pytest.raises(SystemExit):
            cli.main([cmd, "--help"])
        text = capsys.readouterr().out
        assert "%%" not in text and "docs/" not in text, (cmd, text)
    with pytest.raises(SystemExit):
        cli.main(["atlas", "--help"])
    assert "95% intervals" in " ".join(capsys.readouterr().out.split())


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
    out = subprocess.run(
        [sys.executable, "-m", "shaped_transformer.cli", "--version"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    assert out.returncode == 0 and out.stdout.strip().startswith("shaped-transformer ")
    out = subprocess.run(
        [sys.executable, "-m", "shaped_transformer.cli", "--help"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
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


# ---------------------------------------------------------------------------
# Configuration errors arrive before anything runs, naming the key
# ---------------------------------------------------------------------------


@pytest.fixture
def nothing_runs(monkeypatch):
    """Any simulation started by the report fails the test."""
    from shaped_transformer import report

    def boom(*a, **k):
        raise AssertionError("a stage ran before the configuration was refused")

    monkeypatch.setattr(report, "_run_network", boom)
    monkeypatch.setattr(report, "_run_sde", boom)


@pytest.mark.parametrize(
    "toml, key",
    [
        ("[study]\nseed = -5\n", "study.seed"),
        ('[sde]\nscheme = "foo"\n', "sde.scheme"),
        ('[sde]\npsd = "foo"\n', "sde.psd"),
        ('[standard]\nnorm = "foo"\n', "standard.norm"),
        ('[network]\nnorm = "mid_rms"\n', "network.norm"),
        ('[study]\nm = 8\n[exact]\nwidths = [8, 16]\n[network]\nnorm = "pre_layer"\n', "exact.widths"),
        ('[study]\nm = 8\n[effects]\nwidth = 8\n[network]\nnorm = "post_layer"\n', "effects.width"),
        ("[effects]\nheads = [1.7, 2]\n", "effects.heads"),
        ("[effects]\ntau0 = [0.0]\n", "effects.tau0"),
        ("[effects]\ngamma = [1.5]\n", "effects.gamma"),
        ("[network]\ngamma = 2.0\n", "[network]"),
        ('[network]\nblocks = "everything"\n', "network.blocks"),
        ("[sde_network]\ntau0 = -1.0\n", "[sde_network]"),
        ('[explicit]\nmethod = "exact"\n', "explicit.method"),
        ('[study]\nm = 4\n[standard]\nnorm = "pre_layer"\nmethod = "exact"\nwidth = 4\n', "standard.width"),
        ("[study]\nblowup = 0.5\n", "study.blowup"),
        ("[sde]\nrefine = 1\n", "sde.refine"),
        ("[sde]\ndt = 2.0\n", "sde.dt"),
    ],
)
def test_bad_configuration_is_refused_before_anything_runs(tmp_path, capsys, nothing_runs, toml, key):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(toml)
    out = tmp_path / "out"
    assert cli.main(["report", "--size", "tiny", "--config", str(cfg), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert key in err and "Traceback" not in err and err.count("\n") == 1, err
    assert not out.exists() and not list(tmp_path.glob(".out.*"))


def test_unusable_out_is_one_clean_error_line(tmp_path, capsys, nothing_runs):
    assert cli.main(["report", "--size", "tiny", "--out", "/proc/forbidden/report", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("shaped-transformer: error: --out /proc/forbidden/report") and err.count("\n") == 1, err
    # a folder that is not a previous report is never replaced
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("precious")
    assert cli.main(["report", "--size", "tiny", "--out", str(keep), "--no-progress"]) == 2
    assert "holds no previous report" in capsys.readouterr().err
    assert (keep / "notes.txt").read_text() == "precious"
    afile = tmp_path / "file"
    afile.write_text("x")
    assert cli.main(["report", "--size", "tiny", "--out", str(afile), "--no-progress"]) == 2
    assert "not a folder" in capsys.readouterr().err
    # a folder that merely holds a file named like a report's (docs/ has a report.md)
    docs = tmp_path / "docs"
    (docs / "img").mkdir(parents=True)
    (docs / "report.md").write_text("# the user's own page")
    assert cli.main(["report", "--size", "tiny", "--out", str(docs), "--no-progress"]) == 2
    assert "holds no previous report" in capsys.readouterr().err
    assert (docs / "report.md").read_text() == "# the user's own page" and (docs / "img").is_dir()
    # the current folder and its parents are never replaced
    import os

    cwd = os.getcwd()
    try:
        os.chdir(keep)
        for where in (".", ".."):
            assert cli.main(["report", "--size", "tiny", "--out", where, "--no-progress"]) == 2
            assert "current folder or one of its parents" in capsys.readouterr().err
    finally:
        os.chdir(cwd)
    assert (keep / "notes.txt").read_text() == "precious"


def test_interrupted_run_leaves_the_previous_report_untouched(tmp_path, monkeypatch, report_dir):
    """Ctrl-C while the figures are written: the previous report stays as it was, with
    no new figure beside it and no temporary folder left behind."""
    import shutil

    from shaped_transformer import plotting

    out = tmp_path / "out"
    shutil.copytree(report_dir, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    calls = []
    real = plotting.save_figure

    def interrupted(fig, path, **k):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(fig, path, **k)

    monkeypatch.setattr(plotting, "save_figure", interrupted)
    assert cli.main(["report", "--size", "tiny", "--seed", "11", "--out", str(out), "--no-progress"]) == 130
    assert len(calls) == 3
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    # and an uninterrupted run replaces its own files, and only those: what the
    # user added to the folder survives (issue 23: it used to be deleted)
    (out / "notes.txt").write_text("my notes")
    (out / "mine").mkdir()
    (out / "mine" / "a.csv").write_text("1,2")
    monkeypatch.setattr(plotting, "save_figure", real)
    assert cli.main(["report", "--size", "tiny", "--seed", "11", "--out", str(out), "--no-progress"]) == 0
    assert json.loads((out / "results.json").read_text())["config"]["study"]["seed"] == 11
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert (out / "notes.txt").read_text() == "my notes" and (out / "mine" / "a.csv").read_text() == "1,2"


# ---------------------------------------------------------------------------
# The verdict: agreement where the model says so, differences by construction
# ---------------------------------------------------------------------------

# Attention alone at n = 1024 (T = 1, tau0 = 1, gamma = 0.5): the exact chain and
# the SDE, under one stopping rule (blow-up at 1e4), agree; an SDE with twice the
# attention drift (heads = 2 and tau0 / sqrt(2): the same noise), without the softmax
# terms (tau0 = 1e9) or with another gamma differs from the network.  Measured with
# these sizes: P(blow-up) 0.6% network, 0.95% true SDE, 3.3% doubled drift, 0% without
# softmax, 3.3% at gamma 0.6 - the differences are 4-10 standard errors.
VERDICT_STUDY = {
    "study": {"saves": 2, "bootstrap": 100, "blowup": 1e4},
    "network": {"blocks": "attention", "tau0": 1.0, "gamma": 0.5},
    "exact": {"widths": [1024], "samples": 2000},
    "sde": {"paths": 4000, "dt": 1e-3, "scheme": "euler", "refine": 0},
}


@pytest.fixture(scope="module")
def cached_networks():
    """Memoizes the report's network runs, so that the four studies below share one
    run of the network side (only their SDE differs)."""
    from shaped_transformer import report

    cache: dict = {}
    real = report._run_network

    def cached(net, V0, **kw):
        key = (repr(net), V0.tobytes(), tuple(sorted((k, str(v)) for k, v in kw.items())))
        if key not in cache:
            cache[key] = real(net, V0, **kw)
        return cache[key]

    mp = pytest.MonkeyPatch()
    mp.setattr(report, "_run_network", cached)
    yield
    mp.undo()


@pytest.mark.parametrize(
    "sde_network, differs",
    [
        ({}, False),
        ({"heads": 2, "tau0": 1.0 / math.sqrt(2.0)}, True),  # twice the attention drift, the same noise
        ({"tau0": 1e9}, True),  # no softmax terms: neither drift nor softmax noise
        ({"gamma": 0.6}, True),
    ],
    ids=["same model", "drift x2", "no softmax", "gamma 0.6"],
)
def test_verdict_agrees_only_with_the_right_sde(tmp_path, cached_networks, sde_network, differs):
    from shaped_transformer.report import run_report

    cfg = copy.deepcopy(VERDICT_STUDY)
    cfg["sde_network"] = sde_network
    res = run_report(tmp_path / "out", size="tiny", config=cfg, seed=0, progress=False)
    v = res["verdicts"]["network n=1024 vs SDE"]
    assert bool(v["differs"]) == differs, v
    md = (tmp_path / "out" / "report.md").read_text()
    word = "differs" if differs else "no measurable difference"
    assert f"- **network n=1024 vs SDE**: {word}" in md
    if sde_network:
        assert "**Ablation**" in md


def test_report_survives_when_almost_every_sample_blows_up(tmp_path):
    """A threshold just above the input scale stops nearly every sample: the report
    still completes, and says nothing given survival where too few survived."""
    from shaped_transformer.report import run_report

    res = run_report(
        tmp_path / "out", size="tiny", config={"study": {"blowup": 1.02}, "network": {"gamma": 0.9}}, progress=False
    )
    assert (tmp_path / "out" / "report.md").is_file()
    assert any(r["exploded"] > 0.9 * r["samples"] for r in res["runs"].values())
    for _cname, v in res["verdicts"].items():
        assert isinstance(v["text"], str) and v["text"]


def test_report_studies_causal_attention(tmp_path):
    """Causal shaped heads have an SDE (docs/causal.md): the report runs them end to end."""
    from shaped_transformer.report import run_report

    res = run_report(tmp_path / "out", size="tiny", config={"network": {"causal": True}}, progress=False)
    md = (tmp_path / "out" / "report.md").read_text()
    assert "causal shaped attention" in md and res["config"]["network"]["causal"] is True
    assert set(res["verdicts"]) >= {"network n=16 vs SDE", "network n=32 vs SDE"}


def test_report_studies_a_normalized_network(tmp_path):
    """network.norm puts the placement on both blocks of the network side and of
    the SDE side (docs/norms.md): the same stopping rule and observables on both;
    the networks do not blow up.  Where the library's SDE does not cover the
    placement (pre-norm on causal heads), the configuration is refused naming
    network.norm before anything runs."""
    from shaped_transformer.report import run_report, study_config

    with pytest.raises(ValueError, match="network.norm"):
        study_config("tiny", {"network": {"norm": "pre_rms", "causal": True}})
    res = run_report(tmp_path / "out", size="tiny", config={"network": {"norm": "post_rms"}}, progress=False)
    md = (tmp_path / "out" / "report.md").read_text()
    assert "post-RMS norm" in md and res["config"]["network"]["norm"] == "post_rms"
    assert set(res["verdicts"]) >= {"network n=16 vs SDE", "network n=32 vs SDE"}
    for key in ("exact n=16", "exact n=32"):  # the networks cannot blow up
        assert res["runs"][key]["exploded"] == 0, key
