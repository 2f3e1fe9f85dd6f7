"""Models too big for one device: build abstractly, place, then create the arrays in their shards.

``jax.eval_shape(lambda: GPT(cfg))`` is jparam's meta device: the constructor runs with
every array abstract (a ``jax.ShapeDtypeStruct``), so nothing is allocated on a device.
:func:`fully_shard` / :func:`parallelize_module` give those structs their shardings, and
:func:`materialize` (initialise on the host, send each device its shards) or
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
    """Build the model with its constructor ``fn`` in host memory, then send each device only
    its shards of every array, as placed in the abstract model ``like``.

    The constructor runs on JAX's CPU backend (host RAM holds the model once, as when torch
    users build on CPU before sharding); ``jax.device_put`` then transfers each shard to its
    device, so no accelerator ever holds more than its shards.  Parameters get the values an
    eager ``fn()`` gets from the same ``jparam.manual_seed`` state.

    Example:
        >>> mesh = jax.make_mesh((1,), ("fsdp",))
        >>> abstract = jax.eval_shape(lambda: nn.Linear(64, 32))
        >>> _ = jparam.distributed.fully_shard(abstract, mesh)
        >>> model = jparam.distributed.materialize(lambda: nn.Linear(64, 32), abstract)
        >>> model.weight.sharding.spec
        P(None, 'fsdp')
    """
    _abstract_model(like, "materialize")
    sh = shardings(like)
    try:
        host = jax.devices("cpu")[0]
    except RuntimeError:  # no CPU backend (JAX_PLATFORMS without cpu): build on the default device
        host = None
    if host is None:
        model = fn()
    else:
        with jax.default_device(host):
            model = fn()
    if jax.tree_util.tree_structure(model) != jax.tree_util.tree_structure(like):
        raise ValueError(f"materialize: fn() built a {type(model).__name__} whose structure differs from "
                         f"the abstract {type(like).__name__} it should be placed like")
    return jax.device_put(model, sh)


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
