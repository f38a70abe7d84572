"""The block classes are the core's, bound from each kind's field table
(cpp/python/bind_blocks.cpp): what the table says is what Python sees, and a value
is checked once, in C++, with an error naming the parameter."""

from __future__ import annotations

import copy
import inspect
import math
import pickle

import numpy as np
import pytest

import shaped_transformer as st
from shaped_transformer._core_loader import core

KINDS = [st.ShapedAttention, st.StandardAttention, st.ShapedMLP, st.ReluMLP]


@pytest.mark.parametrize("cls", KINDS)
def test_each_kind_is_its_core_class(cls):
    """The Python class adds prose only: the parameters are the core's."""
    core_cls = getattr(core, cls.__name__)
    assert issubclass(cls, core_cls) and issubclass(cls, st.Block)
    names = list(inspect.signature(cls).parameters)
    assert names == [name for name, _ in core_cls._parameters]
    assert all(isinstance(getattr(core_cls, name), property) for name in names)
    assert core_cls.__doc__ in cls.__doc__ and "Parameters" in cls.__doc__
    assert core.kinds()[cls.kind] is core_cls


@pytest.mark.parametrize("cls", KINDS)
def test_immutable_hashable_picklable(cls):
    b = cls(gamma=0.3)
    assert b == cls(gamma=0.3) and hash(b) == hash(cls(gamma=0.3))
    assert b != cls(gamma=0.4) and len({b, cls(gamma=0.3), cls()}) == 2
    assert pickle.loads(pickle.dumps(b)) == b and type(pickle.loads(pickle.dumps(b))) is cls
    assert copy.deepcopy(b) == b
    with pytest.raises(AttributeError):
        b.gamma = 0.9  # type: ignore[misc]
    with pytest.raises(AttributeError):
        b.extra = 1  # type: ignore[attr-defined]
    assert eval(repr(b), {cls.__name__: cls}) == b


def test_lam_none_derives_from_gamma_and_replace_keeps_it_consistent():
    b = st.ShapedMLP(gamma=0.6)
    assert b.lam == pytest.approx(0.8, abs=1e-15)
    c = b.replace(gamma=0.8)  # a new gamma without lam: lam re-derived
    assert c.lam == pytest.approx(0.6, abs=1e-15) and c.c_minus == b.c_minus
    assert b.replace(c_plus=1.0).lam == b.lam
    with pytest.raises(ValueError, match="lam"):
        b.replace(gamma=0.8, lam=0.8)
    with pytest.raises(TypeError, match="tau0"):
        b.replace(tau0=1.0)  # not a parameter of the shaped MLP


def test_unset_values_are_none_in_python():
    """key_dim = 0 is the C++ spelling of "the head width"; Python spells it None and
    refuses an explicit 0 (it would silently mean the width)."""
    a = st.ShapedAttention()
    assert a.key_dim is None and a.replace(gamma=0.3).key_dim is None
    assert st.ShapedAttention(key_dim=np.int64(5)).key_dim == 5
    with pytest.raises(ValueError, match="key_dim"):
        st.ShapedAttention(key_dim=0)
    assert st.StandardAttention(norm=None).norm == "none"


@pytest.mark.parametrize(
    "make, exc, words",
    [
        (lambda: st.ShapedAttention(heads=True), TypeError, "heads: must be an integer, got bool"),
        (lambda: st.ShapedAttention(heads=2.0), TypeError, "heads: must be an integer, got float"),
        (lambda: st.ShapedAttention(heads=2**40), ValueError, "heads: must be at most"),
        (lambda: st.ShapedAttention(tau0="1"), TypeError, "tau0: must be a real number, got str"),
        (lambda: st.ShapedAttention(tau0=np.array([1.0, 2.0])), TypeError, "tau0: must be a single number"),
        (lambda: st.ShapedAttention(tau0=np.complex64(1j)), TypeError, "tau0: must be a real number, got the complex"),
        (lambda: st.ShapedAttention(tau0=-0.0), ValueError, "tau0: must be > 0"),
        (lambda: st.ShapedAttention(causal=1), TypeError, "causal: must be True or False"),
        (lambda: st.ShapedMLP(c_plus=math.nan), ValueError, "c_plus: must be finite"),
        (lambda: st.ReluMLP(gamma=1.5), ValueError, "gamma: must lie in [0, 1]"),
        (lambda: st.ReluMLP(norm="batch"), ValueError, "norm: must be one of"),
        (lambda: st.StandardAttention(gamma=0.6, lam=0.6), ValueError, "lam: lambda^2 + gamma^2 must equal 1"),
    ],
)
def test_refusals_name_the_parameter_first(make, exc, words):
    with pytest.raises(exc) as info:
        make()
    assert str(info.value).startswith(words)


def test_accepted_spellings():
    """NumPy scalars and 0-d arrays are numbers; NumPy's bool is a bool."""
    a = st.ShapedAttention(heads=np.int32(2), tau0=np.array(0.5), gamma=np.float32(0.5), causal=np.True_)
    assert (a.heads, a.tau0, a.gamma, a.causal) == (2, 0.5, 0.5, True)
    assert type(a.heads) is int and type(a.tau0) is float
