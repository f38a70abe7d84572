"""shaped_transformer: deep attention networks at initialization.

The finite network (explicit weights), its exact width-independent covariance
chain, and the neural covariance SDE, with analysis helpers.
"""

from . import inputs
from . import analysis, sweep  # plotting and report are imported on use (matplotlib is optional)
from ._blocks import (
    Block,
    Network,
    ReluMLP,
    ShapedAttention,
    ShapedMLP,
    StandardAttention,
    make_network,
    shaped_transformer,
    standard_transformer,
)
from ._result import Result, correlations
from ._memory import ResourceError
from .simulate import BlowUpWarning, simulate, simulate_network
from .sde import solve_sde

__version__ = "0.1.0"

__all__ = [
    "Block",
    "BlowUpWarning",
    "Network",
    "ReluMLP",
    "Result",
    "ResourceError",
    "ShapedAttention",
    "ShapedMLP",
    "StandardAttention",
    "correlations",
    "analysis",
    "inputs",
    "sweep",
    "make_network",
    "shaped_transformer",
    "simulate",
    "solve_sde",
    "simulate_network",
    "standard_transformer",
]
