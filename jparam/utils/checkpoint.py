"""Activation checkpointing: ``torch.utils.checkpoint.checkpoint`` for jparam modules.

``checkpoint(block, x)`` runs ``block(x)`` under ``jax.checkpoint``: the backward pass
recomputes the block's activations instead of storing them. The block's state goes in and
out of the rematerialised function as explicit inputs and outputs, so buffers it updates
in ``forward`` (BatchNorm's running statistics, dropout keys) are written back to the block,
once, as torch's forward writes them; the recomputation in the backward pass writes
nothing.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np

from jparam import _flatten as fl
from jparam._module import Module

__all__ = ["checkpoint"]


def _is_array(x: Any) -> bool:
    return isinstance(x, (jax.Array, np.ndarray))


def _modules_in_leaf_order(root: Module) -> list:
    """The module objects in the order of :func:`jparam._flatten.flatten_module`'s blueprint."""
    order: list = []
    seen: set = set()

    def visit(m: Module) -> None:
        if id(m) in seen:
            return
        seen.add(id(m))
        order.append(m)
        d = m.__dict__
        reg = d.get("_jp_reg") or {}
        for name, v in d.items():
            if not name.startswith("_jp_") and reg.get(name) == "m" and v is not None:
                visit(v)

    visit(root)
    return order


def _write_back(module: Module, aux: Any, others: list) -> None:
    """Store buffer / plain-array leaves into ``module``'s objects (``None`` = unchanged),
    through the usual assignment checks."""
    for m, (_, entries) in zip(_modules_in_leaf_order(module), aux.bp.mods):
        for e in entries:
            if e[0] == "b" and e[2] is not None and others[e[2]] is not None:
                setattr(m, e[1], others[e[2]])
            elif e[0] == "a":
                s, n = e[3], e[4]
                part = others[s:s + n]
                if all(v is None for v in part):
                    continue
                v = part[0] if e[2] is None else jax.tree_util.tree_unflatten(e[2], part)
                setattr(m, e[1], v)


def checkpoint(function: Callable[..., Any], *args: Any, use_reentrant: Any = None,
               preserve_rng_state: bool = True, **kwargs: Any) -> Any:
    """``function(*args, **kwargs)`` with its activations recomputed in the backward pass.

    ``function`` is a module (``checkpoint(self.block, x)``) or a bound method of one; its
    parameters are differentiated through and the state its forward updates is written
    back once (torch's ``use_reentrant=False`` semantics, and the same dropout mask in
    the recomputation). A plain function is wrapped in ``jax.checkpoint`` as it is: it must
    not update module state (pass the module instead). Array arguments are traced;
    others (flags, ``None``) are passed through unchanged. ``use_reentrant`` and
    ``preserve_rng_state`` are accepted for torch compatibility and ignored.

    Example:
        >>> from jparam.utils.checkpoint import checkpoint
        >>> block = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.ReLU())
        >>> y = checkpoint(block, jnp.ones((3, 4)))
        >>> int(block[1].num_batches_tracked)
        1
    """
    leaves, treedef = jax.tree_util.tree_flatten((args, kwargs))
    where = [i for i, v in enumerate(leaves) if _is_array(v)]
    statics = list(leaves)

    def rebuild(arrays):
        full = list(statics)
        for i, a in zip(where, arrays):
            full[i] = a
        return jax.tree_util.tree_unflatten(treedef, full)

    arrays = [leaves[i] for i in where]
    if isinstance(function, Module):
        module, call = function, lambda m, a, k: m(*a, **k)
    elif isinstance(getattr(function, "__self__", None), Module):
        module, fn = function.__self__, function.__func__
        call = lambda m, a, k: fn(m, *a, **k)  # noqa: E731
    else:
        def plain(arrays):
            a, k = rebuild(arrays)
            return function(*a, **k)

        return jax.checkpoint(plain)(arrays)

    mleaves, aux = fl.flatten_module(module)
    base = len(aux.bp.params) + aux.bp.n_grads
    changed: list = []

    def pure(mleaves, arrays):
        m = fl.unflatten_module(aux, list(mleaves))
        a, k = rebuild(arrays)
        out = call(m, a, k)
        new, new_aux = fl.flatten_module(m)
        if new_aux != aux or any(x is not y for x, y in zip(new[:base], mleaves[:base])):
            raise ValueError(
                f"checkpoint: the forward of {type(module).__name__} changed its structure or "
                "its parameters (registered a new attribute, changed a static value, a dtype "
                "or a parameter's data); inside checkpoint only the values of existing "
                "buffers and arrays may change")
        changed[:] = [i for i in range(base, len(new)) if new[i] is not mleaves[i]]
        return out, [new[i] for i in changed]

    out, updates = jax.checkpoint(pure)(list(mleaves), arrays)
    if updates:
        others: list = [None] * (len(mleaves) - base)
        for i, v in zip(changed, updates):
            others[i - base] = v
        _write_back(module, aux, others)
    return out
