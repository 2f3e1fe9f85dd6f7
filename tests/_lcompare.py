"""Layer parity harness: torch layer -> state_dict -> jparam layer; forward, grads, buffers."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch

import jparam
from _fcompare import assert_close


def _np(t):
    return t.detach().cpu().numpy()


def compare_layer(tm, jm, inputs, family, rtol=1e-5, atol=1e-6, modes=(True, False), steps=2,
                  check_repr=True, seed=0, nodiff=()):
    """``inputs``: numpy arrays (floating ones are differentiated) or other values."""
    if check_repr:
        assert repr(jm) == repr(tm), f"repr differs:\n{jm!r}\n{tm!r}"
    assert list(jm.state_dict()) == list(tm.state_dict())
    for (jn, jp), (tn, tp) in zip(jm.named_parameters(), tm.named_parameters()):
        assert jn == tn and tuple(jp.shape) == tuple(tp.shape), (jn, tn)
    jm.load_state_dict(tm.state_dict())
    rng = np.random.default_rng(seed)
    for mode in modes:
        tm.train(mode)
        jm.train(mode)
        for _ in range(steps):
            diff = [i for i, a in enumerate(inputs) if i not in nodiff and isinstance(a, np.ndarray) and np.issubdtype(a.dtype, np.floating)]
            tin = [torch.tensor(a, requires_grad=i in diff) if isinstance(a, np.ndarray) else a
                   for i, a in enumerate(inputs)]
            jin = [jnp.asarray(a) if isinstance(a, np.ndarray) else a for a in inputs]
            tout = tm(*tin)
            ct = rng.standard_normal(tuple(tout.shape)).astype(np.float32)
            tm.zero_grad()
            (tout * torch.tensor(ct)).sum().backward()

            def loss(m, *xs):
                return jnp.sum(m(*xs) * ct)

            jout, _ = jparam.call(jm, *jin)
            assert_close(jout, _np(tout), rtol, atol, "forward", family)
            if diff:
                def in_loss(*dx):
                    full = list(jin)
                    for i, d in zip(diff, dx):
                        full[i] = d
                    return jnp.sum(jparam.call(jm, *full)[0] * ct)

                gs = jax.grad(in_loss, argnums=tuple(range(len(diff))))(*[jin[i] for i in diff])
                for i, g in zip(diff, gs):
                    if tin[i].grad is None:  # torch treats it as non-differentiable (a target)
                        continue
                    assert_close(g, _np(tin[i].grad), rtol, atol * 10, f"input grad {i}", family)
            _, jm2 = jparam.backward(loss, jm, *jin)
            tparams = dict(tm.named_parameters())
            for name, p in jm2.named_parameters():
                tp = tparams[name]
                if tp.grad is None:
                    assert p.grad is None or not np.any(np.asarray(p.grad)), name
                else:
                    assert p.grad is not None, f"no grad for {name}"
                    assert_close(p.grad, _np(tp.grad), rtol, atol * 10, f"grad {name}", family)
            tbufs = dict(tm.named_buffers())
            for name, b in jm2.named_buffers():
                if name.endswith("_rng"):
                    continue
                assert_close(np.asarray(b), _np(tbufs[name]), rtol, atol, f"buffer {name}", family)
            jm = jm2.zero_grad()
    return jm


def bf16_smoke(jm, *inputs):
    jm = jm.bfloat16() if hasattr(jm, "bfloat16") else jm
    xs = [jnp.asarray(a, jnp.bfloat16) if isinstance(a, np.ndarray) and
          np.issubdtype(a.dtype, np.floating) else a for a in inputs]
    out, _ = jparam.call(jm, *xs)
    assert out.dtype == jnp.bfloat16, out.dtype
    assert bool(jnp.all(jnp.isfinite(out.astype(jnp.float32))))
