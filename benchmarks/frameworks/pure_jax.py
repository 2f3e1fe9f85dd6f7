"""The zero-overhead baseline, written as a strong JAX engineer would: parameters as
lists/dicts of arrays, optax, ``jax.jit(step, donate_argnums=<params, opt state[, buffers]>)``;
``jax.nn.dot_product_attention`` on the (B, T, heads, hd) layout, layer/batch norm with the
closed-form backward (``_ops.standardize``), the CNN channels-last inside with tiled pooling,
and ``lax.scan`` over stacked blocks in the ``jax_scan`` variant. The same math as every other
framework (the losses agree), so a ratio to it measures a framework's overhead."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from benchmarks.frameworks import Runner, jit_runner
from benchmarks.frameworks._ops import (batch_norm_nhwc_train, causal_attention, dropout,
                                        gelu, layer_norm, loss_fn, make_optimizer,
                                        max_pool2d_nhwc)


def _sub(sd, prefix):
    return {k[len(prefix):]: jnp.asarray(v) for k, v in sd.items() if k.startswith(prefix)}


def mlp_forward(params, x):
    for i, layer in enumerate(params):
        x = x @ layer["w"].T + layer["b"]
        if i < len(params) - 1:
            x = jax.nn.relu(x)
    return x


def cnn_forward(p, bn, key, x):
    """Channels-last inside (what XLA's convolutions want), torch's NCHW at the boundary: one
    transpose in, one before the flatten so the Linear sees torch's feature order."""
    new_bn = {}
    h = x.transpose(0, 2, 3, 1)
    for i in (1, 2):
        w = p[f"conv{i}.weight"].transpose(2, 3, 1, 0)                  # OIHW -> HWIO
        h = jax.lax.conv_general_dilated(h, w, (1, 1), [(1, 1)] * 2,
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        h = h + p[f"conv{i}.bias"]
        h, *new_bn[i] = batch_norm_nhwc_train(h, p[f"bn{i}.weight"], p[f"bn{i}.bias"], *bn[i])
        h = max_pool2d_nhwc(jax.nn.relu(h))
    h = dropout(key, h.transpose(0, 3, 1, 2).reshape(h.shape[0], -1), 0.25)
    return h @ p["fc.weight"].T + p["fc.bias"], new_bn


def gpt_block(h, b, heads):
    a = layer_norm(h, b["ln1.weight"], b["ln1.bias"])
    a = causal_attention(a @ b["qkv.weight"].T + b["qkv.bias"], heads)
    h = h + a @ b["proj.weight"].T + b["proj.bias"]
    a = layer_norm(h, b["ln2.weight"], b["ln2.bias"])
    a = gelu(a @ b["fc1.weight"].T + b["fc1.bias"])
    return h + a @ b["fc2.weight"].T + b["fc2.bias"]


def gpt_forward(p, tok, heads):
    h = p["wte"][tok] + p["wpe"][: tok.shape[-1]]
    if isinstance(p["blocks"], dict):      # stacked along a leading axis: scan over layers
        h, _ = jax.lax.scan(lambda h, b: (gpt_block(h, b, heads), None), h, p["blocks"])
    else:
        for b in p["blocks"]:
            h = gpt_block(h, b, heads)
    h = layer_norm(h, p["ln_f"]["weight"], p["ln_f"]["bias"])
    return h @ p["wte"].T


def build(c, sd, data, variant: str = "jax") -> Runner:
    x, y = jnp.asarray(data[0]), jnp.asarray(data[1])
    opt = make_optimizer(c.opt)

    if c.kind in ("mlp", "gpt"):
        if c.kind == "mlp":
            params = [{"w": jnp.asarray(sd[f"{2 * i}.weight"]), "b": jnp.asarray(sd[f"{2 * i}.bias"])}
                      for i in range(c.depth)]
            forward = mlp_forward
        else:
            params = {"wte": jnp.asarray(sd["wte.weight"]), "wpe": jnp.asarray(sd["wpe.weight"]),
                      "blocks": [_sub(sd, f"blocks.{i}.") for i in range(c.layers)],
                      "ln_f": _sub(sd, "ln_f.")}
            if variant == "jax_scan":
                params["blocks"] = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *params["blocks"])
            forward = lambda p, t: gpt_forward(p, t, c.heads)  # noqa: E731

        def train_step(params, opt_state, x, y):
            loss, grads = jax.value_and_grad(lambda p: loss_fn(c.loss, forward(p, x), y))(params)
            updates, opt_state = opt.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        return jit_runner(train_step, (params, opt.init(params)), (x, y))

    if c.kind == "cnn":
        params = {k: jnp.asarray(v) for k, v in sd.items()
                  if not k.startswith("bn") or k.endswith(("weight", "bias"))}
        bn = {i: (jnp.asarray(sd[f"bn{i}.running_mean"]), jnp.asarray(sd[f"bn{i}.running_var"]),
                  jnp.asarray(sd[f"bn{i}.num_batches_tracked"], jnp.int32)) for i in (1, 2)}
        aux = (bn, jax.random.key(0))

        def train_step(params, opt_state, aux, x, y):
            bn, key = aux
            key, sub = jax.random.split(key)

            def lf(p):
                out, new_bn = cnn_forward(p, bn, sub, x)
                return loss_fn(c.loss, out, y), new_bn

            (loss, new_bn), grads = jax.value_and_grad(lf, has_aux=True)(params)
            updates, opt_state = opt.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, (new_bn, key), loss

        return jit_runner(train_step, (params, opt.init(params), aux), (x, y))
    raise ValueError(c.kind)
