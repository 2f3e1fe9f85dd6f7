"""The CPU fast paths of the spatial ops (channels-last inside, closed-form normalisation
derivative, tiled max pooling) give torch's numbers, ties included, to every order of
differentiation, and the compiled CNN step has the structure that makes them fast."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import jparam
from jparam import nn
from jparam.nn import functional as F


def _tied(shape, seed):
    """Random values with many exact ties: a third zeros (post-ReLU), the rest rounded."""
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    x.reshape(-1)[: x.size // 3] = 0.0
    return np.round(x * 2) / 2


MAXPOOL = [  # (fn, shape, kwargs): tiled and overlapping windows, batched and unbatched
    ("max_pool1d", (2, 3, 10), dict(kernel_size=3)),
    ("max_pool2d", (4, 3, 8, 9), dict(kernel_size=2)),
    ("max_pool2d", (3, 8, 9), dict(kernel_size=2)),
    ("max_pool2d", (4, 3, 8, 8), dict(kernel_size=(2, 4))),
    ("max_pool2d", (4, 3, 9, 9), dict(kernel_size=2, ceil_mode=True)),
    ("max_pool2d", (4, 3, 9, 9), dict(kernel_size=3, stride=2, padding=1)),
    ("max_pool3d", (2, 3, 4, 6, 8), dict(kernel_size=2)),
]


@pytest.mark.parametrize("name,shape,kw", MAXPOOL)
def test_max_pool_gradient_goes_to_first_max_like_torch(name, shape, kw):
    x = _tied(shape, 0)
    _pool_equals_torch(name, x, kw, np.random.default_rng(1))


def _pool_equals_torch(name, x, kw, rng):
    """Values, the eager vjp and the jitted gradient of ``F.<name>`` bitwise equal to torch's."""
    tx = torch.tensor(x, requires_grad=True)
    ty = getattr(TF, name)(tx, **kw)
    ct = rng.standard_normal(ty.shape).astype(np.float32)
    ty.backward(torch.tensor(ct))
    fn = getattr(F, name)
    y, vjp = jax.vjp(lambda a: fn(a, **kw), jnp.asarray(x))
    g_jit = jax.jit(jax.grad(lambda a: jnp.sum(fn(a, **kw) * ct)))(jnp.asarray(x))
    np.testing.assert_array_equal(np.asarray(y), ty.detach().numpy())
    np.testing.assert_array_equal(np.asarray(vjp(jnp.asarray(ct))[0]), tx.grad.numpy())
    np.testing.assert_array_equal(np.asarray(g_jit), tx.grad.numpy())


@pytest.mark.parametrize("name,shape,kw", [
    ("max_pool2d", (3, 4, 6, 8), dict(kernel_size=2)),        # 4-element windows: pairwise
    ("max_pool2d", (3, 4, 6, 8), dict(kernel_size=(2, 4))),   # 8: one variadic reduce
    ("max_pool1d", (3, 4, 15), dict(kernel_size=5)),
    ("max_pool3d", (2, 3, 4, 4, 6), dict(kernel_size=2)),
])
def test_tiled_max_pool_gradient_with_nans_and_ties_goes_where_torch_sends_it(name, shape, kw):
    """torch's scan keeps the first of tied maxima but moves to every later NaN, so with
    several NaNs in a window the LAST one gets the gradient; eager, jit and the values alike."""
    rng = np.random.default_rng(11)
    x = _tied(shape, 9)
    x.reshape(-1)[rng.choice(x.size, x.size // 4, replace=False)] = np.nan
    _pool_equals_torch(name, x, kw, rng)


def test_max_pool_gradient_reaches_one_element_per_window_when_xla_recomputes_its_input():
    """Conv-BN-ReLU fused into max pooling under jit: XLA recomputes the pooled activations
    inside each consumer fusion. An earlier candidate mask (``x == max`` hits, then an
    exclusive prefix-or over the window) was right eagerly but, compiled here, lost the
    gradient of the all-zero post-ReLU windows (weight gradient off by up to 50). Every
    window must pass its gradient to exactly one element, as in torch."""
    rng = np.random.default_rng(12)
    x = rng.standard_normal((8, 1, 28, 28)).astype(np.float32)
    p = [rng.uniform(-1 / 3, 1 / 3, (16, 1, 3, 3)).astype(np.float32),
         rng.uniform(-1 / 3, 1 / 3, 16).astype(np.float32),
         np.ones(16, np.float32), np.zeros(16, np.float32)]
    ct = np.sin(np.arange(8 * 16 * 14 * 14, dtype=np.float32)).reshape(8, 16, 14, 14)

    def f(p, x, ct, nn_f):     # nn_f: jparam's or torch's functional
        h = nn_f.batch_norm(nn_f.conv2d(x, p[0], p[1], padding=1), None, None, p[2], p[3],
                            training=True)
        return (nn_f.max_pool2d(nn_f.relu(h), 2) * ct).sum()

    g = jax.jit(jax.grad(lambda p, x, ct: f(p, x, ct, F)))(
        [jnp.asarray(a) for a in p], jnp.asarray(x), jnp.asarray(ct))
    tp = [torch.tensor(a, requires_grad=True) for a in p]
    f(tp, torch.tensor(x), torch.tensor(ct), TF).backward()
    for name, a, t in zip(("conv weight", "conv bias", "bn weight", "bn bias"), g, tp):
        np.testing.assert_allclose(np.asarray(a), t.grad.numpy(), rtol=1e-4, atol=2e-4,
                                   err_msg=name)


def test_tiled_max_pool_propagates_nan_and_forward_mode_works():
    x = np.random.default_rng(2).standard_normal((1, 2, 4, 4)).astype(np.float32)
    x[0, 1, 0, 1] = np.nan
    y = np.asarray(F.max_pool2d(jnp.asarray(x), 2))
    assert np.isnan(y[0, 1, 0, 0]) and np.isfinite(np.delete(y.reshape(-1), 4)).all()
    # jvp (forward mode) = vjp transposed: <J v, u> == <v, J^T u>
    v = np.random.default_rng(3).standard_normal(x.shape).astype(np.float32)
    u = np.random.default_rng(4).standard_normal(y.shape).astype(np.float32)
    xs = jnp.asarray(np.nan_to_num(x))
    _, jv = jax.jvp(lambda a: F.max_pool2d(a, 2), (xs,), (jnp.asarray(v),))
    jtu = jax.vjp(lambda a: F.max_pool2d(a, 2), xs)[1](jnp.asarray(u))[0]
    np.testing.assert_allclose(float(jnp.sum(jv * u)), float(jnp.sum(jtu * v)), rtol=1e-5)


@pytest.mark.parametrize("name", ["relu", "elu", "celu", "selu", "leaky_relu", "relu6",
                                  "hardtanh", "hardswish", "hardsigmoid"])
def test_activation_gradient_at_kinks_matches_torch(name):
    pts = np.array([-3.0, -1.0, 0.0, 1.0, 3.0, 6.0, -0.5, 0.5], np.float32)
    t = torch.tensor(pts, requires_grad=True)
    getattr(TF, name)(t).sum().backward()
    g = jax.grad(lambda a: getattr(F, name)(a).sum())(jnp.asarray(pts))
    np.testing.assert_allclose(np.asarray(g), t.grad.numpy(), rtol=1e-6, atol=1e-7)


NORMS = {
    "batch_norm": lambda x: F.batch_norm(x, None, None, training=True),
    "batch_norm_running": lambda x: F.batch_norm(x, jnp.zeros(6, x.dtype), jnp.ones(6, x.dtype),
                                                 training=True)[0],
    "layer_norm": lambda x: F.layer_norm(x, (5, 5)),
    "group_norm": lambda x: F.group_norm(x, 3),
    "instance_norm": lambda x: F.instance_norm(x),
}


@pytest.mark.parametrize("name", sorted(NORMS))
def test_normalisation_derivatives_match_finite_differences(name):
    """First and second derivatives of the closed-form JVP against central differences,
    in float64 so the comparison is tight."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(5)
        x = jnp.asarray(rng.standard_normal((4, 6, 5, 5)) * 3 + 2)
        v = jnp.asarray(rng.standard_normal(x.shape))
        w = jnp.asarray(rng.standard_normal(x.shape))

        def f(a):
            return jnp.sum(jnp.tanh(NORMS[name](a)) * w)

        e = 1e-6
        fd = (f(x + e * v) - f(x - e * v)) / (2 * e)
        np.testing.assert_allclose(float(jnp.sum(jax.grad(f)(x) * v)), float(fd), rtol=1e-7)
        hv = jax.jvp(jax.grad(f), (x,), (v,))[1]
        hfd = (jax.grad(f)(x + e * v) - jax.grad(f)(x - e * v)) / (2 * e)
        np.testing.assert_allclose(np.asarray(hv), np.asarray(hfd), rtol=1e-5, atol=1e-7)


def test_normalisation_with_traced_eps_still_differentiates():
    x = jnp.asarray(np.random.default_rng(6).standard_normal((3, 4)), jnp.float32)
    g = jax.jit(jax.grad(lambda a, eps: F.layer_norm(a, (4,), eps=eps)[:, 0].sum()))(x, 1e-5)
    tx = torch.tensor(np.asarray(x), requires_grad=True)
    TF.layer_norm(tx, (4,), eps=1e-5)[:, 0].sum().backward()
    np.testing.assert_allclose(np.asarray(g), tx.grad.numpy(), rtol=1e-4, atol=1e-5)


class _CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.fc = nn.Linear(16 * 4 * 4, 5)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        return self.fc(x.reshape(x.shape[0], -1))


def _torch_cnn(model):
    t = torch.nn.Sequential()
    t.conv1, t.bn1 = torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.BatchNorm2d(8)
    t.conv2, t.bn2 = torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.BatchNorm2d(16)
    t.fc = torch.nn.Linear(256, 5)
    t.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in model.state_dict().items()})
    return t


def test_conv_bn_relu_pool_stack_matches_torch_through_a_jitted_step():
    jparam.manual_seed(0)
    model = _CNN()
    tmodel = _torch_cnn(model)
    x = np.random.default_rng(7).standard_normal((6, 1, 16, 16)).astype(np.float32)
    y = np.random.default_rng(8).integers(0, 5, 6)

    def loss_fn(m, x, y):
        return F.cross_entropy(m(x), y)

    @jax.jit
    def step(m, x, y):
        loss, m = jparam.backward(loss_fn, m.zero_grad(), x, y)
        return loss, m

    loss, model = step(model, jnp.asarray(x), jnp.asarray(y))
    tloss = TF.cross_entropy(tmodel.fc(TF.max_pool2d(TF.relu(tmodel.bn2(tmodel.conv2(
        TF.max_pool2d(TF.relu(tmodel.bn1(tmodel.conv1(torch.tensor(x)))), 2)))), 2).flatten(1)),
        torch.tensor(y))
    tloss.backward()
    np.testing.assert_allclose(float(loss), tloss.item(), rtol=1e-5)
    tparams = dict(tmodel.named_parameters())
    for name, p in model.named_parameters():
        np.testing.assert_allclose(np.asarray(p.grad), tparams[name].grad.numpy(),
                                   rtol=1e-4, atol=1e-5, err_msg=name)
    tbuf = dict(tmodel.named_buffers())
    for name, b in model.named_buffers():
        np.testing.assert_allclose(np.asarray(b), tbuf[name].numpy(), rtol=1e-5, atol=1e-6,
                                   err_msg=name)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU compiled-graph structure")
def test_compiled_cnn_step_runs_channels_last_without_select_and_scatter():
    """Structure, not timing: the transposes around convolutions cancel between layers (the
    compiled step has no more transposes than a model written channels-last by hand), and
    max pooling's backward is an elementwise select, not XLA's select-and-scatter."""
    jparam.manual_seed(0)
    model = _CNN()
    x, y = jnp.ones((6, 1, 16, 16)), jnp.zeros(6, jnp.int32)

    def step(m, x, y):
        return jparam.backward(lambda m, x, y: F.cross_entropy(m(x), y), m.zero_grad(), x, y)

    hlo = jax.jit(step).lower(model, x, y).compile().as_text()
    p = {k: jnp.asarray(v) for k, v in model.state_dict().items() if "running" not in k
         and "num_batches" not in k}

    def nhwc_loss(p, x, y):     # the same model, written channels-last by hand
        h = x.transpose(0, 2, 3, 1)
        for i in (1, 2):
            w = p[f"conv{i}.weight"].transpose(2, 3, 1, 0)
            h = jax.lax.conv_general_dilated(h, w, (1, 1), [(1, 1)] * 2,
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"))
            h = h + p[f"conv{i}.bias"]
            m, v = h.mean((0, 1, 2)), h.var((0, 1, 2))
            h = (h - m) * jax.lax.rsqrt(v + 1e-5) * p[f"bn{i}.weight"] + p[f"bn{i}.bias"]
            h = jax.lax.reduce_window(jax.nn.relu(h), -jnp.inf, jax.lax.max, (1, 2, 2, 1),
                                      (1, 2, 2, 1), "VALID")
        h = h.transpose(0, 3, 1, 2).reshape(h.shape[0], -1)
        return F.cross_entropy(h @ p["fc.weight"].T + p["fc.bias"], y)

    ref = jax.jit(jax.value_and_grad(nhwc_loss)).lower(p, x, y).compile().as_text()
    def count(text, pattern):
        return len(re.findall(pattern, text))

    transposes, scatters = r" transpose\(", r'op_name="[^"]*select_and_scatter'
    assert count(hlo, transposes) <= count(ref, transposes)
    assert count(hlo, scatters) == 0
    assert count(ref, scatters) > 0      # the hand-written reference does use it
