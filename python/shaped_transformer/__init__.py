"""shaped_transformer: deep attention networks at initialization.

The finite network (explicit weights), its exact width-independent covariance
chain, and the neural covariance SDE, with analysis helpers.
"""

from . import _blocks, analysis, inputs, sweep  # plotting and report are imported on use (matplotlib is optional)
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
from ._core_loader import core as _core
from ._memory import ResourceError
from ._result import Result, correlations
from .assess import Assessment, assess
from .sde import StepFailureWarning, StepSizeWarning, solve_sde
from .simulate import BlowUpWarning, simulate, simulate_network

#: The package's version, compiled into the extension from CMakeLists.txt's
#: project(VERSION), the one source that pyproject.toml also reads.
__version__: str = _core.__version__

__all__ = [
    "Assessment",
    "Block",
    "BlowUpWarning",
    "Network",
    "ReluMLP",
    "Result",
    "ResourceError",
    "ShapedAttention",
    "ShapedMLP",
    "StandardAttention",
    "StepFailureWarning",
    "StepSizeWarning",
    "correlations",
    "analysis",
    "assess",
    "inputs",
    "sweep",
    "make_network",
    "shaped_transformer",
    "simulate",
    "solve_sde",
    "simulate_network",
    "standard_transformer",
]

# A block kind added to the core's registry without prose in _blocks.py is exported
# under its core class name as well.
globals().update(_blocks.EXTRA_KINDS)
__all__ += list(_blocks.EXTRA_KINDS)
