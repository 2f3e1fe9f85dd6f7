"""Batch normalisation with running statistics updated in ``forward`` (torch semantics)."""
from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp

from jparam._module import Module
from jparam._parameter import Parameter

__all__ = ["BatchNorm1d"]


def _long_zero() -> jax.Array:
    return jnp.zeros((), jax.dtypes.canonicalize_dtype(jnp.int64))


class _BatchNorm(Module):
    _expected_ndims: tuple = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Optional[float] = 0.1,
                 affine: bool = True, track_running_stats: bool = True,
                 device: Any = None, dtype: Any = None, *, bias: bool = True) -> None:
        super().__init__()
        dt = jnp.dtype(dtype) if dtype is not None else jnp.float32
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = Parameter(jnp.ones((num_features,), dt))
            if bias:
                self.bias = Parameter(jnp.zeros((num_features,), dt))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", jnp.zeros((num_features,), dt))
            self.register_buffer("running_var", jnp.ones((num_features,), dt))
            self.register_buffer("num_batches_tracked", _long_zero())
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def _check_input_dim(self, input: jax.Array) -> None:
        if input.ndim not in self._expected_ndims:
            want = " or ".join(f"{n}D" for n in self._expected_ndims)
            raise ValueError(f"expected {want} input (got {input.ndim}D input)")

    def forward(self, input: jax.Array) -> jax.Array:
        self._check_input_dim(input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked = self.num_batches_tracked + 1
            if self.momentum is None:
                factor = 1.0 / self.num_batches_tracked.astype(jnp.float32)
        use_batch = self.training or (self.running_mean is None and self.running_var is None)
        axes = (0,) + tuple(range(2, input.ndim))
        shape = (1, -1) + (1,) * (input.ndim - 2)
        if use_batch:
            mean = jnp.mean(input, axis=axes)
            var = jnp.mean(jnp.square(input - mean.reshape(shape)), axis=axes)
            if self.training and self.running_mean is not None:
                n = input.size // input.shape[1]
                unbiased = var * (n / max(n - 1, 1))
                self.running_mean = ((1 - factor) * self.running_mean + factor * mean).astype(self.running_mean.dtype)
                self.running_var = ((1 - factor) * self.running_var + factor * unbiased).astype(self.running_var.dtype)
        else:
            mean, var = self.running_mean, self.running_var
        y = (input - mean.reshape(shape)) * jax.lax.rsqrt(var.reshape(shape) + self.eps)
        if self.weight is not None:
            y = y * self.weight.data.reshape(shape)
        if self.bias is not None:
            y = y + self.bias.data.reshape(shape)
        return y

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch norm over ``(N, C)`` or ``(N, C, L)`` inputs.

    Training: normalise with the batch mean and biased variance; update
    ``running_mean = (1-m) running_mean + m mean`` and ``running_var`` with the unbiased
    variance; ``num_batches_tracked += 1`` (``momentum=None``: cumulative average).
    Eval: normalise with the running statistics.

    Example:
        >>> bn = nn.BatchNorm1d(8)
    """

    _expected_ndims = (2, 3)
