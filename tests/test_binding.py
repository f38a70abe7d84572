"""The Python package asks the core instead of keeping its own copy (issue 22).

- the network goes to the drivers as the typed object (no dictionary form exists);
- each argument is checked once, in C++: the package itself runs no check of V0;
- what a network covers, why not, its SDE noise dimension and its memory come from
  the core, and a kind of the registry needs no Python code (make_network finds it
  by name, a kind without prose gets a plain class);
- every run says which kernel ran, as the C++ driver reports it.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

import shaped_transformer as st
from shaped_transformer import _blocks, _validate
from shaped_transformer._core_loader import core

V0 = st.inputs.equicorrelated(4, 0.3)
KERNELS = ("avx512", "avx2", "scalar")


class Spy:
    """Stands for _core in a module: records the arguments of every call."""

    def __init__(self):
        self.calls: list[tuple[str, tuple, dict]] = []

    def __getattr__(self, name):
        fn = getattr(core, name)
        if not callable(fn):
            return fn

        def call(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            return fn(*args, **kwargs)

        return call


@pytest.mark.parametrize("run", ["explicit", "law", "exact", "sde"])
def test_the_network_object_itself_goes_to_the_core(monkeypatch, run):
    module = sys.modules["shaped_transformer.sde" if run == "sde" else "shaped_transformer.simulate"]
    spy = Spy()
    monkeypatch.setattr(module, "core", spy)
    net = st.shaped_transformer(heads=2)
    if run == "sde":
        st.solve_sde(net, V0=V0, T=0.1, steps=5, paths=3, seed=0, progress=False)
    else:
        st.simulate(net, V0=V0, width=8, depth=2, samples=2, method=run, seed=0, progress=False)
    drivers = [c for c in spy.calls if c[0] in ("simulate_explicit", "simulate_law", "simulate_exact", "solve_sde")]
    assert len(drivers) == 1 and drivers[0][1][0] is net  # no conversion on the way
    assert isinstance(net, core.Network)


def test_there_is_no_dictionary_form():
    """Blocks have no dict form and the drivers parse none: a dict is refused as a block."""
    assert not hasattr(st.ShapedAttention(), "to_core")
    with pytest.raises(TypeError, match=r"blocks\[0\]: must be a Block"):
        core.solve_sde([{"kind": "shaped_attention"}], V0, 0.1, 1, np.array([0, 1]), "euler", "clip", 1, 0, 1, 1e4)
    net = st.shaped_transformer()
    assert net.to_core() is net  # the one object every driver takes


def test_network_is_the_core_network_and_pickles():
    import pickle

    blocks = [st.ShapedAttention(heads=2), st.ShapedMLP(gamma=0.3)]
    net = st.Network(blocks)
    assert net.blocks == tuple(blocks) and all(a is b for a, b in zip(net, blocks)) and len(net) == 2
    again = pickle.loads(pickle.dumps(net))
    assert type(again) is st.Network and again == net and again.blocks[0].heads == 2
    assert st.Network(blocks[0]).blocks == (blocks[0],)
    with pytest.raises(TypeError, match=r"blocks: must be a Block or a sequence of Blocks, got int"):
        st.Network(3)  # type: ignore[arg-type]


def test_V0_is_not_checked_in_python(monkeypatch):
    """The core checks V0 (symmetry, eigenvalues, diagonal) once; the package runs no
    eigenvalue solver and no check of its own on the way (it would raise here)."""

    def forbidden(*args, **kwargs):
        raise AssertionError("V0 checked in Python")

    monkeypatch.setattr(np.linalg, "eigvalsh", forbidden)
    monkeypatch.setattr(_validate, "check_square_psd", forbidden)
    monkeypatch.setattr(_validate, "check_blowup", forbidden)
    monkeypatch.setattr(_validate, "check_threads", forbidden)
    monkeypatch.setattr(_validate, "check_seed", forbidden)
    for method in ("explicit", "law", "exact"):
        st.simulate(st.shaped_transformer(), V0=V0, width=8, depth=1, samples=2, method=method, seed=0, progress=False)
    st.solve_sde(st.shaped_transformer(), V0=V0, T=0.1, steps=4, paths=2, seed=0, progress=False)
    # and a bad one is still refused, by the core, naming it
    with pytest.raises(ValueError, match="V0: must be positive semi-definite; its smallest eigenvalue is -1"):
        st.solve_sde(st.shaped_transformer(), V0=-np.eye(3), T=0.1, steps=4, paths=2, seed=0, progress=False)
    with pytest.raises(ValueError, match="V0: must have a positive diagonal"):
        st.simulate(st.shaped_transformer(), V0=np.zeros((3, 3)), width=8, depth=1, method="exact", seed=0)


def test_what_a_network_covers_comes_from_the_core():
    att, mlp, relu = st.ShapedAttention(), st.ShapedMLP(), st.ReluMLP()
    net = st.Network([att, mlp, relu])
    # the reason is the core's text (blocks/relu_mlp.hpp), named by block and kind
    assert relu.sde_refusal == "the unshaped ReLU MLP has no SDE limit"
    assert net.sde_refusal == "network: block 2 (relu_mlp): " + relu.sde_refusal and not net.has_sde
    with pytest.raises(ValueError) as info:
        st.solve_sde(net, V0=V0, T=0.1, steps=4, paths=2, seed=0)
    assert str(info.value) == net.sde_refusal
    alpha = st.ShapedAttention(alpha=0.5)
    assert alpha.sde_refusal.startswith("alpha: only shaped heads with alpha = 1")
    assert st.ShapedAttention(concat=True).exact_refusal.startswith("concat:")
    # LayerNorm runs on the state (V, s) (docs/norms.md section 6): refused only by width, at run time
    assert st.StandardAttention(norm="pre_layer").exact_refusal is None
    assert att.sde_refusal is None and att.exact_refusal is None


@pytest.mark.parametrize("m", [1, 3, 8])
def test_noise_dimension_comes_from_the_core(m):
    """A shaped head draws 2 m^2 numbers per step, the shaped MLP m^2 (their headers);
    sde_noise takes exactly Network.sde_noise_dim(m) of them."""
    net = st.Network([st.ShapedAttention(), st.ShapedMLP(), st.ShapedAttention(heads=3)])
    assert net.sde_noise_dim(m) == 2 * m * m + m * m + 2 * m * m
    V = st.inputs.equicorrelated(m, 0.2)
    k = net.sde_noise_dim(m)
    assert st.sde.sde_noise(net, V, np.zeros(k)).shape == (m, m)
    with pytest.raises(ValueError, match=f"dW: must hold {k} numbers"):
        st.sde.sde_noise(net, V, np.zeros(k + 1))
    with pytest.raises(ValueError, match="network: block 0"):
        st.Network([st.StandardAttention()]).sde_noise_dim(m)


def test_every_registry_kind_is_reached_by_name_without_python_code():
    """make_network finds each kind of the core's registry by its name, with the usual
    parameters it has; a kind without prose in _blocks.py gets a plain class."""
    assert set(_blocks.KINDS) == set(core.kinds())
    for kind, cls in _blocks.KINDS.items():
        net = st.make_network(kind, heads=2, gamma=0.3)
        assert type(net.blocks[0]) is cls and net.blocks[0].gamma == 0.3
        assert issubclass(cls, core.kinds()[kind]) and issubclass(cls, st.Block)
    plain = _blocks._plain_subclass(core.ShapedMLP)  # what a kind without prose gets
    block = plain(gamma=0.25)
    assert isinstance(block, st.Block) and "Parameters" in plain.__doc__ and block.kind == "shaped_mlp"
    r = st.simulate(st.Network([block]), V0=V0, width=8, depth=2, method="exact", seed=0, progress=False)
    assert r.V.shape == (1, 3, 4, 4)
    with pytest.raises(ValueError, match="block: unknown block kind 'mamba'"):
        st.make_network("mamba")


def test_memory_figures_come_from_the_blocks():
    """Per worker, the largest block's figure (blocks/resources.hpp): a network whose
    heads grow needs more, one without attention needs only the MLP's tiles."""
    kw = dict(m=8, width=64, samples=1, saved=2, threads=1)
    est = st._memory.estimate_simulate_bytes  # type: ignore[attr-defined]
    mlp = est(st.ShapedMLP(), "exact", **kw)["workspace"]
    assert mlp == core.exact_mlp_workspace_bytes(8)
    # (8 + 4 H) m^2 doubles for H heads: above the MLP's tiles from H = 31 on at m = 8
    assert (
        est([st.ShapedMLP(), st.ShapedAttention(heads=64)], "exact", **kw)["workspace"]
        == est(st.ShapedAttention(heads=64), "exact", **kw)["workspace"]
        > mlp
    )
    assert est([st.ShapedMLP(), st.ShapedAttention(heads=2)], "exact", **kw)["workspace"] == mlp


@pytest.mark.parametrize(
    "method, net, expect",
    [
        ("explicit", st.shaped_transformer(), "normal"),
        ("law", st.standard_transformer(), "normal"),
        ("exact", st.ShapedAttention(), "batch"),
        ("exact", st.shaped_transformer(), "batch"),  # every kind runs in the lanes (#22)
        ("exact", st.ShapedAttention(heads=9), "generic"),  # heads * m = 36 > 32: beyond the lanes' scratch
    ],
)
def test_simulate_reports_the_kernel_that_ran(method, net, expect):
    r = st.simulate(net, V0=V0, width=16, depth=2, samples=3, method=method, seed=0, progress=False)
    assert r.kernel == r.info["kernel"]
    if expect == "normal":  # the normals inside the weight products
        assert r.kernel == core.normal_kernel_name()
    elif expect == "batch":
        assert r.kernel in KERNELS and r.kernel == core.exact_kernel(st.make_network(net), 4, 16)
    else:
        assert r.kernel == "generic"
    assert r.finite().kernel == r.kernel


@pytest.mark.parametrize(
    "net, kw, expect",
    [
        (st.ShapedAttention(), dict(), "batch"),
        (st.ShapedAttention(), dict(save="summary"), "batch"),
        (st.shaped_transformer(), dict(), "batch"),  # every SDE kind runs in the lanes (#22)
        (st.ShapedAttention(), dict(scheme="exact_chain", steps=None, dt=0.125, T=0.25), "generic"),
    ],
)
def test_solve_sde_reports_the_kernel_that_ran(net, kw, expect):
    args = {**dict(T=0.1, steps=5, paths=3, seed=0, progress=False), **kw}
    r = st.solve_sde(net, V0=V0, **args)
    assert r.kernel == r.info["kernel"]
    if expect == "batch":
        assert r.kernel in KERNELS and r.kernel == core.sde_kernel(st.make_network(net), 4, "euler")
    else:
        assert r.kernel == "generic"


def test_inputs_are_made_as_before():
    """The core calls back into NumPy for what it does not compute itself, so the
    numbers are those of the former Python path: the tokens from V0
    (inputs.tokens_from_covariance) and V0 from tokens (inputs.covariance)."""
    net = st.shaped_transformer()
    X0 = np.random.default_rng(3).standard_normal((4, 12))
    kw = dict(depth=2, samples=2, seed=1, progress=False)
    a = st.simulate(net, X0=X0, method="exact", **kw)
    b = st.simulate(net, V0=st.inputs.covariance(X0), width=12, method="exact", **kw)
    assert np.array_equal(a.V, b.V)
    c = st.simulate(net, V0=V0, width=12, method="explicit", **kw)
    d = st.simulate(net, X0=st.inputs.tokens_from_covariance(V0, 12), method="explicit", **kw)
    assert np.array_equal(c.V, d.V)


def test_confused_inputs_say_where_they_go():
    """Checked in the core's binding, with the hints the package's messages had."""
    X0 = np.random.default_rng(0).standard_normal((3, 16))
    with pytest.raises(ValueError, match=r"width=16 does not match X0\.shape\[1\]=3.*pass it as V0="):
        st.simulate(st.shaped_transformer(), X0=V0[:3, :3], width=16, depth=2)
    with pytest.raises(ValueError, match=r"V0 must be the m x m covariance.*\(3, 16\).*X0="):
        st.simulate(st.shaped_transformer(), V0=X0, width=16, depth=2)
    with pytest.raises(ValueError, match=r"V0 must be the m x m covariance.*inputs\.covariance\(X0\)"):
        st.solve_sde(st.shaped_transformer(), V0=X0, T=0.1, dt=0.05, paths=2)
    with pytest.raises(ValueError, match=r"width: must be given with V0 \(the covariance does not say the width\)"):
        st.simulate(st.shaped_transformer(), V0=V0, depth=2)
