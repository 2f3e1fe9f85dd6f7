"""Host-side random state for parameter initialisation (``jparam.manual_seed``).

torch draws initial weights from one global generator; jparam does the same with a
JAX key held on the host.  ``next_key()`` splits it, so every draw is fresh and the
whole sequence is reproducible from ``manual_seed``.
"""
from __future__ import annotations

import threading

import jax
import numpy as np

__all__ = ["manual_seed", "next_key", "initial_seed", "get_rng_state", "set_rng_state"]

_lock = threading.Lock()
_state: dict = {"seed": 0, "key": None}


def _fresh(seed: int) -> np.ndarray:
    # Keys are kept as raw uint32[2] data so they are ordinary arrays (stackable,
    # savable, untouched by ``Module.to``), whatever JAX's default PRNG impl is.
    with jax.ensure_compile_time_eval():  # concrete even while a constructor is traced
        return np.asarray(jax.random.key_data(jax.random.key(seed)))


def manual_seed(seed: int) -> None:
    """Seed the generator used for parameter initialisation and dropout keys.

    Example:
        >>> import jparam
        >>> jparam.manual_seed(0)
        >>> a = nn.Linear(2, 2).weight
        >>> jparam.manual_seed(0)
        >>> np.array_equal(a, nn.Linear(2, 2).weight)    # the same seed, the same init
        True
    """
    if not isinstance(seed, (int, np.integer)):
        raise TypeError(f"manual_seed expects an int, got {type(seed).__name__}")
    with _lock:
        _state["seed"] = int(seed)
        _state["key"] = _fresh(int(seed))


def initial_seed() -> int:
    """The seed last given to :func:`manual_seed` (0 by default)."""
    return _state["seed"]


def next_key() -> jax.Array:
    """Split the global key and return a fresh ``jax.random`` key (typed).

    Example:
        >>> k = jparam.random.next_key()
        >>> jax.random.normal(k, (2,)).shape
        (2,)
    """
    # the host generator advances concretely even while a constructor is traced
    # (jax.eval_shape / jax.jit of a model's constructor: meta-device init)
    with _lock, jax.ensure_compile_time_eval():
        if _state["key"] is None:
            _state["key"] = _fresh(_state["seed"])
        key = jax.random.wrap_key_data(_state["key"])
        new, sub = jax.random.split(key)
        _state["key"] = np.asarray(jax.random.key_data(new))
    return sub


def next_key_data() -> np.ndarray:
    """Like :func:`next_key` but returns the raw ``uint32`` key data (a NumPy array)."""
    key = next_key()
    with jax.ensure_compile_time_eval():
        return np.asarray(jax.random.key_data(key))


def get_rng_state() -> np.ndarray:
    """The generator state as a ``uint32`` array (for checkpoints)."""
    with _lock:
        if _state["key"] is None:
            _state["key"] = _fresh(_state["seed"])
        return np.array(_state["key"], copy=True)


def set_rng_state(state) -> None:
    """Restore a state returned by :func:`get_rng_state`."""
    arr = np.asarray(state, dtype=np.uint32)
    if arr.shape != get_rng_state().shape:
        raise ValueError(f"rng state must have shape {get_rng_state().shape}, got {arr.shape}")
    with _lock:
        _state["key"] = arr.copy()


def as_key(key):
    """A typed ``jax.random`` key from a typed key or raw ``uint32`` key data (NumPy or JAX),
    as every ``key=`` / ``key_rng=`` / ``generator=`` argument in jparam accepts."""
    if isinstance(key, (np.ndarray, jax.Array)) and not jax.dtypes.issubdtype(
            key.dtype, jax.dtypes.prng_key):
        return jax.random.wrap_key_data(np.asarray(key, np.uint32) if isinstance(key, np.ndarray)
                                        else key.astype(np.uint32))
    return key


def module_key(module, name: str = "_rng") -> jax.Array:
    """Draw a fresh key from a module's own key leaf and store the advanced key back.

    Layers that need randomness in ``forward`` (dropout) keep a ``uint32[2]`` key as a plain
    array attribute created from the global generator at construction. Advancing it is a
    buffer update in ``forward``, so under ``jax.jit`` the model returned by
    :func:`jparam.backward` / :func:`jparam.call` carries the next key: a fresh mask every
    step with no extra argument, reproducible from :func:`manual_seed`.
    """
    data = getattr(module, name)
    key = jax.random.wrap_key_data(data)
    new, sub = jax.random.split(key)
    setattr(module, name, jax.random.key_data(new))
    return sub


def new_key_leaf() -> jax.Array:
    """A fresh ``uint32`` key (as data) for a module's ``_rng`` attribute."""
    import jax.numpy as jnp

    return jnp.asarray(next_key_data())


def _host_rng() -> np.random.Generator:
    # a NumPy generator seeded from a fresh split of the global key: reproducible from
    # manual_seed, and free of the per-shape compilation eager jax.random pays at setup time
    return np.random.default_rng(np.asarray(next_key_data(), dtype=np.uint32))


def uniform(shape, dtype=None, minval: float = 0.0, maxval: float = 1.0):
    """Host-side ``U(minval, maxval)`` draw for parameter initialisation (a jax array)."""
    import jax.numpy as jnp

    v = _host_rng().uniform(minval, maxval, size=tuple(shape))
    return jnp.asarray(v.astype(np.float32)).astype(dtype or jnp.float32)


def normal(shape, dtype=None):
    """Host-side standard normal draw for parameter initialisation (a jax array)."""
    import jax.numpy as jnp

    v = _host_rng().standard_normal(size=tuple(shape), dtype=np.float32)
    return jnp.asarray(v).astype(dtype or jnp.float32)
