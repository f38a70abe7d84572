"""Bad input raises ValueError (or TypeError for wrong types) naming the
parameter; nothing crashes.  Each argument is checked once, in C++ (the drivers'
bindings, cpp/python/requests.hpp), whether it comes through the public functions
or straight to the core."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import shaped_transformer as st
from shaped_transformer._core_loader import core

V0 = st.inputs.equicorrelated(3, 0.3)
X0 = np.random.default_rng(0).standard_normal((3, 16))
NET = st.shaped_transformer()


def run(**kw):
    args = dict(network=NET, V0=V0, width=16, depth=2, samples=2, seed=0)
    args.update(kw)
    if "X0" in kw:
        args.pop("V0")
        args.pop("width")
    return st.simulate(**args)


@pytest.mark.parametrize(
    "kw, word",
    [
        (dict(X0=np.zeros(5)), "X0"),
        (dict(X0=np.zeros((2, 3, 4))), "X0"),
        (dict(X0=np.full((3, 8), np.nan)), "X0"),
        (dict(X0=np.array([[1.0, np.inf, 0.0, 1.0]])), "X0"),
        (dict(X0=np.zeros((3, 8))), "X0"),
        (dict(X0=np.ones((5, 3))), "width"),
        (dict(V0=np.ones((3, 4))), "V0"),
        (dict(V0=np.array([[1.0, 2.0], [2.0, 1.0]])), "V0"),  # not PSD
        (dict(V0=np.array([[1.0, 0.5], [0.2, 1.0]])), "V0"),  # not symmetric
        (dict(V0=np.array([[1.0, np.nan], [np.nan, 1.0]])), "V0"),
        (dict(width=2), "width"),  # width < m
        (dict(width=0), "width"),
        (dict(width=None), "width"),
        (dict(depth=-1), "depth"),
        (dict(samples=0), "samples"),
        (dict(method="bogus"), "method"),
        (dict(dtype="float16"), "dtype"),
        (dict(threads=-1), "threads"),
        (dict(seed=-1), "seed"),
        (dict(seed=2**64), "seed"),
        (dict(seed=None), "seed"),
        (dict(blowup=0.0), "blowup"),
        (dict(blowup=float("nan")), "blowup"),
        (dict(save_at=np.array([5])), "save_at"),
        (dict(save_at=np.array([0.5])), "save_at"),
        (dict(save_at=np.array([1]), save_every=1), "save_at"),
        (dict(save_every=0), "save_every"),
        (dict(network=st.Network([st.ShapedAttention(heads=3, concat=True)])), "heads"),
        (dict(network=st.Network([st.ShapedAttention(concat=True)]), method="exact"), "exact"),
        (dict(return_X=True, method="exact"), "return_X"),
        (dict(depth=2**31, save_at=np.array([0, 1])), "depth"),  # beyond the core's 32-bit counters
        (
            dict(depth=2**31 - 1, save_at=np.array([0, 1]), network=st.Network([st.ShapedMLP()] * 3)),
            "depth",
        ),  # x 3 >= 2^32
        (dict(width=2**63), "width"),
        (dict(width=10**30), "width"),
    ],
)
def test_simulate_rejects(kw, word):
    with pytest.raises(ValueError, match=word):
        run(**kw)


@pytest.mark.parametrize(
    "make, word",
    [
        (lambda: st.ShapedAttention(tau0=0.0), "tau0"),
        (lambda: st.ShapedAttention(tau0=-1.0), "tau0"),
        (lambda: st.ShapedAttention(tau0=float("inf")), "tau0"),
        (lambda: st.ShapedAttention(gamma=0.5, lam=0.5), "lam"),
        (lambda: st.ShapedMLP(gamma=0.3, lam=0.9), "lam"),
        (lambda: st.ReluMLP(gamma=1.5), "gamma"),
        (lambda: st.StandardAttention(gamma=-0.1), "gamma"),
        (lambda: st.ShapedAttention(heads=0), "heads"),
        (lambda: st.ShapedAttention(key_dim=0), "key_dim"),
        (lambda: st.StandardAttention(norm="batch"), "norm"),
        (lambda: st.simulate_network(V0=V0, width=16, depth=1, block="mamba"), "block"),
        (lambda: st.Network([]), "blocks"),
        (lambda: st.inputs.equicorrelated(3, -0.9), "rho"),
    ],
)
def test_blocks_reject(make, word):
    with pytest.raises(ValueError, match=word):
        make()


def test_wrong_types_raise_type_error():
    with pytest.raises(TypeError):
        st.ShapedAttention(heads=1.5)
    with pytest.raises(TypeError):
        st.Network([object()])
    with pytest.raises(TypeError):
        run(depth="3")
    with pytest.raises(TypeError):
        run(X0=np.array([["a", "b"]]))


def _core_args(**kw):
    args = dict(
        network=NET,
        X0=X0,
        depth=2,
        samples=2,
        seed=0,
        save_at=np.array([0, 2], dtype=np.int64),
        dtype="float64",
        threads=1,
        return_X=False,
        blowup=1e30,
        progress=None,
    )
    args.update(kw)
    return args


@pytest.mark.parametrize("fn", ["simulate_explicit", "simulate_law"])
@pytest.mark.parametrize(
    "kw, exc, word",
    [
        (dict(X0=np.ones((5, 3))), ValueError, "width"),
        (dict(X0=np.full((3, 8), np.nan)), ValueError, "X0"),
        (dict(depth=-1), ValueError, "depth"),
        (dict(depth=1.5), TypeError, "depth"),
        (dict(samples=0), ValueError, "samples"),
        (dict(save_at=np.array([3], dtype=np.int64)), ValueError, "save_at"),
        (dict(save_at=np.array([2, 1, 2], dtype=np.int64)), None, None),  # sorted and made unique
        (dict(dtype="int8"), ValueError, "dtype"),
        (dict(blowup=-1.0), ValueError, "blowup"),
        (dict(seed=None), ValueError, "seed"),
        (dict(network=[{"kind": "mamba"}]), TypeError, "blocks"),
        (dict(network=[]), ValueError, "blocks"),
        (dict(network=[st.ShapedAttention(heads=3, concat=True)]), ValueError, "heads"),
        (dict(network=[st.ShapedAttention(), st.ReluMLP(norm="pre_layer")]), None, None),  # a list of blocks runs
    ],
)
def test_core_rejects(fn, kw, exc, word):
    """The core's own entry points check every argument (the package adds nothing)."""
    if exc is None:
        getattr(core, fn)(**_core_args(**kw))
        return
    with pytest.raises(exc, match=word):
        getattr(core, fn)(**_core_args(**kw))


def test_block_weights_rejects():
    with pytest.raises(ValueError, match="b"):
        core.block_weights(NET, 8, 0, 0, 0, 5)
    with pytest.raises(ValueError, match="width"):
        core.block_weights(NET, 0, 0, 0, 0, 0)


def test_progress_callback_errors_propagate():
    def boom(done):
        raise RuntimeError("progress failed")

    with pytest.raises(RuntimeError, match="progress failed"):
        core.simulate_explicit(
            **_core_args(progress=boom, samples=4, depth=50, X0=np.random.default_rng(1).standard_normal((3, 256)))
        )


# ---------------------------------------------------------------------------
# Arguments after the network are keyword-only (issue 23): simulate's second
# positional argument used to be the tokens X0 and solve_sde's the covariance V0,
# so simulate(net, V0, depth=2) ran on the 3 x 3 covariance taken as 3 tokens.
# ---------------------------------------------------------------------------


def _positional_calls():
    from shaped_transformer.splitting import ams_blowup, ams_repeat

    return [
        ("simulate", lambda: st.simulate(NET, V0, depth=2, seed=0)),
        ("simulate", lambda: st.simulate(NET, X0, None, depth=2)),
        ("solve_sde", lambda: st.solve_sde(NET, V0, T=0.1, dt=0.05, paths=2)),
        ("ams_blowup", lambda: ams_blowup(NET, V0, T=0.1, dt=0.05, particles=4)),
        ("ams_repeat", lambda: ams_repeat(NET, V0, T=0.1, dt=0.05, particles=4)),
        ("simulate_network", lambda: st.simulate_network(V0, width=16, depth=2)),
    ]


@pytest.mark.parametrize("i", range(6))
def test_arguments_after_the_network_are_keyword_only(i):
    name, call = _positional_calls()[i]
    with pytest.raises(TypeError, match=rf"{name}\(\) takes .* by name, got \d positional argument.*V0="):
        call()


def test_torch_from_network_takes_width_and_depth_by_name():
    # skips without PyTorch: shaped_transformer.torch then raises ImportError, which
    # importorskip of that module does not skip on (only ModuleNotFoundError)
    pytest.importorskip("torch")
    import shaped_transformer.torch as stt

    with pytest.raises(TypeError):
        stt.from_network(st.ShapedMLP(), 16, 2)  # width and depth could be swapped silently


def test_inputs_confused_errors_name_the_right_argument():
    # The covariance passed as tokens: the message points to V0 (it spoke of X0.shape[1] only).
    with pytest.raises(ValueError, match=r"width=16 does not match X0\.shape\[1\]=3.*pass it as V0="):
        st.simulate(NET, X0=V0, width=16, depth=2)
    # Tokens passed as the covariance: the message points to X0 or to their covariance.
    with pytest.raises(ValueError, match=r"V0 must be the m x m covariance.*\(3, 16\).*X0="):
        st.simulate(NET, V0=X0, width=16, depth=2)
    with pytest.raises(ValueError, match=r"V0 must be the m x m covariance.*inputs\.covariance\(X0\)"):
        st.solve_sde(NET, V0=X0, T=0.1, dt=0.05, paths=2)


def test_step_size_warning_gives_a_remedy_the_function_accepts():
    """ams_blowup takes no steps= argument: its StepSizeWarning must not tell the
    user to pass one; both warnings point at the caller's line."""
    from shaped_transformer.splitting import UnresolvedWarning, ams_blowup

    with pytest.warns(st.StepSizeWarning) as rec, warnings.catch_warnings():
        warnings.simplefilter("ignore", UnresolvedWarning)  # 4 particles over T = 0.1 die out: not the point here
        ams_blowup(NET, V0=V0, T=0.1, dt=0.03, particles=4, seed=0)
    rec = [w for w in rec if issubclass(w.category, st.StepSizeWarning)]
    msg = str(rec[0].message)
    assert "steps=" not in msg and "a dt that divides T" in msg
    assert rec[0].filename == __file__
    with pytest.warns(st.StepSizeWarning, match="pass steps= or a dt that divides T") as rec:
        st.solve_sde(NET, V0=V0, T=0.1, dt=0.03, paths=2, seed=0)
    assert rec[0].filename == __file__
    with pytest.warns(st.BlowUpWarning) as rec:
        st.simulate(NET, V0=V0, width=16, depth=2, seed=0, blowup=1.0001)
    assert rec[0].filename == __file__
