"""Padding layers: Constant/Zero/Reflection/Replication/Circular Pad 1d/2d/3d."""
from __future__ import annotations

from typing import Any

import jax

from jparam._module import Module
from jparam.nn import functional as F

__all__ = ["ConstantPad1d", "ConstantPad2d", "ConstantPad3d", "ZeroPad1d", "ZeroPad2d",
           "ZeroPad3d", "ReflectionPad1d", "ReflectionPad2d", "ReflectionPad3d",
           "ReplicationPad1d", "ReplicationPad2d", "ReplicationPad3d", "CircularPad1d",
           "CircularPad2d", "CircularPad3d"]


def _pad_tuple(padding: Any, n: int) -> tuple:
    if isinstance(padding, (tuple, list)):
        if len(padding) != 2 * n:
            raise ValueError(f"padding must be an int or a tuple of {2 * n} ints, got {padding!r}")
        return tuple(int(p) for p in padding)
    return (int(padding),) * (2 * n)


class _PadNd(Module):
    _n = 0
    _mode = ""

    def __init__(self, padding: Any) -> None:
        super().__init__()
        self.padding = _pad_tuple(padding, self._n)

    def forward(self, input: jax.Array) -> jax.Array:
        return F.pad(input, self.padding, self._mode)

    def extra_repr(self) -> str:
        return f"{self.padding}"


class _ConstantPadNd(_PadNd):
    _mode = "constant"

    def __init__(self, padding: Any, value: float) -> None:
        super().__init__(padding)
        self.value = value

    def forward(self, input: jax.Array) -> jax.Array:
        return F.pad(input, self.padding, "constant", self.value)

    def extra_repr(self) -> str:
        return f"padding={self.padding}, value={self.value}"


class ConstantPad1d(_ConstantPadNd):
    """Pad the last dim with ``value`` (``padding``: int or ``(left, right)``).

    Example:
        >>> nn.ConstantPad1d(2, 3.5)(jnp.ones((1, 2, 4))).shape
        (1, 2, 8)
    """

    _n = 1


class ConstantPad2d(_ConstantPadNd):
    """Pad the last 2 dims with ``value`` (``(left, right, top, bottom)``).

    Example:
        >>> nn.ConstantPad2d((1, 1, 2, 0), 0.0)(jnp.ones((1, 2, 4, 4))).shape
        (1, 2, 6, 6)
    """

    _n = 2


class ConstantPad3d(_ConstantPadNd):
    """Pad the last 3 dims with ``value``.

    Example:
        >>> nn.ConstantPad3d(1, 0.0)(jnp.ones((1, 2, 2, 2, 2))).shape
        (1, 2, 4, 4, 4)
    """

    _n = 3


class _ZeroPadNd(_ConstantPadNd):
    def __init__(self, padding: Any) -> None:
        super().__init__(padding, 0.0)

    def extra_repr(self) -> str:
        return f"{self.padding}"


class ZeroPad1d(_ZeroPadNd):
    """Zero-pad the last dim.

    Example:
        >>> nn.ZeroPad1d(1)(jnp.ones((1, 2, 4))).shape
        (1, 2, 6)
    """

    _n = 1


class ZeroPad2d(_ZeroPadNd):
    """Zero-pad the last 2 dims.

    Example:
        >>> nn.ZeroPad2d(1)(jnp.ones((1, 2, 4, 4))).shape
        (1, 2, 6, 6)
    """

    _n = 2


class ZeroPad3d(_ZeroPadNd):
    """Zero-pad the last 3 dims.

    Example:
        >>> nn.ZeroPad3d(1)(jnp.ones((1, 2, 2, 2, 2))).shape
        (1, 2, 4, 4, 4)
    """

    _n = 3


class ReflectionPad1d(_PadNd):
    """Reflect-pad the last dim (edge not repeated).

    Example:
        >>> nn.ReflectionPad1d(2)(jnp.ones((1, 2, 4))).shape
        (1, 2, 8)
    """

    _n, _mode = 1, "reflect"


class ReflectionPad2d(_PadNd):
    """Reflect-pad the last 2 dims.

    Example:
        >>> nn.ReflectionPad2d(1)(jnp.ones((1, 2, 4, 4))).shape
        (1, 2, 6, 6)
    """

    _n, _mode = 2, "reflect"


class ReflectionPad3d(_PadNd):
    """Reflect-pad the last 3 dims.

    Example:
        >>> nn.ReflectionPad3d(1)(jnp.ones((1, 2, 3, 3, 3))).shape
        (1, 2, 5, 5, 5)
    """

    _n, _mode = 3, "reflect"


class ReplicationPad1d(_PadNd):
    """Edge-replicate-pad the last dim.

    Example:
        >>> nn.ReplicationPad1d(2)(jnp.ones((1, 2, 4))).shape
        (1, 2, 8)
    """

    _n, _mode = 1, "replicate"


class ReplicationPad2d(_PadNd):
    """Edge-replicate-pad the last 2 dims.

    Example:
        >>> nn.ReplicationPad2d(1)(jnp.ones((1, 2, 4, 4))).shape
        (1, 2, 6, 6)
    """

    _n, _mode = 2, "replicate"


class ReplicationPad3d(_PadNd):
    """Edge-replicate-pad the last 3 dims.

    Example:
        >>> nn.ReplicationPad3d(1)(jnp.ones((1, 2, 2, 2, 2))).shape
        (1, 2, 4, 4, 4)
    """

    _n, _mode = 3, "replicate"


class CircularPad1d(_PadNd):
    """Circularly pad the last dim.

    Example:
        >>> nn.CircularPad1d(2)(jnp.ones((1, 2, 4))).shape
        (1, 2, 8)
    """

    _n, _mode = 1, "circular"


class CircularPad2d(_PadNd):
    """Circularly pad the last 2 dims.

    Example:
        >>> nn.CircularPad2d(1)(jnp.ones((1, 2, 4, 4))).shape
        (1, 2, 6, 6)
    """

    _n, _mode = 2, "circular"


class CircularPad3d(_PadNd):
    """Circularly pad the last 3 dims.

    Example:
        >>> nn.CircularPad3d(1)(jnp.ones((1, 2, 2, 2, 2))).shape
        (1, 2, 4, 4, 4)
    """

    _n, _mode = 3, "circular"
