"""``autocast``: torch's per-op mixed-precision policy, applied while a function is traced.

Inside ``with jparam.autocast(...)``, the ``jparam.nn.functional`` ops (and the layers built on
them) cast their floating inputs on entry, the way ``torch.autocast`` does:

* **low precision** (``cast_for_matmul``): linear, conv / conv_transpose, prelu,
  scaled_dot_product_attention, multi_head_attention_forward, the RNN/LSTM/GRU ops and cells.
  Parameters stay float32 (master weights); the cast is an op inside the traced function, so
  gradients flow back through it and arrive in float32.
* **float32** (``cast_to_float32``): softmax, softmin, log_softmax, the norms (batch, instance,
  layer, group, RMS), every loss, softplus, cosine_similarity, normalize, pdist / cdist, and the
  softmax inside attention.
* everything else runs in the dtype of its inputs (JAX's type promotion; float64 is never cast).

The state lives in a ``contextvars.ContextVar`` (per thread and per asyncio task) and is read
only while tracing. The same value is entered into a ``jax.make_user_context`` context, which is
part of ``jax.jit``'s cache key: a jitted function called under and outside ``autocast`` is traced
once for each and never reuses the other's program.
"""
from __future__ import annotations

import contextlib
import contextvars
import threading
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["autocast", "is_autocast_enabled", "get_autocast_dtype", "cast_for_matmul",
           "cast_to_float32"]

_DEVICE_TYPES = ("cuda", "cpu", "gpu", "tpu", "xpu")
_DEFAULT_DTYPE = {"cuda": jnp.float16, "gpu": jnp.float16, "xpu": jnp.float16,
                  "cpu": jnp.bfloat16, "tpu": jnp.bfloat16}   # torch's defaults per device
_LOW_DTYPES = (jnp.dtype(jnp.float16), jnp.dtype(jnp.bfloat16))


class _State(NamedTuple):
    device_type: str
    dtype: Any           # a numpy dtype (hashable): float16 or bfloat16
    enabled: bool


_STATE: contextvars.ContextVar[Optional[_State]] = contextvars.ContextVar("jparam_autocast",
                                                                          default=None)
# Keys jit's caches on the policy (thread-local inside JAX); created once, at import.
_JIT_KEY = jax.make_user_context(None) if hasattr(jax, "make_user_context") else None


def _as_dtype(dtype: Any, fname: str) -> np.dtype:
    if dtype is not None and type(dtype).__module__ == "torch":   # torch.bfloat16 -> "bfloat16"
        dtype = str(dtype).rpartition(".")[2]
    try:
        dt = jnp.dtype(dtype)
    except TypeError:
        raise TypeError(f"{fname}: dtype must be jnp.float16 or jnp.bfloat16, got {dtype!r}") from None
    if dt not in _LOW_DTYPES:
        raise ValueError(f"{fname}: dtype must be float16 or bfloat16 (the low-precision compute "
                         f"dtype; parameters stay float32), got {dt}")
    return dt


class autocast(contextlib.ContextDecorator):
    """Mixed precision for the ops traced inside it, with ``torch.autocast``'s per-op policy.

    Wrap the forward pass (and the loss) inside the jitted step; leave ``backward`` and the
    optimizer step outside, as in torch. ``dtype`` defaults to torch's per-device default
    (``float16`` for ``"cuda"``, ``bfloat16`` for ``"cpu"``); on any JAX backend the policy is
    the same: ``device_type`` only selects that default. ``enabled=False`` turns it off inside
    an enclosing ``autocast``. Also usable as a decorator. ``cache_enabled`` is accepted and
    ignored (XLA deduplicates the casts).

    Example:
        >>> model = nn.Linear(4, 2)
        >>> with jparam.autocast("cpu", dtype=jnp.bfloat16):
        ...     y = model(jnp.ones((3, 4)))
        >>> y.dtype, model.weight.dtype
        (dtype(bfloat16), dtype('float32'))
    """

    def __init__(self, device_type: str = "cuda", dtype: Any = None, enabled: bool = True,
                 cache_enabled: Optional[bool] = None) -> None:
        if not isinstance(device_type, str) or device_type.split(":")[0] not in _DEVICE_TYPES:
            raise ValueError(f"autocast: device_type must be one of {_DEVICE_TYPES}, got "
                             f"{device_type!r}")
        if not isinstance(enabled, bool):
            raise TypeError(f"autocast: enabled must be a bool, got {type(enabled).__name__}")
        device_type = device_type.split(":")[0]
        self.device = device_type
        self.fast_dtype = _as_dtype(_DEFAULT_DTYPE[device_type] if dtype is None else dtype,
                                    "autocast")
        self._enabled = enabled
        self._local = threading.local()      # one instance may be entered from several threads

    def _recreate_cm(self) -> "autocast":      # as a decorator: a fresh context per call
        return autocast(self.device, self.fast_dtype, self._enabled)

    def __enter__(self) -> "autocast":
        state = _State(self.device, self.fast_dtype, self._enabled)
        jit_ctx = None
        if _JIT_KEY is not None:
            jit_ctx = _JIT_KEY((state.device_type, state.dtype.name, state.enabled))
            jit_ctx.__enter__()
        if not hasattr(self._local, "tokens"):
            self._local.tokens = []
        self._local.tokens.append((_STATE.set(state), jit_ctx))
        return self

    def __exit__(self, *exc: Any) -> None:
        token, jit_ctx = self._local.tokens.pop()
        _STATE.reset(token)
        if jit_ctx is not None:
            jit_ctx.__exit__(*exc)


def _active() -> Optional[_State]:
    s = _STATE.get()
    return s if s is not None and s.enabled else None


def is_autocast_enabled(device_type: Optional[str] = None) -> bool:
    """Whether an enabled ``autocast`` is active here (for ``device_type``, if given).

    Example:
        >>> with jparam.autocast("cpu"):
        ...     jparam.amp.is_autocast_enabled()
        True
    """
    s = _active()
    return s is not None and (device_type is None or device_type.split(":")[0] == s.device_type)


def get_autocast_dtype(device_type: str = "cuda") -> np.dtype:
    """The low-precision dtype of the active ``autocast`` (torch's default if none is active).

    Example:
        >>> with jparam.autocast("cuda", dtype=jnp.bfloat16):
        ...     jparam.amp.get_autocast_dtype("cuda")
        dtype(bfloat16)
    """
    s = _active()
    if s is not None and s.device_type == device_type.split(":")[0]:
        return s.dtype
    return jnp.dtype(_DEFAULT_DTYPE[device_type.split(":")[0]])


def _castable(x: Any) -> bool:
    dt = getattr(x, "dtype", None)
    return (dt is not None and not isinstance(x, (bool, int, float, complex))
            and jnp.issubdtype(dt, jnp.floating) and jnp.dtype(dt) != jnp.float64)


def _cast(xs: tuple, dtype: Any) -> Any:
    out = tuple(jnp.asarray(x).astype(dtype) if _castable(x) and x.dtype != dtype else x
                for x in xs)
    return out[0] if len(out) == 1 else out


def cast_for_matmul(*arrays: Any) -> Any:
    """Under an active ``autocast``, its low dtype for every floating array (float64 and
    non-arrays pass unchanged); otherwise the arguments unchanged. One argument in, one out;
    several in, a tuple out. ``None`` passes through.

    Example:
        >>> x, w = jnp.ones((2, 3)), jnp.ones((4, 3))
        >>> with jparam.autocast("cpu"):
        ...     x, w = jparam.amp.cast_for_matmul(x, w)
        >>> x.dtype, w.dtype
        (dtype(bfloat16), dtype(bfloat16))
    """
    s = _active()
    if s is None:
        return arrays[0] if len(arrays) == 1 else arrays
    return _cast(arrays, s.dtype)


def cast_to_float32(*arrays: Any) -> Any:
    """Under an active ``autocast``, float32 for every floating array (float64 and non-arrays
    pass unchanged); otherwise the arguments unchanged. For ops torch autocasts to float32
    (softmax, norms, losses, ``exp``/``log``...): use it around raw ``jnp`` calls.

    Example:
        >>> h = jnp.ones(3, jnp.bfloat16)
        >>> with jparam.autocast("cpu"):
        ...     jnp.exp(jparam.amp.cast_to_float32(h)).dtype
        dtype('float32')
    """
    if _active() is None:
        return arrays[0] if len(arrays) == 1 else arrays
    return _cast(arrays, jnp.float32)
