"""Channels-last compute for channels-first (torch-layout) spatial ops.

jparam's spatial functions take and return torch's channels-first arrays (``N, C, *spatial``).
Inside, convolution, batch norm and pooling compute on a channels-last view and transpose
back. XLA's CPU backend runs convolutions channels-last anyway (it wraps a channels-first
convolution in transposes), and its reductions and windows vectorise better along a
contiguous channel axis. Between two such ops the "back" transpose of one meets the "in"
transpose of the next, and XLA cancels the pair (moving transposes past elementwise ops
such as ``relu``), so a Conv-BN-ReLU-Pool stack runs channels-last end to end while every
array the user sees stays channels-first. The math is unchanged; only summation order within
a reduction may differ in the last bit.
"""
from __future__ import annotations

import jax


def channels_last(x: jax.Array, channel_axis: int = 1) -> jax.Array:
    """Move ``channel_axis`` to the end (``N, C, H, W -> N, H, W, C``)."""
    return x if channel_axis in (-1, x.ndim - 1) else jax.numpy.moveaxis(x, channel_axis, -1)


def channels_first(x: jax.Array, channel_axis: int = 1) -> jax.Array:
    """Inverse of :func:`channels_last`."""
    return x if channel_axis in (-1, x.ndim - 1) else jax.numpy.moveaxis(x, -1, channel_axis)
