"""Training checkpoints: save at step 10, resume in a fresh model/optimizer, same losses."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jparam
from jparam import nn, optim
from jparam._checkpoint import load, load_checkpoint, save, save_checkpoint


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 16)
        self.bn = nn.BatchNorm1d(16)
        self.drop = nn.Dropout(0.3)
        self.fc2 = nn.Linear(16, 1)

    def forward(self, x):
        return self.fc2(self.drop(jax.nn.relu(self.bn(self.fc1(x)))))


class StepCounter:
    """A scheduler-like object: anything with state_dict/load_state_dict is saved through it."""

    def __init__(self):
        self.last_epoch = 0

    def step(self):
        self.last_epoch += 1

    def state_dict(self):
        return {"last_epoch": self.last_epoch, "name": "counter"}

    def load_state_dict(self, sd):
        self.last_epoch = sd["last_epoch"]


def _loss(m, x, y):
    return jnp.mean((m(x) - y) ** 2)


def _step(model, opt, x, y):
    loss, model = jparam.backward(_loss, model, x, y)
    model, opt = opt.step(model)
    return loss, model, opt


_train_step = jax.jit(_step)


def _batch(step):
    rng = np.random.default_rng(1000 + step)
    x = rng.standard_normal((8, 6)).astype(np.float32)
    return jnp.asarray(x), jnp.asarray(x[:, :1] * 2.0 - x[:, 1:2])


def _fresh(seed, real_scheduler=False, adam=False):
    jparam.manual_seed(seed)
    model = MLP()
    if adam:
        opt = optim.AdamW(model.parameters(), lr=0.01, amsgrad=True)
    else:
        opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    if real_scheduler:  # lr changes after the checkpoint: the resumed schedule must be right
        from jparam.optim import lr_scheduler

        return model, opt, lr_scheduler.MultiStepLR(opt, milestones=[12, 15, 15], gamma=0.5)
    return model, opt, StepCounter()


def _run(model, opt, sched, steps):
    losses = []
    for s in steps:
        loss, model, opt = _train_step(model, opt, *_batch(s))
        sched.step()  # writes the next lr into the optimizer the jitted step returned
        if hasattr(sched, "get_last_lr"):
            assert [float(g["lr"]) for g in opt.param_groups] == sched.get_last_lr()
        losses.append(np.asarray(loss))
    return losses, model, opt


@pytest.mark.parametrize("api,real,adam", [("save_checkpoint", False, False),
                                           ("save", False, False),
                                           ("save_checkpoint", True, False),
                                           ("save_checkpoint", True, True)])
def test_resume_is_bitwise(tmp_path, api, real, adam):
    model, opt, sched = _fresh(0, real, adam)
    full, _, _ = _run(model, opt, sched, range(1, 21))
    if real:
        lr0 = 0.01 if adam else 0.05
        assert sched.get_last_lr() == [pytest.approx(lr0 * 0.5 ** 3, rel=1e-6)]

    model, opt, sched = _fresh(0, real, adam)
    first, model, opt = _run(model, opt, sched, range(1, 11))
    assert [a.tobytes() for a in first] == [a.tobytes() for a in full[:10]]
    path = tmp_path / "ckpt.safetensors"
    if api == "save_checkpoint":
        save_checkpoint(path, model=model, optimizer=opt, scheduler=sched, step=10,
                        metadata={"run": "test"})
    else:  # torch's idiom; dropout keys are plain arrays, saved here as an explicit entry
        save({"model": model, "optimizer": opt, "scheduler": sched, "step": 10,
              "rng": jparam.get_rng_state(), "drop_rng": model.drop._rng,
              "metadata": {"lr": 0.05, "note": "x"}}, path)

    # a fresh process state: other seed, other weights, untouched optimizer
    model2, opt2, sched2 = _fresh(123, real, adam)
    if api == "save_checkpoint":
        ck = load_checkpoint(path, model=model2, optimizer=opt2, scheduler=sched2)
        assert jparam.load_metadata(path) == {"run": "test"}
    else:
        ck = load(path)
        model2.load_state_dict(ck["model"])
        opt2.load_state_dict(ck["optimizer"])
        sched2.load_state_dict(ck["scheduler"])
        jparam.set_rng_state(ck["rng"])
        model2.drop._rng = jnp.asarray(ck["drop_rng"])
        assert ck["metadata"] == {"lr": 0.05, "note": "x"}
    assert ck["step"] == 10 and sched2.last_epoch == 10
    if real:
        assert type(sched2.milestones) is type(sched.milestones)  # a Counter survives
    rest, _, _ = _run(model2, opt2, sched2, range(11, 21))
    assert [a.tobytes() for a in rest] == [a.tobytes() for a in full[10:]]


def test_checkpoint_layout(tmp_path):
    from safetensors.numpy import load_file

    model, opt, sched = _fresh(0)
    _, model, opt = _run(model, opt, sched, range(1, 3))
    save_checkpoint(tmp_path / "c.safetensors", model=model, optimizer=opt, step=2)
    keys = set(load_file(tmp_path / "c.safetensors"))
    assert {"model.fc1.weight", "model.bn.running_mean", "model.bn.num_batches_tracked",
            "optimizer.state.0.momentum_buffer", "jparam.rng",
            "jparam.arrays.model.drop._rng"} <= keys
    ck = load(tmp_path / "c.safetensors")
    assert list(ck["model"]) == list(model.state_dict())
    assert ck["optimizer"]["param_groups"][0]["params"] == [0, 1, 2, 3, 4, 5]
    assert ck["optimizer"]["param_groups"][0]["nesterov"] is False


def test_load_checkpoint_errors(tmp_path):
    model, opt, _ = _fresh(0)
    save_checkpoint(tmp_path / "c.safetensors", model=model, step=0)
    with pytest.raises(KeyError, match=r"no entry 'optimizer'.*\['model', 'step'\]"):
        load_checkpoint(tmp_path / "c.safetensors", model=model, optimizer=opt)

    class Other(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(6, 3)

    with pytest.raises(RuntimeError, match="size mismatch for fc1.weight"):
        load_checkpoint(tmp_path / "c.safetensors", model=Other())


def test_jparam_model_file_loads_in_torch_and_back(tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    jparam.manual_seed(0)
    m = MLP()
    _, m, _ = _run(m, optim.SGD(m.parameters(), lr=0.1), StepCounter(), range(1, 3))
    jparam.save(m, tmp_path / "m.safetensors")  # a module: its state_dict, plain keys
    jparam.save(m.state_dict(keep_vars=True), tmp_path / "kv.safetensors")  # Parameters
    tm = torch.nn.Module()
    tm.fc1, tm.bn, tm.fc2 = torch.nn.Linear(6, 16), torch.nn.BatchNorm1d(16), torch.nn.Linear(16, 1)
    sd = load_file(tmp_path / "m.safetensors")
    assert set(sd) == set(load_file(tmp_path / "kv.safetensors"))
    sd["bn.num_batches_tracked"] = sd["bn.num_batches_tracked"].long()  # int32 without x64
    tm.load_state_dict(sd)
    tm.eval()
    m.eval()
    x = np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32)
    want = tm.fc2(torch.relu(tm.bn(tm.fc1(torch.from_numpy(x))))).detach().numpy()
    np.testing.assert_allclose(np.asarray(m(jnp.asarray(x))), want, rtol=1e-5, atol=1e-6)
    # and back: torch's file (int64 counter) into a fresh jparam model
    save_file(tm.state_dict(), tmp_path / "t.safetensors")
    jparam.manual_seed(5)
    m2 = MLP().eval()
    m2.load_state_dict(jparam.load(tmp_path / "t.safetensors"))
    np.testing.assert_array_equal(np.asarray(m2(jnp.asarray(x))), np.asarray(m(jnp.asarray(x))))
