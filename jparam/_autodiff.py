"""Autodiff with torch's semantics: ``backward`` accumulates into ``p.grad``.

Only trainable parameters (``requires_grad=True``) are differentiated. Every other leaf,
buffers, plain arrays, frozen parameters, is wrapped in ``stop_gradient``. The forward
runs on a fresh copy of the model, so buffers it reassigns (BatchNorm's running stats,
dropout's key) come back in the returned model and the input model is never mutated.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from jparam import _flatten as fl
from jparam._module import Module
from jparam._tracing import check_no_escape

__all__ = ["backward", "value_and_grad", "grad", "call"]


def _check_model(model: Any, fname: str) -> None:
    if not isinstance(model, Module):
        raise TypeError(f"{fname}: the first argument after fn must be a jparam.nn.Module, "
                        f"got {type(model).__module__}.{type(model).__qualname__}")


def _check_scalar(loss: Any, fname: str) -> None:
    shape = getattr(loss, "shape", None)
    if shape is None or tuple(shape) != () or not jnp.issubdtype(jnp.result_type(loss), jnp.floating):
        desc = f"shape {tuple(shape)} dtype {jnp.result_type(loss)}" if shape is not None else type(loss).__name__
        raise TypeError(f"{fname}: fn must return a scalar floating-point loss "
                        f"(grad can be implicitly created only for scalar outputs), got {desc}")


def _check_escape(m: Module, inputs: list, where: str) -> None:
    """After a forward: no state it stored may come from a nested transformation it ran."""
    if "_jp_lazy" in m.__dict__:  # never materialised: the forward stored nothing
        return
    new, aux = fl.flatten_module(m)
    check_no_escape(inputs, new, aux.bp.leaf_names, where)


def _split(model: Module):
    leaves, aux = fl.flatten_module(model)
    bp = aux.bp
    train = tuple(i for i, (rg, _) in enumerate(bp.params) if rg)
    return leaves, aux, train


def _rebuild_for_grad(leaves, aux, train, tvals):
    """The model with ``tvals`` as its trainable parameters and every other array leaf
    behind ``stop_gradient`` (the trainable slots are replaced, so they are not wrapped)."""
    slots = dict(zip(train, tvals))
    stopped = [slots[i] if i in slots else jax.lax.stop_gradient(v) if isinstance(v, jax.Array) else v
               for i, v in enumerate(leaves)]
    return fl.unflatten_module(aux, stopped)


def backward(fn: Callable[..., Any], model: Module, *args: Any, has_aux: bool = False,
             **kwargs: Any):
    """``loss.backward()`` for a pure function: ``loss, model = jparam.backward(fn, model, *args)``.

    Computes ``fn(model, *args, **kwargs)`` and the gradient of its scalar result with
    respect to every trainable parameter, and returns the model after the forward (buffers
    updated) with gradients accumulated into ``p.grad`` (``grad = grad + g`` when a grad is
    already present, as torch does until ``zero_grad``). Tied parameters get the sum of the
    gradients from every place they are used. With ``has_aux=True``, ``fn`` returns
    ``(loss, aux)`` and the result is ``((loss, aux), model)``.

    Example:
        >>> model = nn.Linear(4, 2)
        >>> loss, model = jparam.backward(lambda m, x, y: jnp.mean((m(x) - y) ** 2), model, x, y)
        >>> model.weight.grad.shape
        (2, 4)
    """
    _check_model(model, "jparam.backward")
    leaves, aux, train = _split(model)

    def inner(tvals):
        m = _rebuild_for_grad(leaves, aux, train, tvals)
        out = fn(m, *args, **kwargs)
        _check_escape(m, list(leaves) + list(tvals), "jparam.backward")
        if has_aux:
            if not (isinstance(out, tuple) and len(out) == 2):
                raise TypeError("jparam.backward(has_aux=True): fn must return a (loss, aux) pair")
            loss, extra = out
        else:
            loss, extra = out, None
        _check_scalar(loss, "jparam.backward")
        return loss, (extra, m)

    tvals = [leaves[i] for i in train]
    (loss, (extra, after)), gs, used = _grads_with_mask(inner, tvals)
    leaves2, aux2 = fl.flatten_module(after)
    bp2 = aux2.bp
    pdata, grads, others = fl.split_leaves(bp2, leaves2)
    per = fl.grads_by_param(bp2, grads)
    if len(bp2.params) == len(aux.bp.params):
        index = {i: i for i in train}
    else:  # forward changed the set of parameters: match by identity token
        where = {t: j for j, t in enumerate(aux2.tokens)}
        index = {i: where[aux.tokens[i]] for i in train if aux.tokens[i] in where}
    for i, g, u in zip(train, gs, used):
        j = index.get(i)
        if j is None or not u:  # a parameter the loss does not use gets no grad (torch: None)
            continue
        g = g.astype(pdata[j].dtype) if g.dtype != pdata[j].dtype else g
        per[j] = g if per[j] is None else per[j] + g
    new_model = fl.assemble(bp2, aux2.tokens, pdata, per, others)
    return ((loss, extra) if has_aux else loss), new_model


try:  # which inputs reach an output: JAX's dead-code elimination (private, so guarded)
    from jax._src.interpreters.partial_eval import dce_jaxpr as _dce_jaxpr
except Exception:  # pragma: no cover
    _dce_jaxpr = None


def _grads_with_mask(inner: Callable, tvals: list):
    """``(value, grads, used)`` of ``inner(tvals) -> (loss, aux)``.

    ``jax.grad`` returns dense zeros for inputs the loss never touches, where torch leaves
    ``.grad`` as ``None`` (so its optimizers skip them: no weight decay, no momentum).

    1. The linear jaxpr that ``jax.vjp`` builds anyway says which inputs' tangents reach
       the loss; dead-code elimination on it is cheap. Every input it marks is used.
    2. Only when some input is unmarked (or that jaxpr is not available) is the forward
       traced again, forward only, to tell an input the loss never reads (``None``) from
       one it reads through a non-differentiable path such as ``round`` or ``stop_gradient``
       (a zero gradient, as before). In the common case the model's Python runs once.
    """
    if _dce_jaxpr is None or not tvals:
        value, gs = jax.value_and_grad(inner, has_aux=True)(tvals)
        return value, gs, [True] * len(tvals)
    loss, f_vjp, extra = jax.vjp(inner, tvals, has_aux=True)
    (gs,) = f_vjp(jnp.ones_like(loss))
    used = _tangent_mask(f_vjp, len(tvals))
    if used is None or not all(used):
        # forward-only trace (only the loss is an output: aux values of any type pass
        # through the differentiation above, as with jax.grad's has_aux)
        closed = jax.make_jaxpr(lambda tv: inner(tv)[0])(tvals)
        _, reads = _dce_jaxpr(closed.jaxpr, [True])
        used = list(reads) if used is None else [u or r for u, r in zip(used, reads)]
    return (loss, extra), gs, list(used)


def _tangent_mask(f_vjp: Any, n: int):
    """Which of the ``n`` inputs' tangents reach the output of ``f_vjp``'s linear jaxpr,
    or ``None`` where this JAX version does not expose it (``VJP.jaxpr``; jax 0.10 has it)."""
    try:
        jaxpr = f_vjp.jaxpr
        if len(jaxpr.invars) != n:
            return None
        return list(_dce_jaxpr(jaxpr, [True] * len(jaxpr.outvars))[1])
    except Exception:  # pragma: no cover  (older JAX: no .jaxpr on the vjp function)
        return None


def value_and_grad(fn: Callable[..., Any], has_aux: bool = False) -> Callable[..., Any]:
    """Functional form: ``(model, *args) -> (value, grads)``.

    ``grads`` has the model's structure: a module whose trainable parameters hold their
    gradients and whose every other leaf (buffers, arrays, frozen parameters) is ``None``.
    Updated buffers are not returned; use :func:`backward` or :func:`call` for those.

    Example:
        >>> loss, g = jparam.value_and_grad(loss_fn)(model, x, y)
        >>> g.weight.data.shape, g.bias.data.shape
        ((2, 4), (2,))
    """

    def wrapped(model: Module, *args: Any, **kwargs: Any):
        _check_model(model, "jparam.value_and_grad")
        leaves, aux, train = _split(model)

        def inner(tvals):
            m = _rebuild_for_grad(leaves, aux, train, tvals)
            out = fn(m, *args, **kwargs)
            loss = out[0] if has_aux else out
            _check_scalar(loss, "jparam.value_and_grad")
            return out

        value, gs = jax.value_and_grad(inner, has_aux=has_aux)([leaves[i] for i in train])
        bp = aux.bp
        nograd = bp.with_grads([False] * len(bp.params))
        out = [None] * (len(bp.params) + bp.n_other)
        for i, g in zip(train, gs):
            out[i] = g
        return value, fl.unflatten_module(fl.Aux(nograd, aux.tokens), out)

    return wrapped


def grad(fn: Callable[..., Any], has_aux: bool = False) -> Callable[..., Any]:
    """Like :func:`value_and_grad` but returns only the gradients (and aux if ``has_aux``)."""
    vg = value_and_grad(fn, has_aux=has_aux)

    def wrapped(model: Module, *args: Any, **kwargs: Any):
        value, g = vg(model, *args, **kwargs)
        return (g, value[1]) if has_aux else g

    return wrapped


def call(model: Module, *args: Any, **kwargs: Any):
    """Run ``model(*args, **kwargs)`` purely: returns ``(output, new_model)``.

    The forward runs on a copy; buffers it updates (BatchNorm running statistics in
    training mode, dropout keys) are in ``new_model``, and ``model`` is left unchanged.
    Use it for stateful inference or evaluation inside ``jax.jit``.

    Example:
        >>> bn = nn.BatchNorm1d(4)
        >>> out, bn = jparam.call(bn, x)     # training mode: the running stats move
        >>> int(bn.num_batches_tracked)
        1
    """
    _check_model(model, "jparam.call")
    leaves, aux = fl.flatten_module(model)
    m = fl.unflatten_module(aux, list(leaves))
    out = m(*args, **kwargs)
    _check_escape(m, leaves, "jparam.call")
    return out, m
