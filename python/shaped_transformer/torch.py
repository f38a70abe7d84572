"""PyTorch layers of the shaped Transformer, and a covariance probe for any torch model.

Optional part of the package: it needs PyTorch (``pip install 'shaped-transformer[torch]'``).
``import shaped_transformer`` never imports this module or torch.

* :class:`ShapedAttention`, :class:`ShapedMLP` and :class:`ShapedTransformerBlock`
  are ``torch.nn.Module`` s with the parameterization of docs/model.md (sections
  "Attention heads" and "Residual blocks"): weights i.i.d. N(0, 1) scaled in the
  forward pass by 1/sqrt(fan_in), residual weights lambda^2 + gamma^2 = 1,
  temperature tau = tau0 sqrt(n n_k), sum-of-heads convention, optional causal
  mask, the shaped leaky ReLU with s_+- = 1 + c_+- / sqrt(n).  They train like any
  module (autograd, float32 / bfloat16 / float64, CPU or CUDA).
* :func:`from_network` builds a stack of them from a library ``Network``,
  optionally with exactly the weights the library's explicit network draws
  (``simulate(method="explicit", seed=..., ...)``, sample ``sample``).
* :func:`probe` records ``V = X X^T / n`` after chosen modules of any torch model
  (forward hooks) over one or many random initializations and returns the
  library's :class:`~shaped_transformer.Result`, so ``analysis.compare`` and the
  plotting helpers put it next to the exact chain or the SDE.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

import numpy as np

try:
    import torch
    from torch import nn
except ImportError as exc:  # pragma: no cover - exercised by tests/test_torch.py in a subprocess
    raise ImportError(
        "shaped_transformer.torch needs PyTorch; install it with "
        "pip install 'shaped-transformer[torch]' (or pip install torch)"
    ) from exc

from . import _blocks, _validate
from ._result import Result

__all__ = [
    "ShapedAttention",
    "ShapedMLP",
    "ShapedTransformerBlock",
    "from_network",
    "load_explicit_weights",
    "probe",
    "reinitialize",
]


def _check_width(width: object) -> int:
    return _validate.check_int("width", width, minimum=1)


def _check_input(x: torch.Tensor, width: int, who: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 2 or x.shape[-1] != width:
        raise ValueError(f"x must have shape (..., m, {width}) for this {who} of width {width}, got {tuple(x.shape)}")


def _centering(m: int, causal: bool, *, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """C of the shaped head: 1 1^T / m, or the uniform causal matrix (row i is 1/i on its first i entries)."""
    if not causal:
        return torch.full((m, m), 1.0 / m, device=device, dtype=dtype)
    rows = torch.arange(1, m + 1, device=device, dtype=dtype)
    return torch.tril(torch.ones(m, m, device=device, dtype=dtype)) / rows[:, None]


class ShapedAttention(nn.Module):
    """Shaped attention block with H heads (sum-of-heads convention), as a torch module.

    ``X' = lam X + gamma / sqrt(H) sum_h A_h X W^V_h / sqrt(n)``, with
    ``A_h = alpha I + beta Softmax(Y_h / tau) - beta C``,
    ``Y_h = (X W^Q_h / sqrt(n)) (X W^K_h / sqrt(n))^T`` and ``tau = tau0 sqrt(n n_k)``;
    C is ``1 1^T / m`` or, with ``causal=True``, the uniform causal matrix (and the
    softmax is masked).  alpha = beta = 1 is the paper's shaped head.  The weights
    ``W_q``, ``W_k`` (H, n, n_k) and ``W_v`` (H, n, n) are i.i.d. N(0, 1); the
    1/sqrt(n) scalings are applied in :meth:`forward`.  Input and output: tokens of
    shape (..., m, n).

    Parameters
    ----------
    width : int
        n, the embedding dimension.
    heads, tau0, gamma, lam, alpha, beta, causal, key_dim
        As in :class:`shaped_transformer.ShapedAttention`, which validates them
        (``lam`` defaults to sqrt(1 - gamma^2); ``key_dim`` None means n_k = n).
    device, dtype
        Of the parameters.
    """

    def __init__(
        self,
        width: int,
        *,
        heads: int = 1,
        tau0: float = 1.0,
        gamma: float = 0.5,
        lam: float | None = None,
        alpha: float = 1.0,
        beta: float = 1.0,
        causal: bool = False,
        key_dim: int | None = None,
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.spec = _blocks.ShapedAttention(
            heads=heads, tau0=tau0, gamma=gamma, lam=lam, alpha=alpha, beta=beta, causal=causal, key_dim=key_dim
        )
        self.width = _check_width(width)
        nk = self.spec.key_dim or self.width
        H, n = self.spec.heads, self.width
        kw = {"device": device, "dtype": dtype}
        self.W_q = nn.Parameter(torch.empty(H, n, nk, **kw))
        self.W_k = nn.Parameter(torch.empty(H, n, nk, **kw))
        self.W_v = nn.Parameter(torch.empty(H, n, n, **kw))
        self.reset_parameters()

    @property
    def key_dim(self) -> int:
        """n_k, the query/key dimension of a head."""
        return int(self.W_q.shape[-1])

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Draws every weight i.i.d. N(0, 1) again.

        Parameters
        ----------
        generator : torch.Generator, optional
            The generator to draw from (default: torch's).
        """
        with torch.no_grad():
            for p in (self.W_q, self.W_k, self.W_v):
                p.normal_(generator=generator)

    def attention_matrices(self, x: torch.Tensor) -> torch.Tensor:
        """The attention matrices A_h of tokens.

        Parameters
        ----------
        x : torch.Tensor, shape (..., m, n)
            The tokens.

        Returns
        -------
        torch.Tensor, shape (..., H, m, m)
        """
        _check_input(x, self.width, "ShapedAttention")
        s = self.spec
        n, nk, m = self.width, self.key_dim, x.shape[-2]
        xh = x.unsqueeze(-3)  # (..., 1, m, n): broadcasts over the heads
        q = torch.matmul(xh, self.W_q)  # (..., H, m, nk)
        k = torch.matmul(xh, self.W_k)
        # Y / tau = (q / sqrt(n)) (k / sqrt(n))^T / (tau0 sqrt(n nk))
        logits = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / (n * s.tau0 * math.sqrt(n * nk)))
        if s.causal:
            keep = torch.ones(m, m, dtype=torch.bool, device=x.device).tril()
            logits = logits.masked_fill(~keep, float("-inf"))
        soft = torch.softmax(logits, dim=-1)
        eye = torch.eye(m, device=x.device, dtype=soft.dtype)
        C = _centering(m, s.causal, device=x.device, dtype=soft.dtype)
        return s.alpha * eye + s.beta * soft - s.beta * C

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block applied to tokens.

        Parameters
        ----------
        x : torch.Tensor, shape (..., m, n)
            The tokens.

        Returns
        -------
        torch.Tensor, shape (..., m, n)
        """
        s = self.spec
        A = self.attention_matrices(x)
        v = torch.matmul(x.unsqueeze(-3), self.W_v) * (1.0 / math.sqrt(self.width))  # (..., H, m, n)
        out = torch.matmul(A.to(v.dtype), v).sum(dim=-3)
        return s.lam * x + (s.gamma / math.sqrt(s.heads)) * out

    def extra_repr(self) -> str:
        """The block's parameters, shown in the module's repr."""
        s = self.spec
        return (
            f"width={self.width}, heads={s.heads}, tau0={s.tau0}, gamma={s.gamma}, lam={s.lam:.6g}, "
            f"alpha={s.alpha}, beta={s.beta}, causal={s.causal}, key_dim={self.key_dim}"
        )


class ShapedMLP(nn.Module):
    """Shaped leaky-ReLU MLP block, as a torch module.

    ``X' = lam X + gamma sqrt(c) phi_s(X W^pre / sqrt(n)) W^post / sqrt(n)`` with
    ``phi_s(x) = s_+ max(x, 0) + s_- min(x, 0)``, ``s_+- = 1 + c_+- / sqrt(n)`` and
    ``c = 2 / (s_+^2 + s_-^2)``.  ``W_pre``, ``W_post`` (n, n) are i.i.d. N(0, 1).

    Parameters
    ----------
    width : int
        n, the embedding dimension.
    c_plus, c_minus, gamma, lam
        As in :class:`shaped_transformer.ShapedMLP`.
    device, dtype
        Of the parameters.
    """

    def __init__(
        self,
        width: int,
        *,
        c_plus: float = 0.0,
        c_minus: float = -1.0,
        gamma: float = 0.5,
        lam: float | None = None,
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.spec = _blocks.ShapedMLP(c_plus=c_plus, c_minus=c_minus, gamma=gamma, lam=lam)
        self.width = n = _check_width(width)
        self.s_plus = 1.0 + self.spec.c_plus / math.sqrt(n)
        self.s_minus = 1.0 + self.spec.c_minus / math.sqrt(n)
        self.c = 2.0 / (self.s_plus**2 + self.s_minus**2)
        kw = {"device": device, "dtype": dtype}
        self.W_pre = nn.Parameter(torch.empty(n, n, **kw))
        self.W_post = nn.Parameter(torch.empty(n, n, **kw))
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Draws every weight i.i.d. N(0, 1) again.

        Parameters
        ----------
        generator : torch.Generator, optional
            The generator to draw from (default: torch's).
        """
        with torch.no_grad():
            for p in (self.W_pre, self.W_post):
                p.normal_(generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block applied to tokens.

        Parameters
        ----------
        x : torch.Tensor, shape (..., m, n)
            The tokens.

        Returns
        -------
        torch.Tensor, shape (..., m, n)
        """
        _check_input(x, self.width, "ShapedMLP")
        r = 1.0 / math.sqrt(self.width)
        h = torch.matmul(x, self.W_pre) * r
        phi = torch.where(h > 0, self.s_plus * h, self.s_minus * h)
        out = torch.matmul(phi, self.W_post) * r
        return self.spec.lam * x + (self.spec.gamma * math.sqrt(self.c)) * out

    def extra_repr(self) -> str:
        """The block's parameters, shown in the module's repr."""
        s = self.spec
        return (
            f"width={self.width}, c_plus={s.c_plus}, c_minus={s.c_minus}, gamma={s.gamma}, lam={s.lam:.6g} "
            f"(s_plus={self.s_plus:.6g}, s_minus={self.s_minus:.6g}, c={self.c:.6g})"
        )


class ShapedTransformerBlock(nn.Module):
    """A shaped attention block followed by a shaped MLP block, each with its own weights.

    One such block advances the SDE time by 1/n.

    Parameters
    ----------
    width : int
        n, the embedding dimension.
    heads, tau0, causal, key_dim
        Of the attention block (:class:`ShapedAttention`).
    c_plus, c_minus
        Of the MLP block (:class:`ShapedMLP`).
    gamma, lam
        Of both blocks (as in :func:`shaped_transformer.shaped_transformer`).
    device, dtype
        Of the parameters.
    """

    def __init__(
        self,
        width: int,
        *,
        heads: int = 1,
        tau0: float = 1.0,
        gamma: float = 0.5,
        lam: float | None = None,
        c_plus: float = 0.0,
        c_minus: float = -1.0,
        causal: bool = False,
        key_dim: int | None = None,
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.attention = ShapedAttention(
            width,
            heads=heads,
            tau0=tau0,
            gamma=gamma,
            lam=lam,
            causal=causal,
            key_dim=key_dim,
            device=device,
            dtype=dtype,
        )
        self.mlp = ShapedMLP(width, c_plus=c_plus, c_minus=c_minus, gamma=gamma, lam=lam, device=device, dtype=dtype)

    @property
    def width(self) -> int:
        return self.attention.width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The attention block, then the MLP block, applied to tokens.

        Parameters
        ----------
        x : torch.Tensor, shape (..., m, n)
            The tokens.

        Returns
        -------
        torch.Tensor, shape (..., m, n)
        """
        return self.mlp(self.attention(x))


# ---------------------------------------------------------------------------
# From a library Network, with the library's weights if asked
# ---------------------------------------------------------------------------


def _module_for(block: _blocks.Block, width: int, device: Any, dtype: torch.dtype | None) -> nn.Module:
    if isinstance(block, (_blocks.ShapedAttention, _blocks.ShapedMLP)) and block.norm != "none":
        raise ValueError(
            f"network: norm={block.norm!r} on a {block.kind} block has no torch module yet "
            "(the modules here are un-normalized); use norm=None"
        )
    if isinstance(block, _blocks.ShapedAttention):
        if block.concat:
            raise ValueError(
                "network: concatenated heads (concat=True) have no torch module; use the sum-of-heads form"
            )
        return ShapedAttention(
            width,
            heads=block.heads,
            tau0=block.tau0,
            gamma=block.gamma,
            lam=block.lam,
            alpha=block.alpha,
            beta=block.beta,
            causal=block.causal,
            key_dim=block.key_dim,
            device=device,
            dtype=dtype,
        )
    if isinstance(block, _blocks.ShapedMLP):
        return ShapedMLP(
            width,
            c_plus=block.c_plus,
            c_minus=block.c_minus,
            gamma=block.gamma,
            lam=block.lam,
            device=device,
            dtype=dtype,
        )
    raise ValueError(
        f"network: block kind {block.kind!r} has no torch module here (only shaped_attention and shaped_mlp); "
        "for standard blocks use torch.nn.TransformerEncoderLayer and probe() it"
    )


def from_network(
    network: Any,
    *,
    width: int,
    depth: int,
    seed: int | None = None,
    sample: int = 0,
    device: Any = None,
    dtype: torch.dtype | None = None,
) -> nn.Sequential:
    """A torch model of ``depth`` layers of a library network.

    Parameters
    ----------
    network : Network, Block or sequence of Block
        Made of :class:`shaped_transformer.ShapedAttention` and
        :class:`shaped_transformer.ShapedMLP` blocks.
    width : int
        n, the embedding dimension.
    depth : int
        The number of layers (>= 1).
    seed : int, optional
        With a seed, the weights are those of sample ``sample`` of
        ``simulate(network, ..., width=width, method="explicit", seed=seed)`` (see
        :func:`load_explicit_weights`); without, torch's random generator draws them.
    sample : int, default 0
        The sample of the library's explicit network whose weights are loaded.
    device, dtype
        Of the parameters.

    Returns
    -------
    torch.nn.Sequential
        ``depth`` layers, each the block itself (one-block networks) or an
        ``nn.Sequential`` of the blocks.

    Examples
    --------
    >>> import shaped_transformer as st
    >>> model = from_network(st.shaped_transformer(), width=64, depth=8, seed=0)  # doctest: +SKIP
    """
    net = _blocks.make_network(network)
    width = _check_width(width)
    depth = _validate.check_int("depth", depth, minimum=1)
    layers = []
    for _ in range(depth):
        mods = [_module_for(b, width, device, dtype) for b in net]
        layers.append(mods[0] if len(mods) == 1 else nn.Sequential(*mods))
    model = nn.Sequential(*layers)
    if seed is not None:
        load_explicit_weights(model, seed=seed, sample=sample)
    return model


def _blocks_in_order(model: nn.Module) -> list[nn.Module]:
    """The blocks of nested nn.Sequential / ShapedTransformerBlock containers, in order."""
    if isinstance(model, ShapedTransformerBlock):
        return [model.attention, model.mlp]
    if isinstance(model, nn.Sequential):
        return [b for sub in model for b in _blocks_in_order(sub)]
    return [model]


def load_explicit_weights(model: nn.Module, *, seed: int, sample: int = 0) -> nn.Module:
    """Overwrites a model's weights with those of the library's explicit network.

    The library draws the weight matrix ``matrix`` of block ``b`` of layer ``l``
    from the counter-based stream (seed, sample, l * blocks + b, matrix),
    row-major (entry (i, j) of an n_in x n_out matrix is normal number
    i n_out + j); the normals are float32 numbers, widened here to the parameters'
    dtype.  Matrix ids: query 4h, key 4h + 1, value 4h + 2 of head h; MLP pre 0,
    post 1.

    Parameters
    ----------
    model : torch.nn.Module
        Made by :func:`from_network`, or any nesting of ``nn.Sequential`` and
        :class:`ShapedTransformerBlock` whose blocks, in order, are
        :class:`ShapedAttention` / :class:`ShapedMLP` modules: the k-th block gets the
        weights of the library's block k (layer l, block b of a network of B blocks
        is k = l B + b).
    seed : int
        The seed of :func:`shaped_transformer.simulate`.
    sample : int, default 0
        The sample of that run.

    Returns
    -------
    torch.nn.Module
        ``model`` itself.

    Raises
    ------
    TypeError
        If ``model`` is not a module, or holds a block of another kind.
    """
    from ._core_loader import core
    from ._validate import check_seed

    seed = check_seed(seed)
    sample = _validate.check_int("sample", sample, minimum=0)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    blocks = _blocks_in_order(model)

    def normals(block: int, matrix: int, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        count = int(np.prod(shape))
        z = np.asarray(core.normals(seed, sample, block, matrix, 0, count), dtype=np.float32)
        return torch.from_numpy(z.reshape(shape)).to(device=like.device, dtype=like.dtype)

    with torch.no_grad():
        for i, mod in enumerate(blocks):
            if i >= 2**32:
                raise ValueError("model: more than 2^32 blocks")
            if isinstance(mod, ShapedAttention):
                n, nk = mod.width, mod.key_dim
                for h in range(mod.spec.heads):
                    mod.W_q[h].copy_(normals(i, 4 * h, (n, nk), mod.W_q))
                    mod.W_k[h].copy_(normals(i, 4 * h + 1, (n, nk), mod.W_k))
                    mod.W_v[h].copy_(normals(i, 4 * h + 2, (n, n), mod.W_v))
            elif isinstance(mod, ShapedMLP):
                n = mod.width
                mod.W_pre.copy_(normals(i, 0, (n, n), mod.W_pre))
                mod.W_post.copy_(normals(i, 1, (n, n), mod.W_post))
            else:
                raise TypeError(f"model: block {i} is a {type(mod).__name__}, not a ShapedAttention or ShapedMLP")
    return model


# ---------------------------------------------------------------------------
# Covariance probe for any torch model
# ---------------------------------------------------------------------------


def reinitialize(model: nn.Module) -> None:
    """Draws the parameters of a model afresh, the way torch's constructors do.

    Children first, then the module itself, calling ``reset_parameters()`` (or the
    private ``_reset_parameters()`` of ``nn.MultiheadAttention`` and
    ``nn.Transformer``) wherever a module has one.  Note that
    ``nn.TransformerEncoder`` deep-copies one layer, so its layers start with
    identical weights; after this call each layer has its own draw.

    Parameters
    ----------
    model : torch.nn.Module
        The model, changed in place.
    """

    def visit(mod: nn.Module) -> None:
        for child in mod.children():
            visit(child)
        fn = getattr(mod, "reset_parameters", None) or getattr(mod, "_reset_parameters", None)
        if callable(fn):
            fn()

    visit(model)


def _default_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    if isinstance(model, nn.Sequential):
        return [(name, mod) for name, mod in model.named_children()]
    for attr in ("layers", "blocks", "h", "layer"):
        sub = getattr(model, attr, None)
        if isinstance(sub, (nn.ModuleList, nn.Sequential)) and len(sub) > 0:
            return [(f"{attr}.{name}", mod) for name, mod in sub.named_children()]
    raise ValueError(
        "modules: cannot guess which modules to probe in a "
        f"{type(model).__name__}; pass modules=[...] (modules or their names in model.named_modules())"
    )


def _resolve_modules(model: nn.Module, modules: Iterable[nn.Module | str] | None) -> list[tuple[str, nn.Module]]:
    if modules is None:
        return _default_modules(model)
    if isinstance(modules, (str, nn.Module)):
        modules = [modules]
    names = {id(mod): name for name, mod in model.named_modules()}
    out = []
    for i, item in enumerate(modules):
        if isinstance(item, str):
            try:
                out.append((item, model.get_submodule(item)))
            except AttributeError:
                raise ValueError(f"modules[{i}]: {type(model).__name__} has no submodule named {item!r}") from None
        elif isinstance(item, nn.Module):
            if id(item) not in names:
                raise ValueError(f"modules[{i}]: the {type(item).__name__} is not a submodule of the model")
            out.append((names[id(item)], item))
        else:
            raise TypeError(f"modules[{i}] must be an nn.Module or a name, got {type(item).__name__}")
    if not out:
        raise ValueError("modules must not be empty")
    return out


def _first_tensor(obj: Any) -> torch.Tensor | None:
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, (tuple, list)):
        for o in obj:
            t = _first_tensor(o)
            if t is not None:
                return t
    if isinstance(obj, dict):
        for o in obj.values():
            t = _first_tensor(o)
            if t is not None:
                return t
    return None


def _gram(x: torch.Tensor, batch_first: bool, who: str) -> tuple[np.ndarray, int]:
    """V = X X^T / n per sequence, float64, (batch, m, m), and n."""
    if x.dim() == 2:
        x = x.unsqueeze(0)
    elif x.dim() == 3:
        if not batch_first:
            x = x.transpose(0, 1)
    else:
        raise ValueError(f"{who}: expected tokens of shape (batch, m, n) or (m, n), got {tuple(x.shape)}")
    xd = x.detach().to(torch.float64)
    V = torch.matmul(xd, xd.transpose(-1, -2)) / xd.shape[-1]
    return V.cpu().numpy(), int(xd.shape[-1])


def probe(
    model: nn.Module,
    inputs: Any,
    modules: Iterable[nn.Module | str] | None = None,
    *,
    samples: int | None = None,
    seed: int = 0,
    init: Callable[[nn.Module], None] | None = None,
    include_input: bool = True,
    t: Sequence[float] | np.ndarray | None = None,
    width: int | None = None,
    batch_first: bool = True,
    blowup: float = 1e4,
    forward: Callable[[nn.Module, Any], Any] | None = None,
) -> Result:
    """Records the token covariance V = X X^T / n after chosen modules of a torch model.

    Forward hooks on ``modules`` take the tokens X each one outputs (the first
    tensor of a tuple output), shape (batch, m, n) (or (m, batch, n) with
    ``batch_first=False``, or (m, n)), and store X X^T / n in float64 for every
    sequence of the batch.  The model runs in eval mode (no dropout) without
    gradients; its training flag and, when re-initialized, its parameters are
    restored afterwards.

    Parameters
    ----------
    model : torch.nn.Module
        Any model.
    inputs : object
        What the model is called with (``model(inputs)``, or ``forward(model, inputs)``).
    modules : iterable of module or str, optional
        The modules to record after, in order of depth (modules or names in
        ``model.named_modules()``).  Default: the children of an ``nn.Sequential``,
        else the entries of a ``layers`` / ``blocks`` ModuleList (e.g. the layers of
        ``nn.TransformerEncoder``).
    samples : int, optional
        None: probe the model as it is (one initialization).  An integer k: k
        independent initializations, each drawn by ``init(model)`` after seeding
        torch with (seed, i); the results are stacked along the sample axis.
    seed : int, default 0
        Seeds the re-initializations.
    init : callable, optional
        How to draw a fresh initialization (default :func:`reinitialize`).
    include_input : bool, default True
        Also record V of the input of the first module (time 0).
    t : array_like, optional
        The times of the saved points; default k / n for the k-th module (k = 0
        for the input), n the width of the recorded tokens: the convention of the
        library, where one Transformer layer advances time by 1/n.
    width : int, optional
        The n of the default times, when it differs from the recorded tokens' width.
    batch_first : bool, default True
        The layout of the recorded tensors.
    blowup : float, default 1e4
        A sample whose largest diagonal entry of V exceeds this (or is
        non-finite) is stopped there: ``exploded_at`` is that time and its later V
        are NaN, as in :func:`shaped_transformer.simulate`.
    forward : callable, optional
        ``forward(model, inputs)`` for models not called as ``model(inputs)``.

    Returns
    -------
    Result
        V of shape (samples x batch, saved, m, m), ``method="torch_probe"`` and
        ``info`` holding the module names, the batch size and the number of
        initializations.  Sample ``i * batch + b`` is sequence b under
        initialization i.

    Raises
    ------
    TypeError
        If ``model`` is not a module or ``init`` not callable.
    ValueError
        For a module that cannot be found or that does not run exactly once per
        forward pass, an output without a tensor, or ``t`` of the wrong length.

    Examples
    --------
    >>> import torch
    >>> layer = torch.nn.TransformerEncoderLayer(64, 4, batch_first=True)
    >>> enc = torch.nn.TransformerEncoder(layer, 6, enable_nested_tensor=False)
    >>> X = torch.randn(2, 8, 64)
    >>> res = probe(enc, X, samples=3)  # doctest: +SKIP
    >>> res.V.shape  # doctest: +SKIP
    (6, 7, 8, 8)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    mods = _resolve_modules(model, modules)
    if samples is not None:
        samples = _validate.check_int("samples", samples, minimum=1)
    if not (isinstance(blowup, (int, float)) and not isinstance(blowup, bool) and blowup > 0):
        raise ValueError(f"blowup must be a number > 0, got {blowup!r}")
    if width is not None:
        width = _check_width(width)
    if init is not None and not callable(init):
        raise TypeError("init must be callable (init(model) draws a fresh initialization)")
    from ._validate import check_seed

    seed = check_seed(seed)
    call = forward or (lambda mdl, x: mdl(x))
    runs = _record_runs(
        model,
        partial(_record_once, model, call, inputs, mods, include_input, batch_first),
        samples,
        seed,
        init or reinitialize,
    )
    # (samples * batch, saved, m, m)
    V = np.concatenate([np.stack([rec[0] for rec in r], axis=1) for r in runs], axis=0)
    batch = runs[0][0][0].shape[0]
    saved = V.shape[1]
    if t is None:
        n = width if width is not None else runs[0][-1][1]
        times = (np.arange(saved, dtype=np.float64) + (0.0 if include_input else 1.0)) / n
    else:
        times = np.asarray(t, dtype=np.float64)
        if times.shape != (saved,):
            raise ValueError(f"t must have shape ({saved},) (one time per saved point), got {times.shape}")
    return _result(V, times, blowup, mods, batch, samples)


def _record_once(
    model: nn.Module,
    call: Callable[[nn.Module, Any], Any],
    inputs: Any,
    mods: list,
    include_input: bool,
    batch_first: bool,
) -> list[tuple[np.ndarray, int]]:
    """One forward pass with hooks: (X X^T / n per sequence, n) after each module,
    and of the first module's input when ``include_input``."""
    records: list[tuple[np.ndarray, int]] = []
    handles = []
    if include_input:

        def pre_hook(mod: nn.Module, args: tuple, kwargs: dict | None = None) -> None:
            if not records:  # only the first call of the first module
                x = _first_tensor(args) if args else _first_tensor(kwargs or {})
                if x is None:
                    raise ValueError(f"modules[0] ({mods[0][0]}): its input holds no tensor to record")
                records.append(_gram(x, batch_first, mods[0][0]))

        handles.append(mods[0][1].register_forward_pre_hook(pre_hook, with_kwargs=True))
    for name, mod in mods:

        def hook(m_: nn.Module, args: tuple, out: Any, _name: str = name) -> None:
            x = _first_tensor(out)
            if x is None:
                raise ValueError(f"module {_name}: its output holds no tensor to record")
            records.append(_gram(x, batch_first, _name))

        handles.append(mod.register_forward_hook(hook))
    try:
        call(model, inputs)
    finally:
        for h in handles:
            h.remove()
    expected = len(mods) + int(include_input)
    if len(records) != expected:
        raise ValueError(
            f"modules: expected {expected} recordings in one forward pass, got {len(records)} "
            "(a probed module ran more or less than once; probe modules that run once per pass)"
        )
    return records


def _record_runs(
    model: nn.Module, record: Callable[[], list], samples: int | None, seed: int, init_fn: Callable[[nn.Module], None]
) -> list[list[tuple[np.ndarray, int]]]:
    """``record()`` in eval mode without gradients, once as the model is, or after
    each of ``samples`` seeded re-initializations; restores the model's training
    flag and, when re-initialized, its parameters."""
    was_training = model.training
    saved_state = None
    runs: list[list[tuple[np.ndarray, int]]] = []
    devices = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    try:
        model.eval()
        with torch.no_grad():
            if samples is None:
                runs.append(record())
            else:
                saved_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                for i in range(samples):
                    with torch.random.fork_rng(devices=devices):
                        key = int(np.random.SeedSequence([seed, i]).generate_state(1, np.uint64)[0])
                        # (torch.manual_seed would also queue lazy seeding calls of
                        # every accelerator backend, which costs more than a small forward)
                        torch.default_generator.manual_seed(key)
                        for dev in devices:
                            torch.cuda.default_generators[dev].manual_seed(key)
                        init_fn(model)
                        runs.append(record())
    finally:
        if saved_state is not None:
            model.load_state_dict(saved_state)
        model.train(was_training)
    return runs


def _result(V: np.ndarray, t: np.ndarray, blowup: float, mods, batch: int, samples: int | None) -> Result:
    diag = np.diagonal(V, axis1=-2, axis2=-1)
    with np.errstate(invalid="ignore"):
        bad = ~np.all(np.isfinite(V), axis=(-2, -1)) | (
            np.max(np.where(np.isfinite(diag), diag, np.inf), axis=-1) > blowup
        )
    exploded_at = np.full(V.shape[0], np.inf)
    V = V.copy()
    for s in np.flatnonzero(bad.any(axis=1)):
        k = int(np.argmax(bad[s]))
        exploded_at[s] = t[k]
        V[s, k:] = np.nan
    info = {
        "modules": [name for name, _ in mods],
        "batch": int(batch),
        "initializations": 1 if samples is None else samples,
    }
    return Result(V=V, t=t, exploded_at=exploded_at, method="torch_probe", info=info)
