"""The per-token norm on the shaped blocks (issue 24, phase 2, first part).

``norm`` on ShapedAttention and ShapedMLP is the contrast blocks' field (same four
placements, same code path in explicit_common.hpp).  The explicit network and the law
sampler run it, and the exact chain (LayerNorm on the state (V, s) of docs/norms.md
section 6); the SDE refuses a normalized shaped block by name until its step lands.  The
same-weights comparison with NumPy for every placement is in tests/test_explicit.py
(BLOCKS); here: what each placement does to V, the exact chain against the explicit
network, and the refusals.  All cases take well under a second each, but the LayerNorm
chain comparisons (about 2 s each).
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import shaped_transformer as st
from _norms_numpy import law_z
from shaped_transformer.inputs import tokens_from_covariance
from shaped_transformer.sde import sde_drift

PLACEMENTS = ("pre_rms", "pre_layer", "post_rms", "post_layer")
M, N = 4, 48
# Not a correlation matrix: the tokens' RMS (sqrt of diag V) differ from 1.
V0 = np.array([[1.6, 0.5, 0.2, -0.1], [0.5, 0.7, 0.1, 0.3], [0.2, 0.1, 1.2, 0.4], [-0.1, 0.3, 0.4, 0.9]])


def _blocks(norm):
    return [
        st.ShapedAttention(heads=2, tau0=0.8, gamma=0.6, norm=norm),
        st.ShapedAttention(causal=True, beta=1.3, gamma=0.6, norm=norm),
        st.ShapedMLP(c_plus=0.5, c_minus=-1.5, gamma=0.6, norm=norm),
    ]


def _run(block, X0, depth=1, method="explicit", **kw):
    return st.simulate(st.Network([block]), X0=X0, depth=depth, samples=2, seed=7, threads=1, method=method, **kw)


def test_norm_is_a_typed_field():
    for b in _blocks(None):
        assert b.norm == "none"
        assert b == b.replace(norm="none") and hash(b) == hash(b.replace(norm=None))
        assert b.replace(norm="pre_rms").norm == "pre_rms" and b.replace(norm="pre_rms") != b
    a = st.ShapedAttention(norm="post_layer")
    assert "norm='post_layer'" in repr(a)
    assert pickle.loads(pickle.dumps(a)) == a


@pytest.mark.parametrize("cls", [st.ShapedAttention, st.ShapedMLP])
@pytest.mark.parametrize(
    "bad, exc", [("batch", ValueError), ("PRE_RMS", ValueError), ("", ValueError), (1, ValueError)]
)
def test_bad_norm_is_refused_naming_norm(cls, bad, exc):
    with pytest.raises(exc) as info:
        cls(norm=bad)
    assert str(info.value).startswith("norm:")


@pytest.mark.parametrize("i", range(3))
def test_norm_none_is_the_unnormalized_block(i):
    """norm=None, "none" and the default (no norm given) run the same network, bit for
    bit (the old numbers themselves: tests/test_regression.py)."""
    X0 = tokens_from_covariance(V0, N)
    b = _blocks(None)[i]
    kw = {k: getattr(b, k) for k, _ in type(b)._parameters if k != "norm"}
    ref = _run(type(b)(**kw), X0, depth=2).V
    for norm in (None, "none"):
        assert np.array_equal(_run(type(b)(**kw, norm=norm), X0, depth=2).V, ref)


@pytest.mark.parametrize("method", ["explicit", "law"])
@pytest.mark.parametrize("i", range(3))
def test_post_rms_keeps_a_correlation_matrix(i, method):
    """After a post_rms block every token has RMS 1: diag V = 1 to rounding, |V_ab| <= 1;
    without the norm the diagonal moves (so this can fail)."""
    X0 = tokens_from_covariance(V0, N)
    V = _run(_blocks("post_rms")[i], X0, depth=3, method=method, save_every=1).V  # (samples, layers + 1, m, m)
    d = np.diagonal(V[:, 1:], axis1=-2, axis2=-1)
    assert np.max(np.abs(d - 1.0)) < 1e-12
    assert np.all(np.abs(V[:, 1:]) <= 1.0 + 1e-12)
    Vn = _run(_blocks(None)[i], X0, depth=3, method=method, save_every=1).V
    assert np.max(np.abs(np.diagonal(Vn[:, 1:], axis1=-2, axis2=-1) - 1.0)) > 1e-3


@pytest.mark.parametrize("i", range(3))
def test_post_norms_normalize_the_unnormalized_output(i):
    """One block on the same weights: post_rms's V is D^{-1/2} V D^{-1/2} of norm=None's V
    (D = diag V), and post_layer's tokens are the centred, RMS-normalized tokens."""
    X0 = tokens_from_covariance(V0, N)
    r0 = _run(_blocks(None)[i], X0, return_X=True)
    V = r0.V[:, -1]
    s = 1.0 / np.sqrt(np.diagonal(V, axis1=-2, axis2=-1))
    expect = V * s[:, :, None] * s[:, None, :]
    assert np.max(np.abs(_run(_blocks("post_rms")[i], X0).V[:, -1] - expect)) < 1e-12
    Xc = r0.X - r0.X.mean(-1, keepdims=True)
    Xc = Xc / np.sqrt(np.mean(Xc**2, -1, keepdims=True))
    XL = _run(_blocks("post_layer")[i], X0, return_X=True).X
    assert np.max(np.abs(XL - Xc)) < 1e-11


@pytest.mark.parametrize("i", range(3))
def test_pre_norms_act_on_the_branch_input_only(i):
    """pre_rms differs from None when the tokens' RMS differ from 1, and is None's
    network (to rounding, same weights) when every token already has RMS 1: the norm
    only rescales the branch's input, the residual keeps X."""
    X0 = tokens_from_covariance(V0, N)
    none = _run(_blocks(None)[i], X0).V
    pre = _run(_blocks("pre_rms")[i], X0).V
    assert np.max(np.abs(pre - none)) > 1e-3
    d = 1.0 / np.sqrt(np.diag(V0))
    C0 = V0 * d[:, None] * d[None, :]  # a correlation matrix: unit-RMS tokens
    X1 = tokens_from_covariance(C0, N)
    diff = np.max(np.abs(_run(_blocks("pre_rms")[i], X1).V - _run(_blocks(None)[i], X1).V))
    assert diff < 1e-12, diff
    # pre_layer also centres each token over its features: X1's tokens are not centred.
    assert np.max(np.abs(_run(_blocks("pre_layer")[i], X1).V - _run(_blocks(None)[i], X1).V)) > 1e-6


@pytest.mark.parametrize("norm", PLACEMENTS)
@pytest.mark.parametrize("i", range(3))
def test_refusals_of_a_normed_shaped_block(i, norm):
    """The SDE runs every placement (tests/test_sde_norms.py) except pre-norm on the
    causal / beta != 1 head, a ValueError naming norm, the placement and the block, before
    running anything; the exact chain covers every placement, LayerNorm at width >= m + 1
    only (a ValueError naming width below)."""
    b = _blocks(norm)[i]
    net = st.Network([b])
    if i == 1 and norm.startswith("pre"):
        assert not b.has_sde and not net.has_sde
        assert b.sde_refusal.startswith(f"norm: '{norm}' on a causal head")
        with pytest.raises(ValueError, match=rf"block 0 \({b.kind}\): norm: '{norm}'"):
            st.solve_sde(net, V0=V0, T=0.1, steps=4, paths=2)
        with pytest.raises(ValueError, match=f"norm: '{norm}'"):
            sde_drift(net, V0)
    else:
        assert b.has_sde and net.has_sde and b.sde_refusal is None
        r = st.solve_sde(net, V0=V0, T=0.1, steps=4, paths=2)
        np.testing.assert_array_equal(np.diagonal(r.V, axis1=-2, axis2=-1), 1.0)
    assert b.exact_chain and net.exact_chain and b.exact_refusal is None
    if norm.endswith("layer"):
        with pytest.raises(ValueError, match=r"width: LayerNorm in the exact chain needs width >= m \+ 1 = 5, got 4"):
            st.simulate(net, V0=V0, width=M, depth=2, samples=2, method="exact")
    # The layer built by shaped_transformer(norm=...) and by make_network's usual
    # parameters carries the norm to both blocks, and is refused the same way.
    for layer in (st.shaped_transformer(norm=norm), st.make_network("shaped_transformer", norm=norm)):
        assert [blk.norm for blk in layer] == [norm, norm]
        assert layer.has_sde
        assert layer.exact_chain


def _exact(block, V, depth=1, samples=2, seed=7):
    return st.simulate(st.Network([block]), V0=V, width=N, depth=depth, samples=samples, seed=seed, method="exact").V


@pytest.mark.parametrize("i", range(3))
def test_exact_rms_steps_on_the_same_draws(i):
    """The exact chain's RMS placements on the same random numbers as norm=None:
    post_rms gives the correlation matrix of None's V'; pre_rms is None's step when V is
    already a correlation matrix (to rounding) and differs otherwise."""
    none = _exact(_blocks(None)[i], V0)[:, -1]
    s = 1.0 / np.sqrt(np.diagonal(none, axis1=-2, axis2=-1))
    expect = none * s[:, :, None] * s[:, None, :]
    assert np.max(np.abs(_exact(_blocks("post_rms")[i], V0)[:, -1] - expect)) < 1e-12
    assert np.max(np.abs(_exact(_blocks("pre_rms")[i], V0) - _exact(_blocks(None)[i], V0))) > 1e-3
    d = 1.0 / np.sqrt(np.diag(V0))
    C0 = V0 * d[:, None] * d[None, :]
    assert np.max(np.abs(_exact(_blocks("pre_rms")[i], C0) - _exact(_blocks(None)[i], C0))) < 1e-12


Z_MAX = 4.5  # on at most 10 entries: a false alarm about once in 10^4 runs


def _z(A, B):
    """Largest |z| of the entrywise means of two independent samples (samples, k)."""
    se = np.sqrt(A.var(0, ddof=1) / len(A) + B.var(0, ddof=1) / len(B))
    return np.max(np.abs(A.mean(0) - B.mean(0)) / se)


@pytest.mark.parametrize("norm", ["pre_rms", "post_rms"])
def test_exact_rms_chain_matches_the_explicit_network(norm):
    """In law, at a small width (the chain is exact at every n): a shaped Transformer
    layer (attention + MLP), two layers, means of the entries of V.  The chain run
    without the norm is rejected (the test's power)."""
    S, depth, n = 3000, 2, 16
    iu = np.triu_indices(M, 1 if norm.startswith("post") else 0)  # post: diag V = 1 exactly
    layer = st.Network(_blocks(norm)[0::2])
    X0 = tokens_from_covariance(V0, n)
    Ve = st.simulate(layer, X0=X0, depth=depth, samples=S, seed=1).V[:, -1][:, iu[0], iu[1]]
    Vc = st.simulate(layer, V0=V0, width=n, depth=depth, samples=S, seed=2, method="exact").V[:, -1][:, iu[0], iu[1]]
    z = _z(Ve, Vc)
    assert z < Z_MAX, z
    plain = st.Network(_blocks(None)[0::2])
    Vp = st.simulate(plain, V0=V0, width=n, depth=depth, samples=S, seed=2, method="exact").V[:, -1][:, iu[0], iu[1]]
    assert _z(Ve, Vp) > Z_MAX  # the same test fails the chain without the norm (z 7.4 post, 26 pre)


def test_unnormed_shaped_blocks_keep_their_coverage():
    for b in _blocks(None):
        assert b.exact_chain and b.has_sde and b.exact_refusal is None and b.sde_refusal is None


# ---- LayerNorm in the exact chain (docs/norms.md sections 6 and 7.2) -----------------

LN_M, LN_N, LN_S = 3, 12, 8000
LN_V0 = np.array([[1.3, 0.4, -0.2], [0.4, 0.8, 0.3], [-0.2, 0.3, 1.0]])


def _ln_tokens():
    """Tokens with covariance LN_V0 in a random frame, so that s0 = X0 1 / sqrt(n) is generic."""
    Q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((LN_N, LN_N)))
    return np.linalg.cholesky(LN_V0) @ Q[:LN_M] * np.sqrt(LN_N)


def _ln_net(att, mlp):
    """Two-head attention then an MLP (the setting of docs/norms.md section 7.2)."""
    return st.Network([att, mlp])


def _shaped(na, nm=None):
    nm = na if nm is None else nm
    return _ln_net(
        st.ShapedAttention(heads=2, tau0=0.7, gamma=0.6, norm=na),
        st.ShapedMLP(c_plus=0.5, c_minus=-1.0, gamma=0.6, norm=nm),
    )


def _entries(net, V):
    post = list(net)[-1].norm.startswith("post")  # diag V = 1 exactly after a post-norm
    iu = np.triu_indices(LN_M, 1 if post else 0)
    return V[:, -1][:, iu[0], iu[1]]


def _ln_run(net, seed, method, **inputs):
    r = st.simulate(net, depth=2, samples=LN_S, seed=seed, method=method, threads=1, progress=False, **inputs)
    return _entries(net, r.V)


LN_NETS = {
    "pre_layer": _shaped("pre_layer"),
    "post_layer": _shaped("post_layer"),
    # s carried through blocks without LayerNorm: post_rms scales it, None passes it on
    "pre_layer+post_rms": _shaped("pre_layer", "post_rms"),
    "none+post_layer": _shaped(None, "post_layer"),
    "contrast pre_layer": _ln_net(
        st.StandardAttention(heads=2, gamma=0.6, norm="pre_layer"), st.ReluMLP(gamma=0.6, norm="pre_layer")
    ),
}


@pytest.mark.parametrize("name", list(LN_NETS))
def test_exact_layernorm_chain_matches_the_explicit_network(name):
    """m = 3, n = 12, two layers from tokens in a random frame: the chain on (V, s) and the
    explicit network agree in the means and standard deviations of the entries of V
    (4000 samples each).  For the pure LayerNorm networks the RMS chain run in their place
    is rejected (docs/norms.md section 7.2: |z| about 17-19 at 20000 samples; at 4000
    above 2 Z_MAX here), so the test sees the centring."""
    net, X0 = LN_NETS[name], _ln_tokens()
    Ve = _ln_run(net, 1, "explicit", X0=X0)
    Vc = _ln_run(net, 2, "exact", X0=X0)
    z = max(law_z(Ve, Vc))
    assert z < Z_MAX, z
    if name in ("pre_layer", "post_layer"):
        rms = _shaped(name.replace("layer", "rms"))
        z_rms = max(law_z(Ve, _ln_run(rms, 2, "exact", X0=X0)))
        assert z_rms > 2 * Z_MAX, z_rms


def test_exact_layernorm_chain_from_v0_starts_from_the_library_tokens():
    """From V0 the chain's s0 is that of tokens_from_covariance (L0 1_m): it matches the
    explicit network run from those tokens, and not the one run from the same V0 in a
    random frame (another s0), which shows that s0 is read."""
    net = LN_NETS["pre_layer"]
    Vc = _ln_run(net, 2, "exact", V0=LN_V0, width=LN_N)
    Ve = _ln_run(net, 1, "explicit", X0=tokens_from_covariance(LN_V0, LN_N))
    z = max(law_z(Ve, Vc))
    assert z < Z_MAX, z
    z_frame = max(law_z(_ln_run(net, 1, "explicit", X0=_ln_tokens()), Vc))
    assert z_frame > 2 * Z_MAX, z_frame


def test_exact_layernorm_refusals():
    """Width n = m: no frame for the all-ones direction (ValueError naming width and the
    reason).  At n >= m + 1 the batched SIMD kernels carry s: the default picks them.
    The SDE's exact_chain scheme, which carries no s, refuses LayerNorm by name."""
    from shaped_transformer._core_loader import core

    net = LN_NETS["pre_layer"]
    with pytest.raises(ValueError, match=r"^width: .*all-ones feature direction.*method='explicit' or method='law'"):
        st.simulate(net, V0=LN_V0, width=LN_M, depth=1, samples=2, method="exact")
    with pytest.raises(ValueError, match=r"^width: .*all-ones feature direction"):
        core.simulate_exact(net, LN_V0, LN_M, 1, 2, 0, [1], 1, 1e30, None, "scalar")
    assert core.exact_kernel(net, LN_M, LN_M + 1) != "generic"
    info: dict = {}
    core.simulate_exact(net, LN_V0, LN_N, 1, 2, 0, [1], 1, 1e30, None, info=info)
    assert info["kernel"] != "generic"
    # the SDE's exact_chain scheme steps V alone: refused before any path runs
    with pytest.raises(ValueError, match=r"^norm: the scheme 'exact_chain' steps V alone"):
        st.solve_sde(net, V0=LN_V0, T=0.1, dt=1 / 50, paths=2, scheme="exact_chain", progress=False)


@pytest.mark.parametrize("name", list(LN_NETS))
def test_exact_layernorm_batch_kernels_equal_the_per_sample_path_from_tokens(name):
    """From tokens in a random frame (s0 = X0 1 / sqrt(n) generic, not the L0 1_m of V0;
    tests/test_exact_batch.py covers the start from V0): the batched kernels carry the
    same s as the per-sample path, to rounding, over 30 layers; and they read s0 (the
    start from V0, another s0, differs at O(1))."""
    from shaped_transformer._core_loader import core

    net, X0 = LN_NETS[name].to_core(), _ln_tokens()
    save = list(range(31))

    def run(kernel, **inputs):
        return core.simulate_exact(net, None, None, 30, 9, 5, save, 1, 1e30, None, kernel, **inputs)[0]

    def cov(X):
        return X @ X.T / X.shape[1]

    Vg = run("generic", X0=X0, covariance=cov)
    Vb = run("", X0=X0, covariance=cov)
    rel = np.max(np.abs(Vb - Vg)) / np.max(np.abs(Vg))
    assert rel < 1e-9, rel
    Vv = core.simulate_exact(net, LN_V0, LN_N, 30, 9, 5, save, 1, 1e30, None, "")[0]
    assert np.max(np.abs(Vv[:, 1:] - Vb[:, 1:])) > 1e-3
