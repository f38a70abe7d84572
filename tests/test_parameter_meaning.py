"""A parameter means one thing everywhere (#12): ``threads``, ``dt`` and ``seed``
are read the same way by simulate, solve_sde, the splitting estimator, the report
and the atlas, and what used to be changed silently is refused or said in a
warning."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import shaped_transformer as st
from shaped_transformer import atlas, report
from shaped_transformer._validate import all_cores, check_threads, derived_seed
from shaped_transformer.splitting import ams_blowup

NET = st.shaped_transformer(heads=2, tau0=1.0, gamma=0.5)
V0 = st.inputs.equicorrelated(m=3, rho=0.3)


# ---- threads: 0 (or None) is all cores, as in the C++ core and the TOML configs ----


def test_threads_zero_means_all_cores() -> None:
    assert check_threads(0) == check_threads(None) == all_cores() >= 1
    assert check_threads(3) == 3
    with pytest.raises(ValueError, match="threads"):
        check_threads(-1)


@pytest.mark.parametrize("method", ["explicit", "exact"])
def test_simulate_threads_zero_runs_and_gives_the_same_numbers(method: str) -> None:
    kw = dict(V0=V0, width=16, depth=4, samples=3, method=method, seed=5)
    assert np.array_equal(st.simulate(NET, threads=0, **kw).V, st.simulate(NET, threads=1, **kw).V)


def test_solve_sde_threads_zero_runs_and_gives_the_same_numbers() -> None:
    kw = dict(T=0.5, steps=50, paths=6, seed=5)
    assert np.array_equal(st.solve_sde(NET, V0=V0, threads=0, **kw).V, st.solve_sde(NET, V0=V0, threads=1, **kw).V)


def test_report_and_atlas_pass_threads_zero_through() -> None:
    """study.threads = 0 in the report's TOML is handed to simulate as 0 (all cores)."""
    cfg = report.study_config("tiny", {"study": {"threads": 0}})
    assert cfg["study"]["threads"] == 0 and check_threads(cfg["study"]["threads"]) == all_cores()
    with pytest.raises(ValueError, match="study.threads"):
        report.study_config("tiny", {"study": {"threads": -1}})


# ---- dt: a changed step is said; the exact chain's width is never changed ----


def test_dt_that_does_not_divide_T_warns_and_names_the_dt_used() -> None:
    with pytest.warns(st.StepSizeWarning, match=r"dt = 0\.3 .*uses dt = 0\.25") as rec:
        res = st.solve_sde(NET, V0=V0, T=1.0, dt=0.3, paths=4, seed=0)
    assert issubclass(rec[0].category, UserWarning)
    assert res.info["dt"] == 0.25 and res.info["steps"] == 4


@pytest.mark.parametrize("kw", [dict(T=1.0, dt=0.1), dict(T=1.0, dt=1e-3), dict(T=0.7, steps=3), dict(T=2.5, dt=0.5)])
def test_no_warning_when_the_step_is_the_one_asked(kw: dict) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", st.StepSizeWarning)
        st.solve_sde(NET, V0=V0, paths=2, seed=0, save_at=[0.0], **kw)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(T=1.0, dt=0.0015), r"dt: .*1/dt to be an integer.*666\.667"),  # used to run n_eff = 667
        (dict(T=0.5, dt=1 / 3), r"dt: .*T / dt to be an integer"),  # used to run n_eff = 4
        (dict(T=0.7, steps=10), r"steps: .*1/dt"),
    ],
)
def test_exact_chain_refuses_a_dt_it_would_change(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        st.solve_sde(NET, V0=V0, paths=2, seed=0, scheme="exact_chain", **kw)


def test_exact_chain_runs_the_width_asked() -> None:
    res = st.solve_sde(NET, V0=V0, T=0.5, dt=1 / 8, paths=2, seed=0, scheme="exact_chain")
    assert res.info["dt"] == 1 / 8 and res.info["steps"] == 4


def test_splitting_uses_the_same_grid() -> None:
    with pytest.warns(st.StepSizeWarning, match="ams_blowup uses dt = 0.25"):
        r = ams_blowup(NET, V0=V0, T=1.0, dt=0.3, particles=4, blowup=1e4, seed=0, threads=1)
    assert r.dt == 0.25
    with pytest.raises(ValueError, match="dt: .*1/dt"):
        ams_blowup(NET, V0=V0, T=1.0, dt=0.0015, scheme="exact_chain", particles=4, seed=0)


# ---- seeds: [0, 2^64) everywhere ----

TOP = 2**64 - 1


def test_every_entry_point_accepts_the_largest_seed() -> None:
    st.simulate(NET, V0=V0, width=8, depth=2, samples=1, method="exact", seed=TOP, threads=1)
    st.solve_sde(NET, V0=V0, T=0.1, steps=2, paths=1, seed=TOP, threads=1)
    assert report.study_config("tiny", seed=TOP)["study"]["seed"] == TOP
    assert report.study_config("tiny", {"study": {"seed": TOP}})["study"]["seed"] == TOP
    assert atlas.atlas_config("tiny", seed=TOP)["study"]["seed"] == TOP
    assert atlas.atlas_config("tiny", {"study": {"seed": TOP}})["study"]["seed"] == TOP


@pytest.mark.parametrize("bad", [-1, 2**64])
def test_every_entry_point_refuses_the_same_seeds(bad: int) -> None:
    calls = {
        "simulate": lambda: st.simulate(NET, V0=V0, width=8, depth=2, samples=1, method="exact", seed=bad),
        "solve_sde": lambda: st.solve_sde(NET, V0=V0, T=0.1, steps=2, paths=1, seed=bad),
        "ams_blowup": lambda: ams_blowup(NET, V0=V0, T=0.1, dt=0.05, particles=4, seed=bad),
        "report --seed": lambda: report.study_config("tiny", seed=bad),
        "report study.seed": lambda: report.study_config("tiny", {"study": {"seed": bad}}),
        "atlas --seed": lambda: atlas.atlas_config("tiny", seed=bad),
        "atlas study.seed": lambda: atlas.atlas_config("tiny", {"study": {"seed": bad}}),
    }
    for where, call in calls.items():
        with pytest.raises(ValueError, match=r"seed\)? must lie in \[0, 2\^64\)"):
            call()
        print(where, "refuses", bad)


def test_study_run_seeds_stay_in_range() -> None:
    """The report and the atlas seed their runs seed + offset, wrapped into [0, 2^64):
    the same seeds as before below 2^64 - offset."""
    assert derived_seed(5, 7) == 12
    assert derived_seed(TOP, 7) == 6
    assert all(0 <= derived_seed(TOP - k, 1000) < 2**64 for k in range(3))
