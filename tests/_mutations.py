"""Test-only perturbations of the model: the mutation matrix (docs/validation.md).

The statistical tests compare a model under test (the SDE's drift and noise
formulas, the integrator, the exact chain, the splitting estimator) with an
independent reference (the explicit network, NumPy re-derivations, exactly known
moments, plain Monte Carlo).  With the environment variable
SHAPED_TRANSFORMER_MUTATION set to a name of :data:`TABLE`, the model side is
perturbed, and the test of the table that is meant to catch that error must fail
on its assertion (tests/test_mutations.py checks that, mutation by mutation).

Three kinds of perturbation:

- ``parameters``: :func:`model` changes the network handed to the model side of a
  comparison;
- ``core``: a formula site the parameters cannot reach, in a core built with
  -DSHAPED_TRANSFORMER_MUTATIONS=ON (cpp/include/shaped_transformer/mutation.hpp),
  set once per session through ``_core._set_mutation(switch, factor)``;
- ``python``: a function of the package replaced for the session (the release
  code is untouched).

tests/conftest.py applies the active one (:func:`apply_mutation`).  Without the
variable :func:`model` is the identity and nothing is set.

``python tests/_mutations.py`` prints the table of docs/validation.md.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Mutation:
    """One deliberate error and the test that must catch it.

    ``test``: the pytest node id (at CI size) that must fail; ``assertion``: a
    fragment of the ``assert`` statement (or ``np.testing.assert_*`` call) in the
    test's own code that must be the one to fail (whitespace-insensitive).
    ``switch``: for ``core`` mutations, the name and factor of
    ``_core._set_mutation``.  ``measured``: what the failing assertion read at CI
    size; ``seconds``: the wall time of the row's child pytest at CI size (both as
    measured once, shown in docs/validation.md)."""

    name: str
    kind: str  # "parameters", "core" or "python"
    what: str
    test: str
    assertion: str
    switch: tuple[str, float] | None = None
    measured: str = ""
    seconds: float | None = None


def _M(name, kind, what, test, assertion, switch=None, measured="", seconds=None) -> Mutation:
    return Mutation(name, kind, what, test, assertion, switch, measured, seconds)


TABLE: tuple[Mutation, ...] = (
    # ---- parameters of the model side ------------------------------------------------
    _M(
        "att_drift_x2",
        "parameters",
        "attention drift x2, same softmax noise (heads x2, tau0 / sqrt(2))",
        "tests/test_moments.py::test_attention_drift[1]",
        "np.max(np.abs(mu - b) / se) < Z_MAX",
        measured="max z = 130",
        seconds=3.1,
    ),
    _M(
        "no_softmax",
        "parameters",
        "no attention drift and no softmax noise (tau0 = 1e9)",
        "tests/test_moments.py::test_attention_drift[1]",
        "np.max(np.abs(mu - b) / se) < Z_MAX",
        measured="max z = 132",
        seconds=3.5,
    ),
    _M(
        "gamma_m5",
        "parameters",
        "gamma -5% in every block",
        "tests/test_moments.py::test_linear_noise_exact_at_any_width[1]",
        "abs(k - 1) < Z_MAX * se",
        measured="k = 1.078 +- 0.0046",
        seconds=5.2,
    ),
    _M(
        "wrong_H",
        "parameters",
        "H = 1 -> 4, H > 1 -> 1 (Sigma_soft off by the factor H)",
        "tests/test_moments.py::test_softmax_noise_and_its_head_damping[1]",
        "abs(k - 1) < Z_MAX * se",
        measured="k = 3.98 +- 0.018",
        seconds=4.3,
    ),
    _M(
        "order_half",
        "parameters",
        "an integrator of weak order 1/2: gamma x (1 + sqrt(dt) / 4) at step dt",
        "tests/test_sde.py::test_euler_weak_order_is_one",
        "abs(A) < 4.5 * sA",
        measured="A = 0.227 +- 0.021",
        seconds=12.4,
    ),
    _M(
        "sde_norm_dropped",
        "parameters",
        "the SDE of a normalized network run without its norm (norm = None on every block)",
        "tests/test_norms_vs_sde.py::test_network_agrees_with_sde[pre_rms]",
        'assert _z(net["log trace"], sde["log trace"]) < Z_MAX',
        measured="log tr V_T: z = 15.3 (SDE 1.61 +- 0.03 against log 8)",
        seconds=16,
    ),
    # ---- formula sites of the core ---------------------------------------------------
    _M(
        "att_drift_x1.1",
        "core",
        "attention drift x1.1 (paper's head)",
        "tests/test_moments.py::test_attention_drift[1]",
        "np.max(np.abs(mu - b) / se) < Z_MAX",
        ("att_drift", 1.1),
        measured="max z = 12.1",
        seconds=5.1,
    ),
    _M(
        "sigma_soft_x1.1",
        "core",
        "Sigma_soft x1.1 (softmax noise amplitude x sqrt(1.1), paper's head)",
        "tests/test_moments.py::test_softmax_noise_and_its_head_damping[1]",
        "abs(k - 1) < Z_MAX * se",
        ("soft_noise", math.sqrt(1.1)),
        measured="k = 0.906 +- 0.0041",
        seconds=3.5,
    ),
    _M(
        "no_cross_heads",
        "core",
        "exact chain without the cross-head terms (h != g)",
        "tests/test_moments.py::test_linear_noise_exact_at_any_width[4]",
        "abs(k - 1) < Z_MAX * se",
        ("cross_heads", 0.0),
        measured="k = 0.838 +- 0.0035 (H = 4)",
        seconds=3.7,
    ),
    _M(
        "mlp_drift_sign",
        "core",
        "MLP drift with the wrong sign",
        "tests/test_moments.py::test_full_block_drift",
        "np.max(np.abs(mu - b) / se) < Z_MAX",
        ("mlp_drift", -1.0),
        measured="max z = 1154",
        seconds=3.4,
    ),
    _M(
        "mlp_noise_x1.2",
        "core",
        "MLP noise covariance x1.2 (amplitude x sqrt(1.2))",
        "tests/test_moments.py::test_diffusion[mlp]",
        "errs[-1] < max(floor, 0.03)",
        ("mlp_noise", math.sqrt(1.2)),
        measured="relative error 0.164 (allowance 0.069)",
        seconds=4.2,
    ),
    _M(
        "no_integrator_drift",
        "core",
        "Euler / tamed Euler step without the drift",
        "tests/test_sde.py::test_one_step_moments_are_drift_and_sigma[2]",
        "np.abs(z).max() < 4.5",
        ("integrator_drift", 0.0),
        measured="max z = 19.3",
        seconds=4.1,
    ),
    _M(
        "general_drift_x1.1",
        "core",
        "drift of the causal and general heads x1.1",
        "tests/test_causal_sde.py::test_drift_terms_one_step[1-1.0]",
        'drift_z(n * (s["second"] + s["product"]), b) < Z_MAX',
        ("general_drift", 1.1),
        measured="z = 17.1",
        seconds=3.8,
    ),
    _M(
        "general_soft_noise_x1.1",
        "core",
        "softmax noise of the causal and general heads: Sigma x1.1",
        "tests/test_causal_sde.py::test_diffusion_terms_one_step[1-1.0]",
        "np.abs(z_soft).max() < Z_MAX",
        ("general_soft_noise", math.sqrt(1.1)),
        measured="max z = 11.1",
        seconds=4.3,
    ),
    _M(
        "key_df_half",
        "core",
        "exact chain: key Wishart with n_k / 2 degrees of freedom (one head: the batch kernel)",
        "tests/test_moments.py::test_softmax_noise_and_its_head_damping[1]",
        "abs(k - 1) < Z_MAX * se",
        ("key_df", 0.5),
        measured="k = 0.498 +- 0.0023",
        seconds=3.2,
    ),
    _M(
        "value_df_n",
        "core",
        "exact chain: value Wishart with n instead of n - m degrees of freedom (one head)",
        "tests/test_exact.py::test_one_block_matches_numpy_explicit[shaped_H1]",
        "np.max(np.abs(za)) < Z_MAX",
        ("value_df", 0.0),
        measured="max z = 15.8",
        seconds=6.4,
    ),
    _M(
        "exact_chain_width_x2",
        "core",
        "SDE scheme exact_chain at width 2 / dt instead of 1 / dt",
        "tests/test_sde.py::test_exact_chain_scheme_is_the_exact_chain",
        "np.array_equal(r.V, g)",
        ("exact_chain_width", 2.0),
        measured="the SDE scheme's V differs from the chain's",
        seconds=5.4,
    ),
    _M(
        "no_psd_clip",
        "core",
        "psd='clip' keeps the negative eigenvalues (counts the projection, skips it)",
        "tests/test_sde.py::test_psd_clip_counts_projections_and_keeps_psd",
        "np.linalg.eigvalsh(V.reshape(-1, 6, 6)).min() > -1e-9 * np.abs(V).max()",
        ("psd_clip", 0.0),
        measured="min eigenvalue -1.32 (max entry 96.7)",
        seconds=4.2,
    ),
    _M(
        "fast_drift_x2",
        "core",
        "pre-norm's fast drift beta_fast doubled (its coefficients, sde/terms.hpp)",
        "tests/test_sde_norms.py::test_pre_post_gap_matches_reference",
        "abs(_z(gap_lib, gap_ref)) < Z_MAX",
        ("fast_drift", 2.0),
        measured="z = 20.6 (the library's pre - post gap doubled against the reference's -0.034)",
        seconds=16.3,
    ),
    _M(
        "no_fast_drift",
        "core",
        "pre-norm without its fast drift beta_fast (pre-norm's SDE = post-norm's)",
        "tests/test_sde_norms.py::test_pre_post_gap_matches_reference",
        "abs(_z(gap_lib, gap_ref)) < Z_MAX",
        ("fast_drift", 0.0),
        measured="z = 46.5 (the library's pre - post gap 0 against the reference's -0.034)",
        seconds=15.9,
    ),
    _M(
        "fast_drift_x2_network",
        "core",
        "pre-norm SDE: beta_fast doubled, against the exact chain at n = 1024 (common random numbers)",
        "tests/test_norms_vs_sde.py::test_pre_minus_post_gap_resolves_the_fast_drift",
        'assert _z(gaps["network"][stat], gaps["sde"][stat]) < Z_MAX',
        ("fast_drift", 2.0),
        measured="gap pre - post, mean rho_T: z = 7.2",
        seconds=19,
    ),
    _M(
        "layer_centring_dropped",
        "core",
        "exact chain: LayerNorm without its centring s s^T / n (the RMS step on the (V, s) frame)",
        "tests/test_shaped_norms.py::test_exact_layernorm_chain_matches_the_explicit_network[pre_layer]",
        "z < Z_MAX",
        ("layer_centring", 0.0),
        measured="max z = 10.9",
        seconds=6.7,
    ),
    _M(
        "frame_column_dropped",
        "core",
        "exact chain: LayerNorm's frame without its all-ones column P_e (cross term, P_e P_e^T and s')",
        "tests/test_shaped_norms.py::test_exact_layernorm_chain_matches_the_explicit_network[pre_layer]",
        "z < Z_MAX",
        ("frame_column", 0.0),
        measured="max z = 10.3",
        seconds=6.8,
    ),
    # ---- the package's Python code ----------------------------------------------------
    _M(
        "splitting_weight",
        "python",
        "splitting: the weight factor 1 - K / N of an iteration becomes 1 - (K - 1) / N",
        "tests/test_splitting.py::test_splitting_matches_plain_monte_carlo_at_small_p",
        "abs(z) < 4.5",
        measured="z = 9.6 (5.9e-4 against 2.6e-4)",
        seconds=25.9,
    ),
)

BY_NAME = {m.name: m for m in TABLE}
ALL = [m.name for m in TABLE]
#: name -> what changes (parameter mutations: applied by :func:`model`).
PARAMETER = {m.name: m.what for m in TABLE if m.kind == "parameters"}
#: name -> (core switch, factor) for _core._set_mutation.
CORE = {m.name: m.switch for m in TABLE if m.kind == "core"}

ACTIVE = os.environ.get("SHAPED_TRANSFORMER_MUTATION", "")
if ACTIVE and ACTIVE not in BY_NAME:
    raise ValueError(f"SHAPED_TRANSFORMER_MUTATION: unknown mutation {ACTIVE!r}; known: {ALL}")


def _perturb_block(b, name: str, dt: float | None = None):
    import shaped_transformer as st

    if name == "gamma_m5" and hasattr(b, "gamma"):
        return b.replace(gamma=0.95 * b.gamma, lam=None)
    if name == "order_half" and dt is not None and hasattr(b, "gamma"):
        return b.replace(gamma=(1 + math.sqrt(dt) / 4) * b.gamma, lam=None)
    if name == "sde_norm_dropped" and getattr(b, "norm", "none") != "none":
        return b.replace(norm=None)
    if not isinstance(b, st.ShapedAttention):
        return b
    if name == "att_drift_x2":
        return b.replace(heads=2 * b.heads, tau0=b.tau0 / math.sqrt(2.0))
    if name == "no_softmax":
        return b.replace(tau0=1e9)
    if name == "wrong_H":
        return b.replace(heads=4 if b.heads == 1 else 1)
    return b


def model(network, dt: float | None = None):
    """The network the model side of a comparison uses: ``network`` itself, or its
    perturbation when a parameter mutation is active.  ``dt``: the integrator's step,
    for the mutations that depend on it (order_half; without dt it changes nothing)."""
    import shaped_transformer as st

    net = network if isinstance(network, st.Network) else st.Network(network)
    if ACTIVE not in PARAMETER:
        return net
    return st.Network([_perturb_block(b, ACTIVE, dt) for b in net])


def _splitting_weight_off_by_one(killed: int, particles: int) -> float:
    """The mutated log weight factor of one splitting iteration: log(1 - (K - 1) / N)."""
    return math.log1p(-(killed - 1) / particles)


def apply_mutation() -> None:
    """Sets the active core or Python mutation (once per session, from conftest.py)."""
    if ACTIVE in CORE:
        from shaped_transformer._core_loader import core

        if not hasattr(core, "_set_mutation"):
            raise RuntimeError(
                f"SHAPED_TRANSFORMER_MUTATION={ACTIVE} needs a core built with -DSHAPED_TRANSFORMER_MUTATIONS=ON"
            )
        core._set_mutation(*CORE[ACTIVE])
    elif ACTIVE == "splitting_weight":
        from shaped_transformer import splitting

        splitting._log_weight_factor = _splitting_weight_off_by_one


def markdown_table() -> str:
    """The table of docs/validation.md ("The mutation matrix"), one row per mutation."""
    lines = [
        "| mutation | what is wrong | how | the test that must fail | on the assertion | measured (CI size) "
        "| seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in TABLE:
        how = {"parameters": "parameters", "python": "Python"}.get(m.kind, "")
        if m.kind == "core":
            how = f"core switch `{m.switch[0]}` x {m.switch[1]:.4g}"
        lines.append(
            f"| `{m.name}` | {m.what} | {how} | `{m.test.removeprefix('tests/')}` | `{m.assertion}` "
            f"| {m.measured} | {'' if m.seconds is None else f'{m.seconds:.0f}'} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
