"""``StackedBlocks``: N identical blocks stored stacked and run with ``jax.lax.scan``.

A deep stack of identical blocks (a transformer's layers) unrolled in Python makes XLA
compile N copies of the block: compile time grows linearly with depth.  ``StackedBlocks``
keeps one template block whose parameters, buffers and plain arrays carry a leading axis of
size N, and runs ``h = block_i(h)`` for i = 0..N-1 as one ``jax.lax.scan``, so the block is
traced and compiled once whatever N is.

It still looks like torch's ``nn.ModuleList`` where names matter: ``state_dict()`` lists
``0.ln1.weight, ..., 1.ln1.weight, ...`` (unstacked, in ModuleList order), and
``load_state_dict`` of a parent accepts an unrolled torch checkpoint as it is.  The trainable
parameters themselves are the stacked arrays (``named_parameters()`` gives
``stacked.ln1.weight`` of shape ``(N, d)``), so an optimizer updates all layers at once.
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any, Callable, Iterable, Iterator, List, Optional, Union

import jax
import jax.numpy as jnp

from jparam import _flatten as fl
from jparam._module import Module
from jparam._parameter import Parameter

__all__ = ["StackedBlocks"]


class _LayerView:
    """``__dict__`` of one layer's slice of a stacked module, as ``load_state_dict`` uses it."""

    __slots__ = ("_mod", "_i")

    def __init__(self, mod: Module, i: int):
        self._mod, self._i = mod, i

    def __getitem__(self, name: str) -> Any:
        v = self._mod.__dict__[name]
        return _LayerParam(v, self._i) if isinstance(v, Parameter) else v[self._i]

    def __setitem__(self, name: str, value: Any) -> None:        # a buffer
        d = self._mod.__dict__
        d[name] = d[name].at[self._i].set(jnp.asarray(value, d[name].dtype))

    def get(self, name: str, default: Any = None) -> Any:
        return self._mod.__dict__.get(name, default)


class _LayerParam:
    """One layer's slice of a stacked ``Parameter``: reads slice, ``.data = v`` writes it back."""

    __slots__ = ("_p", "_i")

    def __init__(self, p: Parameter, i: int):
        self._p, self._i = p, i

    @property
    def _data(self) -> jax.Array:
        return self._p._data[self._i]

    @property
    def _jp_outer(self) -> bool:
        return self._p._jp_outer

    @property
    def data(self) -> jax.Array:
        return self._data

    @data.setter
    def data(self, value: Any) -> None:
        self._p.data = self._p._data.at[self._i].set(jnp.asarray(value, self._p._data.dtype))


class _LayerOwner:
    """Stands in for (module, layer i) in the slot table of ``Module.load_state_dict``."""

    __slots__ = ("_view",)

    def __init__(self, mod: Module, i: int):
        object.__setattr__(self, "_view", _LayerView(mod, i))

    @property
    def __dict__(self):  # noqa: D401 - load_state_dict reads and writes through mod.__dict__
        return self._view


def _stack(blocks: List[Module]) -> Module:
    treedefs = [jax.tree_util.tree_structure(b) for b in blocks]
    for i, td in enumerate(treedefs[1:], 1):
        if td != treedefs[0]:
            raise ValueError(f"StackedBlocks needs identical blocks: block {i} ({type(blocks[i]).__name__}) "
                             f"differs in structure (classes, attributes, shapes' owners, static values, "
                             f"requires_grad) from block 0 ({type(blocks[0]).__name__})")
    shapes = [[(jnp.shape(a), jnp.result_type(a)) for a in jax.tree_util.tree_leaves(b)] for b in blocks]
    for i, s in enumerate(shapes[1:], 1):
        if s != shapes[0]:
            bad = next(j for j, (a, b) in enumerate(zip(s, shapes[0])) if a != b)
            name = fl.flatten_module(blocks[0])[1].bp.leaf_names()[bad]
            raise ValueError(f"StackedBlocks needs identical blocks: '{i}.{name}' has shape/dtype "
                             f"{s[bad]}, block 0 has {shapes[0][bad]}")
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *blocks)
    # Fresh identities: the stacked parameters are new objects for optimizers to track.
    for m in stacked.modules():
        for name, p in list(m._parameters.items()):
            if p is not None:
                setattr(m, name, Parameter(p._data, requires_grad=p.requires_grad))
    return stacked


class StackedBlocks(Module):
    """``num_blocks`` identical blocks applied in sequence, stored stacked, run with ``lax.scan``.

    Args:
        blocks: a zero-argument factory called ``num_blocks`` times (each block initialised
            independently, like a ``ModuleList`` comprehension), or an iterable of identical
            modules (a list or an ``nn.ModuleList``; their weights are stacked), or one module
            (copied ``num_blocks`` times, like torch's ``TransformerEncoder``).
        num_blocks: how many blocks (required with a factory or a single module).
        unroll: passed to ``jax.lax.scan`` (``unroll=num_blocks`` compiles like a Python loop).
        checkpoint: rematerialise each block's activations in the backward pass
            (``jax.checkpoint`` around the block), trading compute for memory.

    ``forward(x, *args, **kwargs)`` computes ``x = block_i(x, *args, **kwargs)`` for each
    block; ``x`` is the carried value (any pytree the block maps to the same structure) and the
    other arguments are passed unchanged to every block.  Buffers a block updates in forward
    (BatchNorm statistics, Dropout keys) are updated per layer.

    ``state_dict()`` and ``load_state_dict()`` use the unstacked names a ``ModuleList`` has
    (``0.fc.weight``, ``1.fc.weight``, ...), so a torch checkpoint of the unrolled model loads;
    ``parameters()`` yields the stacked parameters (leading axis ``num_blocks``).
    ``len()``, indexing and iteration give unstacked copies of the blocks.

    Example:
        >>> layers = nn.StackedBlocks(lambda: nn.Linear(16, 16), 8)
        >>> layers(jnp.ones((4, 16))).shape
        (4, 16)
        >>> list(layers.state_dict())[:3]
        ['0.weight', '0.bias', '1.weight']
    """

    def __init__(self, blocks: Union[Callable[[], Module], Iterable[Module], Module],
                 num_blocks: Optional[int] = None, *, unroll: int = 1, checkpoint: bool = False) -> None:
        super().__init__()
        if isinstance(blocks, Module) and not isinstance(blocks, Iterable):
            if num_blocks is None:
                raise TypeError("StackedBlocks(module, num_blocks): num_blocks is required with one module")
            items = [blocks] + [copy.deepcopy(blocks) for _ in range(num_blocks - 1)]
        elif callable(blocks) and not isinstance(blocks, (Module, list, tuple)):
            if num_blocks is None:
                raise TypeError("StackedBlocks(factory, num_blocks): num_blocks is required with a factory")
            items = [blocks() for _ in range(num_blocks)]
        else:
            items = list(blocks)
            if num_blocks is not None and num_blocks != len(items):
                raise ValueError(f"num_blocks={num_blocks} but {len(items)} blocks were given")
        if not items:
            raise ValueError("StackedBlocks needs at least one block")
        for i, b in enumerate(items):
            if not isinstance(b, Module):
                raise TypeError(f"block {i} is a {type(b).__name__}, expected a jparam.nn.Module")
        if len({id(b) for b in items}) != len(items):
            raise ValueError("StackedBlocks got the same module object more than once; pass distinct "
                             "blocks (a factory), or one module and num_blocks to copy it")
        if not isinstance(unroll, int) or unroll < 1:
            raise ValueError(f"unroll must be a positive int, got {unroll!r}")
        self.num_blocks = len(items)
        self.unroll = unroll
        self.checkpoint = bool(checkpoint)
        self.stacked = _stack(items)

    # ------------------------------------------------------------------ running
    def forward(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        leaves, aux = fl.flatten_module(self.stacked)
        bp = aux.bp
        n_keep = len(bp.params) + bp.n_grads       # parameter data and grads: read-only per layer

        def body(h, layer_leaves):
            blk = fl.unflatten_module(aux, layer_leaves)
            out = blk(h, *args, **kwargs)
            if not bp.n_other:
                return out, None
            new_leaves, new_aux = fl.flatten_module(blk)
            if new_aux.bp != bp:
                raise ValueError(f"{type(blk).__name__}.forward changed the block's structure (a static "
                                 "attribute, a parameter or a grad); StackedBlocks can only carry "
                                 "updated buffers and arrays from one step to the next")
            return out, new_leaves[n_keep:]

        if self.checkpoint:
            body = jax.checkpoint(body)
        h, new_others = jax.lax.scan(body, x, leaves, unroll=self.unroll)
        if bp.n_other:
            self.stacked = fl.unflatten_module(aux, list(leaves[:n_keep]) + list(new_others))
        return h

    # ------------------------------------------------------------------ ModuleList-like views
    def __len__(self) -> int:
        return self.num_blocks

    def __getitem__(self, idx: int) -> Module:
        """An unstacked copy of block ``idx`` (changing it does not change the stack)."""
        if not isinstance(idx, int):
            raise TypeError(f"StackedBlocks indices must be integers, not {type(idx).__name__}")
        if not -self.num_blocks <= idx < self.num_blocks:
            raise IndexError(f"index {idx} is out of range for {self.num_blocks} blocks")
        leaves, aux = fl.flatten_module(self.stacked)
        blk = fl.unflatten_module(aux, [a[idx] for a in leaves])
        for m in blk.modules():
            for name, p in list(m._parameters.items()):
                if p is not None:
                    setattr(m, name, Parameter(p._data, requires_grad=p.requires_grad))
        return blk

    def __iter__(self) -> Iterator[Module]:
        return (self[i] for i in range(self.num_blocks))

    def unstack(self) -> List[Module]:
        """The blocks as separate modules (e.g. ``nn.ModuleList(stack.unstack())``)."""
        return list(self)

    # ------------------------------------------------------------------ torch names
    def state_dict(self, destination: Optional[dict] = None, prefix: str = "",
                   keep_vars: bool = False) -> "OrderedDict[str, Any]":
        """``{prefix}{i}.{name}`` for every block ``i``, in ModuleList order (arrays, unstacked)."""
        if destination is None:
            destination = OrderedDict()
        inner = self.stacked.state_dict()
        for i in range(self.num_blocks):
            for k, v in inner.items():
                destination[f"{prefix}{i}.{k}"] = v[i]
        return destination

    def _jp_state_slots(self, prefix: str = "", out: Optional[dict] = None) -> dict:
        if out is None:
            out = OrderedDict()
        inner = self.stacked._jp_state_slots()
        for i in range(self.num_blocks):
            for k, (mod, name, kind) in inner.items():
                out[f"{prefix}{i}.{k}"] = (_LayerOwner(mod, i), name, kind)
        return out

    def extra_repr(self) -> str:
        s = f"num_blocks={self.num_blocks}"
        if self.unroll != 1:
            s += f", unroll={self.unroll}"
        if self.checkpoint:
            s += ", checkpoint=True"
        return s
