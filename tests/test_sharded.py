"""jparam.save_sharded / load_sharded on 8 host devices (run in a subprocess)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(r'''
    import os, sys
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import jparam
    from jparam import nn
    from jparam._sharded import load_sharded, save_sharded

    assert len(jax.devices()) == 8, jax.devices()
    mesh = Mesh(np.array(jax.devices()).reshape(2, 4), ("data", "model"))
    out = sys.argv[1]

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(8, 16)
            self.bn = nn.BatchNorm1d(16)
            self.fc2 = nn.Linear(16, 4)

        def forward(self, x):
            return self.fc2(self.bn(self.fc1(x)))

    def shard(model, specs):
        for name, p in model.named_parameters():
            p.data = jax.device_put(p.data, NamedSharding(mesh, specs.get(name, P())))
        for name, b in list(model.named_buffers()):
            mod, _, attr = name.rpartition(".")
            setattr(model.get_submodule(mod), attr, jax.device_put(b, NamedSharding(mesh, P())))
        return model

    specs = {"fc1.weight": P("model", "data"), "fc1.bias": P("model"), "fc2.weight": P(None, "model")}
    jparam.manual_seed(0)
    src = shard(Net(), specs)
    src.bn.running_mean = jax.device_put(jnp.arange(16.0), NamedSharding(mesh, P()))
    sd = src.state_dict()
    assert len(sd["fc1.weight"].sharding.device_set) == 8
    save_sharded(src, out + "/ck")

    # 1. same shardings, fresh weights
    jparam.manual_seed(1)
    dst = shard(Net(), specs)
    assert not np.array_equal(np.asarray(dst.fc1.weight.data), np.asarray(sd["fc1.weight"]))
    assert load_sharded(dst, out + "/ck") is dst
    for k, v in dst.state_dict().items():
        assert v.sharding == sd[k].sharding, (k, v.sharding, sd[k].sharding)
        assert v.dtype == sd[k].dtype and np.array_equal(np.asarray(v), np.asarray(sd[k])), k
    x = jax.device_put(jnp.ones((4, 8)), NamedSharding(mesh, P("data")))
    dst.eval(); src.eval()
    assert np.array_equal(np.asarray(dst(x)), np.asarray(src(x)))

    # 2. resharding on load: a dict target with other shardings
    target = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=NamedSharding(mesh, P()))
              for k, v in sd.items()}
    target["fc1.weight"] = jax.ShapeDtypeStruct((16, 8), jnp.float32,
                                                sharding=NamedSharding(mesh, P(None, "model")))
    got = load_sharded(target, out + "/ck")
    assert got["fc1.weight"].sharding.spec == P(None, "model")
    assert np.array_equal(np.asarray(got["fc1.weight"]), np.asarray(sd["fc1.weight"]))

    # 3. errors
    class Other(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(8, 3)
    try:
        load_sharded(Other(), out + "/ck")
    except RuntimeError as e:
        msg = str(e)
        assert "size mismatch for fc1.weight" in msg and "Unexpected key(s) in checkpoint" in msg, msg
        assert '"bn.weight"' in msg and "(16, 8)" in msg, msg
    else:
        raise AssertionError("no error")
    class Part(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(8, 16)
    part = load_sharded(Part(), out + "/ck", strict=False)  # a subset of the keys
    assert np.array_equal(np.asarray(part.fc1.bias.data), np.asarray(sd["fc1.bias"]))
    try:
        save_sharded(src, out + "/ck")
    except FileExistsError as e:
        assert "force=True" in str(e)
    else:
        raise AssertionError("no error")
    save_sharded(src, out + "/ck", force=True)
    print("SHARDED-OK")
''')


def test_sharded_round_trip_on_8_devices(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
               JAX_PLATFORMS="cpu")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    res = subprocess.run([sys.executable, str(script), str(tmp_path)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "SHARDED-OK" in res.stdout, res.stdout[-3000:] + res.stderr[-3000:]


# ----------------------------------------------------------------------------- issue 13 item 3

def _net(seed):
    import jparam
    from jparam import nn

    jparam.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))


def _values(model):
    import numpy as np

    return {k: np.asarray(v).tobytes() for k, v in model.state_dict().items()}


def test_force_replace_keeps_the_previous_checkpoint_when_the_write_fails(tmp_path, monkeypatch):
    import orbax.checkpoint as ocp

    from jparam import load_sharded, save_sharded

    ck = tmp_path / "ck"
    old, new = _net(0), _net(1)
    save_sharded(old, ck)
    real_save = ocp.StandardCheckpointer.save

    def disk_full(self, directory, *args, **kwargs):
        real_save(self, directory, *args, **kwargs)   # a partial write lands on disk ...
        self.wait_until_finished()
        raise OSError("No space left on device")      # ... then the write fails

    monkeypatch.setattr(ocp.StandardCheckpointer, "save", disk_full)
    try:
        save_sharded(new, ck, force=True)
    except OSError as e:
        assert "No space left" in str(e)
    else:
        raise AssertionError("no error")
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["ck"]   # no temporary folder left behind
    assert _values(load_sharded(_net(2), ck)) == _values(old)
    save_sharded(new, ck, force=True)
    assert sorted(os.listdir(tmp_path)) == ["ck"]
    assert _values(load_sharded(_net(2), ck)) == _values(new)


def test_interrupted_swap_is_recovered_by_the_next_save(tmp_path):
    from jparam import load_sharded, save_sharded

    ck = tmp_path / "ck"
    old, new = _net(0), _net(1)
    save_sharded(old, ck)
    # a save killed between its two renames: the previous checkpoint is parked aside
    os.replace(ck, str(ck) + ".jparam-old")
    try:
        save_sharded(new, ck)  # not force: the recovered checkpoint is there again
    except FileExistsError:
        pass
    else:
        raise AssertionError("the parked checkpoint was not recovered")
    assert sorted(os.listdir(tmp_path)) == ["ck"]
    assert _values(load_sharded(_net(2), ck)) == _values(old)
    save_sharded(new, ck, force=True)
    assert _values(load_sharded(_net(2), ck)) == _values(new)
