"""Block kinds and networks: one description, three ways to run it.

A :class:`Network` is a sequence of blocks (like neural-tangents' ``stax.serial``)
repeated ``depth`` times; one repetition is one *layer* and advances time by
``1/width``.

The block classes are the C++ core's own (cpp/python/bind_blocks.cpp), bound from
each kind's field table (cpp/include/shaped_transformer/blocks/): the parameters,
their defaults, types and allowed ranges are declared there once and checked there
once, on construction, with a ``ValueError`` or ``TypeError`` naming the parameter.
The subclasses here only add the prose of their docstrings and the common base
:class:`Block`; a kind of the registry without prose here gets a plain subclass
(named as in the core, exported by the package).  Blocks are immutable and
hashable; :meth:`replace` gives a changed copy.

:class:`Network` is the core's ``_core.Network`` (cpp/python/bind_network.cpp): it
holds the C++ network the drivers run, converted once from the block objects, so a
run passes it to the core as is.  What a network covers (``has_sde``,
``exact_chain``), why not (``sde_refusal``, ``exact_refusal``) and its SDE noise
dimension are the core's answers; :func:`make_network` finds kinds by name in the
core's registry (``_core.kinds()``).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, ClassVar, Literal

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
    ``has_sde`` and ``exact_chain`` (what covers it), ``sde_refusal`` and
    ``exact_refusal`` (the core's reason when not, else None) and
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

    @property
    def sde_refusal(self) -> str | None:
        """Why the block has no covariance SDE limit; None when it has one."""
        raise NotImplementedError

    @property
    def exact_refusal(self) -> str | None:
        """Why the exact chain cannot run the block; None when it can."""
        raise NotImplementedError


def _signature(core_class: Any) -> inspect.Signature:
    """The constructor's signature, from the field table's names and defaults."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    return inspect.Signature(
        [inspect.Parameter(name, kind, default=default) for name, default in core_class._parameters]
    )


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
        ``norm`` (None, ``"pre_rms"``, ``"pre_layer"``, ``"post_rms"`` or ``"post_layer"``,
        as on :class:`StandardAttention`) runs in the explicit network, the law sampler and
        the exact chain (LayerNorm there on the state (V, s), at width >= m + 1); with a
        norm the SDE is the correlation SDE of docs/norms.md (post-norm for every head,
        pre-norm for the paper's head: ``causal`` or ``beta != 1`` with pre-norm is refused).

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
        every placement (LayerNorm on the state (V, s), at width >= m + 1; docs/norms.md
        section 6).
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
        ``norm`` places a per-token RMS norm or LayerNorm before the block or after the
        residual sum, as on :class:`ReluMLP`; the explicit network, the law sampler and the
        exact chain run it (LayerNorm there at width >= m + 1); the SDE is the correlation
        SDE of docs/norms.md (every placement).
        """,
        _core.ShapedMLP,
    )


class ReluMLP(_core.ReluMLP, Block):
    __slots__ = ()
    __signature__ = _signature(_core.ReluMLP)
    __doc__ = _doc(
        """Standard ReLU MLP block (phi = ReLU, c = 2), with an optional per-token norm.

        It has no SDE limit; the exact chain covers every placement (LayerNorm at width
        >= m + 1).
        """,
        _core.ReluMLP,
    )


def _plain_subclass(core_class: Any) -> type:
    """The Python class of a kind that has no prose here: the core's class, the
    base :class:`Block` and the Parameters section the core writes."""
    return type(
        core_class.__name__,
        (core_class, Block),
        {
            "__slots__": (),
            "__signature__": _signature(core_class),
            "__module__": __name__,
            "__doc__": _doc(f"The ``{core_class.kind}`` block (cpp/include/shaped_transformer/blocks/).", core_class),
        },
    )


_WITH_PROSE: dict[str, type] = {cls.kind: cls for cls in (ShapedAttention, StandardAttention, ShapedMLP, ReluMLP)}

#: Every kind of the core's registry by its name: the classes above, and a plain
#: subclass for a kind added to the registry without prose here.
KINDS: dict[str, type] = {
    kind: _WITH_PROSE.get(kind) or _plain_subclass(core_class) for kind, core_class in _core.kinds().items()
}

#: The plain subclasses (exported by the package under their core names).
EXTRA_KINDS: dict[str, type] = {cls.__name__: cls for kind, cls in KINDS.items() if kind not in _WITH_PROSE}
globals().update(EXTRA_KINDS)
__all__ += list(EXTRA_KINDS)


class Network(_core.Network):
    """A sequence of blocks forming one layer; ``depth`` layers are run.

    It is the core's network object: the blocks are converted to the C++ network once,
    here, and every run hands it to the core as is.

    Parameters
    ----------
    blocks : Block or sequence of Blocks
        One layer (not empty); a ``TypeError`` or ``ValueError`` naming blocks otherwise.

    Examples
    --------

    >>> net = Network([ShapedAttention(heads=4, tau0=1.0, gamma=0.5), ShapedMLP(gamma=0.5)])
    >>> net.has_sde, net.sde_noise_dim(3)
    (True, 27)
    """

    __slots__ = ()

    def __init__(self, blocks: Iterable[Block] | Block):
        super().__init__(blocks)

    @property
    def blocks(self) -> tuple[Block, ...]:
        """The blocks of one layer, as given."""
        return super().blocks

    def __iter__(self) -> Iterator[Block]:
        return iter(self.blocks)

    def __repr__(self) -> str:
        return f"Network({list(self.blocks)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Network) and self.blocks == other.blocks

    __hash__ = None  # type: ignore[assignment]

    def to_core(self) -> Network:
        """What the core's drivers take: the network itself (kept for callers of the
        former dictionary form)."""
        return self


def shaped_transformer(
    *,
    heads: int = 1,
    tau0: float = 1.0,
    gamma: float = 0.5,
    c_plus: float = 0.0,
    c_minus: float = -1.0,
    causal: bool = False,
    norm: Norm | None = None,
) -> Network:
    """The shaped Transformer layer: shaped attention (causal if asked) followed by a shaped MLP.

    Parameters
    ----------
    heads, tau0, gamma, causal
        Of the :class:`ShapedAttention` block (gamma also of the MLP).
    c_plus, c_minus
        Of the :class:`ShapedMLP` block.
    norm
        The per-token norm of both blocks (None, "pre_rms", "pre_layer", "post_rms" or
        "post_layer"); the explicit network, the law sampler and the exact chain run it
        (LayerNorm at width >= m + 1), the SDE the correlation SDE of docs/norms.md.

    Returns
    -------
    Network
    """
    return Network(
        [
            ShapedAttention(heads=heads, tau0=tau0, gamma=gamma, causal=causal, norm=norm),
            ShapedMLP(c_plus=c_plus, c_minus=c_minus, gamma=gamma, norm=norm),
        ]
    )


def standard_transformer(*, heads: int = 1, gamma: float = 0.5, norm: Norm | None = None) -> Network:
    """The standard Transformer layer: softmax attention and a ReLU MLP.

    Parameters
    ----------
    heads
        Of the :class:`StandardAttention` block.
    gamma, norm
        Of both blocks.

    Returns
    -------
    Network
    """
    return Network([StandardAttention(heads=heads, gamma=gamma, norm=norm), ReluMLP(gamma=gamma, norm=norm)])


#: Layers of several kinds known by one name.
_LAYERS: dict[str, tuple[str, ...]] = {
    "shaped_transformer": ("shaped_attention", "shaped_mlp"),
    "standard_transformer": ("standard_attention", "relu_mlp"),
}


def _from_usual(cls: Any, usual: dict[str, Any]) -> Block:
    """A block of ``cls`` from the usual parameters it has (the others do not apply to it)."""
    names = {name for name, _ in cls._parameters}
    return cls(**{k: v for k, v in usual.items() if k in names})


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

    Parameters
    ----------
    block : str, Network, Block or sequence of Blocks
        A kind of the core's registry (``_core.kinds()``: "shaped_attention",
        "standard_attention", "shaped_mlp", "relu_mlp", ...) or a layer
        "shaped_transformer" / "standard_transformer"; a network or blocks are passed
        through.  An unknown name is a ValueError naming block.
    heads, tau0, gamma, c_plus, c_minus, norm, causal
        The usual parameters: each block of a named kind takes those it has
        (``causal`` applies to the shaped attention, ``norm`` to every block).

    Returns
    -------
    Network
    """
    if isinstance(block, Network):
        return block
    if isinstance(block, str):
        kinds = _LAYERS.get(block, (block,))
        if not all(k in KINDS for k in kinds):
            raise ValueError(f"block: unknown block kind {block!r}; expected one of {tuple(KINDS) + tuple(_LAYERS)}")
        usual = dict(heads=heads, tau0=tau0, gamma=gamma, c_plus=c_plus, c_minus=c_minus, norm=norm, causal=causal)
        return Network([_from_usual(KINDS[k], usual) for k in kinds])
    if isinstance(block, (Block, list, tuple)):
        return Network(block)
    raise TypeError(
        f"block must be a block-kind name, a Block, a sequence of Blocks or a Network, got {type(block).__name__}"
    )
