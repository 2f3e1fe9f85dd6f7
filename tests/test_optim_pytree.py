"""The optimizer as a plain pytree (issue 12): identity travels as data, so two optimizers of
one structure in one jitted step, or in two threads sharing one jitted step, behave exactly
as if run alone; concurrent readers of a jitted model never see it half built;
load_state_dict validates everything before it changes anything; add_param_group works after
jit; hyperparameters read back exactly as set (schedulers bit-equal to torch); the state's
key paths are readable; optimizer leaves live on the parameters' devices."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jparam
from jparam import nn, optim
from jparam.optim import lr_scheduler as jls


def _loss(m, x):
    return jnp.mean(m(x) ** 2)


def _xs(n, seed=0, shape=(3, 4)):
    rng = np.random.default_rng(seed)
    return [jnp.asarray(rng.standard_normal(shape), jnp.float32) for _ in range(n)]


def _params(m):
    return [np.asarray(p.data) for p in m.parameters()]


def _state_arrays(opt):
    return {(i, k): np.asarray(v) for i, e in opt.state_dict()["state"].items() for k, v in e.items()}


@jax.jit
def _two_step(a, oa, b, ob, x):
    _, a = jparam.backward(_loss, a, x)
    a, oa = oa.step(a)
    _, b = jparam.backward(_loss, b, x)
    b, ob = ob.step(b)
    return a, oa, b, ob


@jax.jit
def _one_step(m, o, x):
    _, m = jparam.backward(_loss, m, x)
    return o.step(m)


def _fresh(seed, lr, kind="SGD"):
    jparam.manual_seed(seed)
    m = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 1))
    if kind == "SGD":
        return m, optim.SGD(m.parameters(), lr=lr, momentum=0.9)
    return m, optim.Adam(m.parameters(), lr=lr)


@pytest.mark.parametrize("kind", ["SGD", "Adam"])
def test_two_same_structure_optimizers_in_one_jit_behave_as_if_alone(kind):
    # the reproduction first
    jparam.manual_seed(0)
    a, b = nn.Linear(4, 1), nn.Linear(4, 1)
    oa = optim.SGD(a.parameters(), lr=0.1, momentum=0.9)
    ob = optim.SGD(b.parameters(), lr=0.01, momentum=0.9)
    a, oa, b, ob = _two_step(a, oa, b, ob, jnp.ones((2, 4)))
    assert oa.state_dict()["param_groups"][0]["lr"] == 0.1
    assert ob.state_dict()["param_groups"][0]["lr"] == 0.01

    # then: 6 steps with a scheduler on each, against each run alone
    xs = _xs(6, seed=1)
    a, oa = _fresh(1, 0.1, kind)
    b, ob = _fresh(2, 0.01, kind)
    sa, sb = jls.StepLR(oa, 2, 0.5), jls.ExponentialLR(ob, 0.9)
    for x in xs:
        a, oa, b, ob = _two_step(a, oa, b, ob, x)
        sa.step()
        sb.step()
    for seed, lr, sched, (m, o) in [(1, 0.1, lambda o: jls.StepLR(o, 2, 0.5), (a, oa)),
                                    (2, 0.01, lambda o: jls.ExponentialLR(o, 0.9), (b, ob))]:
        m1, o1 = _fresh(seed, lr, kind)
        s1 = sched(o1)
        for x in xs:
            m1, o1 = _one_step(m1, o1, x)
            s1.step()
        for p, q in zip(_params(m), _params(m1)):
            np.testing.assert_array_equal(p, q)
        assert o.param_groups[0]["lr"] == o1.param_groups[0]["lr"]
        assert o.state_dict()["param_groups"] == o1.state_dict()["param_groups"]
        alone = _state_arrays(o1)
        assert alone and _state_arrays(o).keys() == alone.keys()
        for k, v in _state_arrays(o).items():
            np.testing.assert_array_equal(v, alone[k])
    assert oa.param_groups[0]["lr"] == 0.1 * 0.5 ** 3
    assert sa.get_last_lr() == [0.1 * 0.5 ** 3]


def test_two_threads_training_through_one_jitted_step_behave_as_if_alone():
    xs = _xs(12, seed=3)
    results = {}

    def train(m, o, barrier):
        seed = 5 if o.param_groups[0]["lr"] == 0.2 else 6
        sched = jls.StepLR(o, 3, 0.5)
        barrier.wait()
        for x in xs:
            m, o = _one_step(m, o, x)
            sched.step()
        results[seed] = (m, o, sched)

    for _ in range(3):  # interleavings vary between runs
        barrier = threading.Barrier(2)
        made = [_fresh(seed, lr) for seed, lr in [(5, 0.2), (6, 0.02)]]  # the init RNG is global
        ts = [threading.Thread(target=train, args=(m, o, barrier)) for m, o in made]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        for seed, lr in [(5, 0.2), (6, 0.02)]:
            m1, o1 = _fresh(seed, lr)
            s1 = jls.StepLR(o1, 3, 0.5)
            for x in xs:
                m1, o1 = _one_step(m1, o1, x)
                s1.step()
            m, o, sched = results[seed]
            for p, q in zip(_params(m), _params(m1)):
                np.testing.assert_array_equal(p, q)
            assert o.param_groups[0]["lr"] == o1.param_groups[0]["lr"] == lr * 0.5 ** 4
            assert sched.get_last_lr() == s1.get_last_lr()
            for k, v in _state_arrays(o).items():
                np.testing.assert_array_equal(v, _state_arrays(o1)[k])


def test_concurrent_readers_of_a_jitted_model_never_see_it_empty():
    jparam.manual_seed(0)
    model = nn.Sequential(*[nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4)) for _ in range(40)])
    expected = len(model.state_dict())
    f = jax.jit(lambda m: m)
    bad = []
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, so a half-built model would be seen
    try:
        for _ in range(20):
            out = f(model)  # lazy: built on first access, by whichever reader comes first
            barrier = threading.Barrier(4)

            def read():
                barrier.wait()
                n = len(out.state_dict())
                if n != expected:
                    bad.append(n)

            ts = [threading.Thread(target=read) for _ in range(4)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
    finally:
        sys.setswitchinterval(interval)
    assert not bad, bad


def _stepped(kind, seed=0, **kw):
    jparam.manual_seed(seed)
    m = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    o = getattr(optim, kind)(m.parameters(), **kw)
    for x in _xs(2, seed=seed + 10, shape=(5, 4)):
        m, o = _one_step(m, o, x)
    return m, o


@pytest.mark.parametrize("src,dst,key", [
    (("SGD", dict(lr=0.1, momentum=0.9)), ("Adam", dict(lr=0.01)), "momentum_buffer"),
    (("Adam", dict(lr=0.01)), ("SGD", dict(lr=0.1, momentum=0.9)), "exp_avg"),
    (("Adam", dict(lr=0.01)), ("RMSprop", dict(lr=0.01)), "exp_avg"),
    (("Adam", dict(lr=0.01)), ("SGD", dict(lr=0.1)), "exp_avg"),
])
def test_cross_optimizer_load_state_dict_is_refused_and_changes_nothing(src, dst, key):
    _, so = _stepped(src[0], **src[1])
    _, do = _stepped(dst[0], seed=1, **dst[1])
    before, lr = _state_arrays(do), do.param_groups[0]["lr"]
    groups_before = do.state_dict()["param_groups"]
    with pytest.raises(ValueError, match=r"param_groups\[0\] has no '\w+': it was not saved by"):
        do.load_state_dict(so.state_dict())
    # the other optimizer's state under this optimizer's own param_groups: refused per parameter
    mixed = {"state": so.state_dict()["state"], "param_groups": do.state_dict()["param_groups"]}
    with pytest.raises(ValueError, match=rf"state\[0\] \(param_groups\[0\] parameter 0\) has keys .*{key}"):
        do.load_state_dict(mixed)
    assert do.param_groups[0]["lr"] == lr
    assert do.state_dict()["param_groups"] == groups_before
    after = _state_arrays(do)
    assert after.keys() == before.keys()
    for k in before:
        np.testing.assert_array_equal(after[k], before[k])


def test_wrong_shape_or_dtype_state_is_refused_and_changes_nothing():
    m, o = _stepped("Adam", lr=0.01)
    sd = o.state_dict()
    before = _state_arrays(o)
    bad = {"state": {i: dict(e) for i, e in sd["state"].items()},
           "param_groups": [dict(g, lr=0.5) for g in sd["param_groups"]]}
    bad["state"][2]["exp_avg_sq"] = np.zeros((4, 4), np.float32)
    with pytest.raises(ValueError, match=r"state\[2\].*exp_avg_sq.*\(4, 4\).*\(3,\)|shape \(4, 4\), expected \(2, 3\)"):
        o.load_state_dict(bad)
    bad["state"][2]["exp_avg_sq"] = np.array(["x"] * 6).reshape(2, 3)
    with pytest.raises(TypeError, match=r"state\[2\] \(param_groups\[0\] parameter 2\)\['exp_avg_sq'\] has dtype"):
        o.load_state_dict(bad)
    bad["param_groups"] = [dict(g, params=[0, 1, 2]) for g in sd["param_groups"]]
    with pytest.raises(ValueError, match="size"):
        o.load_state_dict(bad)
    assert o.param_groups[0]["lr"] == 0.01
    for k, v in _state_arrays(o).items():
        np.testing.assert_array_equal(v, before[k])
    # the cheap check alone changes nothing either, and a good state dict loads
    o._check_state_dict(sd)
    o.load_state_dict(dict(sd, param_groups=[dict(g, lr=0.5) for g in sd["param_groups"]]))
    assert o.param_groups[0]["lr"] == 0.5


def test_add_param_group_after_jit():
    jparam.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    tm = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    tm.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in m.state_dict().items()})
    o = optim.SGD(m[0].parameters(), lr=0.1, momentum=0.9)
    to = torch.optim.SGD(tm[0].parameters(), lr=0.1, momentum=0.9)
    xs = _xs(4, seed=7, shape=(5, 4))
    for k, x in enumerate(xs):
        if k == 2:  # m and o here came out of jax.jit
            o.add_param_group({"params": m[1].parameters(), "lr": 0.05})
            to.add_param_group({"params": tm[1].parameters(), "lr": 0.05})
        m, o = _one_step(m.zero_grad(), o, x)
        tm.zero_grad()
        (tm(torch.tensor(np.asarray(x))) ** 2).mean().backward()
        to.step()
    assert [g["lr"] for g in o.param_groups] == [0.1, 0.05]
    for p, q in zip(_params(m), tm.parameters()):
        np.testing.assert_allclose(p, q.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_hyperparameters_read_back_exactly_and_changing_them_never_recompiles():
    jparam.manual_seed(0)
    m = nn.Linear(4, 2)
    o = optim.Adam(m.parameters(), lr=0.01, betas=(0.9, 0.999))
    assert o.param_groups[0]["lr"] == 0.01 and o.param_groups[0]["betas"] == (0.9, 0.999)
    traces = []

    @jax.jit
    def step(m, o, x):
        traces.append(1)
        return _one_step(m, o, x)

    for k, x in enumerate(_xs(4, shape=(3, 4))):
        o.param_groups[0]["lr"] = 0.01 * (k + 1) / 3
        m, o = step(m, o, x)
        assert o.param_groups[0]["lr"] == 0.01 * (k + 1) / 3
    assert len(traces) == 1
    tp = torch.nn.Linear(4, 2)
    tsd = torch.optim.Adam(tp.parameters(), lr=0.01).state_dict()
    jsd = optim.Adam(nn.Linear(4, 2).parameters(), lr=0.01).state_dict()
    assert jsd["param_groups"][0]["lr"] == tsd["param_groups"][0]["lr"]


@pytest.mark.parametrize("name,make", [
    ("StepLR", lambda m, o: m.StepLR(o, step_size=3, gamma=0.3)),
    ("CosineAnnealingLR", lambda m, o: m.CosineAnnealingLR(o, T_max=7, eta_min=1e-4)),
    ("OneCycleLR", lambda m, o: m.OneCycleLR(o, max_lr=0.1, total_steps=40)),
])
def test_get_last_lr_bit_equal_to_torch_with_a_jparam_optimizer(name, make):
    jparam.manual_seed(0)
    m = nn.Linear(4, 2)
    o = optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    tp = torch.nn.Linear(4, 2)
    to = torch.optim.SGD(tp.parameters(), lr=0.01, momentum=0.9)
    js, ts = make(jls, o), make(torch.optim.lr_scheduler, to)
    assert js.get_last_lr() == ts.get_last_lr()
    for k, x in enumerate(_xs(39, shape=(3, 4))):
        m, o = _one_step(m, o, x)
        to.step()
        js.step()
        ts.step()
        assert js.get_last_lr() == ts.get_last_lr(), k
        assert [g["lr"] for g in o.param_groups] == [g["lr"] for g in to.param_groups], k
    jg, tg = o.state_dict()["param_groups"][0], to.state_dict()["param_groups"][0]
    for key in ("lr", "initial_lr", "momentum", "max_lr", "min_lr"):
        assert jg.get(key) == tg.get(key), key


def test_state_is_a_readable_pytree():
    jparam.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    o = optim.Adam([{"params": m[0].parameters()}, {"params": m[1].parameters(), "lr": 0.1}], lr=0.01,
                   amsgrad=True)
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(o)[0]]
    for want in [".param_groups[0].hyper['lr']", ".param_groups[0].hyper['betas'][0]",
                 ".param_groups[1].state.step", ".param_groups[1].state.exp_avg[1]",
                 ".param_groups[0].state.max_exp_avg_sq[0]", ".handle"]:
        assert want in paths, paths
    leaves = dict(jax.tree_util.tree_flatten_with_path(o)[0])
    lr1 = next(v for p, v in leaves.items() if jax.tree_util.keystr(p) == ".param_groups[1].hyper['lr']")
    assert np.asarray(lr1) == np.float32(0.1)


def test_optimizer_survives_tree_map_and_deepcopy_independently():
    import copy
    m, o = _stepped("SGD", lr=0.1, momentum=0.9)
    snap = copy.deepcopy(o)
    shapes = jax.tree_util.tree_map(lambda a: a.shape, o)  # no arrays: must not break anything
    assert shapes.param_groups  # built from the traced-style view, no control needed
    o.param_groups[0]["lr"] = 0.5
    assert snap.param_groups[0]["lr"] == 0.1 and o.param_groups[0]["lr"] == 0.5
    x = _xs(1, shape=(5, 4))[0]
    m2, snap2 = _one_step(m, snap, x)
    assert snap2.param_groups[0]["lr"] == 0.1 and o.param_groups[0]["lr"] == 0.5


_MESH_SCRIPT = textwrap.dedent("""
    import os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import jparam
    from jparam import nn, optim
    assert len(jax.devices()) == 8
    mesh = Mesh(np.array(jax.devices()), ("data",))
    repl, rows = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    jparam.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 2))
    model = jax.device_put(model, repl)
    for kind in ("SGD", "Adam"):
        opt = (optim.SGD(model.parameters(), lr=0.1, momentum=0.9) if kind == "SGD"
               else optim.Adam(model.parameters(), lr=1e-3))
        for path, leaf in jax.tree_util.tree_flatten_with_path(opt)[0]:
            assert leaf.sharding.is_equivalent_to(repl, leaf.ndim), (kind, jax.tree_util.keystr(path), leaf.sharding)
        traces = []

        @jax.jit
        def train_step(model, opt, x, y):
            traces.append(1)
            model = model.zero_grad()
            loss, model = jparam.backward(lambda m, x, y: jnp.mean((m(x) - y) ** 2), model, x, y)
            model, opt = opt.step(model)
            return model, opt, loss

        m = model
        rng = np.random.default_rng(0)
        for k in range(4):
            x = jax.device_put(rng.standard_normal((16, 4)).astype(np.float32), rows)
            y = jax.device_put(rng.standard_normal((16, 2)).astype(np.float32), rows)
            m, opt, loss = train_step(m, opt, x, y)
            if k == 1:
                opt.param_groups[0]["lr"] = 0.05
        assert len(traces) == 1, (kind, len(traces))
        assert opt.param_groups[0]["lr"] == 0.05
        for path, leaf in jax.tree_util.tree_flatten_with_path(opt)[0]:
            assert leaf.sharding.is_equivalent_to(repl, leaf.ndim), (kind, jax.tree_util.keystr(path), leaf.sharding)
    print("OK")
""")


def test_optimizer_leaves_live_on_the_parameters_mesh_and_the_loop_compiles_once():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "-c", _MESH_SCRIPT], env=env, cwd=root, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout + r.stderr



@pytest.mark.parametrize("cls, kwargs", [
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.5)),
    ("Adam", dict(lr=1e-2)),
    ("AdamW", dict(lr=1e-2, weight_decay=0.1)),
])
def test_every_buffer_is_donated_from_the_first_step(cls, kwargs):
    """The documented loop (``jax.jit(step, donate_argnums=(0, 1))``) donates every leaf of
    the model and optimizer from the first step, SGD's bool 'started' flags included: none
    is left alive, none is refused ('Some donated buffers were not usable' is an error
    here), and the parameters after three steps are torch's."""
    import warnings

    traces = []

    def step(m, o, x):
        traces.append(1)  # runs only while jit traces: one trace is one compile
        loss, m = jparam.backward(lambda m, x: ((m(x) - 1.0) ** 2).mean(), m, x)
        m, o = o.step(m)
        return loss, m, o

    jparam.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    opt = getattr(optim, cls)(model.parameters(), **kwargs)
    tmodel = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    tmodel.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in model.state_dict().items()})
    topt = getattr(torch.optim, cls)(tmodel.parameters(), **kwargs)
    jstep = jax.jit(step, donate_argnums=(0, 1))
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*donated buffers were not usable")
        for i in range(3):
            before = jax.tree_util.tree_leaves((model, opt))
            _, model, opt = jstep(model, opt, x)
            kept = [(a.shape, a.dtype) for a in before if not a.is_deleted()]
            assert not kept, f"{cls}{kwargs}: step {i} left {kept} undonated"
            topt.zero_grad()
            ((tmodel(torch.tensor(x)) - 1.0) ** 2).mean().backward()
            topt.step()
    assert len(traces) == 1, f"{cls}{kwargs}: traced {len(traces)} times"
    for k, v in tmodel.state_dict().items():
        np.testing.assert_allclose(np.asarray(model.state_dict()[k]), v.numpy(), rtol=1e-5, atol=1e-6, err_msg=k)
