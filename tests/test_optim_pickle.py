"""Pickling and copying an optimizer (``jparam/optim/optimizer.py``: ``__reduce__``,
``__deepcopy__``, ``_restore``), against torch where torch has the behaviour.

An unpickled (or deep-copied) optimizer continues bit for bit as the original continuing,
in the same process and in a fresh one; it is always a new optimizer (a new control block
and serial, never one of a live optimizer, even when the pickled serial is in use); a model
and its optimizer pickled together stay linked (as torch's pickle shares the tensors);
every incarnation of one optimizer (the one a scheduler holds, the one the step returned)
loads as one object."""
from __future__ import annotations

import copy
import os
import pickle
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import jparam
from jparam import nn, optim
from jparam._convert import torch_to_numpy
from jparam.optim import lr_scheduler as jls


def _loss(m, x):
    return jnp.mean(m(x) ** 2)


@jax.jit
def _step(m, o, x):
    _, m = jparam.backward(_loss, m, x)
    return o.step(m)


@jax.jit
def _three_steps(a, oa, b, ob, c, oc, x):
    a, oa = _step(a, oa, x)
    b, ob = _step(b, ob, x)
    c, oc = _step(c, oc, x)
    return a, oa, b, ob, c, oc


def _own_step():
    """A jitted step traced for the caller's model: a cache hit on a step traced for another
    model of the architecture returns that model's parameter identities (tokens; see the
    report of issue 15), which add_param_group needs."""
    @jax.jit
    def step(m, o, x):
        _, m = jparam.backward(_loss, m, x)
        return o.step(m)

    return step


def _xs(n, seed=0):
    rng = np.random.default_rng(seed)
    return [jnp.asarray(rng.standard_normal((3, 4)), jnp.float32) for _ in range(n)]


def _fresh(seed=0, lr=1e-2):
    jparam.manual_seed(seed)
    m = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 1))
    o = optim.AdamW(m.parameters(), lr=lr, weight_decay=0.05, amsgrad=True)
    return m, o, jls.StepLR(o, step_size=2, gamma=0.5)


def _bits(x):
    a = np.asarray(x)
    return a.dtype.str, a.shape, a.tobytes()


def _same_sd(a, b):
    """Two state dicts equal: hyperparameters exactly, every state array bit for bit."""
    assert a["param_groups"] == b["param_groups"]
    assert sorted(a["state"]) == sorted(b["state"])
    for i in a["state"]:
        assert list(a["state"][i]) == list(b["state"][i])
        for k in a["state"][i]:
            assert _bits(a["state"][i][k]) == _bits(b["state"][i][k]), (i, k)


def _same_params(m1, m2):
    for (n, p), (_, q) in zip(m1.named_parameters(), m2.named_parameters()):
        assert _bits(p) == _bits(q), n


def _train(m, o, s, xs):
    for x in xs:
        m, o = _step(m, o, x)
        s.step()
    return m, o


def test_pickle_mid_training_continues_bitwise_and_is_independent():
    xs = _xs(8)
    m, o, s = _fresh()
    blobs, sds = [], []
    for x in xs[:4]:
        m, o = _train(m, o, s, [x])
        blobs.append(pickle.dumps((m, o, s)))  # inside the training loop, after each jitted step
        sds.append(o.state_dict())
    for blob, sd in zip(blobs, sds):  # every snapshot is the state it was taken at
        _, o_k, _ = pickle.loads(blob)
        _same_sd(o_k.state_dict(), sd)
    # two loads of one pickle in one process: two independent optimizers, and the original
    m2, o2, s2 = pickle.loads(blobs[-1])
    m3, o3, s3 = pickle.loads(blobs[-1])
    assert s2.optimizer is o2 and s3.optimizer is o3
    handles = {tuple(np.asarray(x._handle)) for x in (o, o2, o3)}
    assert len({h[0] for h in handles}) == 3  # three serials, three control blocks
    assert o2.param_groups[0]["lr"] == o.param_groups[0]["lr"] == 0.0025
    assert {p._jp_id for p in m2.parameters()}.isdisjoint(p._jp_id for p in m3.parameters())
    # the three of one structure in one jitted step, each with its own scheduler
    for x in xs[4:]:
        m, o, m2, o2, m3, o3 = _three_steps(m, o, m2, o2, m3, o3, x)
        s.step(), s2.step(), s3.step()
    for mm, oo in ((m2, o2), (m3, o3)):
        _same_params(mm, m)
        _same_sd(oo.state_dict(), o.state_dict())
    # an edit on one reaches neither of the others
    o3.param_groups[0]["lr"] = 0.5
    assert o.param_groups[0]["lr"] == o2.param_groups[0]["lr"] == 0.000625
    m, o = _step(m, o, xs[0])
    m2, o2 = _step(m2, o2, xs[0])
    m3, o3 = _step(m3, o3, xs[0])
    _same_params(m2, m)
    assert not np.array_equal(np.asarray(m3[0].weight), np.asarray(m[0].weight))


def test_every_incarnation_pickles_as_the_newest_like_torchs_one_optimizer():
    xs = _xs(3)
    m, o0, s = _fresh()
    m, o = _train(m, o0, s, xs)  # o0 is the incarnation the scheduler holds
    assert s.optimizer is o0 and o is not o0
    s_, o_ = pickle.loads(pickle.dumps((s, o)))
    assert s_.optimizer is o_
    _same_sd(o_.state_dict(), o.state_dict())
    _same_sd(pickle.loads(pickle.dumps(o0)).state_dict(), o.state_dict())
    assert copy.deepcopy(o0).state_dict()["state"][0]["step"] == 3
    # a scheduler pickled alone brings its optimizer along, as torch's does
    s2 = pickle.loads(pickle.dumps(s))
    assert s2.optimizer.param_groups[0]["lr"] == o.param_groups[0]["lr"]
    assert s2.last_epoch == s.last_epoch == 3


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_pickle_matches_torch_after_steps_and_continuing(protocol):
    jm, jo, js = _fresh(seed=3)
    tm = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 1))
    tm.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in jm.state_dict().items()})
    to = torch.optim.AdamW(tm.parameters(), lr=1e-2, weight_decay=0.05, amsgrad=True)
    ts = torch.optim.lr_scheduler.StepLR(to, step_size=2, gamma=0.5)
    xs = _xs(7, seed=3)

    def torch_train(tm, to, ts, xs):
        for x in xs:
            to.zero_grad()
            tm(torch.from_numpy(np.array(x))).pow(2).mean().backward()
            to.step()
            ts.step()

    torch_train(tm, to, ts, xs[:3])
    jm, jo = _train(jm, jo, js, xs[:3])
    tm2, to2, ts2 = pickle.loads(pickle.dumps((tm, to, ts), protocol))
    jm2, jo2, js2 = pickle.loads(pickle.dumps((jm, jo, js), protocol))
    assert to2.param_groups[0]["params"][0] is next(tm2.parameters())  # torch keeps the link
    assert ts2.optimizer is to2 and js2.optimizer is jo2
    torch_train(tm2, to2, ts2, xs[3:])
    jm2, jo2 = _train(jm2, jo2, js2, xs[3:])
    jsd, tsd = jo2.state_dict(), to2.state_dict()
    tgroups = [{k: v for k, v in g.items()} for g in tsd["param_groups"]]
    assert jsd["param_groups"] == tgroups  # exact: lr 0.00125, initial_lr, every option
    assert sorted(jsd["state"]) == sorted(tsd["state"])
    for i, e in tsd["state"].items():
        assert list(jsd["state"][i]) == list(e)
        for k, v in e.items():
            np.testing.assert_allclose(np.asarray(jsd["state"][i][k]), torch_to_numpy(v), rtol=2e-5, atol=1e-7,
                                       err_msg=f"{i} {k}")
    for (n, p), t in zip(jm2.named_parameters(), tm2.parameters()):
        np.testing.assert_allclose(np.asarray(p), torch_to_numpy(t), rtol=1e-5, atol=1e-6, err_msg=n)
    # and bit for bit as the original continuing
    jm, jo = _train(jm, jo, js, xs[3:])
    _same_sd(jo2.state_dict(), jo.state_dict())
    _same_params(jm2, jm)


_CHILD = textwrap.dedent("""
    import pickle, sys
    import jax, jax.numpy as jnp, numpy as np
    import jparam
    from jparam import nn, optim
    blob, serial, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    # a live optimizer holding the very serial the pickled one had in its process
    while True:
        live = optim.AdamW(nn.Linear(2, 2).parameters(), lr=0.25)
        if int(np.asarray(live._handle)[0]) >= serial:
            break
    assert int(np.asarray(live._handle)[0]) == serial
    with open(blob, "rb") as f:
        m, o, s = pickle.load(f)
    assert s.optimizer is o
    assert int(np.asarray(o._handle)[0]) != serial
    o.param_groups[0]["weight_decay"] = 0.05  # an edit of the loaded one (same value) ...
    live.param_groups[0]["lr"] = 0.75         # ... and of the live one: neither sees the other
    assert o.param_groups[0]["lr"] == 0.005 and live.param_groups[0]["lr"] == 0.75
    @jax.jit
    def step(m, o, x):
        _, m = jparam.backward(lambda m, x: jnp.mean(m(x) ** 2), m, x)
        return o.step(m)
    rng = np.random.default_rng(0)
    xs = [jnp.asarray(rng.standard_normal((3, 4)), jnp.float32) for _ in range(8)]
    for x in xs[3:]:
        m, o = step(m, o, x)
        s.step()
    sd = o.state_dict()
    arrays = {f"s{i}_{k}": np.asarray(v) for i, e in sd["state"].items() for k, v in e.items()}
    arrays.update({f"p_{n}": np.asarray(p) for n, p in m.named_parameters()})
    np.savez(out, lr=np.float64(sd["param_groups"][0]["lr"]), **arrays)
    print("ok")
""")


def test_unpickle_in_a_fresh_process_whose_live_optimizer_has_the_same_serial(tmp_path):
    xs = _xs(8)
    m, o, s = _fresh()
    m, o = _train(m, o, s, xs[:3])
    blob = tmp_path / "opt.pkl"
    blob.write_bytes(pickle.dumps((m, o, s)))
    serial = int(np.asarray(o._handle)[0])
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=os.getcwd())
    r = subprocess.run([sys.executable, "-c", _CHILD, str(blob), str(serial), str(tmp_path / "out.npz")],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]
    m, o = _train(m, o, s, xs[3:])
    got = np.load(tmp_path / "out.npz")
    sd = o.state_dict()
    assert float(got["lr"]) == sd["param_groups"][0]["lr"] == 0.000625
    for i, e in sd["state"].items():
        for k, v in e.items():
            assert _bits(got[f"s{i}_{k}"]) == _bits(v), (i, k)
    for n, p in m.named_parameters():
        assert _bits(got[f"p_{n}"]) == _bits(p), n


def test_two_optimizers_of_one_structure_pickled_together_stay_two():
    xs = _xs(5, seed=1)
    ma, oa, sa = _fresh(seed=1, lr=1e-2)
    mb, ob, sb = _fresh(seed=2, lr=3e-2)
    ma, oa = _train(ma, oa, sa, xs[:2])
    mb, ob = _train(mb, ob, sb, xs[:2])
    ma2, oa2, sa2, mb2, ob2, sb2 = pickle.loads(pickle.dumps((ma, oa, sa, mb, ob, sb)))
    assert oa2 is not ob2 and sa2.optimizer is oa2 and sb2.optimizer is ob2
    assert (oa2.param_groups[0]["lr"], ob2.param_groups[0]["lr"]) == (0.005, 0.015)
    ma, oa = _train(ma, oa, sa, xs[2:])
    mb, ob = _train(mb, ob, sb, xs[2:])
    ma2, oa2 = _train(ma2, oa2, sa2, xs[2:])
    mb2, ob2 = _train(mb2, ob2, sb2, xs[2:])
    _same_sd(oa2.state_dict(), oa.state_dict())
    _same_sd(ob2.state_dict(), ob.state_dict())
    _same_params(mb2, mb)


def test_threads_unpickling_and_training_at_once_each_match_the_original():
    xs = _xs(8, seed=4)
    m, o, s = _fresh(seed=4)
    m, o = _train(m, o, s, xs[:3])
    blob = pickle.dumps((m, o, s))
    m, o = _train(m, o, s, xs[3:])
    want = o.state_dict()

    def worker(_):
        mk, ok, sk = pickle.loads(blob)
        return _train(mk, ok, sk, xs[3:])

    with ThreadPoolExecutor(4) as pool:  # all four load and train at once; errors re-raise here
        results = list(pool.map(worker, range(4)))
    for mk, ok in results:
        _same_sd(ok.state_dict(), want)
        _same_params(mk, m)


def test_pickling_from_another_thread_while_training_gives_whole_states():
    xs = _xs(10, seed=5)
    m, o, s = _fresh(seed=5)
    ref, before_sched = {}, {}
    for k, x in enumerate(xs, start=1):  # the state after every step, from a plain run
        m, o = _step(m, o, x)
        before_sched[k] = o.state_dict()  # a pickle may land between opt.step and sched.step,
        s.step()                          # as in torch: the new state with the old lr
        ref[k] = o.state_dict()
    m, o, s = _fresh(seed=5)
    box, done, blobs = [o], threading.Event(), []

    def pickler():
        while not done.is_set():
            blobs.append(pickle.dumps(box[0]))

    t = threading.Thread(target=pickler)
    t.start()
    for x in xs:
        m, o = _train(m, o, s, [x])
        box[0] = o
    done.set()
    t.join()
    assert blobs
    for b in blobs:  # each pickle is the optimizer after some whole number of steps
        sd = pickle.loads(b).state_dict()
        k = int(sd["state"][0]["step"]) if sd["state"] else 0
        if k:
            _same_sd(sd, ref[k] if sd["param_groups"] == ref[k]["param_groups"] else before_sched[k])


def test_deepcopy_is_independent_and_keeps_a_joint_copys_link():
    xs = _xs(4, seed=6)
    m, o, s = _fresh(seed=6)
    step = _own_step()
    for x in xs[:2]:
        m, o = step(m, o, x)
        s.step()
    o2 = copy.deepcopy(o)
    o2.param_groups[0]["lr"] = 1.0
    assert o.param_groups[0]["lr"] == 0.005 and o2.param_groups[0]["lr"] == 1.0
    m_, o_ = copy.deepcopy((m, o))
    # copied together: the copy's optimizer extends the copy's model (tokens mapped through the memo)
    m_.append(nn.Linear(1, 2))
    o_.add_param_group({"params": m_[3].parameters(), "lr": 0.1})
    assert o_.param_groups[1]["params"] == [4, 5] and len(o.param_groups) == 1
    # copied alone: it steps the original model by position, but cannot find its parameters' identities
    m.append(nn.Linear(1, 2))
    with pytest.raises(ValueError, match="pickle or copy the model and the optimizer together"):
        o2.add_param_group({"params": m[3].parameters()})
    o.add_param_group({"params": m[3].parameters()})  # the original still can


def test_bare_parameters_keep_their_link_only_when_pickled_with_them():
    # parameters outside any module are known by identity (torch keeps its tensors in the pickle)
    rng = np.random.default_rng(7)
    w = nn.Parameter(jnp.asarray(rng.standard_normal((3, 2)), jnp.float32))
    o = optim.SGD([w], lr=0.1, momentum=0.9)
    holder = nn.Module()
    holder.w = w

    def grad_step(h, o):
        _, h = jparam.backward(lambda h: jnp.sum(jnp.sin(h.w) * 3.0), h)
        return o.step(h)

    holder, o = grad_step(holder, o)
    h2, o2 = pickle.loads(pickle.dumps((holder, o)))
    h3, o3 = copy.deepcopy((holder, o))
    o4, h4 = pickle.loads(pickle.dumps((o, holder)))  # the optimizer first: same link
    holder, o = grad_step(holder, o)
    h2, o2 = grad_step(h2, o2)
    h3, o3 = grad_step(h3, o3)
    h4, o4 = grad_step(h4, o4)
    assert _bits(h2.w) == _bits(holder.w) == _bits(h3.w) == _bits(h4.w)
    _same_sd(o2.state_dict(), o.state_dict())
    _same_sd(o4.state_dict(), o.state_dict())
    alone = pickle.loads(pickle.dumps(o))
    _, holder = jparam.backward(lambda h: jnp.sum(h.w), holder)
    with pytest.raises(ValueError, match="none of this optimizer's parameters are in the model"):
        alone.step(holder)


def test_add_param_group_after_a_joint_unpickle_matches_torch():
    jparam.manual_seed(8)
    jm = nn.Sequential(nn.Linear(4, 3))
    tm = torch.nn.Sequential(torch.nn.Linear(4, 3))
    tm.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in jm.state_dict().items()})
    jo = optim.SGD(jm.parameters(), lr=0.1, momentum=0.9)
    to = torch.optim.SGD(tm.parameters(), lr=0.1, momentum=0.9)
    x = _xs(1, seed=8)[0]
    to.zero_grad()
    tm(torch.from_numpy(np.array(x))).pow(2).mean().backward()
    to.step()
    step = _own_step()
    jm, jo = step(jm, jo, x)
    jm, jo = pickle.loads(pickle.dumps((jm, jo)))
    tm, to = pickle.loads(pickle.dumps((tm, to)))
    head_w = np.random.default_rng(9).standard_normal((1, 3)).astype(np.float32)
    jm.append(nn.Linear(3, 1))
    tm.append(torch.nn.Linear(3, 1))
    jm[1].weight.data = jnp.asarray(head_w)
    jm[1].bias.data = jnp.zeros(1)
    with torch.no_grad():
        tm[1].weight.copy_(torch.from_numpy(head_w))
        tm[1].bias.zero_()
    jo.add_param_group({"params": jm[1].parameters(), "lr": 0.01})
    to.add_param_group({"params": tm[1].parameters(), "lr": 0.01})
    for x in _xs(3, seed=10):
        to.zero_grad()
        tm(torch.from_numpy(np.array(x))).pow(2).mean().backward()
        to.step()
        jm, jo = step(jm, jo, x)
    for (n, p), t in zip(jm.named_parameters(), tm.parameters()):
        np.testing.assert_allclose(np.asarray(p), t.detach().numpy(), rtol=1e-5, atol=1e-6, err_msg=n)


def test_pickle_refusals_name_the_fix():
    m, o, _ = _fresh()
    with pytest.raises(TypeError, match="optax transformation"):
        pickle.dumps(optim.Optimizer(m.parameters(), optax.sgd(0.1)))
    c = copy.deepcopy(optim.Optimizer(m.parameters(), optax.sgd(0.1)))  # deepcopy keeps working
    assert c.step(jparam.backward(_loss, m, _xs(1)[0])[1])[1] is not None

    @jax.jit
    def inside(o):
        pickle.dumps(o)
        return o

    with pytest.raises(TypeError, match="inside a jitted function"):
        inside(o)
    # a param group on its own pickles as its values (torch's groups are plain dicts)
    g = pickle.loads(pickle.dumps(o.param_groups[0]))
    assert type(g) is dict and g["lr"] == 0.01 and g["params"] == [0, 1, 2, 3]
    assert pickle.loads(pickle.dumps(optim.optimizer.required)) is optim.optimizer.required


@pytest.mark.parametrize("name,kw", [
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)), ("Adam", dict(lr=1e-2)),
    ("Adamax", dict(lr=1e-2)), ("NAdam", dict(lr=1e-2)), ("RAdam", dict(lr=1e-2)),
    ("RMSprop", dict(lr=1e-2, centered=True, momentum=0.5)), ("Adagrad", dict(lr=0.1, lr_decay=0.01)),
    ("Adadelta", dict(lr=1.0))])
def test_every_optimizer_with_two_groups_and_names_continues_bitwise(name, kw):
    jparam.manual_seed(11)
    m = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 1))
    groups = [{"params": list(m[0].named_parameters())},
              {"params": list(m[2].named_parameters()), "lr": kw["lr"] / 2, "note": ["kept"]}]
    o = getattr(optim, name)(groups, **kw)
    xs = _xs(4, seed=11)
    for x in xs[:2]:
        m, o = _step(m, o, x)
    o.param_groups[0]["weight_decay"] = 0.03  # a host-side edit not yet seen by any step
    m2, o2 = pickle.loads(pickle.dumps((m, o)))
    assert o2.param_groups[1]["note"] == ["kept"] and o2.param_groups[0]["param_names"] == ["weight", "bias"]
    for x in xs[2:]:
        m, o = _step(m, o, x)
        m2, o2 = _step(m2, o2, x)
    _same_sd(o2.state_dict(), o.state_dict())
    _same_params(m2, m)
