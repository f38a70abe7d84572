"""NumPy reference for normalized shaped blocks (docs/norms.md): the exact chain of
every placement, the derived correlation SDEs, and an Euler integrator for them.

Independent of the C++ core (only tests/_reduced_numpy.py's Wishart and key-product
samplers are reused), vectorised over samples.  Written to be read next to
docs/norms.md; section numbers below are that page's.

Blocks are the two small dataclasses :class:`Attention` and :class:`MLP` (the
shaped attention block with the paper's head, and the shaped MLP block of
docs/model.md section 2).  They carry the attribute names tests/_explicit_numpy.py
reads, so the explicit network there runs them too.  ``norm`` is one of
:data:`NORMS` and applies to every block of a network.

State of the exact chain (section 6): V = X X^T / n and s = X 1_n / sqrt(n), the
tokens' component along the all-ones feature direction.  The RMS placements never
look at s (their chain is Markov in V alone); LayerNorm needs it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from _reduced_numpy import K_n, _bartlett, key_products, softmax

NORMS = ("none", "pre_rms", "post_rms", "pre_layer", "post_layer")
PRE = ("pre_rms", "pre_layer")
POST = ("post_rms", "post_layer")


@dataclass(frozen=True)
class Attention:
    """Shaped attention block, paper's head (alpha = beta = 1, not causal, n_k = n)."""

    heads: int = 1
    tau0: float = 1.0
    gamma: float = 0.5
    kind: str = "shaped_attention"
    key_dim: int | None = None
    alpha: float = 1.0
    beta: float = 1.0
    causal: bool = False

    @property
    def lam(self) -> float:
        return math.sqrt(1.0 - self.gamma**2)


@dataclass(frozen=True)
class MLP:
    """Shaped MLP block, leaky ReLU slopes 1 + c_+- / sqrt(n)."""

    c_plus: float = 0.0
    c_minus: float = -1.0
    gamma: float = 0.5
    kind: str = "shaped_mlp"

    @property
    def lam(self) -> float:
        return math.sqrt(1.0 - self.gamma**2)


# ---- small helpers -------------------------------------------------------------------


def T(A: np.ndarray) -> np.ndarray:
    return np.swapaxes(A, -1, -2)


def corr(V: np.ndarray) -> np.ndarray:
    """D^{-1/2} V D^{-1/2}, D = diag V (any leading batch axes)."""
    d = 1.0 / np.sqrt(np.diagonal(V, axis1=-2, axis2=-1))
    return V * d[..., :, None] * d[..., None, :]


def psd_root(V: np.ndarray) -> np.ndarray:
    """L with L L^T = V: Cholesky, or the symmetric root of the clipped spectrum for
    samples where Cholesky fails."""
    try:
        return np.linalg.cholesky(V)
    except np.linalg.LinAlgError:
        w, Q = np.linalg.eigh(V)
        return (Q * np.sqrt(np.clip(w, 0.0, None))[..., None, :]) @ T(Q)


def centring(m: int) -> np.ndarray:
    return np.eye(m) - 1.0 / m


def _pair_sum(M: np.ndarray) -> np.ndarray:
    """(M_aa + M_bb) as an (..., m, m) array."""
    d = np.diagonal(M, axis1=-2, axis2=-1)
    return d[..., :, None] + d[..., None, :]


# ---- the exact chain (docs/norms.md section 6) ---------------------------------------


def _branch_input(V, s, n, norm):
    """V_in: the Gram matrix the branch sees.  Pre-RMS: corr(V); pre-LayerNorm:
    corr(V - s s^T / n) (the centred tokens, normalized); otherwise V."""
    if norm == "pre_rms":
        return corr(V)
    if norm == "pre_layer":
        return corr(V - s[..., :, None] * s[..., None, :] / n)
    return V


def exact_step(rng, V, s, blk, norm: str, n: int, parts: bool = False):
    """One block of the exact chain from (V, s) for every sample (V: (N, m, m), s: (N, m)).

    Frame (section 6): the all-ones feature direction is the last coordinate and X
    lives in coordinates {1..m, n}: X = sqrt(n) F E, F = [chol(V - s s^T/n), s/sqrt(n)].
    The branch output has i.i.d. N(0, A V_in A^T) columns (attention) or N(0, Phi)
    (MLP), written C_cat Zhat with Zhat standard Gaussian; its columns at the
    coordinates of X are Zq, the other n - m - 1 give a Wishart R.

    Returns (V', s') after the norm, or with ``parts`` a dict with "V", "s" (after the
    norm), "Vpre" (X'X'^T/n before a post-norm), "s_pre", "cond" (E[Vpre | A or Phi]),
    "first" (the first-order softmax / Phi part, mean exactly 0) and "Vin".
    """
    N, m, _ = V.shape
    if n < m + 1:
        raise ValueError(
            f"the exact step needs n >= m + 1 (the all-ones direction outside the tokens' span), got n={n}, m={m}"
        )
    g, lam = blk.gamma, blk.lam
    Vin = _branch_input(V, s, n, norm)
    Lin = psd_root(Vin)
    F = np.concatenate([psd_root(V - s[..., :, None] * s[..., None, :] / n), s[..., None] / np.sqrt(n)], axis=-1)
    if blk.kind == "shaped_attention":
        H = blk.heads
        tau = blk.tau0 * n  # tau0 sqrt(n n_k), n_k = n
        P = centring(m)
        Ccat = np.zeros((N, m, H * m))
        cond = lam**2 * V.copy()
        first = np.zeros_like(V)
        for h in range(H):
            Y = Lin @ key_products(rng, m, n, N) @ T(Lin) / tau
            A = np.eye(m) + softmax(Y) - 1.0 / m
            cond += g**2 / H * A @ Vin @ T(A)
            S1V = Y @ P @ Vin / m
            first += g**2 / H * (S1V + T(S1V))
            Ccat[:, :, h * m : (h + 1) * m] = A @ Lin / np.sqrt(H)
    elif blk.kind == "shaped_mlp":
        sp, sm = 1 + blk.c_plus / np.sqrt(n), 1 + blk.c_minus / np.sqrt(n)
        c = 2.0 / (sp**2 + sm**2)
        if blk.c_plus == blk.c_minus:  # linear: c phi(K) phi(K)^T / n = L_in (Wishart_m(n) / n) L_in^T
            B = _bartlett(rng, n, m, N)
            Phi = Lin @ B @ T(B) @ T(Lin) / n
        else:
            Phi = np.zeros_like(V)
            for i in range(0, N, 256):
                K = Lin[i : i + 256] @ rng.standard_normal((min(256, N - i), m, n))
                F_ = np.where(K > 0, sp * K, sm * K)
                Phi[i : i + 256] = c * F_ @ T(F_) / n
        Ccat = psd_root(Phi)
        d = np.sqrt(np.diagonal(Vin, axis1=-2, axis2=-1))
        dd = d[..., :, None] * d[..., None, :]
        mean_phi = dd * K_n(Vin / dd, blk.c_plus, blk.c_minus, n)
        cond = lam**2 * V + g**2 * Phi
        first = g**2 * (Phi - mean_phi)
    else:
        raise ValueError(f"unknown block kind {blk.kind!r}")
    k = Ccat.shape[-1]
    Zq = rng.standard_normal((N, k, m + 1))
    Rb = Ccat @ _bartlett(rng, n - m - 1, k, N)
    CZ = Ccat @ Zq
    cross = F @ T(CZ)
    Vpre = lam**2 * V + lam * g / np.sqrt(n) * (cross + T(cross)) + g**2 / n * (CZ @ T(CZ) + Rb @ T(Rb))
    s_pre = lam * s + g * CZ[..., m]
    if norm == "post_rms":
        Vn, sn = corr(Vpre), s_pre
    elif norm == "post_layer":
        Vn, sn = corr(Vpre - s_pre[..., :, None] * s_pre[..., None, :] / n), np.zeros_like(s)
    else:
        Vn, sn = Vpre, s_pre
    if parts:
        return {"V": Vn, "s": sn, "Vpre": Vpre, "s_pre": s_pre, "cond": cond, "first": first, "Vin": Vin}
    return Vn, sn


def exact_chain(rng, blocks, norm: str, V0, s0, n: int, layers: int, samples: int, save_every: int | None = None):
    """V after ``layers`` layers (each layer: the blocks in turn), (samples, m, m); with
    ``save_every``, a list of (layer, V) along the way.  s0: (m,) or (samples, m)."""
    m = V0.shape[0]
    V = np.broadcast_to(V0, (samples, m, m)).copy()
    s = np.broadcast_to(s0, (samples, m)).copy()
    saved = []
    for layer in range(1, layers + 1):
        for b in blocks:
            V, s = exact_step(rng, V, s, b, norm, n)
        if save_every and layer % save_every == 0:
            saved.append((layer, V))
    return saved if save_every else V


# ---- the un-normalized SDE at V (docs/model.md section 5) ----------------------------


def sigma_mix(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """S_{ab,cd} = A_ac B_bd + A_ad B_bc + A_bc B_ad + A_bd B_ac, shape (..., m, m, m, m):
    the covariance of G + G^T when Cov(G_ab, G_cd) = A_ac B_bd."""

    def e(s, X, Y):
        return np.einsum(s, X, Y)

    return (
        e("...ac,...bd->...abcd", A, B)
        + e("...ad,...bc->...abcd", A, B)
        + e("...bc,...ad->...abcd", A, B)
        + e("...bd,...ac->...abcd", A, B)
    )


def softmax_Q(V: np.ndarray, tau0: float) -> np.ndarray:
    """Q = V P V P V / (tau0 m)^2: the softmax noise is the symmetrised G with
    Cov(G_ab, G_cd) = V_ac Q_bd, so Sigma_soft = sigma_mix(V, Q) (section 1)."""
    m = V.shape[-1]
    P = centring(m)
    return V @ P @ V @ P @ V / (tau0 * m) ** 2


def block_sigma(blk, V: np.ndarray) -> np.ndarray:
    """n Cov(V' - V) of one un-normalized block at V, (..., m, m, m, m)."""
    g = blk.gamma
    if blk.kind == "shaped_attention":
        return g**2 * (2 - g**2) * sigma_mix(V, V) / 2 + g**4 / blk.heads * sigma_mix(V, softmax_Q(V, blk.tau0))
    return 2 * g**2 * sigma_mix(V, V) / 2


def nu(rho: np.ndarray, c_plus: float, c_minus: float) -> np.ndarray:
    rho = np.clip(rho, -1.0, 1.0)
    return (c_plus - c_minus) ** 2 / (2 * np.pi) * (np.sqrt(1 - rho**2) - rho * np.arccos(rho))


def block_drift(blk, V: np.ndarray) -> np.ndarray:
    """b(V) of one un-normalized block (docs/model.md section 5)."""
    g = blk.gamma
    m = V.shape[-1]
    if blk.kind == "shaped_attention":
        P = centring(m)
        PVP = P @ V @ P
        tr = np.trace(PVP, axis1=-2, axis2=-1)
        w = np.diagonal(PVP, axis1=-2, axis2=-1) - tr[..., None] / m
        D = np.diagonal(V, axis1=-2, axis2=-1)[..., :, None] * w[..., None, :] / (2 * m)
        DV = D @ V
        t = np.trace(V @ P @ V @ P, axis1=-2, axis2=-1)[..., None, None] / m**2
        return g**2 / blk.tau0**2 * (DV + T(DV) + t * V)
    d = np.sqrt(np.diagonal(V, axis1=-2, axis2=-1))
    dd = d[..., :, None] * d[..., None, :]
    b = g**2 * nu(V / dd, blk.c_plus, blk.c_minus) * dd
    return b * (1 - np.eye(m))


# ---- the correlation SDEs (docs/norms.md sections 2-4) -------------------------------


def J(C: np.ndarray, M: np.ndarray) -> np.ndarray:
    """The first-order change of the correlation at unit diagonal C for an increment M:
    M_ab - C_ab (M_aa + M_bb) / 2 (zero on the diagonal)."""
    return M - C * _pair_sum(M) / 2


def J_at(V: np.ndarray, M: np.ndarray) -> np.ndarray:
    """The derivative of corr at any V applied to M (for control variates off the unit
    diagonal): M_ab / sqrt(v_a v_b) - rho_ab (M_aa / v_a + M_bb / v_b) / 2."""
    v = np.diagonal(V, axis1=-2, axis2=-1)
    iv = 1.0 / v
    rho = corr(V)
    Md = np.diagonal(M, axis1=-2, axis2=-1) * iv
    return M * np.sqrt(iv[..., :, None] * iv[..., None, :]) - rho * (Md[..., :, None] + Md[..., None, :]) / 2


def _diag_entries(S: np.ndarray):
    """From S (..., m, m, m, m): S_{ab,aa} + S_{ab,bb}, S_{aa,aa} + S_{bb,bb}, S_{aa,bb}, as (..., m, m)."""
    x = np.einsum("...abaa->...ab", S) + np.einsum("...abbb->...ab", S)
    aa = np.einsum("...aaaa->...a", S)
    return x, aa[..., :, None] + aa[..., None, :], np.einsum("...aabb->...ab", S)


def ito_correction(C: np.ndarray, S: np.ndarray) -> np.ndarray:
    """The second-order term of corr at unit diagonal averaged over increments with
    covariance S per unit time (section 2):
    -(S_{ab,aa} + S_{ab,bb}) / 2 + C_ab (3 (S_{aa,aa} + S_{bb,bb}) / 8 + S_{aa,bb} / 4)."""
    x, y, z = _diag_entries(S)
    out = -x / 2 + C * (3 * y / 8 + z / 4)
    return out * (1 - np.eye(C.shape[-1]))


def post_drift(blocks, C: np.ndarray, terms: dict | None = None) -> np.ndarray:
    """beta_post(C): the drift of the post-norm correlation SDE, per layer, by the general
    rule J b + Ito(Sigma) (section 2).  ``terms`` scales pieces for mutation tests:
    {"Jb": f, "ito": f}."""
    terms = terms or {}
    b = sum(block_drift(bk, C) for bk in blocks)
    S = sum(block_sigma(bk, C) for bk in blocks)
    return terms.get("Jb", 1.0) * J(C, b) + terms.get("ito", 1.0) * ito_correction(C, S)


def post_drift_closed(blocks, C: np.ndarray, terms: dict | None = None) -> np.ndarray:
    """beta_post(C) in the closed form of section 2 (what a C++ implementer codes):
    attention: (g^2/tau0^2)(1 - C_ab)(u_a + u_b), u = C w / (2m)
               + (g^4/(H tau0^2)) (C_ab (Q_aa + Q_bb)/2 - (2 - C_ab^2) Q_ab),  Q = C P C P C / m^2
    MLP:       g^2 nu(C_ab)
    both:      - (k/2) C_ab (1 - C_ab^2),  k = sum of the Sigma_lin coefficients."""
    terms = terms or {}
    m = C.shape[-1]
    P = centring(m)
    jb = np.zeros_like(C)  # J b: the first-order image of the un-normalized drift
    ito = np.zeros_like(C)  # the second-order (Ito) term
    k = 0.0
    for bk in blocks:
        g = bk.gamma
        if bk.kind == "shaped_attention":
            PCP = P @ C @ P
            w = np.diagonal(PCP, axis1=-2, axis2=-1) - np.trace(PCP, axis1=-2, axis2=-1)[..., None] / m
            u = (C @ w[..., None])[..., 0] / (2 * m)
            jb += g**2 / bk.tau0**2 * (1 - C) * (u[..., :, None] + u[..., None, :])
            Q = C @ P @ C @ P @ C / m**2
            Qd = np.diagonal(Q, axis1=-2, axis2=-1)
            ito += g**4 / (bk.heads * bk.tau0**2) * (C * (Qd[..., :, None] + Qd[..., None, :]) / 2 - (2 - C**2) * Q)
            k += g**2 * (2 - g**2)
        else:
            jb += g**2 * nu(C, bk.c_plus, bk.c_minus)
            k += 2 * g**2
    ito += -k / 2 * C * (1 - C**2)
    return (terms.get("Jb", 1.0) * jb + terms.get("ito", 1.0) * ito) * (1 - np.eye(m))


def mixing_term(blk, C: np.ndarray, u: np.ndarray) -> np.ndarray:
    """-lam^2 gamma^2 C_ab (u_a - u_b)^2 / 8: n times the correlation lost in one pre-norm
    block from scales d = 1 + u / sqrt(n), by mixing the residual (which keeps the scales)
    with the normalized branch (section 3.3)."""
    return -(blk.lam**2) * blk.gamma**2 * C * np.subtract.outer(u, u) ** 2 / 8


def diag_gap_variance(blk, C: np.ndarray) -> np.ndarray:
    """v_ab = n Var(dV_aa - dV_bb) of one block at C: S_{aa,aa} + S_{bb,bb} - 2 S_{aa,bb}."""
    _, y, z = _diag_entries(block_sigma(blk, C))
    return y - 2 * z


def diag_gap_variance_closed(blk, C: np.ndarray) -> np.ndarray:
    """The same in closed form (section 3): 4 k (1 - C_ab^2) with k the block's Sigma_lin
    coefficient, plus for attention 4 g^4 / (H tau0^2) (Q_aa + Q_bb - 2 C_ab Q_ab),
    Q = C P C P C / m^2."""
    g = blk.gamma
    if blk.kind != "shaped_attention":
        return 8 * g**2 * (1 - C**2)
    m = C.shape[-1]
    P = centring(m)
    Q = C @ P @ C @ P @ C / m**2
    Qd = np.diagonal(Q, axis1=-2, axis2=-1)
    return 4 * g**2 * (2 - g**2) * (1 - C**2) + 4 * g**4 / (blk.heads * blk.tau0**2) * (
        Qd[..., :, None] + Qd[..., None, :] - 2 * C * Q
    )


def stationary_gap(blocks, C: np.ndarray) -> list[np.ndarray]:
    """n E[(x_a - x_b)^2] entering each block of the layer, in the periodic stationary
    state of x_{k+1} = lam_k^2 x_k + (noise of variance v_k / n) (section 3)."""
    a = [bk.lam**4 for bk in blocks]
    v = [diag_gap_variance_closed(bk, C) for bk in blocks]
    B = len(blocks)
    prod = float(np.prod(a))
    if prod >= 1.0:
        raise ValueError("pre-norm needs gamma > 0 in some block: the scales do not relax otherwise")
    acc = np.zeros_like(C)
    for k in range(B):
        acc = a[k] * acc + v[k]  # after block k
    s0 = acc / (1 - prod)  # entering block 0 (periodic)
    out = [s0]
    for k in range(B - 1):
        out.append(a[k] * out[-1] + v[k])
    return out


def fast_drift(blocks, C: np.ndarray) -> np.ndarray:
    """beta_fast(C) of pre-norm (section 3): -C_ab / 8 sum_k lam_k^2 gamma_k^2 n E[(x_a - x_b)^2]_k."""
    s = stationary_gap(blocks, C)
    out = sum(bk.lam**2 * bk.gamma**2 * sk for bk, sk in zip(blocks, s))
    return -C * out / 8 * (1 - np.eye(C.shape[-1]))


def pre_drift(blocks, C: np.ndarray, terms: dict | None = None) -> np.ndarray:
    """beta_pre = beta_post + beta_fast (section 3); terms["fast"] scales the fast term."""
    terms = terms or {}
    return post_drift(blocks, C, terms) + terms.get("fast", 1.0) * fast_drift(blocks, C)


def corr_drift(blocks, norm: str, C: np.ndarray, terms: dict | None = None) -> np.ndarray:
    """The drift of the correlation SDE of a placement: post-norm beta_post, pre-norm
    beta_post + beta_fast; LayerNorm shares RMS's limit (section 4)."""
    if norm in POST:
        return post_drift(blocks, C, terms)
    if norm in PRE:
        return pre_drift(blocks, C, terms)
    raise ValueError(f"norm must be one of {PRE + POST}, got {norm!r}")


def corr_sigma(blocks, C: np.ndarray) -> np.ndarray:
    """The covariance J Sigma J^T of the correlation noise per unit time, (..., m, m, m, m):
    the same for every placement (sections 2-4)."""
    S = sum(block_sigma(bk, C) for bk in blocks)
    Cb = C[..., None, None, :, :]
    S = J(Cb, S)  # J on the second pair of indices
    S = J(Cb, np.swapaxes(np.swapaxes(S, -4, -2), -3, -1))  # then on the first
    return np.swapaxes(np.swapaxes(S, -4, -2), -3, -1)


# ---- the SDE integrator (section 5) --------------------------------------------------


def structured_noise(rng, blocks, C: np.ndarray, dt: float) -> np.ndarray:
    """An increment with covariance sum_k Sigma_k(C) dt, structured as in
    docs/model.md section 5 (O(m^3) per block)."""
    N, m, _ = C.shape
    L = psd_root(C)
    P = centring(m)
    out = np.zeros_like(C)
    for bk in blocks:
        g = bk.gamma
        k = g**2 * (2 - g**2) if bk.kind == "shaped_attention" else 2 * g**2
        dZ = rng.standard_normal((N, m, m)) * np.sqrt(dt)
        LZL = L @ dZ @ T(L)
        out += np.sqrt(k) * (LZL + T(LZL)) / np.sqrt(2)
        if bk.kind == "shaped_attention":
            dXi = rng.standard_normal((N, m, m)) * np.sqrt(dt)
            G = L @ dXi @ T(L) @ P @ C
            out += g**2 / (bk.tau0 * m * np.sqrt(bk.heads)) * (G + T(G))
    return out


def _repair_psd(V: np.ndarray) -> tuple[np.ndarray, int]:
    """Clip the spectrum at 1e-12 for the samples that are not positive definite (a
    Cholesky factorization of the batch fails); returns the count of repaired samples."""
    try:
        np.linalg.cholesky(V)
        return V, 0
    except np.linalg.LinAlgError:
        pass
    w, Q = np.linalg.eigh(V)
    bad = w[..., 0] <= 1e-12
    V = V.copy()
    V[bad] = (Q[bad] * np.clip(w[bad], 1e-12, None)[..., None, :]) @ T(Q[bad])
    return V, int(bad.sum())


def _repair(C: np.ndarray) -> tuple[np.ndarray, int]:
    """Symmetrise and set the unit diagonal; where a step left the positive definite
    correlation matrices, clip the spectrum and renormalize."""
    C = (C + T(C)) / 2
    m = C.shape[-1]
    C[..., np.arange(m), np.arange(m)] = 1.0
    C, r = _repair_psd(C)
    return (corr(C) if r else C), r


def solve_corr_sde(
    rng, blocks, norm: str, C0, T_end: float, dt: float, paths: int, terms: dict | None = None, scheme: str = "drift"
):
    """Euler-Maruyama for the correlation SDE of ``norm`` ("post_*" or "pre_*").

    scheme "drift": C += beta(C) dt + J(C, dM) with the explicit drift of sections 2-3.
    scheme "normalize": V = C + b(C) dt + dM (the un-normalized step), C = corr(V), then
    (pre-norm) the fast term: that corr does the Ito correction itself, to O(dt).
    ``terms`` scales drift terms for the power tests: "Jb", "ito", "fast", and
    "extra_offdiag" (adds that multiple of C off the diagonal; "drift" scheme).
    Returns (C_T of shape (paths, m, m), number of repairs)."""
    if norm not in PRE + POST:
        raise ValueError(f"norm must be one of {PRE + POST}, got {norm!r}")
    m = C0.shape[0]
    C = np.broadcast_to(C0, (paths, m, m)).copy()
    steps = round(T_end / dt)
    repairs = 0
    pre = norm in PRE
    terms = terms or {}
    for _ in range(steps):
        dM = structured_noise(rng, blocks, C, dt)
        if scheme == "drift":
            beta = post_drift_closed(blocks, C, terms)
            if pre:
                beta = beta + terms.get("fast", 1.0) * fast_drift(blocks, C)
            beta = beta + terms.get("extra_offdiag", 0.0) * C * (1 - np.eye(m))  # mutation tests only
            Cn = C + beta * dt + J(C, dM)
        else:
            b = sum(block_drift(bk, C) for bk in blocks)
            Vn = C + b * dt + dM
            Vn, r = _repair_psd((Vn + T(Vn)) / 2)
            repairs += r
            Cn = corr(Vn)
            if pre:
                Cn = Cn + terms.get("fast", 1.0) * fast_drift(blocks, C) * dt
        C, r = _repair(Cn)
        repairs += r
    return C, repairs


# ---- deterministic initial layer of pre-norm (section 3) ------------------------------


def pre_norm_initial_layer(blocks, V0: np.ndarray, tol: float = 1e-15, max_layers: int = 100000) -> np.ndarray:
    """The correlation matrix the pre-norm SDE starts from when V0 has a non-unit
    diagonal: the n = infinity map V -> lam^2 V + gamma^2 corr(V), block by block, until
    the diagonal is 1 (the scales relax in O(1 / gamma^2) blocks, o(1) of time)."""
    V = np.array(V0, dtype=float)
    for _ in range(max_layers):
        for bk in blocks:
            V = bk.lam**2 * V + bk.gamma**2 * corr(V)
        if np.abs(np.diagonal(V) - 1).max() < tol:
            break
    return corr(V)


def law_z(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Largest |z| of the difference of means and of standard deviations (the standard
    error of a standard deviation from the kurtosis) of two samples (N, k)."""
    z_mean = (a.mean(0) - b.mean(0)) / np.sqrt(a.var(0) / len(a) + b.var(0) / len(b))

    def sd_se2(x):
        k = np.mean((x - x.mean(0)) ** 4, 0) / x.var(0) ** 2
        return x.var(0) * (k - 1) / (4 * len(x))

    z_sd = (a.std(0) - b.std(0)) / np.sqrt(sd_se2(a) + sd_se2(b))
    return float(np.abs(z_mean).max()), float(np.abs(z_sd).max())
