"""The batched SDE kernels (one path per SIMD lane) and the summary saving.

- every batch kernel (portable one-lane, AVX2, AVX-512) gives the same numbers;
- they agree with the generic per-path solver to rounding (the same step on the same
  drift and noise faces; fused multiply-adds in the lanes, Eigen's roots there);
- they cover every block kind with an SDE limit (paper, causal and general heads, MLP);
- results do not depend on the thread count, for stored paths and for summaries;
- the summary statistics equal those computed from the stored paths.
"""

from __future__ import annotations

import numpy as np
import pytest

import shaped_transformer as st
from conftest import require_kernel
from shaped_transformer._blocks import make_network
from shaped_transformer._core_loader import core

KERNELS = ("scalar", "avx2", "avx512")


def _V0(m: int, rho: float = 0.3) -> np.ndarray:
    return (1 - rho) * np.eye(m) + rho


def _run(
    blocks,
    m,
    *,
    kernel,
    steps=200,
    paths=37,
    scheme="euler",
    psd="clip",
    blowup=1e4,
    rho=0.3,
    seed=1,
    threads=1,
    save="paths",
    save_steps=None,
):
    net = make_network(blocks).to_core()
    ss = np.arange(0, steps + 1, 10) if save_steps is None else np.asarray(save_steps)
    return core.solve_sde(
        net, _V0(m, rho), 1.0 / steps, steps, ss, scheme, psd, paths, seed, threads, blowup, None, save, kernel
    )


def _available(kernel: str) -> bool:
    try:
        _run([st.ShapedAttention()], 2, kernel=kernel, steps=1, paths=1)
        return True
    except ValueError:
        return False


CASES = [
    # (blocks, m, scheme, psd, blowup, rho0): blow-ups and PSD projections in the first
    ([st.ShapedAttention(gamma=0.9, tau0=0.5)], 8, "euler", "clip", 5.0, 0.3),
    ([st.ShapedAttention(gamma=0.5, heads=2), st.ShapedAttention(gamma=0.7)], 5, "tamed_euler", "none", 1e4, 0.9),
    ([st.ShapedAttention(gamma=1.0, tau0=0.3)], 3, "euler", "clip", 1e4, 0.99),
    ([st.ShapedAttention(gamma=0.5)], 16, "euler", "none", 1e4, 0.3),
    # the causal / general head and the MLP, the other SDE faces of the batched kernels
    (
        [st.ShapedAttention(gamma=0.6, causal=True, beta=1.3, heads=2), st.ShapedMLP(gamma=0.5, c_plus=0.4)],
        5,
        "tamed_euler",
        "clip",
        1e4,
        0.3,
    ),
    ([st.ShapedMLP(gamma=0.7), st.ShapedAttention(gamma=0.4, beta=0.8)], 8, "euler", "clip", 1e4, 0.6),
]


_SCALAR: dict = {}


@pytest.mark.parametrize("kernel", KERNELS[1:])
@pytest.mark.parametrize("blocks,m,scheme,psd,blowup,rho", CASES)
def test_kernels_give_the_same_numbers(blocks, m, scheme, psd, blowup, rho, kernel):
    """Each SIMD kernel equals the portable one bit for bit; a kernel missing on a
    CPU that has its features fails (conftest.require_kernel), it is not skipped."""
    require_kernel(kernel, _available(kernel))
    key = (id(blocks), m, scheme, psd, blowup, rho)
    if key not in _SCALAR:  # one portable reference per case, shared by the kernels
        _SCALAR[key] = _run(blocks, m, kernel="scalar", scheme=scheme, psd=psd, blowup=blowup, rho=rho)
    ref = _SCALAR[key]
    out = _run(blocks, m, kernel=kernel, scheme=scheme, psd=psd, blowup=blowup, rho=rho)
    for a, b in zip(ref, out):
        assert np.array_equal(a, b, equal_nan=True), kernel


def test_the_first_case_exercises_blowups_and_projections():
    _, exploded, projections = _run(*CASES[0][:1], 8, kernel="", scheme="euler", psd="clip", blowup=5.0)
    assert 0 < np.sum(exploded >= 0) < 37 and projections.sum() > 0


#: A path is compared to rounding up to the first step where its V is numerically
#: singular: min eigenvalue <= SINGULAR * max diagonal.  There the step with the PSD
#: remedy is not continuous in V: the root switches between the Cholesky factor and
#: the clipped spectral root when a pivot crosses 1e-6 sqrt(max diag V) (pivot^2 ~
#: 1e-12 of the scale; linalg.hpp's PsdRootRule) and drops eigenvalues below 64 eps, so
#: V's 1e-14 apart give paths O(1) apart in the same solver (measured: 6% after one
#: step from two V's 3e-14 apart, case 5 path 11 at step 39), while from the same V
#: both solvers agree to 1e-12 (checked below).  1e-10 keeps a margin of 100.
SINGULAR = 1e-10


@pytest.mark.parametrize("blocks,m,scheme,psd,blowup,rho", CASES)
def test_batch_agrees_with_the_generic_solver_to_rounding(blocks, m, scheme, psd, blowup, rho):
    """Same noise, same scheme; only the order of floating-point operations differs.
    Over 50 steps the paths agree to ~1e-13 relative until V turns numerically
    singular (SINGULAR); blow-up steps and projection counts of the paths that never
    do are identical, and from the singular V the two solvers agree again."""
    kw = dict(scheme=scheme, psd=psd, blowup=blowup, rho=rho, steps=50, save_steps=np.arange(51))
    Vg, eg, pg = _run(blocks, m, kernel="generic", **kw)
    Vb, eb, pb = _run(blocks, m, kernel="", **kw)
    finite = ~np.isnan(Vg[:, :, 0, 0])
    w = np.linalg.eigvalsh(np.where(finite[:, :, None, None], Vg, np.eye(m)))
    diag = np.abs(np.diagonal(np.nan_to_num(Vg), axis1=2, axis2=3)).max(axis=2)
    singular = finite & (w[:, :, 0] <= SINGULAR * diag)
    first = np.where(singular.any(axis=1), singular.argmax(axis=1), Vg.shape[1])  # first singular step
    regular = first == Vg.shape[1]
    assert np.array_equal(eg[regular], eb[regular]) and np.array_equal(pg[regular], pb[regular])
    upto = np.arange(Vg.shape[1])[None, :] <= first[:, None]
    live = finite & upto
    assert live.sum() >= 0.5 * finite.sum(), "too few steps before V turns singular to test the agreement"
    assert np.array_equal(np.isnan(Vg[live]), np.isnan(Vb[live]))
    scale = np.abs(Vg[live]).max(axis=(1, 2), keepdims=True)
    assert np.max(np.abs(Vg[live] - Vb[live]) / scale) < 1e-11
    for p in np.nonzero(~regular)[0][:3]:  # from the singular V itself, the solvers agree
        V0 = Vg[p, first[p]]
        if not np.isfinite(V0).all() or w[p, first[p], 0] < 0:  # psd="none" leaves V indefinite
            continue
        net = make_network(blocks).to_core()
        args = (1.0 / 50, 3, np.arange(4), scheme, psd, 1, 1, 1, blowup, None, "paths")
        a = core.solve_sde(net, V0, *args, "generic")[0]
        b = core.solve_sde(net, V0, *args, "")[0]
        assert np.array_equal(np.isnan(a), np.isnan(b))
        ok = ~np.isnan(a)
        assert np.max(np.abs(a[ok] - b[ok])) <= 1e-11 * np.abs(a[ok]).max()


def test_default_path_uses_a_batch_kernel_for_every_sde_kind():
    V0 = _V0(8)
    for net in ([st.ShapedAttention()], [st.ShapedAttention(causal=True), st.ShapedMLP()]):
        r = st.solve_sde(net, V0=V0, T=0.1, steps=10, paths=3, progress=False)
        assert r.info["kernel"] in KERNELS
    # the exact-chain scheme and m beyond the kernels' 32 tokens: the generic solver
    r = st.solve_sde(st.ShapedAttention(), V0=V0, T=0.1, dt=0.01, scheme="exact_chain", paths=3, progress=False)
    assert r.info["kernel"] == "generic"
    assert _run([st.ShapedAttention()], 33, kernel="", steps=2, paths=2)[1].shape == (2,)


def test_unknown_or_uncovered_kernel_is_refused():
    with pytest.raises(ValueError, match="kernel"):
        _run([st.ShapedAttention()], 4, kernel="avx1024")
    with pytest.raises(ValueError, match="kernel"):
        _run([st.ShapedAttention()], 33, kernel="scalar", steps=2, paths=2)
    with pytest.raises(ValueError, match="kernel"):
        _run([st.ShapedAttention()], 4, kernel="scalar", steps=10, scheme="exact_chain")


def test_thread_count_does_not_change_paths_or_summaries():
    blocks = [st.ShapedAttention(gamma=0.9, tau0=0.5)]
    for save in ("paths", "summary"):
        a = _run(blocks, 8, kernel="", paths=600, steps=40, blowup=5.0, threads=1, save=save)
        b = _run(blocks, 8, kernel="", paths=600, steps=40, blowup=5.0, threads=2, save=save)
        if save == "summary":
            for key in ("alive", "moments", "hist"):
                assert np.array_equal(a[0][key], b[0][key]), key
        else:
            assert np.array_equal(a[0], b[0], equal_nan=True)
        assert np.array_equal(a[1], b[1]) and np.array_equal(a[2], b[2])


@pytest.mark.parametrize("kernel", KERNELS[1:])
def test_summary_does_not_depend_on_the_kernel_width(kernel):
    require_kernel(kernel, _available(kernel))
    blocks = [st.ShapedAttention(gamma=0.9, tau0=0.5)]
    ref = _run(blocks, 8, kernel="scalar", paths=300, steps=40, blowup=5.0, save="summary")[0]
    out = _run(blocks, 8, kernel=kernel, paths=300, steps=40, blowup=5.0, save="summary")[0]
    for key in ("alive", "moments", "hist"):
        assert np.array_equal(ref[key], out[key]), (kernel, key)


def _stats_from_paths(V: np.ndarray, lo, hi, bins=120):
    """The summary's statistics computed in NumPy from stored paths (same formulas)."""
    P, S, m, _ = V.shape
    out_mom = np.zeros((S, 4, 7))
    out_hist = np.zeros((S, 4, bins), dtype=np.int64)
    alive = np.zeros(S, dtype=np.int64)
    a, b = np.triu_indices(m, k=1)
    for k in range(S):
        Vk = V[:, k]
        ok = np.all(np.isfinite(Vk), axis=(1, 2))
        Vk = Vk[ok]
        alive[k] = ok.sum()
        d = np.diagonal(Vk, axis1=1, axis2=2)
        s = np.where(d > 0, 1.0 / np.sqrt(np.where(d > 0, d, 1)), 0.0)
        rho = Vk[:, a, b] * s[:, a] * s[:, b]
        tr = d.sum(axis=1)
        tr2 = (Vk * Vk).sum(axis=(1, 2))
        vals = [rho.ravel(), rho.mean(axis=1), np.log10(d[d > 0]), (tr * tr / tr2)[tr2 > 0]]
        for o, x in enumerate(vals):
            out_mom[k, o] = [
                x.size,
                x.sum(),
                (x**2).sum(),
                (x**3).sum(),
                (x**4).sum(),
                x.min() if x.size else np.inf,
                x.max() if x.size else -np.inf,
            ]
            f = (x - lo[o]) / (hi[o] - lo[o]) * bins
            idx = np.clip(np.floor(f), 0, bins - 1).astype(int)
            out_hist[k, o] = np.bincount(idx, minlength=bins)
    return alive, out_mom, out_hist


@pytest.mark.parametrize(
    "blocks,kernel",
    [
        ([st.ShapedAttention(gamma=0.9, tau0=0.5)], ""),
        ([st.ShapedAttention(gamma=0.7), st.ShapedMLP(gamma=0.5)], "generic"),
    ],
    ids=["batch-kernel", "generic"],
)
def test_summary_equals_statistics_of_stored_paths(blocks, kernel):
    kw = dict(kernel=kernel, paths=200, steps=60, blowup=5.0, save_steps=np.arange(0, 61, 6))
    V, e1, p1 = _run(blocks, 8, save="paths", **kw)
    summ, e2, p2 = _run(blocks, 8, save="summary", **kw)
    assert np.array_equal(e1, e2) and np.array_equal(p1, p2)
    alive, mom, hist = _stats_from_paths(V, summ["lo"], summ["hi"])
    assert np.array_equal(summ["alive"], alive)
    assert np.array_equal(summ["moments"][..., 0], mom[..., 0])  # counts: exact
    # sums, min, max: NumPy sums pairwise and has its own log10, so to rounding
    np.testing.assert_allclose(summ["moments"][..., 1:], mom[..., 1:], rtol=1e-11, atol=1e-11)
    # a value within rounding of a bin edge may land in the neighbouring bin
    assert np.abs(summ["hist"] - hist).sum() <= 2


def test_summary_result_api():
    V0 = _V0(8)
    r = st.solve_sde(
        st.ShapedAttention(gamma=0.9, tau0=0.5),
        V0=V0,
        T=0.2,
        steps=100,
        paths=300,
        save="summary",
        blowup=5.0,
        seed=3,
        progress=False,
    )
    s = r.summary
    assert r.V.shape == (0, 101, 8, 8) and r.samples == 300 and len(s.t) == 101
    assert np.array_equal(s.exploded[-1], np.sum(np.isfinite(r.exploded_at)))
    assert s.mean("rho")[0] == pytest.approx(0.3) and s.std("rho")[0] < 1e-6  # raw sums: sqrt(eps) cancellation
    q = s.quantile("rho", [0.25, 0.5, 0.75])
    assert q[0] <= q[1] <= q[2] and s.min("rho")[-1] <= q[0] and q[2] <= s.max("rho")[-1]
    with pytest.raises(ValueError, match="name"):
        s.mean("rank")
    with pytest.raises(ValueError, match="finite"):
        r.finite()
    with pytest.raises(ValueError, match="save"):
        st.solve_sde(st.ShapedAttention(), V0=V0, T=0.1, steps=10, paths=3, save="all", progress=False)


def test_summary_quantiles_match_stored_paths_to_a_bin():
    V0 = _V0(8)
    kw = dict(T=0.5, steps=200, paths=400, seed=5, blowup=1e4, progress=False)
    net = st.ShapedAttention(gamma=0.5)
    s = st.solve_sde(net, V0=V0, save="summary", **kw).summary
    r = st.solve_sde(net, V0=V0, **kw)
    pairs = r.finite().rho_pairs(-1)
    q = np.array([0.1, 0.5, 0.9])
    assert np.max(np.abs(s.quantile("rho", q) - np.quantile(pairs, q))) < 2.0 / 120


def test_summary_memory_does_not_grow_with_paths():
    """3e5 paths x 5 saved times would be 768 MB stored (8 x 8 doubles); the summary
    must stay within 60 MB of the process's peak before the run (it needs ~16
    bytes per path for the blow-up steps and projection counts, ~5 MB here)."""
    import os
    import subprocess
    import sys

    code = """
import resource, numpy as np, shaped_transformer as st
V0 = (0.7 * np.eye(8) + 0.3)
net = st.ShapedAttention()
st.solve_sde(net, V0=V0, T=0.1, steps=2, paths=16, save="summary", progress=False)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
r = st.solve_sde(net, V0=V0, T=0.1, steps=4, paths=300000, save="summary", threads=2, progress=False, blowup=1e4)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) / 1024, int(r.summary.alive[-1]))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=dict(os.environ)
    ).stdout.split()
    grown_mb, alive = float(out[0]), int(out[1])
    assert alive > 299000
    assert grown_mb < 60, f"peak memory grew by {grown_mb:.0f} MB"
