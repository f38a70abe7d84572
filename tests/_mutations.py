"""Test-only perturbations of the model (docs/validation.md, "Mutation matrix").

The statistical tests compare a model under test (the SDE's drift and noise
formulas, the integrator, the exact chain) with an independent reference (the
explicit network, NumPy re-derivations, exactly known moments).  With the
environment variable SHAPED_TRANSFORMER_MUTATION set to a name below, the model
side is perturbed, so that tests/test_mutations.py can check that the suite fails:

- parameter perturbations, applied by :func:`model` to the network handed to the
  model side of a comparison;
- core perturbations (formula sites the parameters cannot reach), set in a core
  built with -DSHAPED_TRANSFORMER_MUTATIONS=ON through ``_core._set_mutation``
  (tests/conftest.py does this once per session).

Without the variable :func:`model` is the identity and nothing is set.
"""

from __future__ import annotations

import math
import os

import shaped_transformer as st

#: name -> how the network of the model side changes (parameters only).
PARAMETER = {
    # same softmax noise (gamma^4 / (tau0^2 H) unchanged), twice the attention drift
    "att_drift_x2": "heads x2 and tau0 / sqrt(2) on the model side",
    # tau0 = 1e9: no attention drift and no softmax noise
    "no_softmax": "tau0 = 1e9 on the model side",
    "gamma_m5": "gamma x 0.95 (every block) on the model side",
    # H = 1 -> 4, H > 1 -> 1: Sigma_soft off by the factor H
    "wrong_H": "heads 1 -> 4, H > 1 -> 1 on the model side",
    # an integrator of weak order 1/2: its coefficients carry a relative error of
    # order sqrt(dt) (only where the model side says its step, model(net, dt=...))
    "order_half": "gamma x (1 + sqrt(dt) / 4) at step dt on the model side",
}

#: name -> (core mutation, factor) for _core._set_mutation.
CORE = {
    "att_drift_x1.1": ("att_drift", 1.1),
    "sigma_soft_x1.1": ("soft_noise", math.sqrt(1.1)),  # the amplitude; Sigma_soft x 1.1
    "no_cross_heads": ("cross_heads", 0.0),
    "mlp_drift_sign": ("mlp_drift", -1.0),
    "no_integrator_drift": ("integrator_drift", 0.0),
}

ALL = list(PARAMETER) + list(CORE)

ACTIVE = os.environ.get("SHAPED_TRANSFORMER_MUTATION", "")
if ACTIVE and ACTIVE not in ALL:
    raise ValueError(f"SHAPED_TRANSFORMER_MUTATION: unknown mutation {ACTIVE!r}; known: {ALL}")


def _perturb_block(b, name: str, dt: float | None = None):
    if name == "gamma_m5" and hasattr(b, "gamma"):
        return b.replace(gamma=0.95 * b.gamma, lam=None)
    if name == "order_half" and dt is not None and hasattr(b, "gamma"):
        return b.replace(gamma=(1 + math.sqrt(dt) / 4) * b.gamma, lam=None)
    if not isinstance(b, st.ShapedAttention):
        return b
    if name == "att_drift_x2":
        return b.replace(heads=2 * b.heads, tau0=b.tau0 / math.sqrt(2.0))
    if name == "no_softmax":
        return b.replace(tau0=1e9)
    if name == "wrong_H":
        return b.replace(heads=4 if b.heads == 1 else 1)
    return b


def model(network, dt: float | None = None) -> st.Network:
    """The network the model side of a comparison uses: ``network`` itself, or its
    perturbation when a parameter mutation is active.  ``dt``: the integrator's step,
    for the mutations that depend on it (order_half; without dt it changes nothing)."""
    net = network if isinstance(network, st.Network) else st.Network(network)
    if ACTIVE not in PARAMETER:
        return net
    return st.Network([_perturb_block(b, ACTIVE, dt) for b in net])


def apply_core_mutation() -> None:
    """Sets the active core mutation (once per session, from conftest.py)."""
    if ACTIVE not in CORE:
        return
    from shaped_transformer._core_loader import core

    if not hasattr(core, "_set_mutation"):
        raise RuntimeError(
            f"SHAPED_TRANSFORMER_MUTATION={ACTIVE} needs a core built with -DSHAPED_TRANSFORMER_MUTATIONS=ON"
        )
    core._set_mutation(*CORE[ACTIVE])
