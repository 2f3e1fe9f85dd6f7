"""Convolutions: Conv1d/2d/3d and ConvTranspose1d/2d/3d (torch layouts, init and repr)."""
from __future__ import annotations

from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp

from jparam._module import Module
from jparam._parameter import Parameter, _unwrap
from jparam.nn import functional as F
from jparam.nn._functional._conv import _ntuple
from jparam.nn import init
from jparam.nn.modules.linear import _reset_kaiming

__all__ = ["Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"]

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


class _ConvNd(Module):
    _n: int = 0
    _transposed: bool = False

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation,
                 output_padding, groups, bias, padding_mode, dtype) -> None:
        super().__init__()
        n = self._n
        if groups <= 0:
            raise ValueError("groups must be a positive integer")
        if in_channels % groups != 0:
            raise ValueError("in_channels must be divisible by groups")
        if out_channels % groups != 0:
            raise ValueError("out_channels must be divisible by groups")
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {list(_PADDING_MODES)}, but got "
                             f"padding_mode='{padding_mode}'")
        kernel_size = _ntuple(kernel_size, n, "kernel_size")
        stride = _ntuple(stride, n, "stride")
        dilation = _ntuple(dilation, n, "dilation")
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"Invalid padding string {padding!r}, should be one of "
                                 "{'valid', 'same'}")
            if padding == "same" and any(s != 1 for s in stride):
                raise ValueError("padding='same' is not supported for strided convolutions")
        else:
            padding = _ntuple(padding, n, "padding")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.transposed = self._transposed
        self.output_padding = _ntuple(output_padding, n, "output_padding")
        self.groups = groups
        self.padding_mode = padding_mode
        if isinstance(padding, str):
            rev = [0, 0] * n
            if padding == "same":
                for d, k, i in zip(dilation, kernel_size, range(n - 1, -1, -1)):
                    total = d * (k - 1)
                    rev[2 * i] = total // 2
                    rev[2 * i + 1] = total - total // 2
        else:
            rev = [p for p in reversed(padding) for _ in range(2)]
        self._reversed_padding_repeated_twice = tuple(rev)
        if self._transposed:
            wshape = (in_channels, out_channels // groups) + kernel_size
        else:
            wshape = (out_channels, in_channels // groups) + kernel_size
        self.weight = Parameter(init._empty(wshape, dtype))
        if bias:
            self.bias = Parameter(init._empty((out_channels,), dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Redraw ``weight`` and ``bias`` from torch's default init (in place)."""
        _reset_kaiming(self.weight, self.bias)

    def extra_repr(self) -> str:
        n = self._n
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
             f", stride={self.stride}")
        if self.padding != (0,) * n:
            s += f", padding={self.padding}"
        if self.dilation != (1,) * n:
            s += f", dilation={self.dilation}"
        if self.output_padding != (0,) * n:
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


class _Conv(_ConvNd):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, dilation: Any = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", device: Any = None, dtype: Any = None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, 0,
                         groups, bias, padding_mode, dtype)

    def forward(self, input: jax.Array) -> jax.Array:
        fn = self._conv
        if self.padding_mode != "zeros":
            mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
            x = F.pad(input, self._reversed_padding_repeated_twice, mode=mode)
            return fn(x, _unwrap(self.weight), _unwrap(self.bias), self.stride, 0, self.dilation,
                      self.groups)
        return fn(input, _unwrap(self.weight), _unwrap(self.bias), self.stride, self.padding,
                  self.dilation, self.groups)


class Conv1d(_Conv):
    """1-d convolution over ``(N, C_in, L)``; weight ``(C_out, C_in/groups, k)``.

    ``padding`` may be an int, a tuple, ``'same'`` or ``'valid'``; ``padding_mode`` one of
    ``'zeros'``, ``'reflect'``, ``'replicate'``, ``'circular'``. Init as torch:
    weight and bias ``~ U(±1/sqrt(fan_in))``.

    Example:
        >>> nn.Conv1d(2, 4, 3, padding=1)(jnp.ones((1, 2, 8))).shape
        (1, 4, 8)
    """

    _n = 1
    _conv = staticmethod(F.conv1d)


class Conv2d(_Conv):
    """2-d convolution over NCHW; weight ``(C_out, C_in/groups, kH, kW)``.

    Example:
        >>> nn.Conv2d(3, 8, 3, padding=1)(jnp.ones((1, 3, 16, 16))).shape
        (1, 8, 16, 16)
    """

    _n = 2
    _conv = staticmethod(F.conv2d)


class Conv3d(_Conv):
    """3-d convolution over NCDHW; weight ``(C_out, C_in/groups, kD, kH, kW)``.

    Example:
        >>> nn.Conv3d(2, 4, 3)(jnp.ones((1, 2, 5, 5, 5))).shape
        (1, 4, 3, 3, 3)
    """

    _n = 3
    _conv = staticmethod(F.conv3d)


class _ConvTranspose(_ConvNd):
    _transposed = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, output_padding: Any = 0, groups: int = 1, bias: bool = True,
                 dilation: Any = 1, padding_mode: str = "zeros", device: Any = None,
                 dtype: Any = None) -> None:
        if padding_mode != "zeros":
            raise ValueError(f'Only "zeros" padding mode is supported for {type(self).__name__}')
        if isinstance(padding, str):
            raise ValueError(f"{type(self).__name__} does not support string padding, got {padding!r}")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         output_padding, groups, bias, padding_mode, dtype)

    def _output_padding(self, input, output_size: Optional[Sequence[int]]):
        if output_size is None:
            return self.output_padding
        n = self._n
        non_spatial = 2 if jnp.ndim(input) == n + 2 else 1
        output_size = list(output_size)
        if len(output_size) == non_spatial + n:
            output_size = output_size[non_spatial:]
        if len(output_size) != n:
            raise ValueError(f"ConvTranspose{n}D: for {jnp.ndim(input)}D input, output_size must "
                             f"have {n} or {non_spatial + n} elements (got {len(output_size)})")
        res = []
        for d in range(n):
            lo = ((jnp.shape(input)[d + non_spatial] - 1) * self.stride[d] - 2 * self.padding[d]
                  + self.dilation[d] * (self.kernel_size[d] - 1) + 1)
            hi = lo + self.stride[d] - 1
            if not lo <= output_size[d] <= hi:
                raise ValueError(f"requested an output size of {output_size}, but valid sizes "
                                 f"range from {lo} to {hi} (for an input of "
                                 f"{tuple(jnp.shape(input))[non_spatial:]})")
            res.append(output_size[d] - lo)
        return tuple(res)

    def forward(self, input: jax.Array, output_size: Optional[Sequence[int]] = None) -> jax.Array:
        op = self._output_padding(input, output_size)
        return self._conv(input, _unwrap(self.weight), _unwrap(self.bias), self.stride, self.padding, op,
                  self.groups, self.dilation)


class ConvTranspose1d(_ConvTranspose):
    """Transposed 1-d convolution; weight ``(C_in, C_out/groups, k)``; ``forward(x, output_size)``.

    Example:
        >>> nn.ConvTranspose1d(2, 4, 3, stride=2)(jnp.ones((1, 2, 5))).shape
        (1, 4, 11)
    """

    _n = 1
    _conv = staticmethod(F.conv_transpose1d)


class ConvTranspose2d(_ConvTranspose):
    """Transposed 2-d convolution over NCHW; weight ``(C_in, C_out/groups, kH, kW)``.

    Example:
        >>> nn.ConvTranspose2d(4, 2, 2, stride=2)(jnp.ones((1, 4, 8, 8))).shape
        (1, 2, 16, 16)
    """

    _n = 2
    _conv = staticmethod(F.conv_transpose2d)


class ConvTranspose3d(_ConvTranspose):
    """Transposed 3-d convolution over NCDHW; weight ``(C_in, C_out/groups, kD, kH, kW)``.

    Example:
        >>> nn.ConvTranspose3d(2, 2, 2, stride=2)(jnp.ones((1, 2, 3, 3, 3))).shape
        (1, 2, 6, 6, 6)
    """

    _n = 3
    _conv = staticmethod(F.conv_transpose3d)
