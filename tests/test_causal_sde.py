"""The covariance SDE of causal shaped attention (docs/causal.md), checked against
the exact chain the way tests/test_moments.py checks the bidirectional terms.

Head: A = I + beta (Softmax_causal(Y / tau) - C), C the uniform causal matrix (row i
is 1/i on its first i entries); beta = 1 is the causal version of the paper's head.

* Drift, term by term, with the control variate of docs/model.md 7.1: given the
  attention matrices, E[V' | A] = V + gamma^2/H sum_h (beta (Delta_h V + V Delta_h^T)
  + beta^2 Delta_h V Delta_h^T), Delta = S - C.  The second-order softmax term is
  n gamma^2 beta/H sum (Delta V + V Delta^T - first-order part) (the first-order part
  has mean exactly 0), the product term n gamma^2 beta^2/H sum Delta V Delta^T; both
  have O(1) variance, and each is compared with its formula within Z_MAX standard
  errors at two widths.
* Diffusion, term by term: n Cov of the softmax part gamma^2 beta/H sum (Delta V +
  V Delta^T) against the dXi part of the SDE noise, n Cov(V' - E[V'|A]) (the value
  noise) against the dZ part, and n Cov(V' - V) of the C++ exact chain against the
  whole Sigma; every entry of the covariance within Z_MAX standard errors (the
  standard error of a sample covariance entry from the products of centred
  components).
* Power: the same estimators reject the terms with one term dropped or doubled,
  and the bidirectional formula, by many standard errors.
* SDE vs network (slow): the limits n -> infinity of the network's blow-up
  probability, capped log tr V and mean rho_T per pair given survival against the
  SDE's (tests/_finite_width.py), one stopping rule (blowup = 1e4 on both sides).

The NumPy sampler below draws one reduced block exactly (docs/model.md section 4) with
the causal head; test_sampler_matches_the_cpp_chain ties it to the C++ chain, which
tests/test_exact.py ties to the explicit network.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from scipy import stats

import shaped_transformer as st
from _mutations import model
from _reduced_numpy import _bartlett, key_products
from shaped_transformer.sde import sde_drift, sde_noise

FULL = os.environ.get("SHAPED_TRANSFORMER_FULL", "") not in ("", "0")
Z_MAX = 4.5
TAU0, GAMMA = 0.8, 0.6


def _V(m: int = 4) -> np.ndarray:
    V = st.inputs.equicorrelated(m, 0.3)
    V[0, 0] = 1.6
    V[1, 2] = V[2, 1] = -0.1
    V[m - 1, m - 1] = 0.7
    return V


def _net(heads=1, beta=1.0, causal=True, tau0=TAU0, gamma=GAMMA) -> st.Network:
    return st.Network([st.ShapedAttention(heads=heads, tau0=tau0, gamma=gamma, beta=beta, causal=causal)])


# ---- independent NumPy reference of the formulas (docs/causal.md) ----------------


def _row_projectors(m: int, causal: bool) -> list[np.ndarray]:
    """P_i = diag(1_{k_i}) - 1_{k_i} 1_{k_i}^T / k_i, k_i = i + 1 (causal) or m."""
    out = []
    for i in range(m):
        k = i + 1 if causal else m
        u = np.zeros(m)
        u[:k] = 1.0
        out.append(np.diag(u) - np.outer(u, u) / k)
    return out


def drift_terms(V, *, tau0=TAU0, gamma=GAMMA, beta=1.0, causal=True) -> tuple[np.ndarray, np.ndarray]:
    """(second-order softmax term, product term) of the drift, by the direct formulas
    with explicit m x m projectors (O(m^5); the C++ uses prefix sums)."""
    m = V.shape[0]
    P = _row_projectors(m, causal)
    k = np.array([i + 1 if causal else m for i in range(m)], dtype=float)
    D = np.zeros((m, m))
    for i in range(m):
        PVP = P[i] @ V @ P[i]
        w = np.diag(PVP) - np.trace(PVP) / k[i]
        w[int(k[i]) :] = 0.0
        D[i] = V[i, i] * w / (2 * k[i])
    T = np.array([[np.trace(P[a] @ V @ P[b] @ V) for b in range(m)] for a in range(m)]) / np.outer(k, k)
    c = gamma**2 / tau0**2
    return c * beta * (D @ V + V @ D.T), c * beta**2 * V * T


# ---- exact one-block sampler (docs/model.md section 4) with the causal head ----------


def _masked_softmax(Y: np.ndarray, causal: bool) -> np.ndarray:
    m = Y.shape[-1]
    if causal:
        Y = np.where(np.tril(np.ones((m, m), bool)), Y, -np.inf)
    Y = Y - Y.max(-1, keepdims=True)
    E = np.exp(Y)
    return E / E.sum(-1, keepdims=True)


def _centering(m: int, causal: bool) -> np.ndarray:
    if not causal:
        return np.full((m, m), 1.0 / m)
    return np.tril(np.ones((m, m))) / np.arange(1, m + 1)[:, None]


def head_step(rng, V, *, n: int, heads: int, tau0: float, gamma: float, beta: float, causal: bool, size: int):
    """One shaped attention block from V for `size` samples (n_k = n).

    Returns a dict: "V" (V'), "cond" (E[V'|A]), "first" (the first-order part, mean
    exactly 0), "second" and "product" (the two drift estimators, divided by n), "soft" (the softmax part gamma^2 beta/H sum (Delta V +
    V Delta^T), whose n Cov is the softmax noise).
    """
    m = V.shape[0]
    lam = np.sqrt(1 - gamma**2)
    L = np.linalg.cholesky(V)
    tau = tau0 * n
    P = _row_projectors(m, causal)
    k = np.array([i + 1 if causal else m for i in range(m)], dtype=float)
    Cm = _centering(m, causal)
    VT = np.swapaxes
    cond = lam**2 * V + np.zeros((size, m, m))
    second = np.zeros((size, m, m))
    product = np.zeros((size, m, m))
    soft = np.zeros((size, m, m))
    first = np.zeros((size, m, m))
    C = np.zeros((size, m, heads * m))
    for h in range(heads):
        Y = L @ key_products(rng, m, n, size) @ L.T / tau
        Delta = _masked_softmax(Y, causal) - Cm
        A = np.eye(m) + beta * Delta
        cond += gamma**2 / heads * A @ V @ VT(A, 1, 2)
        S1 = np.stack([Y[:, i, :] @ P[i] / k[i] for i in range(m)], axis=1)  # mean exactly 0
        DV = Delta @ V
        soft += gamma**2 * beta / heads * (DV + VT(DV, 1, 2))
        S1V = S1 @ V
        first += gamma**2 * beta / heads * (S1V + VT(S1V, 1, 2))
        second += gamma**2 * beta / heads * (DV + VT(DV, 1, 2) - S1V - VT(S1V, 1, 2))
        product += gamma**2 * beta**2 / heads * Delta @ V @ VT(Delta, 1, 2)
        C[:, :, h * m : (h + 1) * m] = A @ L
    Z = rng.standard_normal((size, heads * m, m))
    Pm = C @ Z
    CB = C @ _bartlett(rng, n - m, heads * m, size)
    cross = L @ VT(Pm, 1, 2)
    Vn = (
        lam**2 * V
        + lam * gamma / np.sqrt(heads * n) * (cross + VT(cross, 1, 2))
        + gamma**2 / (heads * n) * (Pm @ VT(Pm, 1, 2) + CB @ VT(CB, 1, 2))
    )
    return {"V": Vn, "cond": cond, "first": first, "second": second, "product": product, "soft": soft}


# ---- noise covariances from the C++ noise map -------------------------------------


def _iu(m):
    return np.triu_indices(m)


def noise_sigma(net, V, part: str = "all") -> np.ndarray:
    """Covariance of the upper-triangular entries of the SDE noise per unit dt, from
    the linear map dW -> noise; part "value" keeps only dZ, "soft" only dXi (one
    attention block)."""
    m = V.shape[0]
    k = sum(2 * m * m if b.kind == "shaped_attention" else m * m for b in net)
    E = np.eye(k)
    if part == "value":
        E = E[: m * m]
    elif part == "soft":
        E = E[m * m : 2 * m * m]
    iu = _iu(m)
    J = np.stack([sde_noise(net, V, e)[iu] for e in E], axis=1)
    return J @ J.T


def cov_z(samples: np.ndarray, Sigma: np.ndarray, n: int) -> np.ndarray:
    """z-scores of n Cov(samples) against Sigma, entry by entry (samples: (N, k))."""
    N = samples.shape[0]
    d = np.sqrt(n) * (samples - samples.mean(0))
    prod = d[:, :, None] * d[:, None, :]
    C = prod.mean(0) * N / (N - 1)
    se = prod.std(0) / np.sqrt(N)
    diff = C - Sigma
    # entries that are exactly 0 in every sample (row 1 of the causal head) have
    # se = 0: they pass only if Sigma is 0 there too
    return np.where(se > 0, diff / np.where(se > 0, se, 1.0), np.where(np.abs(diff) > 1e-12, np.inf, 0.0))


def _upper(A: np.ndarray) -> np.ndarray:
    iu = _iu(A.shape[-1])
    return A[..., iu[0], iu[1]]


def drift_z(est: np.ndarray, target: np.ndarray) -> float:
    """Largest |z| of the sample mean of est (N, m, m) against target."""
    N = est.shape[0]
    mu, se = est.mean(0), est.std(0) / np.sqrt(N)
    se = np.where(se > 0, se, np.inf)
    z = np.abs(mu - target) / se
    z[(se == np.inf) & (np.abs(mu - target) > 1e-12)] = np.inf
    return float(z.max())


# ---- formulas ---------------------------------------------------------------------


def test_cpp_drift_is_the_formula():
    """C++ (prefix sums) = direct NumPy formula, causal and general, several m; the
    general code with the full mask and beta -> 1 is the paper's drift and noise."""
    rng = np.random.default_rng(0)
    for m in (1, 2, 3, 5, 8, 33):
        G = rng.standard_normal((m, m + 2))
        V = G @ G.T / (m + 2)
        for causal in (True, False):
            for beta in (1.0, -0.7, 1.8):
                if not causal and beta == 1.0:
                    continue
                for heads in (1, 3):
                    s, p = drift_terms(V, beta=beta, causal=causal)
                    b = sde_drift(_net(heads=heads, beta=beta, causal=causal), V)
                    assert np.allclose(b, s + p, rtol=1e-10, atol=1e-12), (m, causal, beta)
        near1 = 1.0 + 2.0**-52  # not the paper's head, so the general code runs
        assert np.allclose(sde_drift(_net(causal=False, beta=near1), V), sde_drift(_net(causal=False), V), atol=1e-13)
        z = rng.standard_normal(2 * m * m)
        assert np.allclose(
            sde_noise(_net(causal=False, beta=near1), V, z), sde_noise(_net(causal=False), V, z), atol=1e-13
        )


def test_first_token_is_fixed_by_construction():
    """Row 1 of the causal head is e_1: V_11 has no drift and only the linear noise,
    and for m = 2 the second token's centred logits are antisymmetric, so D's row 2
    vanishes too (docs/causal.md)."""
    V = _V()
    net = _net()
    b = sde_drift(net, V)
    assert b[0, 0] == 0.0
    m = V.shape[0]
    S = noise_sigma(net, V, "soft")
    iu = _iu(m)
    i00 = int(np.flatnonzero((iu[0] == 0) & (iu[1] == 0))[0])
    assert np.allclose(S[i00], 0.0)
    lin = noise_sigma(net, V, "value")
    assert np.isclose(lin[i00, i00], GAMMA**2 * (2 - GAMMA**2) * 2 * V[0, 0] ** 2)


def test_softmax_noise_is_the_first_order_logits():
    """The dXi part of the noise is gamma^2 beta/(tau0 sqrt H) (Q V + V Q^T) with Q row i
    the centred first-order logits of row i over its first i tokens, divided by i."""
    V = _V()
    m = V.shape[0]
    rng = np.random.default_rng(3)
    L = np.linalg.cholesky(V)
    for heads, beta in ((1, 1.0), (3, -1.4)):
        net = _net(heads=heads, beta=beta)
        xi = rng.standard_normal((m, m))
        dW = np.concatenate([np.zeros(m * m), xi.ravel()])
        Y = L @ xi @ L.T
        P = _row_projectors(m, True)
        Q = np.stack([Y[i] @ P[i] / (i + 1) for i in range(m)])
        expect = GAMMA**2 * beta / (TAU0 * np.sqrt(heads)) * (Q @ V + V @ Q.T)
        assert np.allclose(sde_noise(net, V, dW), expect, atol=1e-12)


def test_sampler_matches_the_cpp_chain():
    """The NumPy causal block above has the law of the C++ exact chain (means and
    standard deviations of V' within Z_MAX standard errors at n = 12, beta = 1.5)."""
    V = _V()
    N = 40000 if FULL else 12000
    n = 12
    net = _net(heads=2, beta=1.5, tau0=0.5)
    a = head_step(np.random.default_rng(7), V, n=n, heads=2, tau0=0.5, gamma=GAMMA, beta=1.5, causal=True, size=N)["V"]
    b = st.simulate(net, V0=V, width=n, depth=1, samples=N, method="exact", seed=7).V[:, 1]
    a, b = _upper(a), _upper(b)
    z_mean = (a.mean(0) - b.mean(0)) / np.sqrt(a.var(0) / N + b.var(0) / N)
    assert np.abs(z_mean).max() < Z_MAX, z_mean
    # standard deviations: se of a sample sd ~ sd sqrt((kurtosis - 1) / (4 N))
    for x, y in ((a, b),):
        kx = stats.kurtosis(x, axis=0, fisher=False)
        ky = stats.kurtosis(y, axis=0, fisher=False)
        se = np.sqrt(x.var(0) * (kx - 1) / (4 * N) + y.var(0) * (ky - 1) / (4 * N))
        assert np.abs((x.std(0) - y.std(0)) / se).max() < Z_MAX


# ---- one-step Monte Carlo: drift --------------------------------------------------

WIDTHS = (256, 4096)  # drift
DIFF_WIDTHS = (
    1024,
    4096,
)  # diffusion: at n = 256 the value noise's O(n^{-1/2}) bias shows (max |z| ~ 3.9 at H = 3, beta = 1.5)
DRIFT_CASES = [(1, 1.0), (3, 1.0), (1, 1.5)]


def _drift_samples(heads, beta, n, N, seed):
    rng = np.random.default_rng(seed)
    return head_step(rng, _V(), n=n, heads=heads, tau0=TAU0, gamma=GAMMA, beta=beta, causal=True, size=N)


@pytest.mark.parametrize("heads,beta", DRIFT_CASES)
def test_drift_terms_one_step(heads, beta):
    """Each drift term of the causal head against the exact block at n = 256 and 4096:
    second-order term, product term, their sum = sde_drift (the C++ drift)."""
    V = _V()
    N = 80000 if FULL else 20000
    sec_f, prod_f = drift_terms(V, beta=beta)
    b = sde_drift(_net(heads=heads, beta=beta), V)
    for n in WIDTHS:
        s = _drift_samples(heads, beta, n, N, seed=100 * heads + n)
        assert drift_z(n * s["second"], sec_f) < Z_MAX, (n, "second-order term")
        assert drift_z(n * s["product"], prod_f) < Z_MAX, (n, "product term")
        total = n * (s["cond"] - V - s["first"] - s["second"] - s["product"])  # = 0 up to rounding
        assert np.abs(total).max() < 1e-9
        assert drift_z(n * (s["second"] + s["product"]), b) < Z_MAX, (n, "sde_drift")


def test_drift_estimators_have_power():
    """The same estimators reject, by many standard errors: the product term dropped,
    the second-order term doubled, and the bidirectional formula used for the causal
    head (beta = 1, H = 1, n = 4096)."""
    V = _V()
    N = 80000 if FULL else 20000
    n = 4096
    s = _drift_samples(1, 1.0, n, N, seed=11)
    est = n * (s["second"] + s["product"])
    sec_f, prod_f = drift_terms(V)
    bidir = sde_drift(_net(causal=False), V)
    assert drift_z(est, sec_f + prod_f) < Z_MAX
    for wrong in (sec_f, 2 * sec_f + prod_f, bidir):
        assert drift_z(est, wrong) > 2 * Z_MAX


# ---- one-step Monte Carlo: diffusion ----------------------------------------------


@pytest.mark.parametrize("heads,beta", [(1, 1.0), (3, 1.5)])
def test_diffusion_terms_one_step(heads, beta):
    """n Cov of the softmax part and of the value part (V' - E[V'|A]) of the exact
    causal block against the dXi and dZ parts of the SDE noise, entry by entry, at
    n = 1024 and 4096."""
    V = _V()
    N = 60000 if FULL else 20000
    net = _net(heads=heads, beta=beta)
    S_soft, S_val = noise_sigma(net, V, "soft"), noise_sigma(net, V, "value")
    for n in DIFF_WIDTHS:
        s = _drift_samples(heads, beta, n, N, seed=7 * n + heads)  # n in DIFF_WIDTHS
        z_soft = cov_z(_upper(s["soft"]), S_soft, n)
        z_val = cov_z(_upper(s["V"] - s["cond"]), S_val, n)
        assert np.abs(z_soft).max() < Z_MAX, (n, "softmax noise", np.abs(z_soft).max())
        assert np.abs(z_val).max() < Z_MAX, (n, "value noise", np.abs(z_val).max())


@pytest.mark.parametrize("heads,beta,mlp", [(1, 1.0, False), (2, 1.0, True)])
def test_diffusion_total_against_cpp_chain(heads, beta, mlp):
    """n Cov(V' - V) of the C++ exact chain (causal attention, alone or followed by the
    shaped MLP) against the whole Sigma of sde_noise, at n = 1024 and 4096."""
    V = _V()
    N = 60000 if FULL else 20000
    blocks = [st.ShapedAttention(heads=heads, tau0=TAU0, gamma=GAMMA, beta=beta, causal=True)]
    if mlp:
        blocks.append(st.ShapedMLP(c_plus=0.5, c_minus=-1.0, gamma=GAMMA))
    net = st.Network(blocks)
    S = noise_sigma(net, V)
    for n in DIFF_WIDTHS:
        r = st.simulate(net, V0=V, width=n, depth=1, samples=N, method="exact", seed=n + heads)
        z = cov_z(_upper(r.V[:, 1]), S, n)
        assert np.abs(z).max() < Z_MAX, (n, np.abs(z).max())


def test_diffusion_estimators_have_power():
    """The softmax-noise z-scores reject the softmax noise doubled or dropped, and the
    bidirectional softmax noise (n = 4096, H = 1)."""
    V = _V()
    N = 60000 if FULL else 20000
    n = 4096
    s = _drift_samples(1, 1.0, n, N, seed=5)
    x = _upper(s["soft"])
    S = noise_sigma(_net(), V, "soft")
    assert np.abs(cov_z(x, S, n)).max() < Z_MAX
    for wrong in (2 * S, 0 * S, noise_sigma(_net(causal=False), V, "soft")):
        assert np.abs(cov_z(x, wrong, n)).max() > 2 * Z_MAX
    # (in n Cov(V' - V) of the whole block the softmax noise is small next to the
    # value noise at these parameters, so its own estimator above is the one with power)


# ---- solve_sde accepts causal networks ---------------------------------------------


CAUSAL_NETS = {
    "attention": lambda: _net(),
    "heads4_beta": lambda: _net(heads=4, beta=0.8),
    "transformer": lambda: st.Network(
        [
            st.ShapedAttention(heads=2, tau0=1.0, gamma=0.5, causal=True),
            st.ShapedMLP(c_plus=0.5, c_minus=-1.0, gamma=0.5),
        ]
    ),
}


@pytest.mark.parametrize("name", list(CAUSAL_NETS))
def test_solve_sde_accepts_causal(name):
    """Causal attention alone, with several heads and beta != 1, and followed by the
    shaped MLP, for every scheme; reproducible across thread counts."""
    net = CAUSAL_NETS[name]()
    V0 = st.inputs.equicorrelated(5, 0.3)
    for scheme in ("euler", "tamed_euler", "exact_chain"):
        r = st.solve_sde(net, V0=V0, T=0.25, steps=64, paths=64, seed=2, scheme=scheme, blowup=1e4)
        assert r.V.shape == (64, 65, 5, 5)
        assert np.all(np.isfinite(r.V[:, -1]))
        r1 = st.solve_sde(net, V0=V0, T=0.25, steps=64, paths=64, seed=2, scheme=scheme, threads=1, blowup=1e4)
        assert np.array_equal(r.V, r1.V)


def test_alpha_and_concat_still_refused():
    for b in (st.ShapedAttention(alpha=0.5, causal=True), st.ShapedAttention(heads=2, concat=True, causal=True)):
        with pytest.raises(ValueError, match="network"):
            st.solve_sde(st.Network([b]), V0=np.eye(3), T=1.0, steps=4, paths=2)
        with pytest.raises(ValueError, match="alpha|concat"):
            sde_drift(st.Network([b]), np.eye(3))


# ---- SDE against the network: limits of the blow-up probability and of rho_T ------

CAUSAL_TAU0, CAUSAL_GAMMA = 0.6, 0.6  # P(stopped by T = 1) ~ 9% under max diag V > 1e4
CAUSAL_WIDTHS = (512, 1024, 2048) if FULL else (256, 512, 1024)
CAUSAL_SAMPLES = 24000 if FULL else 12000
CAUSAL_STEPS = (256, 1024) if FULL else (128, 512)
CAUSAL_PATHS = 32000 if FULL else 16000  # the causal SDE runs on the generic solver: ~4x the chain's cost per step


def causal_observables(r, m: int = 4) -> dict[str, tuple[float, float]]:
    """(estimate, standard error) of P(stopped by T), the capped mean of log tr V_T
    (paths above tr V = 100 or stopped count as log 100) and, given survival, the mean
    of rho_T for every token pair (position matters for a causal head)."""
    from _finite_width import binary_se, mean_se

    ex = r.exploded
    V = r.V[:, -1]
    with np.errstate(invalid="ignore"):
        ltr = np.log(np.trace(V, axis1=1, axis2=2))
    cap = np.log(100.0)
    out = {"P(stop)": binary_se(ex), "capped log tr V": mean_se(np.where(ex, cap, np.minimum(ltr, cap)))}
    rho = st.correlations(V[~ex])
    for i in range(m):
        for j in range(i + 1, m):
            out[f"rho_{i + 1}{j + 1} | survival"] = mean_se(rho[:, i, j])
    return out


@pytest.mark.slow
def test_causal_sde_matches_network():
    """The causal SDE is the limit of the causal network (exact chain, = the explicit
    network in law): tau0 = 0.6, gamma = 0.6, m = 4, rho0 = 0.3, T = 1, stopping rule
    max diag V > 1e4 on both sides.  As in tests/test_sde_vs_network.py, each side is
    extrapolated to its limit (network c + a / n at n = 256, 512, 1024, 12000
    samples each, CI, 512 .. 2048 with 24000, full; Euler c' + e dt at dt = 1/128,
    1/512, 16000 paths, CI, 1/256, 1/1024 with 32000, full) and the limits of
    P(stop), the capped log tr V and the mean rho_T of each pair given survival must
    agree within 4.5 standard errors, the network's gaps shrinking like 1/n.

    Measured (16000 samples per width, 32000 paths): P(stop) 4.7%, 7.1%, 8.0%, 9.2%
    at n = 256, 512, 1024, 2048 (a = -11.5 +- 0.9), limit 9.2% +- 0.25% against the
    SDE's 9.2% (dt = 1/256) and 9.0% (1/1024).

    Power for the blow-up probability (it rested on ~3 against ~6 events at n = 1024
    before): with p ~ 0.09 a sample's variance is p (1 - p) = 0.082; the network's
    limit has a standard error of 0.0029 (weighted least squares of c + a / n over the
    three widths, 12000 samples each, sqrt(0.082 / 12000) = 0.0026 per width), the
    SDE's 1.37 sqrt(0.082 / 16000) = 0.0031 (the extrapolation
    (4 E_{1/512} - E_{1/128}) / 3), so the difference of the limits has a standard
    error of 0.0043.  A 30% relative difference, 0.027, is 6.4 standard errors: it
    fails the 4.5 bound with probability P(N(6.4, 1) > 4.5) = 0.97.  Full size: 0.0031,
    a 30% difference is 9 standard errors."""
    from _finite_width import compare_limits

    m = 4
    net = _net(tau0=CAUSAL_TAU0, gamma=CAUSAL_GAMMA)
    V0 = st.inputs.equicorrelated(m, 0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sde = [
            causal_observables(
                st.solve_sde(
                    model(net),
                    V0=V0,
                    T=1.0,
                    steps=k,
                    paths=CAUSAL_PATHS,
                    seed=k + 1,
                    save_at=[1.0],
                    scheme="euler",
                    blowup=1e4,
                ),
                m,
            )
            for k in CAUSAL_STEPS
        ]
        nets = [
            causal_observables(
                st.simulate(
                    net,
                    V0=V0,
                    width=n,
                    depth=n,
                    samples=CAUSAL_SAMPLES,
                    method="exact",
                    seed=3 * n + 1,
                    save_at=np.array([n]),
                    blowup=1e4,
                ),
                m,
            )
            for n in CAUSAL_WIDTHS
        ]
    failures = compare_limits(CAUSAL_WIDTHS, nets, CAUSAL_STEPS, sde, approach_from_below=("P(stop)",))
    assert not failures, failures


def test_first_pair_has_no_attention_drift():
    """docs/causal.md section 7: the causal drift vanishes on V_11 and V_12 for any V
    (row 1 of A is e_1, row 2 has no second-order term, T_12 = 0), and not for the
    bidirectional head; per-position statistics of a causal SDE run have the first
    token's row undefined (analysis.position_statistics)."""
    from shaped_transformer.analysis import position_statistics

    rng = np.random.default_rng(9)
    for _ in range(5):
        G = rng.standard_normal((5, 7))
        V = G @ G.T / 7
        for beta in (1.0, 2.5):
            bc = sde_drift(_net(beta=beta), V)
            assert bc[0, 0] == 0.0 and abs(bc[0, 1]) < 1e-15 and abs(bc[1, 0]) < 1e-15
            assert np.abs(bc[2:, 2:]).min() > 0
            bb = sde_drift(_net(beta=beta, causal=False), V)
            assert abs(bb[0, 0]) > 1e-6 and abs(bb[0, 1]) > 1e-6
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = st.solve_sde(
            _net(tau0=1.2, gamma=0.5),
            V0=st.inputs.equicorrelated(5, 0.3),
            T=0.25,
            steps=64,
            paths=500,
            seed=4,
            save_at=[0.25],
            blowup=1e4,
        )
    ps = position_statistics(r)
    assert ps.samples + ps.dropped == 500 and ps.pair_mean.shape == (5, 5)
    assert np.isnan(ps.token_mean[0]) and np.all(np.isfinite(ps.token_mean[1:]))
