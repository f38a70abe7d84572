"""The time grid of the SDE solvers and the network check they share (``solve_sde``
and ``ams_blowup`` run the same schemes on the same uniform grid that lands on T)."""

from __future__ import annotations

import math
import warnings

from ._blocks import Network, make_network
from ._validate import check_int, check_number

SCHEMES = ("euler", "tamed_euler", "exact_chain")


def sde_network(network) -> Network:
    """The network, refused (ValueError naming ``network`` and the block) when it has
    no covariance SDE limit; the reason is the core's (Network.sde_refusal)."""
    net = make_network(network)
    if net.sde_refusal is not None:
        raise ValueError(net.sde_refusal)
    return net


class StepSizeWarning(UserWarning):
    """The SDE ran with a step other than the ``dt`` asked for: ``T / dt`` is not a
    whole number, so the grid has ``ceil(T / dt)`` uniform steps of ``T / steps``
    (the message names both values).  Pass a ``dt`` that divides ``T`` (or, to
    :func:`solve_sde`, ``steps`` instead of ``dt``) to run exactly the step you mean."""


def time_grid(T, dt, steps, scheme: str = "euler", what: str = "solve_sde") -> tuple[float, float, int]:
    """(T, dt, steps) of the uniform grid that lands on T.  ``steps`` is taken as
    given; a ``dt`` that does not divide T is shortened to T / ceil(T / dt) with a
    :class:`StepSizeWarning`.  ``scheme="exact_chain"`` runs the exact chain at width
    n_eff = 1/dt, so there a dt whose inverse is not an integer, or that does not
    divide T, is refused instead (the run would be another width)."""
    T = check_number("T", T, positive=True)
    if dt is not None and steps is not None:
        raise ValueError("give dt or steps, not both")
    if steps is not None:
        steps = check_int("steps", steps, minimum=1)
        dt = T / steps
        if scheme == "exact_chain":
            _check_integer_width(dt, "steps")
    else:
        asked = 1e-3 if dt is None else check_number("dt", dt, positive=True)
        if asked > T:
            raise ValueError(f"dt must be <= T={T}, got {asked}")
        if scheme == "exact_chain":
            _check_integer_width(asked, "dt")
        steps = int(math.ceil(T / asked - 1e-9))
        dt = T / steps  # land exactly on T
        if abs(dt - asked) > 1e-9 * asked:  # more than rounding
            if scheme == "exact_chain":
                raise ValueError(
                    f"dt: scheme='exact_chain' needs T / dt to be an integer (T * n_eff whole layers), "
                    f"got T = {T:g}, dt = {asked:g}; T / dt = {T / asked:.6g}"
                )
            # Only solve_sde takes steps=; ams_blowup takes dt alone.
            remedy = "pass steps= or a dt that divides T" if what == "solve_sde" else "pass a dt that divides T"
            warnings.warn(
                f"dt = {asked:g} does not divide T = {T:g}: {what} uses dt = {dt:.10g} "
                f"({steps} steps of T / {steps}); {remedy}",
                StepSizeWarning,
                stacklevel=4,  # time_grid < solve_sde or ams_blowup < network_first's wrapper < the caller
            )
    return T, dt, steps


def _check_integer_width(dt: float, name: str) -> None:
    w = 1.0 / dt
    if abs(w - round(w)) > 1e-6 * w:
        raise ValueError(
            f"{name}: scheme='exact_chain' needs 1/dt to be an integer width n_eff, got dt = {dt:.6g} (1/dt = {w:.6g})"
        )
