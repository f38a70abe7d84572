"""Block kinds and networks: one description, three ways to run it.

A :class:`Network` is a sequence of blocks (like neural-tangents' ``stax.serial``)
repeated ``depth`` times; one repetition is one *layer* and advances time by
``1/width``.  Each block validates its own parameters on construction and turns
itself into the plain dictionary the C++ core reads (:meth:`to_core`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Iterable, Literal, Sequence

import numpy as np

__all__ = [
    "Block",
    "ShapedAttention",
    "StandardAttention",
    "ShapedMLP",
    "ReluMLP",
    "Network",
    "shaped_transformer",
    "standard_transformer",
    "make_network",
    "BLOCK_KINDS",
]

Norm = Literal["none", "pre_rms", "pre_layer", "post_rms", "post_layer"]
_NORMS = ("none", "pre_rms", "pre_layer", "post_rms", "post_layer")
_RESIDUAL_TOL = 1e-9


def _reject_arrays_and_complex(name: str, value: object, what: str) -> None:
    """Multi-element arrays and complex numbers (Python or NumPy) are not scalars."""
    if isinstance(value, (complex, np.complexfloating)) or (isinstance(value, np.ndarray) and np.iscomplexobj(value)):
        raise TypeError(f"{name} must be a real {what}, got the complex value {value!r}")
    if isinstance(value, np.ndarray) and value.ndim > 0:
        raise TypeError(f"{name} must be a single {what}, got an array of shape {value.shape}")


def _check_number(name: str, value: object, *, positive: bool = False, nonneg: bool = False) -> float:
    _reject_arrays_and_complex(name, value, "number")
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a real number: {exc}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    if positive and v <= 0:
        raise ValueError(f"{name} must be > 0, got {v}")
    if nonneg and v < 0:
        raise ValueError(f"{name} must be >= 0, got {v}")
    return v


def _check_int(name: str, value: object, *, minimum: int) -> int:
    _reject_arrays_and_complex(name, value, "integer")
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    try:
        v = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be an integer: {exc}") from None
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    return v


def _residual(gamma: object, lam: object) -> tuple[float, float]:
    """Validates gamma and lambda; lambda defaults to sqrt(1 - gamma^2)."""
    g = _check_number("gamma", gamma)
    if not 0.0 <= g <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1] (lambda^2 + gamma^2 = 1), got {g}")
    if lam is None:
        return g, math.sqrt(max(0.0, 1.0 - g * g))
    lv = _check_number("lam", lam)
    if abs(lv * lv + g * g - 1.0) > _RESIDUAL_TOL:
        raise ValueError(f"lam: lambda^2 + gamma^2 must equal 1, got {lv}^2 + {g}^2 = {lv * lv + g * g}")
    return g, lv


def _check_norm(norm: object) -> str:
    n = "none" if norm is None else norm
    if n not in _NORMS:
        raise ValueError(f"norm must be one of {_NORMS} or None, got {norm!r}")
    return str(n)


@dataclass(frozen=True)
class Block:
    """Base class of the block kinds."""

    kind: str = field(init=False, default="")

    def to_core(self) -> dict:
        """The dictionary that the C++ core reads."""
        d = asdict(self)
        return d

    @property
    def has_sde(self) -> bool:
        """Whether the block has a covariance SDE limit (docs/model.md section 5)."""
        return False

    @property
    def exact_chain(self) -> bool:
        """Whether the exact m x m chain of docs/model.md section 4 covers this block."""
        return True


@dataclass(frozen=True)
class ShapedAttention(Block):
    """Shaped attention block (docs/model.md sections 1-2).

    ``A_h = alpha I + beta Softmax(Y_h / tau) - beta C`` with ``tau = tau0 sqrt(n n_k)``,
    and ``X' = lam X + gamma / sqrt(H) sum_h A_h X W^V_h / sqrt(n)``.

    Parameters
    ----------
    heads : number of heads H (sum-of-heads convention).
    tau0 : temperature scale, > 0.
    gamma : residual branch weight in [0, 1]; ``lam`` defaults to sqrt(1 - gamma^2).
    alpha, beta : He and Hofmann's general shaped head (alpha = beta = 1: the paper's).
    causal : use the uniform causal matrix for C and mask the softmax.
    key_dim : query/key dimension n_k; None means n_k = width.
    concat : explicit network only: H heads of width n/H and an output projection.
    """

    heads: int = 1
    tau0: float = 1.0
    gamma: float = 0.5
    lam: float | None = None
    alpha: float = 1.0
    beta: float = 1.0
    causal: bool = False
    key_dim: int | None = None
    concat: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", "shaped_attention")
        object.__setattr__(self, "heads", _check_int("heads", self.heads, minimum=1))
        object.__setattr__(self, "tau0", _check_number("tau0", self.tau0, positive=True))
        g, lam = _residual(self.gamma, self.lam)
        object.__setattr__(self, "gamma", g)
        object.__setattr__(self, "lam", lam)
        object.__setattr__(self, "alpha", _check_number("alpha", self.alpha))
        object.__setattr__(self, "beta", _check_number("beta", self.beta))
        object.__setattr__(self, "causal", bool(self.causal))
        if self.key_dim is not None:
            object.__setattr__(self, "key_dim", _check_int("key_dim", self.key_dim, minimum=1))
        object.__setattr__(self, "concat", bool(self.concat))

    def to_core(self) -> dict:
        d = super().to_core()
        d["key_dim"] = 0 if self.key_dim is None else self.key_dim
        return d

    @property
    def has_sde(self) -> bool:
        # alpha = 1 (any beta, causal or not; docs/causal.md): A -> I as n grows.
        return self.alpha == 1.0 and not self.concat

    @property
    def exact_chain(self) -> bool:
        return not self.concat


@dataclass(frozen=True)
class StandardAttention(Block):
    """Standard softmax attention block, ``A = Softmax(Y / sqrt(n_k))``, for contrast.

    ``norm`` is None, ``"pre_rms"``, ``"pre_layer"``, ``"post_rms"`` or ``"post_layer"``.
    It has no SDE limit (its covariance collapses to rank one).
    """

    heads: int = 1
    gamma: float = 0.5
    lam: float | None = None
    key_dim: int | None = None
    norm: Norm | None = None
    concat: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", "standard_attention")
        object.__setattr__(self, "heads", _check_int("heads", self.heads, minimum=1))
        g, lam = _residual(self.gamma, self.lam)
        object.__setattr__(self, "gamma", g)
        object.__setattr__(self, "lam", lam)
        if self.key_dim is not None:
            object.__setattr__(self, "key_dim", _check_int("key_dim", self.key_dim, minimum=1))
        object.__setattr__(self, "norm", _check_norm(self.norm))
        object.__setattr__(self, "concat", bool(self.concat))

    def to_core(self) -> dict:
        d = super().to_core()
        d["key_dim"] = 0 if self.key_dim is None else self.key_dim
        return d

    @property
    def exact_chain(self) -> bool:
        # LayerNorm centres each token over the features: not rotation invariant.
        return not self.concat and self.norm not in ("pre_layer", "post_layer")


@dataclass(frozen=True)
class ShapedMLP(Block):
    """Shaped leaky-ReLU MLP block, ``s_+- = 1 + c_+- / sqrt(n)`` (docs/model.md section 2)."""

    c_plus: float = 0.0
    c_minus: float = -1.0
    gamma: float = 0.5
    lam: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", "shaped_mlp")
        object.__setattr__(self, "c_plus", _check_number("c_plus", self.c_plus))
        object.__setattr__(self, "c_minus", _check_number("c_minus", self.c_minus))
        g, lam = _residual(self.gamma, self.lam)
        object.__setattr__(self, "gamma", g)
        object.__setattr__(self, "lam", lam)

    @property
    def has_sde(self) -> bool:
        return True


@dataclass(frozen=True)
class ReluMLP(Block):
    """Standard ReLU MLP block (phi = ReLU, c = 2), with optional per-token norm."""

    gamma: float = 0.5
    lam: float | None = None
    norm: Norm | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", "relu_mlp")
        g, lam = _residual(self.gamma, self.lam)
        object.__setattr__(self, "gamma", g)
        object.__setattr__(self, "lam", lam)
        object.__setattr__(self, "norm", _check_norm(self.norm))

    @property
    def exact_chain(self) -> bool:
        return self.norm not in ("pre_layer", "post_layer")


BLOCK_KINDS = {
    "shaped_attention": ShapedAttention,
    "standard_attention": StandardAttention,
    "shaped_mlp": ShapedMLP,
    "relu_mlp": ReluMLP,
}


class Network:
    """A sequence of blocks forming one layer; ``depth`` layers are run.

    >>> net = Network([ShapedAttention(heads=4, tau0=1.0, gamma=0.5), ShapedMLP(gamma=0.5)])
    """

    def __init__(self, blocks: Iterable[Block] | Block):
        if isinstance(blocks, Block):
            blocks = [blocks]
        try:
            items = tuple(blocks)
        except TypeError:
            raise TypeError(f"blocks must be a Block or a sequence of Blocks, got {type(blocks).__name__}") from None
        if not items:
            raise ValueError("blocks must contain at least one block")
        for i, b in enumerate(items):
            if not isinstance(b, Block):
                raise TypeError(f"blocks[{i}] must be a Block, got {type(b).__name__}")
        self.blocks: tuple[Block, ...] = items

    def __iter__(self):
        return iter(self.blocks)

    def __len__(self) -> int:
        return len(self.blocks)

    def __repr__(self) -> str:
        return f"Network({list(self.blocks)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Network) and self.blocks == other.blocks

    def to_core(self) -> list[dict]:
        return [b.to_core() for b in self.blocks]

    @property
    def has_sde(self) -> bool:
        return all(b.has_sde for b in self.blocks)

    @property
    def exact_chain(self) -> bool:
        return all(b.exact_chain for b in self.blocks)


def shaped_transformer(
    *, heads: int = 1, tau0: float = 1.0, gamma: float = 0.5, c_plus: float = 0.0, c_minus: float = -1.0,
    causal: bool = False,
) -> Network:
    """The shaped Transformer layer: shaped attention (causal if asked) followed by a shaped MLP."""
    return Network([ShapedAttention(heads=heads, tau0=tau0, gamma=gamma, causal=causal),
                    ShapedMLP(c_plus=c_plus, c_minus=c_minus, gamma=gamma)])


def standard_transformer(*, heads: int = 1, gamma: float = 0.5, norm: Norm | None = None) -> Network:
    """The standard Transformer layer: softmax attention and a ReLU MLP."""
    return Network([StandardAttention(heads=heads, gamma=gamma, norm=norm), ReluMLP(gamma=gamma, norm=norm)])


_NETWORK_KINDS = ("shaped_attention", "standard_attention", "shaped_mlp", "relu_mlp", "shaped_transformer", "standard_transformer")


def make_network(
    block: str | Network | Block | Sequence[Block],
    *,
    heads: int = 1,
    tau0: float = 1.0,
    gamma: float = 0.5,
    c_plus: float = 0.0,
    c_minus: float = -1.0,
    norm: Norm | None = None,
    causal: bool = False,
) -> Network:
    """A Network from a block-kind name and the usual parameters (or pass one through).
    ``causal`` applies to the shaped attention of "shaped_attention" and "shaped_transformer"."""
    if isinstance(block, Network):
        return block
    if isinstance(block, Block):
        return Network([block])
    if isinstance(block, str):
        if block == "shaped_attention":
            return Network([ShapedAttention(heads=heads, tau0=tau0, gamma=gamma, causal=causal)])
        if block == "standard_attention":
            return Network([StandardAttention(heads=heads, gamma=gamma, norm=norm)])
        if block == "shaped_mlp":
            return Network([ShapedMLP(c_plus=c_plus, c_minus=c_minus, gamma=gamma)])
        if block == "relu_mlp":
            return Network([ReluMLP(gamma=gamma, norm=norm)])
        if block == "shaped_transformer":
            return shaped_transformer(heads=heads, tau0=tau0, gamma=gamma, c_plus=c_plus, c_minus=c_minus, causal=causal)
        if block == "standard_transformer":
            return standard_transformer(heads=heads, gamma=gamma, norm=norm)
        raise ValueError(f"block: unknown block kind {block!r}; expected one of {_NETWORK_KINDS}")
    if isinstance(block, (list, tuple)):
        return Network(block)
    raise TypeError(f"block must be a block-kind name, a Block, a sequence of Blocks or a Network, got {type(block).__name__}")
