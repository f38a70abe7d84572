"""The public calls the tests make, for the type checker (``python3 -m mypy``,
configured in pyproject.toml; tests/test_typing.py runs it).  Never collected by
pytest and never run: it states how the API is meant to be called and what it
returns, so that a stub or annotation that disagrees with its users fails CI.
"""

from __future__ import annotations

import numpy as np

import shaped_transformer as st
from shaped_transformer import analysis as an
from shaped_transformer import atlas, report, sweep
from shaped_transformer._core_loader import core
from shaped_transformer.splitting import SplittingResult, ams_blowup, ams_repeat


def public_calls() -> None:
    net: st.Network = st.shaped_transformer(heads=4, tau0=1.0, gamma=0.5)
    std: st.Network = st.standard_transformer(heads=2, gamma=0.5)
    one = st.Network([st.ShapedAttention(heads=2, tau0=1.0, gamma=0.5), st.ShapedMLP(gamma=0.5), st.ReluMLP(gamma=0.3)])
    head = st.ShapedAttention(heads=2, tau0=1.0, gamma=0.5, lam=None, key_dim=None, causal=True)
    key_dim: int | None = head.key_dim
    lam: float = head.lam
    norm: str = st.ReluMLP(norm="pre_rms").norm
    wider = head.replace(heads=4)
    covered: bool = head.has_sde and head.exact_chain and isinstance(wider, st.Block)
    why: str | None = head.sde_refusal or head.exact_refusal or one.sde_refusal or one.exact_refusal
    noise: int = net.sde_noise_dim(8)
    blocks: tuple[st.Block, ...] = one.blocks
    V0: np.ndarray = st.inputs.equicorrelated(m=8, rho=0.3)
    X0: np.ndarray = st.inputs.tokens_from_covariance(V0, 64)

    res: st.Result = st.simulate(net, V0=V0, width=256, depth=256, samples=8, seed=0)
    res = st.simulate(
        one,
        X0=X0,
        depth=8,
        samples=2,
        method="law",
        seed=2**64 - 1,
        threads=0,
        dtype="float32",
        save_every=2,
        blowup=1e4,
        progress=False,
    )
    res = st.simulate(std, V0=V0, width=64, depth=8, samples=2, method="exact", save_at=np.array([0, 8]), threads=None)
    V: np.ndarray = res.V
    rho: np.ndarray = res.rho
    pairs: np.ndarray = res.finite().rho_pairs(-1)
    t: np.ndarray = res.t
    kernel: str = res.kernel

    sde: st.Result = st.solve_sde(net, V0=V0, T=1.0, dt=1e-3, paths=2000, scheme="euler", seed=0)
    sde = st.solve_sde(
        net,
        V0=V0,
        T=1.0,
        steps=100,
        paths=10,
        scheme="exact_chain",
        psd="none",
        save_at=[0.0, 0.5, 1.0],
        save="summary",
        threads=0,
        progress=False,
    )
    if sde.summary is not None:
        mean: np.ndarray = sde.summary.mean("rho")

    d = an.compare(an.final_pairs(res), an.final_pairs(sde), bootstrap=100, seed=0)
    summary: an.DepthSummary = an.summarize(an.mean_correlation(res.V), t=res.t)
    rank: np.ndarray = an.effective_rank(res.V[:, -1])

    r: SplittingResult = ams_blowup(net, V0=V0, T=1.0, dt=1e-3, blowup=1e4, particles=100, seed=0)
    rs = ams_repeat(net, V0=V0, repeats=2, seed=3, T=1.0, particles=100)

    cfg: dict = report.study_config("tiny", seed=1)
    acfg: dict = atlas.atlas_config("tiny", {"study": {"seed": 2}})
    points: list[dict] = sweep.grid_points({"width": [64, 128], "seed": [0]})

    version: str = st.__version__
    tile: int = core.exact_mlp_workspace_bytes(8)
    print(V, rho, pairs, t, d, summary, rank, r, rs, cfg, acfg, points, version, tile)
