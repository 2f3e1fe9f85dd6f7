"""Models too big for one device: build abstractly, place, then create the arrays in their shards.

``jax.eval_shape(lambda: GPT(cfg))`` is jparam's meta device: the constructor runs with
every array abstract (a ``jax.ShapeDtypeStruct``), so nothing is allocated.
:func:`fully_shard` / :func:`parallelize_module` give those structs their shardings, and
:func:`materialize` (the constructor compiled to create each device's shards) or
:func:`to_empty` + a sharded load creates the arrays directly in their shards.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from jparam._module import Module
from jparam.distributed._placement import shardings

__all__ = ["materialize", "to_empty"]


def _abstract_model(like: Any, fname: str) -> Module:
    if not isinstance(like, Module):
        raise TypeError(f"{fname}: expected the abstract model (jax.eval_shape of its constructor, "
                        f"placed by fully_shard / parallelize_module), got {type(like).__name__}")
    return like


def materialize(fn: Callable[[], Module], like: Module) -> Module:
    """Run the constructor ``fn`` so that every array is created directly in its shards, as
    placed in the abstract model ``like``: each device allocates only its shards, and no
    array of a parameter's full size exists on the host or on any one device.

    ``fn`` is traced under ``jax.jit(out_shardings=shardings(like))``.  While traced, the
    initialisers of :mod:`jparam.nn.init` draw with ``jax.random`` (XLA partitions the
    generator, so every device computes only its shard) from keys of jparam's generator:
    the same distributions as an eager ``fn()`` (torch's formulas), reproducible from
    ``jparam.manual_seed``, but another random stream than the eager NumPy draws.  To get
    exactly the values of an eager build, build eagerly and ``jax.device_put`` it, or load a
    checkpoint into :func:`to_empty`.

    Example:
        >>> mesh = jax.make_mesh((1,), ("fsdp",))
        >>> abstract = jax.eval_shape(lambda: nn.Linear(64, 32))
        >>> _ = jparam.distributed.fully_shard(abstract, mesh)
        >>> model = jparam.distributed.materialize(lambda: nn.Linear(64, 32), abstract)
        >>> model.weight.sharding.spec
        P(None, 'fsdp')
        >>> bool(jnp.abs(model.weight).max() <= 1 / 64 ** 0.5)     # U(±1/sqrt(in_features)), as torch
        True
    """
    _abstract_model(like, "materialize")
    sh = shardings(like)
    want = jax.tree_util.tree_structure(like)

    def build() -> Module:
        model = fn()
        if jax.tree_util.tree_structure(model) != want:
            raise ValueError(f"materialize: fn() built a {type(model).__name__} whose structure differs "
                             f"from the abstract {type(like).__name__} it should be placed like")
        return model

    return jax.jit(build, out_shardings=sh)()


def to_empty(like: Module) -> Module:
    """torch's ``module.to_empty()``: a concrete model of ``like``'s structure whose arrays
    are zeros created directly in ``like``'s shardings, ready for ``load_state_dict`` /
    ``jparam.load_sharded`` (which write into that placement).

    Example:
        >>> abstract = jax.eval_shape(lambda: nn.Linear(4, 2))
        >>> _ = jparam.distributed.replicate(abstract, jax.make_mesh((1,), ("data",)))
        >>> jparam.distributed.to_empty(abstract).weight.shape
        (2, 4)
    """
    _abstract_model(like, "to_empty")
    sh = shardings(like)
    return jax.jit(lambda: jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), like),
                   out_shardings=sh)()
