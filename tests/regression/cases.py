"""The fixed configurations of the regression fixture (tests/test_regression.py).

Every block kind, every method (explicit, law, exact, SDE with each scheme and
kernel, summary saving), float32 and float64, with fixed seeds.  A refactor of the
core must leave every output bit for bit the same: regenerate the fixture only for
a change that is meant to move numbers, and say why in the commit.

    python tests/regression/cases.py   # rewrites tests/regression/fixture.npz
"""

from __future__ import annotations

import pathlib
import warnings

import numpy as np

import shaped_transformer as st

FIXTURE = pathlib.Path(__file__).with_name("fixture.npz")

M = 4


def _V0(m: int = M) -> np.ndarray:
    """The input covariance of size m: read from the fixture when it holds one.

    ``A @ A.T`` goes through the BLAS, whose kernel (picked at run time for the
    CPU) may round differently on another machine; the fixture therefore records
    its inputs (``input/V0/m<m>``), and the outputs depend only on those bits."""
    if FIXTURE.exists():
        with np.load(FIXTURE, allow_pickle=False) as f:
            if f"input/V0/m{m}" in f.files:
                return f[f"input/V0/m{m}"]
    rng = np.random.default_rng(7)
    A = rng.standard_normal((m, 2 * m))
    return A @ A.T / (2 * m) + 0.2 * np.eye(m)


BLOCKS: dict[str, list] = {
    "shaped_attention": [st.ShapedAttention(heads=2, tau0=0.8, gamma=0.6)],
    "shaped_attention_general": [st.ShapedAttention(heads=1, tau0=1.2, gamma=0.5, alpha=0.9, beta=1.3, key_dim=8)],
    "shaped_attention_causal": [st.ShapedAttention(heads=2, tau0=1.0, gamma=0.5, causal=True)],
    "shaped_attention_concat": [st.ShapedAttention(heads=2, tau0=1.0, gamma=0.5, concat=True)],
    "standard_attention": [st.StandardAttention(heads=2, gamma=0.5)],
    "standard_attention_pre_rms": [st.StandardAttention(heads=1, gamma=0.5, norm="pre_rms")],
    "standard_attention_post_layer": [st.StandardAttention(heads=1, gamma=0.5, norm="post_layer")],
    "shaped_mlp": [st.ShapedMLP(c_plus=0.3, c_minus=-1.0, gamma=0.5)],
    "relu_mlp": [st.ReluMLP(gamma=0.5)],
    "relu_mlp_post_rms": [st.ReluMLP(gamma=0.5, norm="post_rms")],
    "transformer": list(st.shaped_transformer(heads=2, tau0=1.0, gamma=0.5)),
    "standard_transformer": list(st.standard_transformer(heads=1, gamma=0.5, norm="pre_layer")),
}

SDE_BLOCKS = ("shaped_attention", "shaped_attention_causal", "shaped_mlp", "transformer")


def outputs() -> dict[str, np.ndarray]:
    """Every output of the fixture, keyed by a name that says what it is."""
    out: dict[str, np.ndarray] = {}
    V0 = _V0()
    out[f"input/V0/m{M}"] = V0
    warnings.simplefilter("ignore")
    for name, blocks in BLOCKS.items():
        net = st.Network(blocks)
        for method in ("explicit", "law"):
            for dtype in ("float64", "float32"):
                r = st.simulate(
                    net,
                    V0=V0,
                    width=24,
                    depth=5,
                    samples=3,
                    method=method,
                    seed=11,
                    dtype=dtype,
                    threads=2,
                    return_X=True,
                    progress=False,
                )
                key = f"{name}/{method}/{dtype}"
                out[key + "/V"] = r.V
                out[key + "/X"] = r.X
                out[key + "/exploded"] = r.exploded_at
        if net.exact_chain:
            for width in (24, 4000):
                r = st.simulate(
                    net, V0=V0, width=width, depth=6, samples=3, method="exact", seed=5, threads=2, progress=False
                )
                out[f"{name}/exact/{width}/V"] = r.V
    for name in SDE_BLOCKS:
        net = st.Network(BLOCKS[name])
        for scheme in ("euler", "tamed_euler", "exact_chain"):
            r = st.solve_sde(net, V0=V0, T=0.2, dt=0.01, paths=9, scheme=scheme, seed=3, threads=2, progress=False)
            out[f"{name}/sde/{scheme}/V"] = r.V
            out[f"{name}/sde/{scheme}/exploded"] = r.exploded_at
        s = st.solve_sde(net, V0=V0, T=0.2, dt=0.01, paths=50, save="summary", seed=4, threads=2, progress=False)
        out[f"{name}/sde/summary/exploded"] = s.exploded_at
        for k, v in _summary_arrays(s.summary).items():
            out[f"{name}/sde/summary/{k}"] = v
        out[f"{name}/drift"] = st.sde.sde_drift(net, V0)
        need = sum(2 * M * M if isinstance(b, st.ShapedAttention) else M * M for b in net)
        dW = np.random.default_rng(1).standard_normal(need)
        out[f"{name}/noise"] = st.sde.sde_noise(net, V0, dW)
    # The stopping rule: a low threshold that some samples and paths cross.
    tr = st.Network(BLOCKS["transformer"])
    for method in ("explicit", "exact"):
        r = st.simulate(tr, V0=V0, width=24, depth=40, samples=6, method=method, seed=1, blowup=2.5, progress=False)
        out[f"stop/{method}/V"] = r.V
        out[f"stop/{method}/exploded"] = r.exploded_at
    r = st.solve_sde(tr, V0=V0, T=1.0, dt=0.02, paths=12, seed=1, blowup=6.0, progress=False)
    out["stop/sde/V"] = r.V
    out["stop/sde/exploded"] = r.exploded_at
    # A wider m through the generic solver and the batch kernel's bounded-size path.
    V12 = _V0(12)
    out["input/V0/m12"] = V12
    r = st.solve_sde(
        st.Network(BLOCKS["shaped_attention"]), V0=V12, T=0.1, dt=0.01, paths=5, seed=2, threads=1, progress=False
    )
    out["m12/sde/V"] = r.V
    r = st.simulate(
        st.Network(BLOCKS["transformer"]), V0=V12, width=40, depth=3, samples=2, method="exact", seed=9, progress=False
    )
    out["m12/exact/V"] = r.V
    return out


def _summary_arrays(s) -> dict[str, np.ndarray]:
    arrays = {}
    for attr in ("alive", "moments", "hist", "lo", "hi"):
        if hasattr(s, attr):
            arrays[attr] = np.asarray(getattr(s, attr))
    if not arrays:
        raise RuntimeError(f"unexpected summary object {type(s).__name__}")
    return arrays


if __name__ == "__main__":
    data = outputs()
    np.savez_compressed(FIXTURE, **data)
    print(f"wrote {len(data)} arrays to {FIXTURE}")
