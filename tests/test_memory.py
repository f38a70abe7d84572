"""Requests that cannot fit in memory are refused at once, with the amounts.

An impossible request (a width of 10^12 tokens' features, or samples x saved
layers in the terabytes) must raise shaped_transformer.ResourceError -- a
MemoryError that is also a ValueError -- well under a second, before any large
allocation, and say how much it needs and how much is available.  Ordinary
requests must not be refused.
"""

from __future__ import annotations

import re
import sys
import time

import numpy as np
import pytest

import shaped_transformer as st
from shaped_transformer import _memory
from shaped_transformer._core_loader import core

V0 = st.inputs.equicorrelated(4, 0.3)
NET = st.shaped_transformer(heads=2)


def refused(fn) -> tuple[st.ResourceError, float]:
    """fn must raise ResourceError (before allocating: the process would otherwise be
    killed or swap); returns it and the time, which is reported, not asserted
    (timings belong in benchmarks)."""
    t0 = time.perf_counter()
    with pytest.raises(st.ResourceError) as info:
        fn()
    dt = time.perf_counter() - t0
    msg = str(info.value)
    assert re.search(r"needs about [0-9.e+]+ [KMGTPE]?i?B", msg), msg
    assert "available" in msg, msg
    assert info.value.needed > info.value.available > 0
    return info.value, dt


def test_error_class():
    assert issubclass(st.ResourceError, MemoryError)
    assert issubclass(st.ResourceError, ValueError)
    assert "ResourceError" in st.__all__


def test_available_bytes_and_override(monkeypatch):
    monkeypatch.delenv("SHAPED_TRANSFORMER_MAX_MEMORY", raising=False)
    avail = _memory.available_bytes()
    assert avail is not None and avail > 0
    monkeypatch.setenv("SHAPED_TRANSFORMER_MAX_MEMORY", "1M")
    assert _memory.available_bytes() == min(avail, 1 << 20)
    monkeypatch.setenv("SHAPED_TRANSFORMER_MAX_MEMORY", "2.5GiB")
    assert _memory.available_bytes() == min(avail, int(2.5 * (1 << 30)))
    monkeypatch.setenv("SHAPED_TRANSFORMER_MAX_MEMORY", "off")
    assert _memory.available_bytes() is None
    _memory.check_memory(10**30, "anything")  # disabled: never refuses
    monkeypatch.setenv("SHAPED_TRANSFORMER_MAX_MEMORY", "lots")
    with pytest.raises(ValueError, match="SHAPED_TRANSFORMER_MAX_MEMORY"):
        _memory.available_bytes()


def test_sysconf_fallback(monkeypatch):
    """Without /proc/meminfo the budget comes from os.sysconf."""
    monkeypatch.delenv("SHAPED_TRANSFORMER_MAX_MEMORY", raising=False)
    monkeypatch.setattr(_memory, "_meminfo_available", lambda: None)
    avail = _memory.available_bytes()
    assert avail is not None and avail > 0


def test_check_memory_message():
    with pytest.raises(MemoryError) as info:
        _memory.check_memory(3 * 2**40, "simulate(method='explicit')", available=2**30, detail="V 3 TiB")
    msg = str(info.value)
    assert "needs about 3 TiB" in msg and "1 GiB" in msg and "V 3 TiB" in msg, msg
    _memory.check_memory(2**20, "small", available=2**30)  # fits: no error


def test_format_bytes():
    assert _memory.format_bytes(512) == "512 B"
    assert _memory.format_bytes(1536) == "1.5 KiB"
    assert _memory.format_bytes(8 * 2**40) == "8 TiB"


def test_estimates_of_ordinary_requests_are_modest():
    """The sizes the README uses must never be refused on a laptop (< 1 GiB)."""
    for method, kw in [
        ("explicit", dict(width=4096, samples=200, saved=4097)),
        ("law", dict(width=4096, samples=2000, saved=65)),
        ("exact", dict(width=10**6, samples=20000, saved=65)),
    ]:
        parts = _memory.estimate_simulate_bytes(NET, method, m=8, threads=16, **kw)
        assert sum(parts.values()) < 2**30, (method, parts)
    sde = _memory.estimate_sde_bytes(m=8, paths=20000, saved=65, threads=16, network=st.ShapedAttention(heads=4))
    assert sum(sde.values()) < 2**30
    # and they scale as documented
    one = _memory.estimate_simulate_bytes(NET, "exact", m=8, width=64, samples=10, saved=11, threads=1)
    two = _memory.estimate_simulate_bytes(NET, "exact", m=8, width=64, samples=20, saved=11, threads=1)
    assert two["V"] == 2 * one["V"] == 2 * 10 * 11 * 64 * 8
    x = _memory.estimate_simulate_bytes(NET, "explicit", m=8, width=1000, samples=3, saved=2, threads=1, return_X=True)
    assert x["X"] == 3 * 8 * 1000 * 8


def test_buffer_sizes_come_from_the_core():
    """The working memory in the estimates is the core's: the tile buffers of
    workspace.hpp and each block kind's own figures (blocks/resources.hpp), reached
    through _core, not a Python copy of them."""
    sizes = core.workspace_sizes()
    assert sizes["exact_mlp_tile"] >= 1 and sizes["gemm_tile_cols"] >= 1
    assert core.exact_mlp_workspace_bytes(8) == 2 * 8 * sizes["exact_mlp_tile"] * 8
    assert (
        core.gemm_workspace_bytes(8, 8)
        == (8 + sizes["gemm_tile_rows_float64"]) * sizes["gemm_tile_cols"] * 8 + sizes["gemm_tile_cols"] * 4
    )
    with pytest.raises(ValueError, match="itemsize"):
        core.gemm_workspace_bytes(8, 2)
    kw = dict(m=8, width=256, samples=4, saved=3, threads=2)
    mlp = st.Network([st.ShapedMLP()])
    # an MLP-only exact chain holds the MLP's two m x tile tiles per worker
    assert _memory.estimate_simulate_bytes(mlp, "exact", **kw)["workspace"] == 2 * core.exact_mlp_workspace_bytes(8)
    # the explicit network adds gaussian_gemm's tiles per thread to its workers' activations
    one = _memory.estimate_simulate_bytes(mlp, "explicit", **{**kw, "threads": 1, "samples": 1})["workspace"]
    assert one - core.gemm_workspace_bytes(8, 8) == 12 * 8 * 256 * 8 + 8 * 256 * 8
    # more heads, more per-head factors: the attention's exact workspace grows as H m^2
    h1 = _memory.estimate_simulate_bytes(st.ShapedAttention(heads=1), "exact", **kw)["workspace"]
    h4 = _memory.estimate_simulate_bytes(st.ShapedAttention(heads=4), "exact", **kw)["workspace"]
    assert h1 == 2 * (8 * 8**2 + 4 * 8**2) * 8 and h4 == 2 * (8 * 8**2 + 4 * 4 * 8**2) * 8


def test_estimates_are_what_the_runs_check(monkeypatch):
    """simulate() and solve_sde() hand the core's memory check exactly the estimate
    that estimate_*_bytes reports."""
    seen: list[dict] = []
    real = _memory.check_memory

    def spy(needed, what, **kw):
        seen.append({"needed": needed, "what": what, "detail": kw.get("detail", "")})
        return real(needed, what, **kw)

    monkeypatch.setattr(_memory, "check_memory", spy)
    st.simulate(NET, V0=V0, width=16, depth=3, samples=2, threads=1, method="explicit", seed=0, progress=False)
    parts = _memory.estimate_simulate_bytes(NET, "explicit", m=4, width=16, samples=2, saved=4, threads=1)
    assert seen[-1]["needed"] == sum(parts.values()) and seen[-1]["what"] == "simulate(method='explicit')"
    st.solve_sde(NET, V0=V0, T=0.1, steps=10, paths=3, threads=1, seed=0, progress=False)
    parts = _memory.estimate_sde_bytes(m=4, paths=3, saved=11, threads=1, network=NET)
    assert seen[-1]["needed"] == sum(parts.values()) and seen[-1]["what"] == "solve_sde"


@pytest.mark.parametrize("method", ["explicit", "law"])
def test_impossible_width_refused_at_once(method):
    """width = 10^12 from V0: the tokens alone (m x n float64) are 32 TB."""
    err, dt = refused(lambda: st.simulate(NET, V0=V0, width=10**12, depth=1, method=method, progress=False))
    assert "X0" in str(err)
    print(f"\n{method}: refused in {dt * 1e3:.2f} ms: {err}")


def test_exact_chain_huge_width_is_not_refused():
    """The exact chain of attention blocks costs O(H m^3) per block at any width: no refusal."""
    net = st.Network([st.ShapedAttention(heads=2, tau0=1.0, gamma=0.5)])
    res = st.simulate(net, V0=V0, width=10**12, depth=2, samples=2, method="exact", progress=False)
    assert np.all(np.isfinite(res.V))


@pytest.mark.parametrize("method", ["exact", "explicit", "law"])
def test_huge_samples_times_depth_refused_at_once(method):
    """samples x saved layers: 10^5 samples x (10^6 + 1) saved layers x 16 entries x 8 bytes = 12.8 TB."""
    err, dt = refused(
        lambda: st.simulate(
            NET, V0=V0, width=64, depth=10**6, samples=10**5, save_every=1, method=method, progress=False
        )
    )
    assert err.needed >= 10**5 * (10**6 + 1) * 16 * 8
    print(f"\n{method}: refused in {dt * 1e3:.2f} ms: {err}")


@pytest.mark.parametrize("method", ["exact", "explicit"])
def test_huge_depth_saved_every_layer_refused_at_once(method):
    """depth 10^9, every layer saved: 10^9 x 16 x 8 B = 128 GB of covariances, refused
    before the 8 GB list of layer indices is even built."""
    err, dt = refused(lambda: st.simulate(NET, V0=V0, width=64, depth=10**9, method=method, progress=False))
    assert err.needed >= (10**9 + 1) * 16 * 8


def test_many_heads_refused_for_exact():
    """The exact chain holds H per-head m x m factors: 10^9 heads x 8 tokens is 2 TB per thread."""
    net = st.Network([st.ShapedAttention(heads=10**9)])
    refused(
        lambda: st.simulate(net, V0=st.inputs.equicorrelated(8, 0.3), width=64, depth=1, method="exact", progress=False)
    )


def test_return_X_counts(monkeypatch):
    """return_X keeps samples x m x n floats: refused when they do not fit the budget."""
    monkeypatch.setenv("SHAPED_TRANSFORMER_MAX_MEMORY", "64M")
    # 1000 samples x 4 x 4096 x 8 bytes = 131 MB of final tokens
    err, _ = refused(
        lambda: st.simulate(NET, V0=V0, width=4096, depth=1, samples=1000, return_X=True, method="law", progress=False)
    )
    assert "X " in str(err)


def test_budget_override_refuses_and_allows(monkeypatch):
    """With a 1 MiB budget a 2.5 MB request is refused; with the check off it runs."""
    kw = dict(V0=V0, width=64, depth=200, samples=100, method="exact", progress=False)  # 100 x 201 x 16 x 8 B
    monkeypatch.setenv("SHAPED_TRANSFORMER_MAX_MEMORY", "1M")
    refused(lambda: st.simulate(NET, **kw))
    monkeypatch.setenv("SHAPED_TRANSFORMER_MAX_MEMORY", "off")
    res = st.simulate(NET, **kw)
    assert res.V.shape == (100, 201, 4, 4)


def test_refused_before_any_large_allocation(monkeypatch):
    """The check runs before the tokens are built from V0 (the first large array)."""
    sim_module = sys.modules["shaped_transformer.simulate"]

    def boom(*args, **kwargs):
        raise AssertionError("the tokens were made from V0 before the memory check")

    monkeypatch.setattr(sim_module, "_tokens_from_checked", boom)
    refused(lambda: st.simulate(NET, V0=V0, width=10**12, depth=1, method="explicit", progress=False))


def test_catchable_as_memory_error_and_value_error():
    for exc in (MemoryError, ValueError):
        with pytest.raises(exc):
            st.simulate(NET, V0=V0, width=10**12, depth=1, method="explicit", progress=False)


def test_sde_impossible_paths_refused_at_once():
    """10^9 paths x 1001 saved steps x 16 entries x 8 bytes = 128 TB."""
    err, dt = refused(lambda: st.solve_sde(NET, V0=V0, T=1.0, dt=1e-3, paths=10**9, progress=False))
    print(f"\nsolve_sde: refused in {dt * 1e3:.2f} ms: {err}")


def test_sde_budget_override(monkeypatch):
    monkeypatch.setenv("SHAPED_TRANSFORMER_MAX_MEMORY", "1M")
    # 2000 paths x 101 saved x 16 x 8 B = 25.9 MB
    refused(lambda: st.solve_sde(NET, V0=V0, T=0.1, dt=1e-3, paths=2000, progress=False))
