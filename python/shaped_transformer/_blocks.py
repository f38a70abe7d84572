"""Block kinds and networks: one description, three ways to run it.

A :class:`Network` is a sequence of blocks (like neural-tangents' ``stax.serial``)
repeated ``depth`` times; one repetition is one *layer* and advances time by
``1/width``.

The block classes are the C++ core's own (cpp/python/bind_blocks.cpp), bound from
each kind's field table (cpp/include/shaped_transformer/blocks/): the parameters,
their defaults, types and allowed ranges are declared there once and checked there
once, on construction, with a ``ValueError`` or ``TypeError`` naming the parameter.
The subclasses here only add the prose of their docstrings and the common base
:class:`Block`.  Blocks are immutable and hashable; :meth:`replace` gives a changed
copy and :meth:`to_core` the dictionary the drivers read.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar, Iterable, Literal, Sequence

from ._core_loader import core as _core

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
]

Norm = Literal["none", "pre_rms", "pre_layer", "post_rms", "post_layer"]


class Block:
    """Base class of the block kinds (each also derives from its class in the core).

    Every block has ``kind`` (its name in the core and in configuration files),
    ``has_sde`` and ``exact_chain`` (what covers it), ``to_core()`` and
    ``replace(**changes)``.
    """

    __slots__ = ()
    kind: ClassVar[str]

    @property
    def has_sde(self) -> bool:
        """Whether the block has a covariance SDE limit (docs/model.md section 5)."""
        raise NotImplementedError

    @property
    def exact_chain(self) -> bool:
        """Whether the exact m x m chain of docs/model.md section 4 covers this block."""
        raise NotImplementedError

    def to_core(self) -> dict[str, Any]:
        """The dictionary the drivers of the C++ core read."""
        raise NotImplementedError


def _signature(core_class: Any) -> inspect.Signature:
    """The constructor's signature, from the field table's names and defaults."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    return inspect.Signature([inspect.Parameter(name, kind, default=default) for name, default in core_class._parameters])


def _doc(prose: str, core_class: type) -> str:
    """The class docstring: the prose, then the Parameters section the core writes
    from the field table."""
    return inspect.cleandoc(prose) + "\n\n" + (core_class.__doc__ or "")


class ShapedAttention(_core.ShapedAttention, Block):
    __slots__ = ()
    __signature__ = _signature(_core.ShapedAttention)
    __doc__ = _doc(
        """Shaped attention block (docs/model.md sections 1-2).

        ``A_h = alpha I + beta Softmax(Y_h / tau) - beta C`` with ``tau = tau0 sqrt(n n_k)``,
        and ``X' = lam X + gamma / sqrt(H) sum_h A_h X W^V_h / sqrt(n)`` (sum of heads).
        ``alpha = beta = 1`` is the paper's shaped head, He and Hofmann's general head
        otherwise; ``causal`` uses the uniform causal matrix for C and masks the softmax;
        ``concat`` (explicit network only) runs H heads of width n/H with an output projection.
        It has an SDE limit when ``alpha = 1`` and not ``concat``.

        >>> ShapedAttention(heads=4, tau0=1.0, gamma=0.5)  # doctest: +ELLIPSIS
        ShapedAttention(heads=4, tau0=1.0, gamma=0.5, lam=0.866..., ...)
        """,
        _core.ShapedAttention,
    )


class StandardAttention(_core.StandardAttention, Block):
    __slots__ = ()
    __signature__ = _signature(_core.StandardAttention)
    __doc__ = _doc(
        """Standard softmax attention block, ``A = Softmax(Y / sqrt(n_k))``, for contrast.

        ``norm`` is None, ``"pre_rms"``, ``"pre_layer"``, ``"post_rms"`` or ``"post_layer"``.
        It has no SDE limit (its covariance collapses to rank one); the exact chain covers
        it except with LayerNorm, which is not rotation invariant.
        """,
        _core.StandardAttention,
    )


class ShapedMLP(_core.ShapedMLP, Block):
    __slots__ = ()
    __signature__ = _signature(_core.ShapedMLP)
    __doc__ = _doc(
        """Shaped leaky-ReLU MLP block, ``s_+- = 1 + c_+- / sqrt(n)`` (docs/model.md section 2).

        ``X' = lam X + gamma sqrt(c) phi_s(X W^pre / sqrt(n)) W^post / sqrt(n)`` with
        ``phi_s(x) = s_+ max(x, 0) + s_- min(x, 0)`` and ``c = 2 / (s_+^2 + s_-^2)``.
        """,
        _core.ShapedMLP,
    )


class ReluMLP(_core.ReluMLP, Block):
    __slots__ = ()
    __signature__ = _signature(_core.ReluMLP)
    __doc__ = _doc(
        """Standard ReLU MLP block (phi = ReLU, c = 2), with an optional per-token norm.

        It has no SDE limit; the exact chain covers it except with LayerNorm.
        """,
        _core.ReluMLP,
    )


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
