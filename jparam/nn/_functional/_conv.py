"""Linear maps and convolutions on torch layouts (channels-first, torch weight shapes)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ._layout import channels_first, channels_last
from jparam.amp import _autocast as _amp

__all__ = ["linear", "bilinear", "conv1d", "conv2d", "conv3d",
           "conv_transpose1d", "conv_transpose2d", "conv_transpose3d"]


def _ntuple(x, n, name):
    if isinstance(x, (tuple, list)):
        if len(x) == 1 and n > 1:
            return tuple(int(x[0]) for _ in range(n))
        if len(x) != n:
            raise ValueError(f"{name} must be an int or a tuple of {n} ints, got {x!r}")
        return tuple(int(v) for v in x)
    return (int(x),) * n


def linear(input, weight, bias=None):
    """``y = x Wᵀ + b`` with torch's weight layout ``(out_features, in_features)``.

    Example:
        >>> F.linear(jnp.ones((2, 3)), jnp.ones((4, 3))).shape
        (2, 4)
    """
    input, weight, bias = _amp.cast_for_matmul(input, weight, bias)
    if input.shape[-1:] != weight.shape[-1:]:
        raise ValueError(
            f"linear: input's last dimension {tuple(input.shape)} does not match weight of shape "
            f"{tuple(weight.shape)} (expected (out_features, {input.shape[-1] if input.ndim else '?'}))")
    y = jnp.matmul(input, weight.T) if weight.ndim == 2 else jnp.matmul(input, weight)
    if bias is not None:
        y = y + bias
    return y


def bilinear(input1, input2, weight, bias=None):
    """``y_k = x1ᵀ W_k x2 + b_k`` with weight ``(out, in1, in2)``.

    Example:
        >>> F.bilinear(jnp.ones((2, 3)), jnp.ones((2, 4)), jnp.ones((5, 3, 4))).shape
        (2, 5)
    """
    if weight.ndim != 3 or input1.shape[-1] != weight.shape[1] or input2.shape[-1] != weight.shape[2]:
        raise ValueError(
            f"bilinear: weight of shape {tuple(weight.shape)} must be (out, in1, in2) with "
            f"in1={input1.shape[-1]}, in2={input2.shape[-1]}")
    y = jnp.einsum("...i,oij,...j->...o", input1, weight, input2)
    if bias is not None:
        y = y + bias
    return y


_SPATIAL = {1: "H", 2: "HW", 3: "DHW"}


def _dimension_numbers(n, kernel="OI"):
    """Channels-last activations (see ``_layout``), torch's kernel layout."""
    s = _SPATIAL[n]
    return ("N" + s + "C", kernel + s, "N" + s + "C")


def _batchify(input, n, fname):
    if input.ndim == n + 1:
        return input[None], True
    if input.ndim != n + 2:
        raise ValueError(
            f"{fname}: expected a {n + 1}-d (unbatched) or {n + 2}-d (batched) input, "
            f"got shape {tuple(input.shape)}")
    return input, False


def _conv(n, input, weight, bias, stride, padding, dilation, groups, fname):
    x, unbatched = _batchify(input, n, fname)
    if weight.ndim != n + 2:
        raise ValueError(f"{fname}: weight must be {n + 2}-d (out, in/groups, *kernel), "
                         f"got shape {tuple(weight.shape)}")
    if x.shape[1] != weight.shape[1] * groups:
        raise ValueError(
            f"{fname}: input has {x.shape[1]} channels but weight of shape {tuple(weight.shape)} "
            f"with groups={groups} expects {weight.shape[1] * groups}")
    stride = _ntuple(stride, n, "stride")
    dilation = _ntuple(dilation, n, "dilation")
    ks = weight.shape[2:]
    if isinstance(padding, str):
        if padding == "valid":
            pads = [(0, 0)] * n
        elif padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError("padding='same' is not supported for strided convolutions")
            pads = []
            for k, d in zip(ks, dilation):
                total = d * (k - 1)
                pads.append((total // 2, total - total // 2))
        else:
            raise ValueError(f"{fname}: invalid padding string {padding!r}, expected 'same' or 'valid'")
    else:
        pads = [(p, p) for p in _ntuple(padding, n, "padding")]
    y = jax.lax.conv_general_dilated(
        channels_last(x), weight.astype(x.dtype), window_strides=stride, padding=pads,
        rhs_dilation=dilation, dimension_numbers=_dimension_numbers(n),
        feature_group_count=groups)
    y = channels_first(y if bias is None else y + bias.astype(y.dtype))
    return y[0] if unbatched else y


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-d cross-correlation; input ``(N, C_in, L)``, weight ``(C_out, C_in/groups, k)``.

    Example:
        >>> F.conv1d(jnp.ones((1, 2, 5)), jnp.ones((3, 2, 3))).shape
        (1, 3, 3)
    """
    input, weight, bias = _amp.cast_for_matmul(input, weight, bias)
    return _conv(1, input, weight, bias, stride, padding, dilation, groups, "conv1d")


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-d cross-correlation on NCHW; weight ``(C_out, C_in/groups, kH, kW)``.

    Example:
        >>> F.conv2d(jnp.ones((1, 2, 5, 5)), jnp.ones((3, 2, 3, 3)), padding="same").shape
        (1, 3, 5, 5)
    """
    input, weight, bias = _amp.cast_for_matmul(input, weight, bias)
    return _conv(2, input, weight, bias, stride, padding, dilation, groups, "conv2d")


def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """3-d cross-correlation on NCDHW; weight ``(C_out, C_in/groups, kD, kH, kW)``.

    Example:
        >>> F.conv3d(jnp.ones((1, 2, 4, 4, 4)), jnp.ones((3, 2, 3, 3, 3))).shape
        (1, 3, 2, 2, 2)
    """
    input, weight, bias = _amp.cast_for_matmul(input, weight, bias)
    return _conv(3, input, weight, bias, stride, padding, dilation, groups, "conv3d")


def _conv_transpose(n, input, weight, bias, stride, padding, output_padding, groups, dilation,
                    fname):
    x, unbatched = _batchify(input, n, fname)
    if weight.ndim != n + 2:
        raise ValueError(f"{fname}: weight must be {n + 2}-d (in, out/groups, *kernel), "
                         f"got shape {tuple(weight.shape)}")
    if x.shape[1] != weight.shape[0]:
        raise ValueError(
            f"{fname}: input has {x.shape[1]} channels but weight of shape {tuple(weight.shape)} "
            f"expects {weight.shape[0]} (weight layout is (in, out/groups, *kernel))")
    stride = _ntuple(stride, n, "stride")
    padding = _ntuple(padding, n, "padding")
    output_padding = _ntuple(output_padding, n, "output_padding")
    dilation = _ntuple(dilation, n, "dilation")
    for op, s, d in zip(output_padding, stride, dilation):
        if op >= s and op >= d:
            raise ValueError(f"{fname}: output padding must be smaller than either stride or "
                             f"dilation, got output_padding={output_padding}, stride={stride}, "
                             f"dilation={dilation}")
    ks = weight.shape[2:]
    w = jnp.flip(weight.astype(x.dtype), axis=tuple(range(2, n + 2)))
    if groups == 1:
        kernel_spec = "IO"
    else:
        cin, cout_g = w.shape[:2]
        w = w.reshape((groups, cin // groups, cout_g) + ks)
        w = jnp.swapaxes(w, 1, 2).reshape((groups * cout_g, cin // groups) + ks)
        kernel_spec = "OI"
    pads = []
    for k, p, op, d in zip(ks, padding, output_padding, dilation):
        edge = d * (k - 1) - p
        pads.append((edge, edge + op))
    y = jax.lax.conv_general_dilated(
        channels_last(x), w, window_strides=(1,) * n, padding=pads, lhs_dilation=stride,
        rhs_dilation=dilation, dimension_numbers=_dimension_numbers(n, kernel_spec),
        feature_group_count=groups)
    y = channels_first(y if bias is None else y + bias.astype(y.dtype))
    return y[0] if unbatched else y


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """Transposed 1-d convolution; weight ``(C_in, C_out/groups, k)``.

    Example:
        >>> F.conv_transpose1d(jnp.ones((1, 2, 5)), jnp.ones((2, 3, 3)), stride=2).shape
        (1, 3, 11)
    """
    input, weight, bias = _amp.cast_for_matmul(input, weight, bias)
    return _conv_transpose(1, input, weight, bias, stride, padding, output_padding, groups,
                           dilation, "conv_transpose1d")


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """Transposed 2-d convolution on NCHW; weight ``(C_in, C_out/groups, kH, kW)``.

    Example:
        >>> F.conv_transpose2d(jnp.ones((1, 2, 4, 4)), jnp.ones((2, 3, 3, 3)), stride=2).shape
        (1, 3, 9, 9)
    """
    input, weight, bias = _amp.cast_for_matmul(input, weight, bias)
    return _conv_transpose(2, input, weight, bias, stride, padding, output_padding, groups,
                           dilation, "conv_transpose2d")


def conv_transpose3d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """Transposed 3-d convolution on NCDHW; weight ``(C_in, C_out/groups, kD, kH, kW)``.

    Example:
        >>> F.conv_transpose3d(jnp.ones((1, 2, 3, 3, 3)), jnp.ones((2, 3, 2, 2, 2))).shape
        (1, 3, 4, 4, 4)
    """
    input, weight, bias = _amp.cast_for_matmul(input, weight, bias)
    return _conv_transpose(3, input, weight, bias, stride, padding, output_padding, groups,
                           dilation, "conv_transpose3d")
