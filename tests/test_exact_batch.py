"""The batched exact chain (one sample per SIMD lane, exact/batch.hpp): every block
kind's exact step (its face, exact_common.hpp) in the lanes.

- every batch kernel (portable one-lane, AVX2, AVX-512) gives the same numbers;
- they agree with the per-sample Eigen path ("generic") to rounding: same random
  draws in the same order, only the order of the sums and the exponential's last
  bit differ (the bound below grows with the conditioning of V: REL + 100 eps kappa);
  for LayerNorm networks both carry the state s the same way;
- the same numbers for any thread count and any number of samples per batch;
- blow-ups at the same layers; clear errors for unknown or uncovered kernels.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import shaped_transformer as st
from conftest import require_kernel
from shaped_transformer._core_loader import core

KERNELS = ("scalar", "avx2", "avx512")
REL = 1e-9  # relative to max |V|; measured: < 1e-12 over 40 layers


def _V0(m, rho=0.3):
    V = st.inputs.equicorrelated(m, rho)
    V[0, 0] = 1.5
    return V


def _run(blocks, m, *, kernel, width=64, depth=40, samples=11, seed=3, threads=1, blowup=1e30, rho=0.3):
    net = st.Network(blocks).to_core()
    return core.simulate_exact(
        net, _V0(m, rho), width, depth, samples, seed, list(range(depth + 1)), threads, blowup, None, kernel
    )


def _available(kernel):
    try:
        _run([st.ShapedAttention()], 2, kernel=kernel, depth=1, samples=1)
        return True
    except ValueError:
        return False


CASES = [
    ([st.ShapedAttention()], 8, 64),
    ([st.ShapedAttention(gamma=0.7, tau0=0.5, causal=True)], 8, 40),
    ([st.ShapedAttention(), st.ShapedAttention(gamma=0.3, alpha=0.5, beta=2.0, key_dim=12)], 5, 30),
    ([st.ShapedAttention(gamma=0.6)], 3, 7),  # small width: gamma shapes down to 1, rejections, the scalar redraw
    # every kind: multi-head, the MLPs' Gram, norms, a singular key Wishart (n_k < m), n = m (no remainder)
    ([st.ShapedAttention(heads=2, gamma=0.6), st.ShapedMLP(gamma=0.5, c_plus=0.3)], 6, 80),
    ([st.StandardAttention(heads=2, norm="pre_rms"), st.ReluMLP(gamma=0.4, norm="post_rms")], 4, 50),
    ([st.ShapedAttention(key_dim=2, causal=True), st.StandardAttention(norm="post_rms", key_dim=3)], 5, 5),
    # the shaped blocks' RMS norms (issue 24)
    ([st.ShapedAttention(heads=2, norm="pre_rms"), st.ShapedMLP(gamma=0.4, norm="post_rms")], 4, 40),
    ([st.ShapedAttention(causal=True, norm="post_rms"), st.ShapedMLP(norm="pre_rms")], 5, 30),
    # LayerNorm: the kernels carry s (m lanes per sample) from s0 = L0 1_m of V0 (issue 24)
    ([st.ShapedAttention(norm="pre_layer"), st.ShapedMLP(gamma=0.4, norm="pre_layer")], 8, 64),
    ([st.ShapedAttention(heads=2, norm="post_layer"), st.ShapedMLP(gamma=0.4, norm="post_layer")], 13, 40),
    # s through blocks without LayerNorm (post_rms scales it, None passes it on); n = m + 1:
    # the frame's Wishart has no degrees of freedom left.  (gamma = 0.3: at 0.5 this width
    # collapses V to exact singularity within 40 layers, where two valid roots part the
    # paths at O(1), with or without a norm: nothing a bound on rounding can check.)
    (
        [
            st.StandardAttention(gamma=0.3, norm="pre_layer"),
            st.ShapedMLP(gamma=0.3, norm="post_rms"),
            st.ShapedAttention(gamma=0.3),
        ],
        8,
        9,
    ),
]


_SCALAR: dict = {}


@pytest.mark.parametrize("kernel", KERNELS[1:])
@pytest.mark.parametrize("blocks,m,width", CASES)
def test_kernels_give_the_same_numbers(blocks, m, width, kernel):
    require_kernel(kernel, _available(kernel))  # missing on a CPU with its features: fails
    key = (id(blocks), m, width)
    if key not in _SCALAR:  # one portable reference per case, shared by the kernels
        _SCALAR[key] = _run(blocks, m, kernel="scalar", width=width)
    ref = _SCALAR[key]
    out = _run(blocks, m, kernel=kernel, width=width)
    np.testing.assert_array_equal(out[0], ref[0], err_msg=kernel)
    np.testing.assert_array_equal(out[1], ref[1], err_msg=kernel)


#: Rounding differences between the two paths (order of sums, fused multiply-adds in
#: the lanes) are amplified by the conditioning of V through its root: by about
#: kappa = max diag V / min eigenvalue (running maximum over the layers so far).  At
#: n = m the chain collapses towards rank deficiency (the last case reaches kappa ~
#: 1e15), and there the root is not even continuous in V: eigenvalues below 64 eps
#: max|w| are dropped (linalg.hpp's PsdRootRule), which moves the root by up to
#: sqrt(64 eps) ~ 1.2e-7 of its scale.  Bound: REL + 100 eps kappa, capped at
#: SINGULAR_REL (that jump grown over the remaining layers; measured 9e-7 at layer 38
#: of the last case, kappa 4e14; elsewhere < 2e-12).  Still far below a wrong draw.
SINGULAR_REL = 1e-5


@pytest.mark.parametrize("blocks,m,width", CASES)
def test_batch_equals_the_per_sample_path_to_rounding(blocks, m, width):
    Vg, eg = _run(blocks, m, kernel="generic", width=width)
    Vb, eb = _run(blocks, m, kernel="", width=width)
    np.testing.assert_array_equal(eb, eg)
    assert np.array_equal(np.isnan(Vb), np.isnan(Vg))
    finite = ~np.isnan(Vg[:, :, 0, 0])
    w = np.linalg.eigvalsh(np.where(finite[:, :, None, None], Vg, np.eye(m)))[:, :, 0]
    diag = np.abs(np.diagonal(np.nan_to_num(Vg), axis1=2, axis2=3)).max(axis=2)
    kappa = np.maximum.accumulate(diag / np.maximum(w, 1e-300 * diag + 1e-300), axis=1)
    tol = np.minimum(REL + 100 * np.finfo(float).eps * kappa, SINGULAR_REL)
    scale = np.nanmax(np.abs(Vg), axis=(2, 3))
    diff = np.nanmax(np.abs(Vb - Vg), axis=(2, 3)) / scale
    assert np.all(diff[finite] < tol[finite]), np.max(diff[finite] / tol[finite])
    # the common case: well conditioned, where the bound is REL itself
    assert np.max(diff[finite & (kappa < 1e4)], initial=0.0) < REL


def test_thread_count_and_batch_split_do_not_change_numbers():
    blocks = [st.ShapedAttention(gamma=0.6)]
    a = _run(blocks, 8, kernel="", samples=13, threads=1)
    b = _run(blocks, 8, kernel="", samples=13, threads=2)
    c = _run(blocks, 8, kernel="", samples=5, threads=2)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[0][:5], c[0])


def test_blowups_at_the_same_layers_as_the_per_sample_path():
    blocks = [st.ShapedAttention(gamma=0.9, tau0=0.3)]
    kw = dict(width=12, depth=60, samples=24, blowup=4.0, rho=0.1)
    Vg, eg = _run(blocks, 4, kernel="generic", **kw)
    Vb, eb = _run(blocks, 4, kernel="", **kw)
    assert (eg >= 0).any() and (eg < 0).any()
    np.testing.assert_array_equal(eb, eg)
    np.testing.assert_array_equal(np.isnan(Vb), np.isnan(Vg))


def test_default_kernel_and_refusals():
    att = [st.ShapedAttention()]
    assert core.exact_kernel(st.Network(att).to_core(), 8, 1000) in KERNELS
    mixed = st.Network([st.ShapedAttention(), st.ShapedMLP()]).to_core()
    assert core.exact_kernel(mixed, 8, 1000) in KERNELS
    assert core.exact_kernel(st.Network([st.ShapedAttention(heads=2)]).to_core(), 8, 1000) in KERNELS
    # beyond the kernels' scratch (m <= 32, heads * m <= 32): the per-sample chain
    assert core.exact_kernel(st.Network([st.ShapedAttention(heads=5)]).to_core(), 8, 1000) == "generic"
    with pytest.raises(ValueError, match="kernel"):
        _run(att, 4, kernel="avx1024")
    with pytest.raises(ValueError, match="kernel"):
        _run([st.ShapedAttention(heads=5)], 8, kernel="scalar")


def test_every_instruction_set_gives_the_same_bits():
    """SHAPED_TRANSFORMER_KERNEL=scalar|avx2 forces the narrower builds of the exact
    attention kernel and of the fused MLP Gram (exact/mlp_gram.hpp) in a child process."""
    import os
    import subprocess
    import sys

    code = (
        "import numpy as np, shaped_transformer as st, sys\n"
        "net = st.Network([st.ShapedAttention(gamma=0.6), st.ShapedMLP(gamma=0.6), st.ReluMLP(gamma=0.4)])\n"
        "r = st.simulate(net, V0=st.inputs.equicorrelated(5, 0.3), width=300, depth=6, samples=9, method='exact',"
        " seed=2, progress=False)\n"
        "a = st.simulate(st.ShapedAttention(causal=True), V0=st.inputs.equicorrelated(5, 0.3), width=300, depth=6,"
        " samples=9, method='exact', seed=2, progress=False)\n"
        "sys.stdout.write(r.V.tobytes().hex() + a.V.tobytes().hex())\n"
    )
    outs = {}
    for k in ("", "scalar", "avx2"):
        env = dict(os.environ, SHAPED_TRANSFORMER_KERNEL=k)
        outs[k] = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        ).stdout
    assert outs[""] == outs["scalar"] == outs["avx2"]


#: The per-sample path at m >= 33 (the products through Eigen's GEMM, gemm.hpp, the
#: roots' Cholesky, large_root.hpp, the row softmax, row_softmax.hpp) and the SDE's
#: per-path solver there (products and roots): the build for this CPU against the
#: portable one, forced in a child process by SHAPED_TRANSFORMER_KERNEL=scalar (read
#: once per process).
_GEMM_CHILD = """
import sys, numpy as np, shaped_transformer as st
from shaped_transformer._core_loader import core
blocks = [st.ShapedAttention(heads=2, gamma=0.6), st.ShapedMLP(gamma=0.5, c_plus=0.3)]
V0 = st.inputs.equicorrelated(40, 0.3); V0[0, 0] = 1.5
info = {}
V, e = core.simulate_exact(st.Network(blocks).to_core(), V0, 600, 12, 3, 3, list(range(13)), 1, 1e30, None, "",
                           info=info)
sde = st.solve_sde(st.Network(blocks), V0=V0, T=0.02, steps=10, paths=2, seed=4, threads=1, save_at=[0.01, 0.02])
np.savez(sys.argv[1], V=V, e=e, gemm=info["gemm"], Vs=sde.V, es=sde.exploded)
"""


def test_per_sample_products_simd_build_agrees_with_the_portable_one(tmp_path):
    """The per-sample chain's large products, roots and softmax, and the per-path SDE
    solver's products and roots, in the AVX2 / AVX-512 build (chosen for the CPU) and in
    the portable one (SHAPED_TRANSFORMER_KERNEL=scalar): the same draws, the sums in
    another order and with fused multiply-adds, a vector exp, so equal to rounding (REL);
    a wrong product, root or softmax or a skipped term would be O(1) (measured: 1.8e-15
    of max |V| over 12 layers, AVX-512 against portable, products alone).  Two child
    processes, ~2 s."""

    def run(level):
        env = dict(os.environ)
        env.pop("SHAPED_TRANSFORMER_KERNEL", None)
        if level:
            env["SHAPED_TRANSFORMER_KERNEL"] = level
        out = tmp_path / f"{level or 'default'}.npz"
        subprocess.run([sys.executable, "-c", _GEMM_CHILD, str(out)], env=env, check=True)
        return np.load(out)

    wide = run("")
    if str(wide["gemm"]) == "scalar":
        require_kernel("avx2", False)  # skips (no AVX2 + FMA) or fails (a build without the SIMD products)
    portable = run("scalar")
    assert str(portable["gemm"]) == "scalar" and str(wide["gemm"]) in ("avx2", "avx512")
    np.testing.assert_array_equal(wide["e"], portable["e"])
    assert (wide["e"] < 0).all()
    diff = np.abs(wide["V"] - portable["V"]).max(axis=(2, 3)) / np.abs(portable["V"]).max(axis=(2, 3))
    assert diff[:, 0].max() == 0.0  # the input
    assert 0.0 < diff.max() < REL, diff.max()  # moved (another build ran), by rounding only
    np.testing.assert_array_equal(wide["es"], portable["es"])
    assert not wide["es"].any()
    sde = np.abs(wide["Vs"] - portable["Vs"]).max(axis=(-2, -1)) / np.abs(portable["Vs"]).max(axis=(-2, -1))
    assert 0.0 < sde.max() < REL, sde.max()
