"""The SDE of normalized shaped networks (docs/norms.md sections 2-5, issue #24).

The core integrates the correlation SDE of a network whose blocks all normalize (RMS
or LayerNorm, pre or post) by the "normalize" scheme of section 5: the un-normalized
Euler step at V = C, then V <- corr(V), plus pre-norm's fast drift beta_fast.  Checked
here against the NumPy reference tests/_norms_numpy.py:

* ``sde_drift`` equals the reference's correlation drift (beta_post, + beta_fast for
  pre-norm) to 1e-12, for attention (H = 1, 2), the MLP and the shaped Transformer layer;
* the start: corr(V0) for post-norm, the initial-layer map for pre-norm;
* the paths keep a unit diagonal; the batched kernel equals the generic solver to
  rounding, the same numbers for 1 and 2 threads;
* in law: the library's pre - post gap (same seed, so the same Brownian increments)
  against the reference's pre - post gap (its own common random numbers), in mean
  rho_T^2, where the gap is beta_fast alone; the mutation ``fast_drift`` (doubled or
  dropped) fails it (tests/_mutations.py);
* the refusals: placements mixed across blocks, pre-norm on a causal or beta != 1 head,
  a zero diagonal in V0.

About 10 s at CI size.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from _norms_numpy import MLP, Attention, corr, corr_drift, pre_norm_initial_layer, solve_corr_sde

st = pytest.importorskip("shaped_transformer")

Z_MAX = 4.5
POWER = 2 * Z_MAX

RNG_V = np.random.default_rng(5)


def _random_cov(m: int, rng=RNG_V) -> np.ndarray:
    G = rng.standard_normal((m, m + 2))
    return G @ G.T / (m + 2)


def _pair(ref_blocks, norm):
    """The library's blocks matching the reference's, with `norm` on each."""
    out = []
    for b in ref_blocks:
        if b.kind == "shaped_attention":
            out.append(st.ShapedAttention(heads=b.heads, tau0=b.tau0, gamma=b.gamma, norm=norm))
        else:
            out.append(st.ShapedMLP(c_plus=b.c_plus, c_minus=b.c_minus, gamma=b.gamma, norm=norm))
    return st.Network(out)


LAYERS = {
    "attention H=1": [Attention(heads=1, tau0=0.5, gamma=0.6)],
    "attention H=2": [Attention(heads=2, tau0=0.5, gamma=0.6)],
    "mlp": [MLP(c_plus=0.5, c_minus=-1.0, gamma=0.6)],
    "attention+mlp": [Attention(heads=2, tau0=1.0, gamma=0.5), MLP(c_plus=0.0, c_minus=-1.0, gamma=0.4)],
}
NORMS = ("pre_rms", "pre_layer", "post_rms", "post_layer")


@pytest.mark.parametrize("layer", list(LAYERS))
@pytest.mark.parametrize("norm", NORMS)
def test_sde_drift_is_the_correlation_drift(layer, norm):
    """sde_drift of a normalized network at V = the reference's corr_drift at corr(V)
    (general rule J b + Ito of Sigma, + beta_fast for pre-norm), to 1e-12; the pre - post
    difference is beta_fast (nonzero), and LayerNorm's drift is RMS's."""
    ref = LAYERS[layer]
    net = _pair(ref, norm)
    for m in (2, 4, 7):
        V = _random_cov(m)
        got = st.sde.sde_drift(net, V)
        want = corr_drift(ref, norm, corr(V))
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    if norm.startswith("pre"):
        post = st.sde.sde_drift(_pair(ref, "post_rms"), V)
        assert np.abs(got - post).max() > 1e-3  # beta_fast is there


def test_fast_drift_one_block_type():
    """One block type: beta_fast = -C lambda^2 v / (8 (1 + lambda^2)) with v the MLP's
    8 gamma^2 (1 - C^2) (docs/norms.md section 3.4), independently of the reference."""
    g = 0.6
    lam2 = 1 - g * g
    C = corr(_random_cov(5))
    pre = st.sde.sde_drift(st.ShapedMLP(gamma=g, norm="pre_rms"), C)
    post = st.sde.sde_drift(st.ShapedMLP(gamma=g, norm="post_rms"), C)
    want = -C * lam2 * 8 * g * g * (1 - C**2) / (8 * (1 + lam2))
    np.testing.assert_allclose(pre - post, want * (1 - np.eye(5)), rtol=0, atol=1e-13)


def test_start_and_unit_diagonal():
    """The saved V at t = 0 is corr(V0) (post) or the initial-layer map's C (pre), and
    every saved V has an exact unit diagonal and entries in [-1, 1]."""
    ref = LAYERS["attention+mlp"]
    V0 = (
        np.diag([3.0, 0.3, 1.0, 1.8]) ** 0.5
        @ (np.full((4, 4), 0.3) + 0.7 * np.eye(4))
        @ np.diag([3.0, 0.3, 1.0, 1.8]) ** 0.5
    )
    for norm, start in (("post_rms", corr(V0)), ("pre_rms", pre_norm_initial_layer(ref, V0))):
        r = st.solve_sde(_pair(ref, norm), V0=V0, T=0.25, dt=1 / 64, paths=64, seed=1)
        np.testing.assert_allclose(r.V[:, 0], np.broadcast_to(start, r.V[:, 0].shape), rtol=0, atol=1e-12)
        assert np.all(np.isfinite(r.V))
        np.testing.assert_array_equal(np.diagonal(r.V, axis1=-2, axis2=-1), 1.0)
        assert np.abs(r.V).max() <= 1.0 + 1e-12
    # pre-norm's start is not corr(V0): the initial layer moves the correlations
    assert np.abs(pre_norm_initial_layer(ref, V0) - corr(V0)).max() > 1e-2


@pytest.mark.parametrize("norm", ("pre_rms", "post_layer"))
def test_kernels_and_threads_agree(norm):
    """The batched kernels this CPU has and the generic solver agree to rounding; the
    same numbers for 1 and 2 threads."""
    from shaped_transformer._blocks import make_network
    from shaped_transformer._core_loader import core

    net = make_network(_pair(LAYERS["attention+mlp"], norm)).to_core()
    V0 = np.full((4, 4), 0.3) + 0.7 * np.eye(4)
    save = np.array([0, 32, 64], dtype=np.int64)

    def run(kernel, threads=1):
        return core.solve_sde(net, V0, 1 / 128, 64, save, "euler", "clip", 24, 3, threads, 1e4, None, "paths", kernel)

    Vg = run("generic")[0]
    assert np.all(np.isfinite(Vg))
    ran = 0
    for k in ("scalar", "avx2", "avx512"):
        try:
            Vk = run(k)[0]
        except ValueError:  # not on this CPU
            continue
        ran += 1
        np.testing.assert_allclose(Vk, Vg, rtol=0, atol=1e-11)
    assert ran >= 1
    np.testing.assert_array_equal(run("", 1)[0], run("", 2)[0])
    np.testing.assert_array_equal(run("generic", 1)[0], run("generic", 2)[0])


# ---- in law: the pre - post gap against the reference ----------------------------------

LAW = {"m": 4, "paths": 2000, "dt": 1 / 128}


def _mean_rho(C: np.ndarray, power: int = 1) -> np.ndarray:
    iu = np.triu_indices(C.shape[-1], 1)
    return (C[:, iu[0], iu[1]] ** power).mean(1)


def _mean_rho2(C: np.ndarray) -> np.ndarray:
    return _mean_rho(C, 2)


def _z(a: np.ndarray, b: np.ndarray) -> float:
    return float((a.mean() - b.mean()) / np.sqrt(a.var() / len(a) + b.var() / len(b)))


def test_pre_post_gap_matches_reference():
    """Shaped Transformer layer (gamma = 0.5, tau0 = 1, c_+ = 0, c_- = -1), rho0 = 0.3,
    m = 4, T = 1, dt = 1/128, 2000 paths: the library's pre-RMS minus post-RMS (same
    seed: the same Brownian increments, so the difference is beta_fast's effect alone,
    resolved to ~0.001) against the reference's (solve_corr_sde, scheme "normalize",
    its own common random numbers) in mean rho_T^2 per path.  Each placement also
    against the reference alone, in mean rho_T^2 and mean rho_T.  Power: beta_fast dropped or doubled moves the gap by
    its own size, ~0.034, about 20 standard errors (the mutation fast_drift)."""
    m, paths, dt = LAW["m"], LAW["paths"], LAW["dt"]
    ref = [Attention(heads=1, tau0=1.0, gamma=0.5), MLP(c_plus=0.0, c_minus=-1.0, gamma=0.5)]
    C0 = np.full((m, m), 0.3) + (1 - 0.3) * np.eye(m)
    lib, refs, lib1, refs1 = {}, {}, {}, {}
    for norm in ("pre_rms", "post_rms"):
        r = st.solve_sde(_pair(ref, norm), V0=C0, T=1.0, dt=dt, paths=paths, seed=7, save_at=[1.0])
        assert np.all(r.exploded_at == np.inf)
        lib[norm], lib1[norm] = _mean_rho2(r.V[:, -1]), _mean_rho(r.V[:, -1])
        C = solve_corr_sde(np.random.default_rng(8), ref, norm, C0, 1.0, dt, paths, scheme="normalize")[0]
        refs[norm], refs1[norm] = _mean_rho2(C), _mean_rho(C)
    gap_lib = lib["pre_rms"] - lib["post_rms"]
    gap_ref = refs["pre_rms"] - refs["post_rms"]
    print(f"\ngap pre - post, mean rho_T^2: library {gap_lib.mean():.4f}, reference {gap_ref.mean():.4f}")
    print(f"z of the gaps: {_z(gap_lib, gap_ref):.2f}")
    assert abs(_z(gap_lib, gap_ref)) < Z_MAX
    for norm in lib:
        print(
            f"{norm}: mean rho_T^2 z = {_z(lib[norm], refs[norm]):.2f}, mean rho_T z = {_z(lib1[norm], refs1[norm]):.2f}"
        )
    for norm in lib:  # each placement alone, in mean rho_T^2 and mean rho_T
        assert abs(_z(lib[norm], refs[norm])) < Z_MAX, norm
        assert abs(_z(lib1[norm], refs1[norm])) < Z_MAX, norm
    # the test's power: the reference without its fast drift has gap 0 by construction
    assert abs(gap_ref.mean()) / np.sqrt(gap_ref.var() / paths + gap_lib.var() / paths) > POWER


# ---- refusals ---------------------------------------------------------------------------


def test_refusals():
    """Mixed placements, pre-norm on heads without the closed-form gap variance, and a
    zero diagonal in V0 are refused before any compute, naming the argument."""
    V0 = np.eye(3)
    kw = dict(V0=V0, T=0.1, dt=0.01, paths=2)
    for blocks in (
        [st.ShapedAttention(norm="pre_rms"), st.ShapedMLP()],
        [st.ShapedAttention(), st.ShapedMLP(norm="post_rms")],
        [st.ShapedAttention(norm="pre_rms"), st.ShapedMLP(norm="post_layer")],
    ):
        with pytest.raises(ValueError, match="^norm: the SDE needs every block to normalize in the same place"):
            st.solve_sde(st.Network(blocks), **kw)
        with pytest.raises(ValueError, match="norm"):
            st.sde.sde_drift(st.Network(blocks), V0)
    for head in (st.ShapedAttention(causal=True, norm="pre_rms"), st.ShapedAttention(beta=0.5, norm="pre_layer")):
        with pytest.raises(ValueError, match="norm: 'pre_(rms|layer)' on a causal head or one with beta != 1"):
            st.solve_sde(head, **kw)
    # post-norm covers every head; pre_rms with pre_layer is one placement
    st.solve_sde(st.ShapedAttention(causal=True, beta=0.5, norm="post_rms"), **kw)
    st.solve_sde(st.Network([st.ShapedAttention(norm="pre_rms"), st.ShapedMLP(norm="pre_layer")]), **kw)
    with pytest.raises(ValueError, match="^V0: a normalized network needs a positive diagonal"):
        st.solve_sde(st.ShapedMLP(norm="post_rms"), V0=np.diag([1.0, 0.0, 1.0]), T=0.1, dt=0.01, paths=2)


@pytest.mark.parametrize("norm", ("post_rms", "pre_rms"))
def test_failed_steps_are_not_blowups(norm):
    """An Euler step too long for a normalized network's correlation SDE leaves a
    diagonal entry <= 0 before the normalization: those paths stop and are counted as
    step failures (StepFailureWarning, info["step_failures"]), not as blow-ups, in
    solve_sde and in assess; at a sane step there are none."""
    net = st.shaped_transformer(heads=1, tau0=0.3, gamma=1.0, norm=norm)
    V0 = 0.7 * np.eye(8) + 0.3
    with pytest.warns(st.StepFailureWarning, match="not a blow-up"):
        r = st.solve_sde(net, V0=V0, T=4.0, steps=2, paths=200, seed=0, progress=False)
    assert r.info["step_failures"] == int(r.exploded.sum()) > 100
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning of any kind at a small step
        r = st.solve_sde(net, V0=V0, T=0.25, steps=250, paths=50, seed=0, progress=False)
    assert r.info["step_failures"] == 0 and not r.exploded.any()
    kw = dict(width=16, depth=64, heads=1, tokens=8, tau0=0.3, gamma=1.0, norm=norm, samples=24, progress=False)
    a = st.assess(**kw, dt=2.0, sde_paths=200)
    assert a.sde_blowup.events == 0  # the failed paths are neither event...
    assert any("StepFailureWarning" in n for n in a.notes)  # ...and the printout says so


def test_unnormalized_blowups_stay_blowups():
    """Without a norm a stopped path is a blow-up (BlowUpWarning), never a step failure."""
    net = st.shaped_transformer(heads=1, tau0=0.3, gamma=1.0)
    with pytest.warns(st.BlowUpWarning):
        r = st.solve_sde(net, V0=0.7 * np.eye(8) + 0.3, T=4.0, steps=400, paths=100, seed=0, progress=False)
    assert r.exploded.any() and r.info["step_failures"] == 0
