"""Pooling layers: max/avg (1-3d), adaptive avg/max (1-3d), LP pooling (torch semantics)."""
from __future__ import annotations

from typing import Any, Optional

import jax

from jparam._module import Module
from jparam.nn import functional as F
from jparam.nn._functional._conv import _ntuple

__all__ = ["MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d",
           "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d", "AdaptiveMaxPool1d",
           "AdaptiveMaxPool2d", "AdaptiveMaxPool3d", "LPPool1d", "LPPool2d", "LPPool3d"]


class _MaxPoolNd(Module):
    _n = 0

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
                 return_indices: bool = False, ceil_mode: bool = False) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if (stride is not None) else kernel_size
        self.padding = padding
        self.dilation = dilation
        self.return_indices = return_indices
        self.ceil_mode = ceil_mode

    def forward(self, input: jax.Array):
        fn = self._pool
        return fn(input, self.kernel_size, self.stride, self.padding, self.dilation,
                  ceil_mode=self.ceil_mode, return_indices=self.return_indices)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class MaxPool1d(_MaxPoolNd):
    """1-d max pooling (``padding``, ``dilation``, ``ceil_mode``, ``return_indices`` as torch).

    Example:
        >>> nn.MaxPool1d(2)(jnp.ones((1, 3, 8))).shape
        (1, 3, 4)
    """

    _n = 1
    _pool = staticmethod(F.max_pool1d)


class MaxPool2d(_MaxPoolNd):
    """2-d max pooling over NCHW.

    Example:
        >>> nn.MaxPool2d(3, stride=2, padding=1)(jnp.ones((1, 3, 8, 8))).shape
        (1, 3, 4, 4)
    """

    _n = 2
    _pool = staticmethod(F.max_pool2d)


class MaxPool3d(_MaxPoolNd):
    """3-d max pooling over NCDHW.

    Example:
        >>> nn.MaxPool3d(2)(jnp.ones((1, 3, 4, 4, 4))).shape
        (1, 3, 2, 2, 2)
    """

    _n = 3
    _pool = staticmethod(F.max_pool3d)


class AvgPool1d(Module):
    """1-d average pooling (``ceil_mode``, ``count_include_pad`` as torch).

    Example:
        >>> nn.AvgPool1d(2)(jnp.ones((1, 3, 8))).shape
        (1, 3, 4)
    """

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0,
                 ceil_mode: bool = False, count_include_pad: bool = True) -> None:
        super().__init__()
        self.kernel_size = _ntuple(kernel_size, 1, "kernel_size")
        self.stride = _ntuple(stride if stride is not None else kernel_size, 1, "stride")
        self.padding = _ntuple(padding, 1, "padding")
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad

    def forward(self, input: jax.Array) -> jax.Array:
        return F.avg_pool1d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class _AvgPoolNd(Module):
    _n = 0

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0,
                 ceil_mode: bool = False, count_include_pad: bool = True,
                 divisor_override: Optional[int] = None) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if (stride is not None) else kernel_size
        self.padding = padding
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad
        self.divisor_override = divisor_override

    def forward(self, input: jax.Array) -> jax.Array:
        fn = self._pool
        return fn(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                  self.count_include_pad, self.divisor_override)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool2d(_AvgPoolNd):
    """2-d average pooling over NCHW (``divisor_override`` as torch).

    Example:
        >>> nn.AvgPool2d(2)(jnp.ones((1, 3, 8, 8))).shape
        (1, 3, 4, 4)
    """

    _n = 2
    _pool = staticmethod(F.avg_pool2d)


class AvgPool3d(_AvgPoolNd):
    """3-d average pooling over NCDHW.

    Example:
        >>> nn.AvgPool3d(2)(jnp.ones((1, 3, 4, 4, 4))).shape
        (1, 3, 2, 2, 2)
    """

    _n = 3
    _pool = staticmethod(F.avg_pool3d)


class _AdaptiveNd(Module):
    _n = 0
    _kind = ""

    def __init__(self, output_size: Any, return_indices: bool = False) -> None:
        super().__init__()
        self.output_size = output_size
        if self._kind == "max":
            self.return_indices = return_indices
        elif return_indices:
            raise TypeError("adaptive average pooling takes no return_indices")

    def forward(self, input: jax.Array) -> jax.Array:
        fn = self._pool
        if self._kind == "max":
            return fn(input, self.output_size, self.return_indices)
        return fn(input, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveAvgPool1d(_AdaptiveNd):
    """Average over torch's adaptive windows to a fixed output length.

    Example:
        >>> nn.AdaptiveAvgPool1d(3)(jnp.ones((1, 2, 7))).shape
        (1, 2, 3)
    """

    _n, _kind = 1, "avg"
    _pool = staticmethod(F.adaptive_avg_pool1d)

    def __init__(self, output_size: Any) -> None:
        super().__init__(output_size)


class AdaptiveAvgPool2d(_AdaptiveNd):
    """2-d adaptive average pooling (``None`` keeps that input size).

    Example:
        >>> nn.AdaptiveAvgPool2d((1, 1))(jnp.ones((2, 8, 7, 7))).shape
        (2, 8, 1, 1)
    """

    _n, _kind = 2, "avg"
    _pool = staticmethod(F.adaptive_avg_pool2d)

    def __init__(self, output_size: Any) -> None:
        super().__init__(output_size)


class AdaptiveAvgPool3d(_AdaptiveNd):
    """3-d adaptive average pooling.

    Example:
        >>> nn.AdaptiveAvgPool3d(1)(jnp.ones((2, 8, 3, 3, 3))).shape
        (2, 8, 1, 1, 1)
    """

    _n, _kind = 3, "avg"
    _pool = staticmethod(F.adaptive_avg_pool3d)

    def __init__(self, output_size: Any) -> None:
        super().__init__(output_size)


class AdaptiveMaxPool1d(_AdaptiveNd):
    """1-d adaptive max pooling (``return_indices=True`` is not supported).

    Example:
        >>> nn.AdaptiveMaxPool1d(3)(jnp.ones((1, 2, 7))).shape
        (1, 2, 3)
    """

    _n, _kind = 1, "max"
    _pool = staticmethod(F.adaptive_max_pool1d)


class AdaptiveMaxPool2d(_AdaptiveNd):
    """2-d adaptive max pooling.

    Example:
        >>> nn.AdaptiveMaxPool2d(2)(jnp.ones((1, 2, 7, 7))).shape
        (1, 2, 2, 2)
    """

    _n, _kind = 2, "max"
    _pool = staticmethod(F.adaptive_max_pool2d)


class AdaptiveMaxPool3d(_AdaptiveNd):
    """3-d adaptive max pooling.

    Example:
        >>> nn.AdaptiveMaxPool3d(2)(jnp.ones((1, 2, 4, 4, 4))).shape
        (1, 2, 2, 2, 2)
    """

    _n, _kind = 3, "max"
    _pool = staticmethod(F.adaptive_max_pool3d)


class _LPPoolNd(Module):
    _n = 0

    def __init__(self, norm_type: float, kernel_size: Any, stride: Any = None,
                 ceil_mode: bool = False) -> None:
        super().__init__()
        self.norm_type = norm_type
        self.kernel_size = kernel_size
        self.stride = stride
        self.ceil_mode = ceil_mode

    def forward(self, input: jax.Array) -> jax.Array:
        fn = self._pool
        return fn(input, float(self.norm_type), self.kernel_size, self.stride, self.ceil_mode)

    def extra_repr(self) -> str:
        return (f"norm_type={self.norm_type}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, ceil_mode={self.ceil_mode}")


class LPPool1d(_LPPoolNd):
    """Power-average pooling ``(Σ x^p)^(1/p)`` over 1-d windows.

    Example:
        >>> nn.LPPool1d(2, 2)(jnp.ones((1, 2, 8))).shape
        (1, 2, 4)
    """

    _n = 1
    _pool = staticmethod(F.lp_pool1d)


class LPPool2d(_LPPoolNd):
    """Power-average pooling over 2-d windows.

    Example:
        >>> nn.LPPool2d(2, 2)(jnp.ones((1, 2, 8, 8))).shape
        (1, 2, 4, 4)
    """

    _n = 2
    _pool = staticmethod(F.lp_pool2d)


class LPPool3d(_LPPoolNd):
    """Power-average pooling over 3-d windows.

    Example:
        >>> nn.LPPool3d(2, 2)(jnp.ones((1, 2, 4, 4, 4))).shape
        (1, 2, 2, 2, 2)
    """

    _n = 3
    _pool = staticmethod(F.lp_pool3d)
