"""Batch normalisation (1-3d) with running statistics updated in ``forward`` (torch semantics)."""
from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp

from jparam._module import Module
from jparam._parameter import Parameter, _unwrap
from jparam.nn import functional as F
from jparam.nn import init

__all__ = ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d"]


def _long_zero() -> jax.Array:
    return jnp.zeros((), jax.dtypes.canonicalize_dtype(jnp.int64))


class _BatchNorm(Module):
    _expected_ndims: tuple = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Optional[float] = 0.1,
                 affine: bool = True, track_running_stats: bool = True,
                 device: Any = None, dtype: Any = None, *, bias: bool = True) -> None:
        super().__init__()
        dt = init._dtype(dtype)
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = Parameter(init._empty((num_features,), dt))
            if bias:
                self.bias = Parameter(init._empty((num_features,), dt))
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
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        """Zero ``running_mean`` and ``num_batches_tracked``, fill ``running_var`` with ones."""
        if self.track_running_stats:
            self.running_mean = jnp.zeros_like(self.running_mean)
            self.running_var = jnp.ones_like(self.running_var)
            self.num_batches_tracked = _long_zero()

    def reset_parameters(self) -> None:
        """Reset the running statistics, ``weight`` to ones and ``bias`` to zeros (torch)."""
        self.reset_running_stats()
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def _check_input_dim(self, input: jax.Array) -> None:
        if input.ndim not in self._expected_ndims:
            want = " or ".join(f"{n}D" for n in self._expected_ndims)
            raise ValueError(f"expected {want} input (got {input.ndim}D input)")

    def forward(self, input: jax.Array) -> jax.Array:
        self._check_input_dim(input)
        if jnp.shape(input)[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}: expected {self.num_features} channels on "
                             f"dim 1, got input of shape {tuple(jnp.shape(input))}")
        factor = 0.0 if self.momentum is None else self.momentum
        tracked = None  # stored after the running statistics, which refuse a leaked tracer
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            tracked = self.num_batches_tracked + 1
            if self.momentum is None:
                factor = 1.0 / tracked.astype(jnp.float32)
        bn_training = self.training or (self.running_mean is None and self.running_var is None)
        use_stats = not self.training or self.track_running_stats
        rm = self.running_mean if use_stats else None
        rv = self.running_var if use_stats else None
        out = F.batch_norm(input, rm, rv, _unwrap(self.weight), _unwrap(self.bias), bn_training,
                           factor, self.eps)
        if isinstance(out, tuple):
            out, mean, var = out
            self.running_mean = mean
            self.running_var = var
        if tracked is not None:
            self.num_batches_tracked = tracked
        return out

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
        >>> [name for name, _ in bn.named_buffers()]
        ['running_mean', 'running_var', 'num_batches_tracked']
    """

    _expected_ndims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch norm over NCHW inputs (see :class:`BatchNorm1d` for the statistics).

    Example:
        >>> bn = nn.BatchNorm2d(8)
        >>> bn(jnp.ones((2, 8, 4, 4))).shape
        (2, 8, 4, 4)
    """

    _expected_ndims = (4,)


class BatchNorm3d(_BatchNorm):
    """Batch norm over NCDHW inputs (see :class:`BatchNorm1d` for the statistics).

    Example:
        >>> bn = nn.BatchNorm3d(8)
        >>> bn(jnp.ones((2, 8, 2, 4, 4))).shape
        (2, 8, 2, 4, 4)
    """

    _expected_ndims = (5,)
