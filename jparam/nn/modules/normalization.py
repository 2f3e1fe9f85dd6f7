"""LayerNorm, GroupNorm, RMSNorm, LocalResponseNorm and InstanceNorm1d/2d/3d (torch semantics)."""
from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp

from jparam._module import Module
from jparam._parameter import Parameter, _unwrap
from jparam.nn import functional as F
from jparam.nn.modules.batchnorm import _BatchNorm
from jparam.nn import init

__all__ = ["LayerNorm", "GroupNorm", "RMSNorm", "LocalResponseNorm", "InstanceNorm1d",
           "InstanceNorm2d", "InstanceNorm3d"]


def _shape(normalized_shape):
    if isinstance(normalized_shape, int):
        return (normalized_shape,)
    return tuple(int(s) for s in normalized_shape)


def _register_affine(module: Module, shape: tuple, affine: bool, bias: bool, dtype: Any) -> None:
    """Register ``weight`` and ``bias`` of ``shape`` (``None`` when not ``affine``, ``bias``
    ``None`` when not ``bias``), as torch's norm layers do; :func:`_reset_affine` fills them."""
    if affine:
        module.weight = Parameter(init._empty(shape, dtype))
    else:
        module.register_parameter("weight", None)
    if affine and bias:
        module.bias = Parameter(init._empty(shape, dtype))
    else:
        module.register_parameter("bias", None)


def _reset_affine(module: Module) -> None:
    """torch's init of a norm layer's affine parameters: ``weight`` ones, ``bias`` zeros."""
    if getattr(module, "weight", None) is not None:
        init.ones_(module.weight)
    if getattr(module, "bias", None) is not None:
        init.zeros_(module.bias)


class LayerNorm(Module):
    """Normalise over the trailing ``normalized_shape`` dims; weight 1, bias 0 at init.

    Example:
        >>> ln = nn.LayerNorm(4)
        >>> ln(jnp.ones((2, 4))).shape
        (2, 4)
    """

    def __init__(self, normalized_shape: Any, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        self.normalized_shape = _shape(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        _register_affine(self, self.normalized_shape, elementwise_affine, bias, dtype)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``weight`` to ones and ``bias`` to zeros (torch's init), in place."""
        _reset_affine(self)

    def forward(self, input: jax.Array) -> jax.Array:
        return F.layer_norm(input, self.normalized_shape, _unwrap(self.weight), _unwrap(self.bias),
                            self.eps)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}, bias={self.bias is not None}")


class GroupNorm(Module):
    """Normalise ``num_channels`` in ``num_groups`` groups; per-channel affine.

    Example:
        >>> gn = nn.GroupNorm(2, 4)
        >>> gn(jnp.ones((2, 4, 3, 3))).shape
        (2, 4, 3, 3)
    """

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True,
                 device: Any = None, dtype: Any = None, *, bias: bool = True) -> None:
        super().__init__()
        if num_channels % num_groups != 0:
            raise ValueError(f"num_channels ({num_channels}) must be divisible by num_groups "
                             f"({num_groups})")
        self.num_groups = num_groups
        self.num_channels = num_channels
        self.eps = eps
        self.affine = affine
        _register_affine(self, (num_channels,), affine, bias, dtype)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``weight`` to ones and ``bias`` to zeros (torch's init), in place."""
        _reset_affine(self)

    def forward(self, input: jax.Array) -> jax.Array:
        return F.group_norm(input, self.num_groups, _unwrap(self.weight), _unwrap(self.bias), self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, "
                f"bias={self.bias is not None}")


class RMSNorm(Module):
    """``x / sqrt(mean(x²) + eps) * weight`` over trailing dims (``eps=None``: dtype eps).

    Example:
        >>> nn.RMSNorm(4)(jnp.ones((2, 4))).shape
        (2, 4)
    """

    def __init__(self, normalized_shape: Any, eps: Optional[float] = None,
                 elementwise_affine: bool = True, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        self.normalized_shape = _shape(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = Parameter(init._empty(self.normalized_shape, dtype))
        else:
            self.register_parameter("weight", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``weight`` to ones and ``bias`` to zeros (torch's init), in place."""
        _reset_affine(self)

    def forward(self, input: jax.Array) -> jax.Array:
        return F.rms_norm(input, self.normalized_shape, _unwrap(self.weight), self.eps)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")


class LocalResponseNorm(Module):
    """Local response normalisation across channels.

    Example:
        >>> nn.LocalResponseNorm(2)(jnp.ones((1, 4, 3, 3))).shape
        (1, 4, 3, 3)
    """

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0) -> None:
        super().__init__()
        self.size = size
        self.alpha = alpha
        self.beta = beta
        self.k = k

    def forward(self, input: jax.Array) -> jax.Array:
        return F.local_response_norm(input, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


class _InstanceNorm(_BatchNorm):
    _n = 0

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Optional[float] = 0.1,
                 affine: bool = False, track_running_stats: bool = False, device: Any = None,
                 dtype: Any = None, *, bias: bool = True) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype,
                         bias=bias)

    def forward(self, input: jax.Array) -> jax.Array:
        nd = jnp.ndim(input)
        if nd not in (self._n + 1, self._n + 2):
            raise ValueError(f"expected {self._n + 1}D or {self._n + 2}D input (got {nd}D input)")
        unbatched = nd == self._n + 1
        x = input[None] if unbatched else input
        if x.shape[1] != self.num_features and self.affine:
            raise ValueError(f"expected input's size at dim={nd - self._n - 1} to match "
                             f"num_features ({self.num_features}), but got: {x.shape[1]}.")
        use_input_stats = self.training or not self.track_running_stats
        out = F.instance_norm(x, self.running_mean, self.running_var, _unwrap(self.weight),
                              _unwrap(self.bias), use_input_stats,
                              self.momentum if self.momentum is not None else 0.0, self.eps)
        if isinstance(out, tuple):
            out, self.running_mean, self.running_var = out
        return out[0] if unbatched else out


class InstanceNorm1d(_InstanceNorm):
    """Instance norm over ``(N, C, L)`` or ``(C, L)`` (affine and running stats off by default).

    Example:
        >>> nn.InstanceNorm1d(3)(jnp.ones((2, 3, 5))).shape
        (2, 3, 5)
    """

    _n = 1


class InstanceNorm2d(_InstanceNorm):
    """Instance norm over NCHW or CHW inputs.

    Example:
        >>> nn.InstanceNorm2d(3, affine=True)(jnp.ones((2, 3, 4, 4))).shape
        (2, 3, 4, 4)
    """

    _n = 2


class InstanceNorm3d(_InstanceNorm):
    """Instance norm over NCDHW or CDHW inputs.

    Example:
        >>> nn.InstanceNorm3d(3)(jnp.ones((2, 3, 2, 2, 2))).shape
        (2, 3, 2, 2, 2)
    """

    _n = 3
