"""Helpers comparing jparam.nn.functional against torch.nn.functional (forward + input grads)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch

MAX_ERR: dict = {}  # family -> largest relative error seen (reported in docs/layers.md)


def rel_err(a, b):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    scale = max(np.max(np.abs(b)) if b.size else 0.0, 1e-30)
    return float(np.max(np.abs(a - b)) / scale) if b.size else 0.0


def assert_close(a, b, rtol=1e-5, atol=1e-6, what="", family=None):
    a = np.asarray(a)
    b = np.asarray(b)
    assert a.shape == b.shape, f"{what}: shape {a.shape} != torch {b.shape}"
    if family is not None:
        MAX_ERR[family] = max(MAX_ERR.get(family, 0.0), rel_err(a, b))
    np.testing.assert_allclose(a.astype(np.float64), b.astype(np.float64), rtol=rtol, atol=atol,
                               err_msg=what)


def randn(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def check(jfn, tfn, args, diff=None, rtol=1e-5, atol=1e-6, kwargs=None, tkwargs=None,
          family=None, seed=0):
    """Compare forward and grads of ``sum(out * cotangent)`` wrt the args listed in ``diff``.

    ``args`` are numpy arrays (or other values passed unchanged to both).
    """
    kwargs = kwargs or {}
    tkwargs = kwargs if tkwargs is None else tkwargs
    if diff is None:
        diff = [i for i, a in enumerate(args)
                if isinstance(a, np.ndarray) and np.issubdtype(a.dtype, np.floating)]
    targs = [torch.tensor(a, requires_grad=(i in diff)) if isinstance(a, np.ndarray) else a
             for i, a in enumerate(args)]
    tout = tfn(*targs, **tkwargs)
    jargs = [jnp.asarray(a) if isinstance(a, np.ndarray) else a for a in args]
    jout = jfn(*jargs, **kwargs)
    assert_close(jout, tout.detach().numpy(), rtol, atol, "forward", family)
    if not diff:
        return
    rng = np.random.default_rng(seed + 1)
    ct = rng.standard_normal(tuple(tout.shape)).astype(np.float32)
    (tout * torch.tensor(ct)).sum().backward()

    def f(*dargs):
        full = list(jargs)
        for i, d in zip(diff, dargs):
            full[i] = d
        return jnp.sum(jfn(*full, **kwargs) * ct)

    grads = jax.grad(f, argnums=tuple(range(len(diff))))(*[jargs[i] for i in diff])
    for i, g in zip(diff, grads):
        tg = targs[i].grad
        tg = np.zeros_like(args[i]) if tg is None else tg.numpy()
        assert_close(g, tg, rtol, atol * 10, f"grad of arg {i}", family)
