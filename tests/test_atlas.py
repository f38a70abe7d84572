"""The stability atlas and the splitting estimator of rare blow-ups.

* ``_core.continue_paths`` (the splitting estimator's inner loop) reproduces the
  solver bit for bit and stops at the first state above a level;
* adaptive multilevel splitting agrees with plain Monte Carlo at a point where
  P(blow-up by T) is about 1e-2 (fixed seeds, tolerance from the standard errors);
* ``shaped-transformer atlas --size tiny`` runs end to end, writes every table and
  figure, and a second run resumes from the saved points.
"""

from __future__ import annotations

import csv
import json
import math
import warnings

import numpy as np
import pytest
from scipy import stats
from scipy.stats import binomtest

from shaped_transformer._blocks import make_network
from shaped_transformer._core_loader import core
from shaped_transformer.inputs import equicorrelated
from shaped_transformer.sde import solve_sde
from shaped_transformer.simulate import BlowUpWarning, simulate
from shaped_transformer.splitting import ams_blowup, ams_repeat

BLOWUP = 1e4


def _continue(net, V, start, stream, stop, *, dt, steps, scheme="euler", seed=0, a=0.0):
    return core.continue_paths(
        net.to_core(),
        V,
        np.asarray(start, np.int64),
        np.asarray(stream, np.int64),
        np.asarray(stop, float),
        dt,
        steps,
        scheme,
        "clip",
        seed,
        BLOWUP,
        a,
        2,
    )


@pytest.mark.parametrize("scheme,dt", [("euler", 1 / 64), ("exact_chain", 1 / 32)])
def test_continue_paths_reproduces_the_solver(scheme, dt):
    net = make_network("shaped_transformer", tau0=0.5, gamma=0.7)
    V0 = equicorrelated(4, 0.3)
    P = 600
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BlowUpWarning)
        r = solve_sde(
            net,
            V0=V0,
            T=1.0,
            dt=dt,
            paths=P,
            scheme=scheme,
            seed=3,
            threads=2,
            blowup=BLOWUP,
            save_at=[0.0, 1.0],
            progress=False,
        )
    steps = r.info["steps"]
    V, step, peak, status = _continue(
        net,
        np.repeat(V0[None], P, 0),
        np.zeros(P),
        np.arange(P),
        np.full(P, np.inf),
        dt=dt,
        steps=steps,
        scheme=scheme,
        seed=3,
    )
    assert r.exploded.sum() >= 3  # the comparison covers blow-ups
    # Today the two run the same step functions and agree bit for bit.  A solver
    # with another operation order (a batched SIMD kernel) may differ by rounding,
    # which a chaotic path can amplify: allow a tiny tolerance and one path in a
    # hundred to cross the threshold one step apart.
    same = np.where(status == 2, step, -1) == np.where(r.exploded, np.round(r.exploded_at / dt), -1).astype(int)
    assert same.mean() >= 0.99
    ok = (status == 0) & ~r.exploded
    np.testing.assert_allclose(V[ok], r.V[ok, -1], rtol=1e-8, atol=1e-10)
    assert np.all(peak[status == 2] == np.inf)
    assert np.all(peak[ok] >= np.max(np.diagonal(V[ok], axis1=1, axis2=2), axis=1))


def test_continue_paths_stops_at_the_first_crossing_and_resumes():
    """Replaying a segment with a level z stops at the first step whose max diag V
    exceeds z; continuing from there gives the rest of the same path."""
    net = make_network("shaped_transformer", tau0=1.0, gamma=0.6)
    V0 = equicorrelated(4, 0.3)
    dt, steps, P = 1 / 64, 64, 50
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BlowUpWarning)
        r = solve_sde(
            net,
            V0=V0,
            T=1.0,
            dt=dt,
            paths=P,
            scheme="euler",
            seed=9,
            threads=2,
            blowup=BLOWUP,
            save_at=np.arange(steps + 1) * dt,
            progress=False,
        )
    diag = np.max(np.diagonal(r.V, axis1=2, axis2=3), axis=2)  # (P, steps+1), NaN after blow-up
    z = 1.5
    hit = np.nan_to_num(diag, nan=np.inf) > z
    assert hit.any(axis=1).sum() > 10 and (~hit.any(axis=1)).sum() > 5
    V, step, peak, status = _continue(
        net, np.repeat(V0[None], P, 0), np.zeros(P), np.arange(P), np.full(P, z), dt=dt, steps=steps, seed=9
    )
    # The continuation runs the generic per-path stepper, solve_sde the batched lanes
    # kernel: the same noise and step, other order of sums, so equal to rounding.
    for p in range(P):
        if hit[p].any():
            k = int(np.argmax(hit[p]))
            assert step[p] == k and status[p] in (1, 2)
            if status[p] == 1:
                np.testing.assert_allclose(V[p], r.V[p, k], rtol=1e-12, atol=1e-12)
        else:
            assert status[p] == 0 and step[p] == steps
    # One uninterrupted segment per path: the reference for the resumed ones.
    Vf, stepf, _, statusf = _continue(
        net, np.repeat(V0[None], P, 0), np.zeros(P), np.arange(P), np.full(P, np.inf), dt=dt, steps=steps, seed=9
    )
    np.testing.assert_array_equal(statusf == 2, r.exploded)
    done = statusf == 0
    np.testing.assert_allclose(Vf[done], r.V[done, -1], rtol=1e-10, atol=1e-10)
    # Resume the crossed paths with their own streams: bit for bit the states of the
    # uninterrupted segments (a segment can be replayed from any step).
    c = np.flatnonzero(status == 1)
    V2, step2, _, status2 = _continue(net, V[c], step[c], c, np.full(c.size, np.inf), dt=dt, steps=steps, seed=9)
    np.testing.assert_array_equal(status2, statusf[c])
    np.testing.assert_array_equal(step2, stepf[c])
    fin = status2 == 0
    np.testing.assert_array_equal(V2[fin], Vf[c[fin]])


def test_continue_paths_rejects_bad_input():
    net = make_network("shaped_transformer")
    V = np.repeat(np.eye(4)[None], 2, 0)
    with pytest.raises(ValueError, match="start"):
        _continue(net, V, [0, 99], [0, 1], [np.inf, np.inf], dt=0.1, steps=10)
    with pytest.raises(ValueError, match="time_exponent"):
        _continue(net, V, [0, 0], [0, 1], [np.inf, np.inf], dt=0.1, steps=10, a=-1.0)
    with pytest.raises(ValueError, match="network"):
        _continue(make_network("standard_attention"), V, [0, 0], [0, 1], [1, 1], dt=0.1, steps=10)


def test_ams_agrees_with_plain_monte_carlo():
    """P(blow-up by T=1) ~ 7e-3 (shaped Transformer, m = 4, gamma = 0.4, Euler dt =
    1/64): 100000 plain paths against 20 splitting runs of 300 particles (AMS is
    unbiased, so their mean is compared).  Tolerance: 3.5 combined standard errors
    (about 20% of P).  Breaking the cloning (copying a survivor's birth state instead
    of its first state above the level) or the network (gamma 0.4 -> 0.43 in the
    splitting runs only) makes this fail."""
    net = make_network("shaped_transformer", tau0=1.0, gamma=0.4)
    V0 = equicorrelated(4, 0.3)
    n = 100_000
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BlowUpWarning)
        r = solve_sde(
            net,
            V0=V0,
            T=1.0,
            dt=1 / 64,
            paths=n,
            scheme="euler",
            seed=11,
            threads=2,
            blowup=BLOWUP,
            save_at=[0.0, 1.0],
            progress=False,
        )
    p_mc = r.exploded.mean()
    se_mc = math.sqrt(p_mc * (1 - p_mc) / n)
    rep = ams_repeat(net, V0=V0, repeats=20, seed=500, T=1.0, dt=1 / 64, particles=300, blowup=BLOWUP, threads=2)
    assert 3e-3 < p_mc < 2e-2
    # The reported interval is the t-interval of the runs' mean (scipy, independently;
    # "p inside its own interval" could not fail).
    runs = np.asarray(rep["runs"])
    lo, hi = stats.t.interval(0.95, runs.size - 1, loc=runs.mean(), scale=stats.sem(runs))
    assert rep["p"] == pytest.approx(runs.mean(), rel=1e-12)
    assert rep["ci_low"] == pytest.approx(max(lo, 0.0), rel=1e-9) and rep["ci_high"] == pytest.approx(hi, rel=1e-9)
    tol = 3.5 * math.hypot(se_mc, rep["se"])
    assert abs(rep["p"] - p_mc) < tol, (rep["p"], p_mc, tol)
    # The splitting's own spread is what the theory says (relative error of one run
    # of 300 particles about sqrt(log(1/p) / N) ~ 0.13, times a modest factor).
    assert rep["rel_error_single"] < 0.5


def test_ams_blowup_times_and_validation():
    net = make_network("shaped_transformer", tau0=1.0, gamma=0.5)
    V0 = equicorrelated(4, 0.3)
    res = ams_blowup(net, V0=V0, T=1.0, dt=1 / 32, particles=50, seed=1, threads=2, blowup=BLOWUP)
    assert 0 < res.p < 1 and res.blown > 0
    assert res.p == pytest.approx(res.weight * res.blown / res.particles)
    by = res.p_by([0.0, 0.5, 1.0])
    assert by[0] == 0 and by[1] <= by[2] and by[2] == pytest.approx(res.p)
    assert np.all(np.diff(res.levels) >= 0)
    json.dumps(res.to_dict())
    again = ams_blowup(net, V0=V0, T=1.0, dt=1 / 32, particles=50, seed=1, threads=1, blowup=BLOWUP)
    assert again.p == res.p  # same seed, any thread count: same estimate
    for kw, name in [
        ({"particles": 1}, "particles"),
        ({"time_exponent": -1.0}, "time_exponent"),
        ({"kill_fraction": 1.0}, "kill_fraction"),
        ({"blowup": 0.5}, "blowup"),
        ({"scheme": "rk4"}, "scheme"),
        ({"dt": 2.0}, "dt"),
    ]:
        with pytest.raises(ValueError, match=name):
            ams_blowup(net, V0=V0, **{"T": 1.0, "dt": 1 / 32, "particles": 10, **kw})
    with pytest.raises(ValueError, match="network"):
        ams_blowup(make_network("standard_attention"), V0=V0, T=1.0)


def test_curves_use_the_one_clopper_pearson_interval():
    """The atlas's curves and tables take their intervals from analysis.binomial_interval
    (scipy's binomtest): a curve at the times of its counts gives the table's numbers."""
    from scipy.stats import binomtest

    from shaped_transformer import atlas
    from shaped_transformer.analysis import binomial_interval, proportion_curve

    assert not hasattr(atlas, "binomial_ci")  # no second implementation beside analysis
    times = [0.1, 0.4, 0.4, 0.9]
    p, lo, hi = proportion_curve(times, 4000, [0.0, 0.1, 0.5, 1.0])
    assert p.tolist() == [0.0, 1 / 4000, 3 / 4000, 4 / 4000]
    for k, low, high in zip((0, 1, 3, 4), lo, hi):
        ref = binomtest(k, 4000).proportion_ci(confidence_level=0.95, method="exact")
        iv = binomial_interval(k, 4000)
        assert (low, high) == (ref.low, ref.high) == (iv.low, iv.high) and iv.method == "clopper-pearson"
    assert lo[0] == 0 and hi[-1] < 0.003


def test_atlas_end_to_end(tmp_path):
    pytest.importorskip("matplotlib")
    from shaped_transformer.atlas import run_atlas
    from shaped_transformer.cli import main

    out = tmp_path / "atlas"
    assert main(["atlas", "--size", "tiny", "--out", str(out), "--workers", "2", "--no-progress"]) == 0
    for f in (
        "atlas.json",
        "atlas.md",
        "atlas_points.csv",
        "atlas_curves.csv",
        "rare.json",
        "curves.png",
        "width.png",
        "heatmap_shaped_transformer.png",
        "blowup_times.png",
        "collapse.png",
    ):
        assert (out / f).is_file(), f
    rows = list(csv.DictReader(open(out / "atlas_points.csv")))
    blocks = {r["block"] for r in rows}
    assert blocks == {"shaped_attention", "shaped_mlp", "shaped_transformer"}
    assert {r["method"] for r in rows} == {"sde", "exact"}
    data = json.load(open(out / "atlas.json"))
    confidence = data["config"]["study"]["confidence"]
    for r in rows:
        # The interval written is the Clopper-Pearson interval of this row's own
        # counts at the configured confidence (scipy's, independently).  A check
        # that k / n lies inside it could not fail: every such interval holds k / n.
        k, n = int(r["blown"]), int(r["samples"])
        ref = binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
        assert float(r["ci_low"]) == pytest.approx(ref.low, rel=1e-9, abs=1e-15), r
        assert float(r["ci_high"]) == pytest.approx(ref.high, rel=1e-9, abs=1e-15), r
        assert r["verdict"] in ("safe", "unsafe", "undecided")
    # Splitting runs at network points too (one rule for every method), and the
    # points whose runs died out are shown as unresolved, in the table and the page.
    few = [r for r in rows if int(r["blown"]) < 2]
    assert {r["method"] for r in few} == {"sde", "exact"} and all(r["ams_runs"] for r in few)
    unresolved = [r for r in rows if r["ams"].startswith("unresolved")]
    assert unresolved and all(r["best_method"] == "mc" for r in unresolved)
    md = (out / "atlas.md").read_text()
    assert f"**{len(unresolved)} point(s) unresolved by splitting**" in md and "one rule for every point" in md
    # The MLP alone has no finite-time blow-up at these settings.
    assert all(int(r["blown"]) == 0 for r in rows if r["block"] == "shaped_mlp")
    curves = list(csv.DictReader(open(out / "atlas_curves.csv")))
    assert len(curves) == 9 * len(rows)  # times = 8 intervals
    assert data["config"]["study"]["blowup"] == 1e4 and data["rare"]["repeats"] == 2
    # Resume: every point is loaded, none recomputed.
    files = {p.name: p.stat().st_mtime_ns for p in (out / "points").glob("*.json")}
    assert len(files) == len(rows) + len(data["collapse"])
    assert len(data["collapse"]) == 2 and all(c["gamma2_T"] == pytest.approx(0.3) for c in data["collapse"])
    data2 = run_atlas(out, size="tiny", plots=False, progress=False, config={"rare": {"repeats": 0}})
    assert {p.name: p.stat().st_mtime_ns for p in (out / "points").glob("*.json")} == files
    assert [r["p"] for r in data2["points"]] == [r["p"] for r in data["points"]]


def test_atlas_config_validation():
    from shaped_transformer.atlas import atlas_config
    from shaped_transformer.cli import main

    with pytest.raises(ValueError, match="grid.gamma"):
        atlas_config(config={"grid": {"gamma": [0.0]}})
    with pytest.raises(ValueError, match="unknown key"):
        atlas_config(config={"sde": {"paths": 3}})
    with pytest.raises(ValueError, match="size"):
        atlas_config("huge")
    with pytest.raises(ValueError, match="block"):
        atlas_config(config={"grid": {"blocks": ["relu_mlp"]}})
    assert main(["atlas", "--workers", "0"]) == 2
    with pytest.raises(ValueError, match="grid.norm"):
        atlas_config(config={"grid": {"norm": ["none", "mid_rms"]}})
    with pytest.raises(ValueError, match="reference.norm"):
        atlas_config(config={"reference": {"norm": "post_lay"}})
    # LayerNorm runs, at network widths >= m + 1 only (its exact step's frame)
    assert atlas_config(config={"grid": {"norm": ["pre_layer"]}})["grid"]["norm"] == ["pre_layer"]
    with pytest.raises(ValueError, match=r"grid.norm = 'pre_layer'.*network.widths >= m \+ 1 = 9"):
        atlas_config(config={"grid": {"norm": ["pre_layer"]}, "network": {"widths": [8, 16]}})


@pytest.mark.parametrize("method", ["sde", "exact"])
def test_tau0_only_rescales_the_input(method):
    """The scaling behind docs/atlas.md: with V = tau0 U the attention drift
    (gamma^2 / tau0^2) F(V), cubic in V, becomes gamma^2 F(U), and every other term is
    homogeneous of degree one in V (the softmax noise, quadratic in V, carries
    1 / tau0), so (tau0, V0, blowup) and (1, V0 / tau0, blowup / tau0) give the same
    paths up to rounding, for the SDE (Euler) and for the exact chain.  Scaling
    the input by 1 / tau0^1.1 instead makes this fail.  (The threshold hardly
    matters: blowup / tau0^3 still passes, a path that exceeds 1e3 explodes
    through 1e4 within the same step.)"""
    tau0, V0, P = 2.0, equicorrelated(4, 0.3), 300
    runs = []
    for t0, V, K in [(tau0, V0, BLOWUP), (1.0, V0 / tau0, BLOWUP / tau0)]:
        net = make_network("shaped_transformer", tau0=t0, gamma=0.8)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BlowUpWarning)
            if method == "sde":
                r = solve_sde(
                    net,
                    V0=V,
                    T=1.0,
                    dt=1 / 64,
                    paths=P,
                    scheme="euler",
                    seed=4,
                    threads=2,
                    blowup=K,
                    save_at=[0.0, 1.0],
                    progress=False,
                )
            else:
                from shaped_transformer.simulate import simulate

                r = simulate(
                    net,
                    V0=V,
                    width=64,
                    depth=64,
                    samples=P,
                    method="exact",
                    seed=4,
                    threads=2,
                    blowup=K,
                    save_at=np.array([0, 64]),
                    progress=False,
                )
        runs.append(r)
    a, b = runs
    assert a.exploded.sum() >= 2
    # Rounding can flip a branch (Cholesky or eigen-root, a PSD projection) on a rare
    # path, after which the two copies of that path drift apart: 98% must agree.
    ok = ~a.exploded & ~b.exploded
    close = np.all(np.isclose(a.V[:, -1], tau0 * b.V[:, -1], rtol=1e-7, atol=1e-9), axis=(1, 2))
    same = np.where(ok, close, a.exploded_at == b.exploded_at)
    assert same.mean() >= 0.98, same.mean()


def test_atlas_studies_causal_heads(tmp_path):
    """study.causal = true charts causal shaped attention (docs/causal.md) for the SDE
    and the exact chain alike; the points record it."""
    from shaped_transformer.atlas import run_atlas

    data = run_atlas(
        tmp_path / "atlas",
        size="tiny",
        plots=False,
        progress=False,
        config={
            "study": {"causal": True},
            "rare": {"repeats": 0},
            "collapse": {"samples": 0},
            "grid": {"blocks": ["shaped_attention"], "tau0": [1.0], "gamma": [0.5], "heads": [1]},
        },
    )
    assert data["config"]["study"]["causal"] is True
    assert data["points"] and all(p["causal"] for p in data["points"])
    assert {p["method"] for p in data["points"]} == {"sde", "exact"}


def test_atlas_norm_axis(tmp_path):
    """grid.norm adds the norm placements to the grid, SDE and network alike: a
    normalized point runs its own network (the counts are simulate's at the
    point's seed), reads no blow-up, runs no splitting even where plain Monte
    Carlo saw fewer blow-ups than splitting.below, and counts collapse by the
    rule of st.assess.  Where the library's SDE does not cover a placement, the
    configuration is refused naming grid.norm."""
    from shaped_transformer.assess import collapsed
    from shaped_transformer.atlas import atlas_config, atlas_point, run_atlas

    # One point, directly: the exact chain of the pre-RMS network at the point's seed.
    kw = dict(block="shaped_transformer", m=4, T=1.0, width=32, samples=40, seed=3, ams_particles=20, ams_repeats=2)
    p = atlas_point(method="exact", norm="pre_rms", **kw)
    r = simulate(make_network("shaped_transformer", norm="pre_rms"), V0=equicorrelated(4, 0.3), width=32, depth=32,
                    samples=40, method="exact", seed=3, save_at=np.array([0, 32]), progress=False)  # fmt: skip
    assert p["blown"] == 0 == int(r.exploded.sum()) and "ams_runs" not in p
    assert p["collapsed"] == int(collapsed(r.V[:, -1]).sum())
    with pytest.raises(ValueError, match="grid.norm"):  # the SDE does not cover pre-norm causal heads
        atlas_config("tiny", {"study": {"causal": True}, "grid": {"norm": ["pre_rms"]}})
    config = {
        "rare": {"repeats": 0},
        "collapse": {"samples": 0},
        "grid": {"blocks": ["shaped_transformer"], "tau0": [1.0], "gamma": [0.5], "heads": [1],
                 "norm": ["none", "post_rms"]},
    }  # fmt: skip
    data = run_atlas(tmp_path / "atlas", size="tiny", progress=False, config=config)
    rows = data["points"]
    assert {(r["norm"], r["method"]) for r in rows} == {(n, m) for n in ("none", "post_rms") for m in ("sde", "exact")}
    for r in rows:
        if r["norm"] == "post_rms":  # no splitting, SDE or network alike; collapse counted
            assert r["ams_runs"] is None and r["p_collapsed"] == r["collapsed"] / r["samples"]
            # The network cannot blow up.  (An SDE path whose Euler step leaves a diagonal
            # <= 0 before corr, here at dt = 1/32, is stopped like a blow-up and counted.)
            assert r["method"] == "sde" or r["blown"] == 0
    assert (tmp_path / "atlas" / "heatmap_shaped_transformer_post_rms.png").is_file()
    assert "**Normalized points**" in (tmp_path / "atlas" / "atlas.md").read_text()


# ---------------------------------------------------------------------------
# Never silently wrong (issue 23): an unresolved splitting estimate says so, the
# atlas shows it, one verdict rule holds for every method, and --out is guarded.
# ---------------------------------------------------------------------------


def _mlp_extinct_case():
    """The shaped MLP alone (V grows at most exponentially) with 20 particles: the
    levels climb until every particle is a copy of one first crossing, and the run
    dies out (154 iterations, about 0.2 s)."""
    return (
        make_network("shaped_mlp", gamma=0.5),
        equicorrelated(4, 0.3),
        dict(T=1.0, dt=1 / 32, particles=20, threads=2, blowup=BLOWUP),
    )


def test_extinct_splitting_run_is_flagged_and_warns():
    from shaped_transformer.splitting import UnresolvedWarning

    net, V0, kw = _mlp_extinct_case()
    with pytest.warns(UnresolvedWarning, match="extinction") as rec:
        r = ams_blowup(net, V0=V0, seed=0, **kw)
    assert rec[0].filename == __file__
    assert r.status == "extinct" and not r.resolved and r.p == 0.0 and r.blown == 0
    assert r.iterations > 10 and -300 < r.log10_weight < 0  # how far the levels got before it died
    d = r.to_dict()
    assert d["resolved"] is False and d["status"] == "extinct"
    json.dumps(d)
    # a resolved run says so, and does not warn
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnresolvedWarning)
        ok = ams_blowup(make_network("shaped_transformer", tau0=1.0, gamma=0.5), V0=V0, seed=1, **kw)
    assert ok.resolved and ok.status == "resolved" and ok.p > 0 and ok.explain() == ""


def test_iteration_bound_ends_unresolved_instead_of_raising():
    from shaped_transformer.splitting import UnresolvedWarning

    _, V0, kw = _mlp_extinct_case()
    with pytest.warns(UnresolvedWarning, match="max_iterations=2"):
        r = ams_blowup(make_network("shaped_transformer"), V0=V0, seed=0, max_iterations=2, **kw)
    assert r.status == "max_iterations" and not r.resolved and r.iterations == 2


def test_ams_repeat_interval_is_honest_when_runs_die_out():
    """Runs that died out read p = 0 whatever the probability; their spread bounds
    nothing.  (It used to report p = 0 with the interval [0, 0].)"""
    from shaped_transformer.splitting import UnresolvedWarning

    net, V0, kw = _mlp_extinct_case()
    with pytest.warns(UnresolvedWarning, match=r"2 of 2 runs did not resolve P \(2 extinct") as rec:
        rep = ams_repeat(net, V0=V0, repeats=2, seed=0, **kw)
    assert len(rec) == 1  # one summary, not one warning per run
    assert rep["resolved"] is False and rep["unresolved"] == 2 and rep["statuses"] == ["extinct", "extinct"]
    assert (rep["ci_low"], rep["ci_high"]) == (0.0, 1.0) and rep["interval"].method.startswith("trivial")


def test_one_verdict_rule_for_every_method():
    """analysis.verdict is the rule; the atlas row of a network point with no
    blow-up gets splitting runs (through the exact chain) like an SDE point, and
    its verdict follows the interval it rests on."""
    from shaped_transformer import analysis as an
    from shaped_transformer.atlas import _row

    iv = an.Interval
    assert an.verdict(iv(1e-4, 0.0, 9e-4, 0.95), 1e-3) == "safe"
    assert an.verdict(iv(5e-3, 2e-3, 9e-3, 0.95), 1e-3) == "unsafe"
    assert an.verdict(iv(1e-3, 0.0, 2e-3, 0.95), 1e-3) == "undecided"
    assert an.verdict(iv(0.0, float("nan"), float("nan"), 0.95), 1e-3) == "undecided"
    # 0 of 2000 cannot be safe at 1e-3 (Clopper-Pearson upper end 1.8e-3), 0 of 4000 can:
    # the same rule, different evidence.
    assert an.verdict(an.binomial_interval(0, 2000), 1e-3) == "undecided"
    assert an.verdict(an.binomial_interval(0, 4000), 1e-3) == "safe"
    base = {"block": "shaped_transformer", "heads": 1, "tau0": 1.0, "gamma": 0.3}
    for method, width in (("sde", None), ("exact", 128)):
        p = dict(base, method=method, width=width, dt=1e-3)
        runs = {"samples": 2000, "blown": 0, "ams_runs": [2e-4, 1.5e-4, 2.5e-4, 1.8e-4], "ams_status": ["resolved"] * 4}
        row = _row(p, runs, 0.95, 1e-3)
        assert row["best_method"] == "ams" and row["interval"] == "t over runs" and row["verdict"] == "safe"
        row = _row(p, dict(runs, ams_status=["resolved", "extinct", "resolved", "resolved"]), 0.95, 1e-3)
        assert row["ams"] == "unresolved (1 of 4 runs: 1 extinct)" and row["p_ams"] is None
        assert row["best_method"] == "mc" and row["verdict"] == "undecided"
    from shaped_transformer.atlas import atlas_point

    pt = atlas_point(
        block="shaped_transformer",
        tau0=1.0,
        gamma=0.5,
        m=4,
        T=1.0,
        method="exact",
        width=16,
        samples=20,
        seed=0,
        ams_particles=10,
        ams_repeats=2,
        ams_below=5,
        threads=2,
    )
    assert pt["blown"] < 5 and len(pt["ams_runs"]) == 2 and len(pt["ams_status"]) == 2


def test_atlas_out_is_guarded_like_the_report(tmp_path, monkeypatch):
    from shaped_transformer import sweep
    from shaped_transformer.atlas import run_atlas

    def boom(*a, **k):
        raise AssertionError("the atlas ran before its --out was refused")

    monkeypatch.setattr(sweep, "sweep", boom)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    monkeypatch.chdir(mine)
    for where in (".", "..", str(mine)):
        with pytest.raises(ValueError, match="current folder or one of its parents"):
            run_atlas(where, size="tiny")
    other = tmp_path / "other"
    other.mkdir()
    (other / "data.csv").write_text("x")
    with pytest.raises(ValueError, match="holds no previous atlas"):
        run_atlas(other, size="tiny")
    assert sorted(p.name for p in other.iterdir()) == ["data.csv"]
    assert (mine / "notes.txt").read_text() == "precious" and sorted(p.name for p in mine.iterdir()) == ["notes.txt"]


def test_atlas_figures_raise_no_matplotlib_warning(tmp_path):
    """A panel with no run at its point (the reference block is the MLP, so the
    attention panel has none) used to call legend() on nothing: matplotlib's
    UserWarning leaked out of `shaped-transformer atlas`."""
    pytest.importorskip("matplotlib")
    from shaped_transformer.atlas import run_atlas

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run_atlas(
            tmp_path / "atlas",
            size="tiny",
            progress=False,
            workers=2,
            config={
                "reference": {"block": "shaped_mlp"},
                "rare": {"repeats": 0},
                "splitting": {"particles": 0},
                "collapse": {"samples": 0},
                "network": {"widths": [16], "reference_widths": [16]},
                "grid": {"blocks": ["shaped_attention", "shaped_mlp"], "tau0": [1.0], "gamma": [0.8]},
            },
        )
    assert (tmp_path / "atlas" / "curves.png").is_file()
