"""The ATen operators ``jparam.from_torch`` runs, each as JAX code with torch's semantics.

``OPS`` maps an operator name as ``torch.export`` writes it (``"aten.add.Tensor"``) to a
function taking the node's arguments. Layers go through ``jparam.nn.functional`` (linear,
convolutions, norms, pooling, attention, dropout), so a converted model computes what the
hand-ported one computes; the rest is ``jax.numpy`` / ``jax.lax``. ``RANDOM_OPS`` receive a
``rng`` callable that returns a fresh PRNG key (drawn from the module's own key, only when
called). ``docs/from_torch_ops.md`` lists the table; ``tests/test_from_torch_ops.py``
checks every entry against torch, forward and gradient.
"""
from __future__ import annotations

import math
import operator
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jparam.nn import functional as F
from jparam.nn._functional_attention import scaled_dot_product_attention

__all__ = ["OPS", "RANDOM_OPS"]

OPS: dict[str, Callable[..., Any]] = {}
RANDOM_OPS = frozenset({"aten.native_dropout.default", "aten.dropout.default",
                        "aten.scaled_dot_product_attention.default", "aten.bernoulli.p",
                        "aten.bernoulli.default",
                        "aten.rand_like.default", "aten.randn_like.default"})


def _op(*names: str) -> Callable:
    def deco(fn: Callable) -> Callable:
        for n in names:
            OPS[n] = fn
        return fn
    return deco


def _dtype(dt: Any, like: Any = None) -> Any:
    if dt is None:
        return like
    return jax.dtypes.canonicalize_dtype(dt)


def _dim(d: int, ndim: int) -> int:
    return d + ndim if d < 0 else d


def _dims(dim: Any, ndim: int) -> Any:
    """torch's reduction dims: ``None`` or ``[]`` means all."""
    if dim is None or (isinstance(dim, (list, tuple)) and len(dim) == 0):
        return None
    if isinstance(dim, int):
        return _dim(dim, ndim)
    return tuple(_dim(d, ndim) for d in dim)


def _default_dtype(*vals: Any) -> Any:
    """The dtype torch gives a factory called with these Python numbers."""
    if any(isinstance(v, float) for v in vals):
        return jnp.float32
    if vals and all(isinstance(v, bool) for v in vals):
        return jnp.bool_
    return _dtype(jnp.int64)


def _int_result(x: jax.Array) -> Any:
    """torch sums/cumsums bool and integer tensors into int64."""
    return _dtype(jnp.int64) if x.dtype == jnp.bool_ or jnp.issubdtype(x.dtype, jnp.integer) else None


# ----------------------------------------------------------------------- elementwise
def _binary(fn: Callable) -> Callable:
    def op(self, other, *, alpha=1):
        return fn(self, other if alpha == 1 else other * alpha)
    return op


_op("aten.add.Tensor", "aten.add.Scalar")(_binary(jnp.add))
_op("aten.sub.Tensor", "aten.sub.Scalar")(_binary(jnp.subtract))
_op("aten.mul.Tensor", "aten.mul.Scalar")(lambda a, b: jnp.multiply(a, b))
_op("aten.div.Tensor", "aten.div.Scalar")(lambda a, b: jnp.true_divide(a, b))
_op("aten.maximum.default")(jnp.maximum)
_op("aten.minimum.default")(jnp.minimum)
_op("aten.remainder.Tensor", "aten.remainder.Scalar")(jnp.remainder)
_op("aten.floor_divide.default", "aten.floor_divide.Scalar")(jnp.floor_divide)
_op("aten.atan2.default")(jnp.arctan2)
for _name, _fn in (("eq", jnp.equal), ("ne", jnp.not_equal), ("lt", jnp.less),
                   ("le", jnp.less_equal), ("gt", jnp.greater), ("ge", jnp.greater_equal)):
    _op(f"aten.{_name}.Tensor", f"aten.{_name}.Scalar")(_fn)
for _name, _fn in (("logical_and", jnp.logical_and), ("logical_or", jnp.logical_or),
                   ("logical_xor", jnp.logical_xor)):
    _op(f"aten.{_name}.default")(_fn)
_op("aten.__and__.Tensor", "aten.bitwise_and.Tensor", "aten.bitwise_and.Scalar")(jnp.bitwise_and)
_op("aten.__or__.Tensor", "aten.bitwise_or.Tensor", "aten.bitwise_or.Scalar")(jnp.bitwise_or)
_op("aten.bitwise_not.default")(jnp.invert)
_op("aten.logical_not.default")(jnp.logical_not)


@_op("aten.rsub.Scalar", "aten.rsub.Tensor")
def _rsub(self, other, alpha=1):
    return jnp.subtract(other, self if alpha == 1 else self * alpha)


@_op("aten.div.Tensor_mode", "aten.div.Scalar_mode")
def _div_mode(self, other, *, rounding_mode=None):
    if rounding_mode is None:
        return jnp.true_divide(self, other)
    if rounding_mode == "floor":
        return jnp.floor_divide(self, other)
    rt = jnp.result_type(self, other)
    t = jnp.trunc(jnp.true_divide(self, other))
    return t.astype(rt) if jnp.issubdtype(rt, jnp.integer) else t


@_op("aten.pow.Tensor_Scalar", "aten.pow.Tensor_Tensor")
def _pow(self, exponent):
    if isinstance(exponent, (int, float)) and not isinstance(exponent, bool) \
            and float(exponent).is_integer() and abs(exponent) <= 64:
        y = jax.lax.integer_pow(jnp.asarray(self), int(exponent))
        return y if isinstance(exponent, int) or jnp.issubdtype(y.dtype, jnp.floating) \
            else y.astype(jnp.float32)
    return jnp.power(self, exponent)


@_op("aten.pow.Scalar")
def _pow_scalar(self, exponent):
    return jnp.power(self, exponent)


@_op("aten.where.self", "aten.where.ScalarOther", "aten.where.ScalarSelf", "aten.where.Scalar")
def _where(condition, self, other):
    return jnp.where(condition, self, other)


@_op("aten.masked_fill.Scalar", "aten.masked_fill.Tensor")
def _masked_fill(self, mask, value):
    return jnp.where(mask, jnp.asarray(value, self.dtype), self)


@_op("aten.clamp.default", "aten.clamp.Tensor")
def _clamp(self, min=None, max=None):
    return jnp.clip(self, min, max)


_op("aten.clamp_min.default", "aten.clamp_min.Tensor")(lambda x, m: jnp.maximum(x, m))
_op("aten.clamp_max.default", "aten.clamp_max.Tensor")(lambda x, m: jnp.minimum(x, m))

for _name, _fn in (("neg", jnp.negative), ("abs", jnp.abs), ("exp", jnp.exp), ("log", jnp.log),
                   ("log1p", jnp.log1p), ("expm1", jnp.expm1), ("log2", jnp.log2),
                   ("sqrt", jnp.sqrt), ("rsqrt", jax.lax.rsqrt), ("sin", jnp.sin),
                   ("cos", jnp.cos), ("tanh", jnp.tanh), ("sigmoid", jax.nn.sigmoid),
                   ("erf", jax.scipy.special.erf), ("reciprocal", jnp.reciprocal),
                   ("sign", jnp.sign), ("floor", jnp.floor), ("ceil", jnp.ceil),
                   ("round", jnp.round), ("trunc", jnp.trunc), ("relu", jax.nn.relu),
                   ("isnan", jnp.isnan), ("isinf", jnp.isinf)):
    _op(f"aten.{_name}.default")(_fn)
_op("aten.silu.default")(F.silu)
_op("aten.mish.default")(F.mish)
_op("aten.hardswish.default")(F.hardswish)
_op("aten.hardsigmoid.default")(F.hardsigmoid)


@_op("aten.gelu.default")
def _gelu(self, *, approximate="none"):
    return F.gelu(self, approximate=approximate)


@_op("aten.hardtanh.default")
def _hardtanh(self, min_val=-1.0, max_val=1.0):
    return jnp.clip(self, min_val, max_val)


@_op("aten.leaky_relu.default")
def _leaky_relu(self, negative_slope=0.01):
    return F.leaky_relu(self, negative_slope)


@_op("aten.elu.default")
def _elu(self, alpha=1.0, scale=1.0, input_scale=1.0):
    x = self * input_scale
    return scale * jnp.where(x > 0, x, alpha * jnp.expm1(jnp.minimum(x, 0)))


@_op("aten.softplus.default")
def _softplus(self, beta=1.0, threshold=20.0):
    return F.softplus(self, beta, threshold)


# ----------------------------------------------------------------------- reductions
@_op("aten.sum.dim_IntList", "aten.sum.default")
def _sum(self, dim=None, keepdim=False, *, dtype=None):
    return jnp.sum(self, axis=_dims(dim, self.ndim), keepdims=keepdim,
                   dtype=_dtype(dtype, _int_result(self)))


@_op("aten.mean.dim", "aten.mean.default")
def _mean(self, dim=None, keepdim=False, *, dtype=None):
    return jnp.mean(self, axis=_dims(dim, self.ndim), keepdims=keepdim, dtype=_dtype(dtype))


@_op("aten.prod.default", "aten.prod.dim_int")
def _prod(self, dim=None, keepdim=False, *, dtype=None):
    return jnp.prod(self, axis=_dims(dim, self.ndim), keepdims=keepdim,
                    dtype=_dtype(dtype, _int_result(self)))


@_op("aten.amax.default")
def _amax(self, dim=(), keepdim=False):
    return jnp.max(self, axis=_dims(dim, self.ndim), keepdims=keepdim)


@_op("aten.amin.default")
def _amin(self, dim=(), keepdim=False):
    return jnp.min(self, axis=_dims(dim, self.ndim), keepdims=keepdim)


@_op("aten.max.dim")
def _max_dim(self, dim, keepdim=False):
    return (jnp.max(self, axis=dim, keepdims=keepdim),
            jnp.argmax(self, axis=dim, keepdims=keepdim))


@_op("aten.min.dim")
def _min_dim(self, dim, keepdim=False):
    return (jnp.min(self, axis=dim, keepdims=keepdim),
            jnp.argmin(self, axis=dim, keepdims=keepdim))


_op("aten.max.default")(jnp.max)
_op("aten.min.default")(jnp.min)


@_op("aten.argmax.default")
def _argmax(self, dim=None, keepdim=False):
    return jnp.argmax(self, axis=dim, keepdims=keepdim)


@_op("aten.argmin.default")
def _argmin(self, dim=None, keepdim=False):
    return jnp.argmin(self, axis=dim, keepdims=keepdim)


@_op("aten.var.correction", "aten.var.dim")
def _var(self, dim=None, unbiased=None, keepdim=False, *, correction=None):
    ddof = correction if correction is not None else (0 if unbiased is False else 1)
    return jnp.var(self, axis=_dims(dim, self.ndim), ddof=ddof, keepdims=keepdim)


@_op("aten.std.correction", "aten.std.dim")
def _std(self, dim=None, unbiased=None, keepdim=False, *, correction=None):
    return jnp.sqrt(_var(self, dim, unbiased, keepdim, correction=correction))


@_op("aten.any.dim", "aten.any.dims", "aten.any.default")
def _any(self, dim=None, keepdim=False):
    return jnp.any(self, axis=_dims(dim, self.ndim), keepdims=keepdim)


@_op("aten.all.dim", "aten.all.dims", "aten.all.default")
def _all(self, dim=None, keepdim=False):
    return jnp.all(self, axis=_dims(dim, self.ndim), keepdims=keepdim)


@_op("aten.logsumexp.default")
def _logsumexp(self, dim, keepdim=False):
    return jax.nn.logsumexp(self, axis=_dims(dim, self.ndim), keepdims=keepdim)


@_op("aten.linalg_vector_norm.default")
def _vector_norm(self, ord=2, dim=None, keepdim=False, *, dtype=None):
    x = self.astype(_dtype(dtype, self.dtype))
    return jnp.linalg.vector_norm(x, ord=ord, axis=_dims(dim, x.ndim), keepdims=keepdim)


@_op("aten.cumsum.default")
def _cumsum(self, dim, *, dtype=None):
    return jnp.cumsum(self, axis=dim, dtype=_dtype(dtype, _int_result(self)))


@_op("aten._softmax.default")
def _softmax_(self, dim, half_to_float=False):
    return F.softmax(self, dim)


@_op("aten.softmax.int")
def _softmax(self, dim, dtype=None):
    return F.softmax(self, dim, dtype=_dtype(dtype))


@_op("aten._log_softmax.default")
def _log_softmax_(self, dim, half_to_float=False):
    return F.log_softmax(self, dim)


@_op("aten.log_softmax.int")
def _log_softmax(self, dim, dtype=None):
    return F.log_softmax(self, dim, dtype=_dtype(dtype))


# ----------------------------------------------------------------------- matrix products
_op("aten.linear.default")(F.linear)
_op("aten.mm.default", "aten.bmm.default", "aten.matmul.default")(jnp.matmul)
_op("aten.t.default")(lambda x: x.T)


@_op("aten.addmm.default")
def _addmm(self, mat1, mat2, *, beta=1, alpha=1):
    prod = jnp.matmul(mat1, mat2)
    return (self if beta == 1 else beta * self) + (prod if alpha == 1 else alpha * prod)


@_op("aten.baddbmm.default")
def _baddbmm(self, batch1, batch2, *, beta=1, alpha=1):
    return _addmm(self, batch1, batch2, beta=beta, alpha=alpha)


@_op("aten.einsum.default")
def _einsum(equation, tensors, path=None):
    return jnp.einsum(equation, *tensors)


# ----------------------------------------------------------------------- shapes and views
for _name in ("contiguous", "clone", "alias", "lift_fresh_copy"):
    _op(f"aten.{_name}.default")(lambda x, *a, **k: x)
_op("aten.detach.default")(jax.lax.stop_gradient)
_op("aten.view.default", "aten.reshape.default", "aten._unsafe_view.default")(
    lambda x, shape: jnp.reshape(x, tuple(shape)))
_op("aten.permute.default")(lambda x, dims: jnp.transpose(x, tuple(dims)))
_op("aten.transpose.int")(lambda x, d0, d1: jnp.swapaxes(x, d0, d1))
_op("aten.unsqueeze.default")(lambda x, dim: jnp.expand_dims(x, dim))
_op("aten.flip.default")(lambda x, dims: jnp.flip(x, tuple(dims)))
_op("aten.tril.default")(lambda x, diagonal=0: jnp.tril(x, diagonal))
_op("aten.triu.default")(lambda x, diagonal=0: jnp.triu(x, diagonal))
_op("aten.sym_size.int")(lambda x, dim: x.shape[dim])
_op("aten.sym_numel.default")(lambda x: x.size)


@_op("aten.squeeze.dim", "aten.squeeze.dims", "aten.squeeze.default")
def _squeeze(self, dim=None):
    dims = range(self.ndim) if dim is None else ([dim] if isinstance(dim, int) else dim)
    axes = tuple(d for d in (_dim(d, self.ndim) for d in dims) if self.shape[d] == 1)
    return jnp.squeeze(self, axes) if axes else self


@_op("aten.expand.default")
def _expand(self, size, *, implicit=False):
    lead = len(size) - self.ndim
    shape = tuple(self.shape[i - lead] if s == -1 else s for i, s in enumerate(size))
    return jnp.broadcast_to(self, shape)


@_op("aten.flatten.using_ints")
def _flatten(self, start_dim=0, end_dim=-1):
    if self.ndim == 0:
        return self.reshape(1)
    s, e = _dim(start_dim, self.ndim), _dim(end_dim, self.ndim)
    return self.reshape(self.shape[:s] + (-1,) + self.shape[e + 1:])


@_op("aten.unflatten.int")
def _unflatten(self, dim, sizes):
    d = _dim(dim, self.ndim)
    return self.reshape(self.shape[:d] + tuple(sizes) + self.shape[d + 1:])


@_op("aten.select.int")
def _select(self, dim, index):
    d = _dim(dim, self.ndim)
    return jax.lax.index_in_dim(self, index % self.shape[d], d, keepdims=False)


@_op("aten.slice.Tensor")
def _slice(self, dim=0, start=None, end=None, step=1):
    idx = [slice(None)] * self.ndim
    idx[dim] = slice(start, end, step)
    return self[tuple(idx)]


@_op("aten.narrow.default")
def _narrow(self, dim, start, length):
    return _slice(self, dim, start, start + length)


@_op("aten.split.Tensor")
def _split(self, split_size, dim=0):
    n = self.shape[dim]
    return _split_sizes(self, [min(split_size, n - i) for i in range(0, n, split_size)], dim)


@_op("aten.split_with_sizes.default")
def _split_sizes(self, split_sizes, dim=0):
    edges = np.cumsum(split_sizes)[:-1].tolist()
    return list(jnp.split(self, edges, axis=dim))


@_op("aten.chunk.default")
def _chunk(self, chunks, dim=0):
    return _split(self, -(-self.shape[dim] // chunks), dim)


@_op("aten.unbind.int")
def _unbind(self, dim=0):
    return [jax.lax.index_in_dim(self, i, dim, keepdims=False) for i in range(self.shape[dim])]


@_op("aten.cat.default")
def _cat(tensors, dim=0):
    # torch skips 1-d empty tensors in cat (legacy behaviour)
    ts = [t for t in tensors if not (t.ndim == 1 and t.shape[0] == 0)] or list(tensors)
    return jnp.concatenate(ts, axis=dim)


_op("aten.stack.default")(lambda tensors, dim=0: jnp.stack(tensors, axis=dim))


@_op("aten.repeat.default")
def _repeat(self, repeats):
    x = self.reshape((1,) * (len(repeats) - self.ndim) + self.shape)
    return jnp.tile(x, tuple(repeats))


@_op("aten.roll.default")
def _roll(self, shifts, dims=()):
    if not dims:
        return jnp.roll(self.reshape(-1), shifts).reshape(self.shape)
    return jnp.roll(self, tuple(shifts), tuple(dims))


@_op("aten.index.Tensor")
def _index(self, indices):
    return self[tuple(slice(None) if i is None else i for i in indices)]


@_op("aten.index_put.default")
def _index_put(self, indices, values, accumulate=False):
    idx = tuple(slice(None) if i is None else i for i in indices)
    return self.at[idx].add(values) if accumulate else self.at[idx].set(values.astype(self.dtype))


@_op("aten.index_select.default")
def _index_select(self, dim, index):
    return jnp.take(self, index, axis=dim)


@_op("aten.gather.default")
def _gather(self, dim, index, *, sparse_grad=False):
    d = _dim(dim, self.ndim)
    # torch allows index to be smaller than self in the other dims
    x = self[tuple(slice(None) if i == d else slice(0, index.shape[i]) for i in range(self.ndim))]
    return jnp.take_along_axis(x, index, axis=d)


@_op("aten.diff.default")
def _diff(self, n=1, dim=-1, prepend=None, append=None):
    return jnp.diff(self, n=n, axis=dim, prepend=prepend, append=append)


@_op("aten.constant_pad_nd.default")
def _constant_pad(self, pad, value=0):
    return F.pad(self, tuple(pad), value=value)


@_op("aten.pad.default")
def _pad(self, pad, mode="constant", value=None):
    return F.pad(self, tuple(pad), mode=mode, value=value)


# ----------------------------------------------------------------------- dtypes and factories
@_op("aten._to_copy.default", "aten.to.dtype_layout", "aten.to.dtype", "aten.to.device")
def _to(self, *args, dtype=None, **kwargs):
    for a in args:  # to.dtype(self, dtype, ...) / to.device(self, device, dtype, ...)
        if isinstance(a, np.dtype) or (isinstance(a, type) and issubclass(a, np.generic)):
            dtype = a
    return self if dtype is None else self.astype(_dtype(dtype))


_op("aten.type_as.default")(lambda x, other: x.astype(other.dtype))
_op("aten._assert_tensor_metadata.default", "aten._assert_scalar.default",
    "aten.sym_constrain_range_for_size.default", "aten._assert_async.msg")(lambda *a, **k: None)


@_op("aten.arange.default", "aten.arange.start", "aten.arange.start_step")
def _arange(*args, dtype=None):
    return jnp.arange(*args, dtype=_dtype(dtype, _default_dtype(*args)))


@_op("aten.full.default")
def _full(size, fill_value, *, dtype=None):
    return jnp.full(tuple(size), fill_value, _dtype(dtype, _default_dtype(fill_value)))


@_op("aten.zeros.default", "aten.empty.memory_format")
def _zeros(size, *, dtype=None):
    return jnp.zeros(tuple(size), _dtype(dtype, jnp.float32))


@_op("aten.ones.default")
def _ones(size, *, dtype=None):
    return jnp.ones(tuple(size), _dtype(dtype, jnp.float32))


@_op("aten.scalar_tensor.default")
def _scalar_tensor(s, *, dtype=None):
    return jnp.asarray(s, _dtype(dtype, jnp.float32))


@_op("aten.full_like.default")
def _full_like(self, fill_value, *, dtype=None):
    return jnp.full(self.shape, fill_value, _dtype(dtype, self.dtype))


_op("aten.zeros_like.default", "aten.empty_like.default")(
    lambda x, *, dtype=None: jnp.zeros(x.shape, _dtype(dtype, x.dtype)))
_op("aten.ones_like.default")(lambda x, *, dtype=None: jnp.ones(x.shape, _dtype(dtype, x.dtype)))
_op("aten.fill.Scalar")(lambda x, v: jnp.full(x.shape, v, x.dtype))
_op("aten.new_zeros.default", "aten.new_empty.default")(
    lambda x, size, *, dtype=None: jnp.zeros(tuple(size), _dtype(dtype, x.dtype)))
_op("aten.new_ones.default")(
    lambda x, size, *, dtype=None: jnp.ones(tuple(size), _dtype(dtype, x.dtype)))
_op("aten.new_full.default")(
    lambda x, size, v, *, dtype=None: jnp.full(tuple(size), v, _dtype(dtype, x.dtype)))


@_op("aten.copy.default")
def _copy(self, src, non_blocking=False):
    return jnp.broadcast_to(src, self.shape).astype(self.dtype)


# ----------------------------------------------------------------------- layers
@_op("aten.embedding.default")
def _embedding(weight, indices, padding_idx=-1, scale_grad_by_freq=False, sparse=False):
    return F.embedding(indices, weight, padding_idx=None if padding_idx == -1 else padding_idx)


@_op("aten.layer_norm.default")
def _layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5, cudnn_enable=True):
    return F.layer_norm(input, tuple(normalized_shape), weight, bias, eps)


@_op("aten.group_norm.default")
def _group_norm(input, num_groups, weight=None, bias=None, eps=1e-5, cudnn_enabled=True):
    return F.group_norm(input, num_groups, weight, bias, eps)


def _batch_stats(input, eps):
    axes = (0,) + tuple(range(2, input.ndim))
    mean = jnp.mean(input, axis=axes)
    return mean, jax.lax.rsqrt(jnp.var(input, axis=axes) + eps)


@_op("aten._native_batch_norm_legit_functional.default")
def _batch_norm_functional(input, weight, bias, running_mean, running_var, training, momentum, eps):
    mean, invstd = _batch_stats(input, eps)
    if training:
        out, rm, rv = F.batch_norm(input, running_mean, running_var, weight, bias, True,
                                   momentum, eps)
        return out, mean, invstd, rm, rv
    out = F.batch_norm(input, running_mean, running_var, weight, bias, False, momentum, eps)
    return out, mean, invstd, running_mean, running_var


@_op("aten._native_batch_norm_legit_no_training.default")
def _batch_norm_eval(input, weight, bias, running_mean, running_var, momentum, eps):
    out = F.batch_norm(input, running_mean, running_var, weight, bias, False, momentum, eps)
    empty = jnp.zeros((0,), input.dtype)
    return out, empty, empty


@_op("aten._native_batch_norm_legit.no_stats")
def _batch_norm_no_stats(input, weight, bias, training, momentum, eps):
    out = F.batch_norm(input, None, None, weight, bias, True, momentum, eps)
    return (out,) + _batch_stats(input, eps)


@_op("aten.conv1d.default", "aten.conv2d.default", "aten.conv3d.default",
     "aten.conv1d.padding", "aten.conv2d.padding", "aten.conv3d.padding")
def _conv(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    fn = {3: F.conv1d, 4: F.conv2d, 5: F.conv3d}[weight.ndim]
    return fn(input, weight, bias, stride, padding, dilation, groups)


@_op("aten.convolution.default")
def _convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups):
    if not transposed:
        return _conv(input, weight, bias, stride, padding, dilation, groups)
    fn = {3: F.conv_transpose1d, 4: F.conv_transpose2d, 5: F.conv_transpose3d}[weight.ndim]
    return fn(input, weight, bias, stride, padding, output_padding, groups, dilation)


@_op("aten.conv_transpose1d.default", "aten.conv_transpose2d.input", "aten.conv_transpose3d.input")
def _conv_transpose(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                    dilation=1):
    fn = {3: F.conv_transpose1d, 4: F.conv_transpose2d, 5: F.conv_transpose3d}[weight.ndim]
    return fn(input, weight, bias, stride, padding, output_padding, groups, dilation)


def _pool_stride(kernel_size, stride):
    return kernel_size if stride is None or len(stride) == 0 else stride


@_op("aten.max_pool1d.default", "aten.max_pool2d.default", "aten.max_pool3d.default")
def _max_pool(input, kernel_size, stride=(), padding=0, dilation=1, ceil_mode=False):
    fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[len(kernel_size)]
    return fn(input, kernel_size, _pool_stride(kernel_size, stride), padding, dilation, ceil_mode)


@_op("aten.max_pool2d_with_indices.default", "aten.max_pool3d_with_indices.default")
def _max_pool_indices(input, kernel_size, stride=(), padding=0, dilation=1, ceil_mode=False):
    fn = {2: F.max_pool2d, 3: F.max_pool3d}[len(kernel_size)]
    return tuple(fn(input, kernel_size, _pool_stride(kernel_size, stride), padding, dilation,
                    ceil_mode, return_indices=True))


@_op("aten.avg_pool1d.default", "aten.avg_pool2d.default", "aten.avg_pool3d.default")
def _avg_pool(input, kernel_size, stride=(), padding=0, ceil_mode=False, count_include_pad=True,
              divisor_override=None):
    fn = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[len(kernel_size)]
    args = (input, kernel_size, _pool_stride(kernel_size, stride), padding, ceil_mode,
            count_include_pad)
    return fn(*args) if len(kernel_size) == 1 else fn(*args, divisor_override)


@_op("aten.adaptive_avg_pool1d.default", "aten.adaptive_avg_pool2d.default",
     "aten.adaptive_avg_pool3d.default")
def _adaptive_avg_pool(input, output_size):
    fn = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}[len(output_size)]
    return fn(input, tuple(output_size))


# ----------------------------------------------------------------------- randomness
@_op("aten.native_dropout.default")
def _native_dropout(input, p, train, *, rng):
    if not train or p == 0.0:
        return input, jnp.ones(input.shape, jnp.bool_)
    if p == 1.0:
        return jnp.zeros_like(input), jnp.zeros(input.shape, jnp.bool_)
    keep = jax.random.bernoulli(rng(), 1.0 - p, input.shape)
    return jnp.where(keep, input / (1.0 - p), jnp.zeros((), input.dtype)), keep


@_op("aten.dropout.default")
def _dropout(input, p, train, *, rng):
    return _native_dropout(input, p, train, rng=rng)[0]


@_op("aten.bernoulli.p")
def _bernoulli(self, p=0.5, *, rng, generator=None):
    return jax.random.bernoulli(rng(), p, self.shape).astype(self.dtype)


@_op("aten.bernoulli.default")
def _bernoulli_tensor(self, *, rng, generator=None):
    return jax.random.bernoulli(rng(), self, self.shape).astype(self.dtype)


_op("aten.rand_like.default")(
    lambda x, *, rng, dtype=None: jax.random.uniform(rng(), x.shape, _dtype(dtype, x.dtype)))
_op("aten.randn_like.default")(
    lambda x, *, rng, dtype=None: jax.random.normal(rng(), x.shape, _dtype(dtype, x.dtype)))


@_op("aten.scaled_dot_product_attention.default")
def _sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, *, scale=None,
          enable_gqa=False, rng):
    return scaled_dot_product_attention(query, key, value, attn_mask, dropout_p, is_causal,
                                          scale, enable_gqa,
                                          key_rng=rng() if dropout_p > 0 else None)


# ----------------------------------------------------------------------- Python scalars
# symbolic sizes (dynamic shapes) arrive as Python ints computed by these nodes
_op("getitem")(operator.getitem)
for _name in ("add", "sub", "mul", "floordiv", "truediv", "mod", "pow", "neg", "eq", "ne",
              "lt", "le", "gt", "ge", "and_", "or_", "not_"):
    _op(f"operator.{_name}")(getattr(operator, _name))
_op("torch.sym_max")(max)
_op("torch.sym_min")(min)
_op("torch.sym_float")(float)
_op("torch.sym_int")(int)
_op("torch.sym_not")(operator.not_)
_op("math.ceil")(math.ceil)
_op("math.floor")(math.floor)
_op("math.sqrt")(math.sqrt)
