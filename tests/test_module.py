"""Module core against torch: registration, traversal order, state_dict, containers, repr,
errors, setup-time in-place methods (train/eval/requires_grad_/apply/to/load_state_dict)."""
from __future__ import annotations

import re
from collections import OrderedDict

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jparam
from jparam import nn as jnn
from _core_models import assert_close, classes, pair, rand_idx, randn, to_np

tnn = torch.nn


def _names(it):
    return [n for n, _ in it]


# ---------------------------------------------------------------- names and order
def test_named_parameters_order_and_tie_once():
    tm, jm = pair()
    tn = _names(tm.named_parameters())
    assert _names(jm.named_parameters()) == tn
    assert "head.weight" not in tn and "shared2.weight" not in tn  # tied / shared listed once
    assert [tuple(p.shape) for p in jm.parameters()] == [tuple(p.shape) for p in tm.parameters()]
    assert len(list(jm.parameters())) == len(list(tm.parameters()))
    for (n, tp), (_, jp) in zip(tm.named_parameters(), jm.named_parameters()):
        assert_close(jp, tp, what=n)
        assert jp.requires_grad == tp.requires_grad, n
    # remove_duplicate=False lists every path, in torch's order
    assert _names(jm.named_parameters(remove_duplicate=False)) == \
        _names(tm.named_parameters(remove_duplicate=False))
    assert _names(jm.named_parameters(prefix="root")) == _names(tm.named_parameters(prefix="root"))
    assert _names(jm.named_parameters(recurse=False)) == _names(tm.named_parameters(recurse=False))


def test_named_buffers_modules_children_order():
    tm, jm = pair()
    assert _names(jm.named_buffers()) == _names(tm.named_buffers())
    assert "blocks.0.nb" in _names(jm.named_buffers())  # non-persistent buffers are buffers
    assert _names(jm.named_modules()) == _names(tm.named_modules())
    assert _names(jm.named_modules(remove_duplicate=False)) == \
        _names(tm.named_modules(remove_duplicate=False))
    assert _names(jm.named_children()) == _names(tm.named_children())
    assert [type(m).__name__ for m in jm.children()] == [type(m).__name__ for m in tm.children()]
    assert [type(m).__name__ for m in jm.modules()] == [type(m).__name__ for m in tm.modules()]
    assert _names(jm.blocks.named_modules(prefix="blocks")) == \
        _names(tm.blocks.named_modules(prefix="blocks"))
    for (n, tb), (_, jb) in zip(tm.named_buffers(), jm.named_buffers()):
        assert_close(jb, tb, what=n)


def test_state_dict_keys_tied_everywhere_nonpersistent_excluded():
    tm, jm = pair()
    tsd, jsd = tm.state_dict(), jm.state_dict()
    assert isinstance(jsd, OrderedDict)
    assert list(jsd) == list(tsd)
    assert "head.weight" in jsd and "emb.weight" in jsd and "shared2.weight" in jsd
    assert not any(k.endswith(".nb") or k.endswith(".plain") for k in jsd)
    for k in tsd:
        assert_close(jsd[k], tsd[k], what=k)
    assert jsd["seq.1.num_batches_tracked"].dtype.kind == "i"
    # keep_vars returns the Parameter objects (the tied one twice, same object)
    kv = jm.state_dict(keep_vars=True)
    assert kv["head.weight"] is kv["emb.weight"] is jm.emb.weight
    assert isinstance(kv["z"], jparam.Parameter)


def test_forward_matches_torch_train_and_eval():
    tm, jm = pair()
    idx = rand_idx()
    for mode in (True, False):
        tm.train(mode)
        jm.train(mode)
        with torch.no_grad():
            to = tm(torch.tensor(idx))
        jo = jm(jnp.asarray(idx))
        for a, b in zip(jo, to):
            assert_close(a, b)


# ---------------------------------------------------------------- containers
def _lin_list(lib, n):
    nn = tnn if lib == "torch" else jnn
    return [nn.Linear(i + 1, i + 2) for i in range(n)]


def _view(c):
    return [(k, repr(m)) for k, m in c.named_children()]


def test_sequential_indexing_slicing_and_mutation():
    ts, js = tnn.Sequential(*_lin_list("torch", 5)), jnn.Sequential(*_lin_list("jparam", 5))
    assert _view(js) == _view(ts)
    for i in (0, 2, 4, -1, -5):
        assert repr(js[i]) == repr(ts[i])
    for sl in (slice(1, 3), slice(None, None, 2), slice(-2, None), slice(3, 1)):
        a, b = js[sl], ts[sl]
        assert type(a) is jnn.Sequential
        assert _view(a) == _view(b)
    with pytest.raises(IndexError):
        ts[5]
    with pytest.raises(IndexError):
        js[5]
    with pytest.raises(IndexError):
        js[-6]
    del ts[1]
    del js[1]
    assert _view(js) == _view(ts)
    del ts[-1]
    del js[-1]
    assert _view(js) == _view(ts)
    ts.append(tnn.Linear(9, 9))
    js.append(jnn.Linear(9, 9))
    ts.insert(1, tnn.Linear(8, 8))
    js.insert(1, jnn.Linear(8, 8))
    ts.insert(-1, tnn.Linear(7, 7))
    js.insert(-1, jnn.Linear(7, 7))
    ts.extend([tnn.Linear(6, 6), tnn.Linear(5, 5)])
    js.extend([jnn.Linear(6, 6), jnn.Linear(5, 5)])
    assert _view(js) == _view(ts)
    del ts[1:3]
    del js[1:3]
    assert _view(js) == _view(ts)
    assert len(js) == len(ts)
    assert repr(js) == repr(ts)
    # OrderedDict construction keeps names
    od_t = tnn.Sequential(OrderedDict([("enc", tnn.Linear(2, 3)), ("dec", tnn.Linear(3, 2))]))
    od_j = jnn.Sequential(OrderedDict([("enc", jnn.Linear(2, 3)), ("dec", jnn.Linear(3, 2))]))
    assert _view(od_j) == _view(od_t)
    assert _view(od_j[1:]) == _view(od_t[1:])
    assert repr(od_j) == repr(od_t)


def test_modulelist_indexing_slicing_and_mutation():
    tl, jl = tnn.ModuleList(_lin_list("torch", 5)), jnn.ModuleList(_lin_list("jparam", 5))
    assert _view(jl) == _view(tl)
    for i in (0, 3, -1, -2):
        assert repr(jl[i]) == repr(tl[i])
    for sl in (slice(1, 4), slice(None, None, -1), slice(-3, None)):
        assert type(jl[sl]) is jnn.ModuleList
        assert _view(jl[sl]) == _view(tl[sl])
    with pytest.raises(IndexError):
        jl[-6]
    for op in (lambda l, nn: l.__delitem__(0),
               lambda l, nn: l.__delitem__(-2),
               lambda l, nn: l.append(nn.Linear(9, 9)),
               lambda l, nn: l.insert(0, nn.Linear(8, 8)),
               lambda l, nn: l.insert(2, nn.Linear(7, 7)),
               lambda l, nn: l.extend([nn.Linear(4, 4), nn.Linear(3, 3)]),
               lambda l, nn: l.__delitem__(slice(1, 3)),
               lambda l, nn: l.__setitem__(-1, nn.Linear(2, 2))):
        op(tl, tnn)
        op(jl, jnn)
        assert _view(jl) == _view(tl)
        assert [repr(m) for m in jl] == [repr(m) for m in tl]
    assert repr(jl) == repr(tl)


def test_moduledict_parameterlist_parameterdict():
    td = tnn.ModuleDict({"b": tnn.Linear(1, 2), "a": tnn.Linear(2, 3)})
    jd = jnn.ModuleDict({"b": jnn.Linear(1, 2), "a": jnn.Linear(2, 3)})
    td["c"] = tnn.Linear(3, 4)
    jd["c"] = jnn.Linear(3, 4)
    del td["b"]
    del jd["b"]
    assert list(jd.keys()) == list(td.keys()) == ["a", "c"]
    assert list(jd) == list(td)
    assert "a" in jd and "b" not in jd
    assert repr(jd) == repr(td)
    assert repr(jd["c"]) == repr(td["c"])
    tpl = tnn.ParameterList([torch.ones(2), torch.zeros(3)])
    jpl = jnn.ParameterList([jnp.ones(2), jnp.zeros(3)])
    tpl.append(torch.ones(4))
    jpl.append(jnp.ones(4))
    assert all(isinstance(p, jparam.Parameter) for p in jpl)
    assert _names(jpl.named_parameters()) == _names(tpl.named_parameters())
    assert tuple(jpl[-1].shape) == tuple(tpl[-1].shape) == (4,)
    assert [tuple(p.shape) for p in jpl[1:]] == [tuple(p.shape) for p in tpl[1:]]
    tpd = tnn.ParameterDict({"w": torch.ones(2), "a": torch.zeros(1)})
    jpd = jnn.ParameterDict({"w": jnp.ones(2), "a": jnp.zeros(1)})
    assert list(jpd.keys()) == list(tpd.keys()) == ["a", "w"]  # a plain dict is sorted (torch)
    od = OrderedDict([("w", np.ones(2)), ("a", np.zeros(1))])
    assert list(jnn.ParameterDict(od).keys()) == \
        list(tnn.ParameterDict(OrderedDict((k, torch.tensor(v)) for k, v in od.items())).keys()) == ["w", "a"]
    assert isinstance(jpd["w"], jparam.Parameter)
    assert _names(jpd.named_parameters()) == _names(tpd.named_parameters())


# ---------------------------------------------------------------- repr
def test_repr_matches_torch():
    assert repr(jnn.Linear(3, 2)) == repr(tnn.Linear(3, 2))
    assert repr(jnn.Linear(3, 2, bias=False)) == repr(tnn.Linear(3, 2, bias=False))
    assert repr(jnn.Sequential(jnn.Linear(2, 3), jnn.Linear(3, 1))) == \
        repr(tnn.Sequential(tnn.Linear(2, 3), tnn.Linear(3, 1)))
    ml_t = tnn.ModuleList([tnn.Linear(2, 2), tnn.Linear(2, 2), tnn.Linear(2, 2), tnn.Linear(2, 3),
                           tnn.Linear(2, 2), tnn.Linear(2, 2)])
    ml_j = jnn.ModuleList([jnn.Linear(2, 2), jnn.Linear(2, 2), jnn.Linear(2, 2), jnn.Linear(2, 3),
                           jnn.Linear(2, 2), jnn.Linear(2, 2)])
    assert repr(ml_j) == repr(ml_t)
    assert "(0-2): 3 x Linear" in repr(ml_j)
    assert repr(jnn.ModuleList()) == repr(tnn.ModuleList())
    assert repr(jnn.Sequential()) == repr(tnn.Sequential())
    tm, jm = classes("torch")["MLP"](), classes("jparam")["MLP"]()
    assert repr(jm) == repr(tm)
    tb, jb = classes("torch")["Block"](3), classes("jparam")["Block"](3)
    assert repr(jb) == repr(tb)
    tlist = tnn.ModuleList([classes("torch")["Block"](3) for _ in range(3)])
    jlist = jnn.ModuleList([classes("jparam")["Block"](3) for _ in range(3)])
    assert repr(jlist) == repr(tlist)


def test_repr_batchnorm_matches_torch():
    assert repr(jnn.BatchNorm1d(5)) == repr(tnn.BatchNorm1d(5))
    assert repr(jnn.BatchNorm1d(4, momentum=None, affine=False)) == \
        repr(tnn.BatchNorm1d(4, momentum=None, affine=False))


def test_repr_nested_custom_model_matches_torch():
    # the whole Net minus the Parameter containers (whose dtype spelling is torch-specific)
    tm, jm = pair()
    for name in ("blocks", "seq", "heads", "shared", "head", "emb"):
        assert repr(getattr(jm, name)) == repr(getattr(tm, name)), name


# ---------------------------------------------------------------- registration errors
def _both_raise(fn_t, fn_j, exc, normalize=lambda s: s):
    with pytest.raises(exc) as et:
        fn_t()
    with pytest.raises(exc) as ej:
        fn_j()
    assert type(ej.value) is type(et.value)
    assert normalize(str(ej.value)) == normalize(str(et.value)), (str(ej.value), str(et.value))
    return str(et.value), str(ej.value)


def test_assign_non_parameter_to_parameter_name_typeerror():
    tl, jl = tnn.Linear(2, 2), jnn.Linear(2, 2)
    with pytest.raises(TypeError, match=r"cannot assign 'torch\.FloatTensor' as parameter 'weight' "
                                        r"\(torch\.nn\.Parameter or None expected\)"):
        tl.weight = torch.zeros(2, 2)
    with pytest.raises(TypeError, match=r"cannot assign '.*' as parameter 'weight' "
                                        r"\(jparam\.nn\.Parameter or None expected\)"):
        jl.weight = jnp.zeros((2, 2))
    assert isinstance(jl.weight, jparam.Parameter)  # unchanged
    tl.weight = None
    jl.weight = None
    assert jl.weight is None and tl.weight is None
    assert _names(jl.named_parameters()) == _names(tl.named_parameters()) == ["bias"]
    assert list(jl.state_dict()) == list(tl.state_dict()) == ["bias"]


def test_assign_before_super_init_attributeerror():
    def make(nn, what):
        class Bad(nn.Module):
            def __init__(self):
                if what == "p":
                    self.w = nn.Parameter(jnp.ones(2) if nn is jnn else torch.ones(2))
                elif what == "m":
                    self.l = nn.Linear(2, 2)
                super().__init__()
        return Bad

    for what, msg in (("p", "cannot assign parameters before Module.__init__() call"),
                      ("m", "cannot assign module before Module.__init__() call")):
        _both_raise(lambda: make(tnn, what)(), lambda: make(jnn, what)(), AttributeError)
        with pytest.raises(AttributeError, match=re.escape(msg)):
            make(jnn, what)()


@pytest.mark.parametrize("method", ["register_parameter", "register_buffer", "add_module"])
@pytest.mark.parametrize("bad", ["a.b", "", 3, "existing"])
def test_register_bad_names(method, bad):
    tl, jl = tnn.Linear(2, 2), jnn.Linear(2, 2)
    tl.existing = 1
    jl.existing = 1
    tval = {"register_parameter": tnn.Parameter(torch.ones(1)), "register_buffer": torch.ones(1),
            "add_module": tnn.Linear(1, 1)}[method]
    jval = {"register_parameter": jnn.Parameter(jnp.ones(1)), "register_buffer": jnp.ones(1),
            "add_module": jnn.Linear(1, 1)}[method]
    exc = TypeError if bad == 3 else KeyError
    _both_raise(lambda: getattr(tl, method)(bad, tval), lambda: getattr(jl, method)(bad, jval), exc)
    assert _names(jl.named_parameters()) == ["weight", "bias"]
    assert list(jl.named_buffers()) == [] and list(jl.named_children()) == []


def test_register_wrong_value_types():
    jl = jnn.Linear(2, 2)
    with pytest.raises(TypeError, match="'w'"):
        jl.register_parameter("w", jnp.ones(2))
    with pytest.raises(TypeError, match="'b'"):
        jl.register_buffer("b", "not an array")
    with pytest.raises(TypeError):
        jl.add_module("m", 3)
    # None is allowed and skipped by named_parameters / state_dict (torch)
    tl = tnn.Linear(2, 2)
    tl.register_parameter("extra", None)
    jl.register_parameter("extra", None)
    tl.register_buffer("nobuf", None)
    jl.register_buffer("nobuf", None)
    assert list(jl.state_dict()) == list(tl.state_dict())
    assert _names(jl.named_parameters()) == _names(tl.named_parameters())
    assert _names(jl.named_buffers()) == _names(tl.named_buffers())


def test_buffer_marker_and_plain_array_attribute():
    class T(tnn.Module):
        def __init__(self):
            super().__init__()
            self.a = tnn.Buffer(torch.ones(2))
            self.b = tnn.Buffer(torch.ones(3), persistent=False)
            self.c = torch.ones(4)

    class J(jnn.Module):
        def __init__(self):
            super().__init__()
            self.a = jnn.Buffer(jnp.ones(2))
            self.b = jnn.Buffer(jnp.ones(3), persistent=False)
            self.c = jnp.ones(4)

    t, j = T(), J()
    assert _names(j.named_buffers()) == _names(t.named_buffers()) == ["a", "b"]
    assert list(j.state_dict()) == list(t.state_dict()) == ["a"]
    assert isinstance(j.a, jax.Array)
    # assigning an array to an existing buffer name keeps it a buffer
    t.a = torch.zeros(2)
    j.a = jnp.zeros(2)
    assert list(j.state_dict()) == ["a"] and float(j.state_dict()["a"].sum()) == 0.0


def test_train_eval_recursive_and_errors():
    tm, jm = pair()
    assert jm.eval() is jm
    assert all(not m.training for m in jm.modules())
    assert jm.train() is jm
    assert all(m.training for m in jm.modules())
    assert jm.seq.train(False) is jm.seq
    tm.seq.train(False)
    assert [m.training for m in jm.modules()] == [m.training for m in tm.modules()]
    _both_raise(lambda: tm.train("yes"), lambda: jm.train("yes"), ValueError)
    assert [m.training for m in jm.modules()] == [m.training for m in tm.modules()]


def test_to_int_dtype_typeerror_and_bfloat16_casts_floats_only():
    tm, jm = pair()
    with pytest.raises(TypeError, match="nn.Module.to only accepts floating point or complex dtypes"):
        tm.to(torch.int32)
    with pytest.raises(TypeError, match="nn.Module.to only accepts floating point or complex dtypes"):
        jm.to(jnp.int32)
    sd_before = {k: to_np(v).copy() for k, v in jm.state_dict().items()}
    assert jm.to(jnp.bfloat16) is jm
    tm.to(torch.bfloat16)
    for (n, tb), (_, jb) in zip(tm.named_buffers(), jm.named_buffers()):
        assert (tb.dtype == torch.bfloat16) == (jb.dtype == jnp.bfloat16), n
    assert jm.seq[1].num_batches_tracked.dtype.kind == "i"
    # a plain array attribute is not cast by .to() (torch leaves plain tensors alone too)
    assert tm.blocks[0].plain.dtype == torch.float32 and jm.blocks[0].plain.dtype == jnp.float32
    for n, p in jm.named_parameters():
        assert p.dtype == jnp.bfloat16, n
    assert jm.head.weight is jm.emb.weight  # tie survives to()
    for k, v in jm.state_dict().items():
        if sd_before[k].dtype.kind == "f":
            np.testing.assert_array_equal(np.asarray(v), sd_before[k].astype(jnp.bfloat16), err_msg=k)
    jm.float()
    assert all(p.dtype == jnp.float32 for p in jm.parameters())


def test_requires_grad_and_apply_post_order():
    tm, jm = pair()
    assert jm.requires_grad_(False) is jm
    tm.requires_grad_(False)
    assert _names(jm.named_parameters()) == _names(tm.named_parameters())  # still listed
    assert [p.requires_grad for p in jm.parameters()] == [p.requires_grad for p in tm.parameters()]
    jm.requires_grad_()
    assert all(p.requires_grad for p in jm.parameters())
    tv, jv = [], []
    assert tm.apply(lambda m: tv.append(type(m).__name__)) is tm
    assert jm.apply(lambda m: jv.append(type(m).__name__)) is jm
    assert jv == tv
    assert jv[-1] == "Net" and jv[0] == "Emb"


def test_get_submodule_parameter_buffer_and_errors():
    tm, jm = pair()
    assert jm.get_submodule("") is jm
    assert jm.get_submodule("blocks.1.lin") is jm.blocks[1].lin
    assert jm.get_parameter("blocks.0.gain") is jm.blocks[0].gain
    assert jm.get_parameter("head.weight") is jm.emb.weight
    assert_close(jm.get_buffer("seq.1.running_mean"), tm.get_buffer("seq.1.running_mean"))
    assert_close(jm.get_buffer("blocks.0.nb"), tm.get_buffer("blocks.0.nb"))
    for fn, exc in ((lambda m: m.get_submodule("nope"), AttributeError),
                    (lambda m: m.get_submodule("blocks.0.lin.weight"), AttributeError),
                    (lambda m: m.get_submodule("blocks.0.missing"), AttributeError),
                    (lambda m: m.get_parameter("blocks.0.shift"), AttributeError),
                    (lambda m: m.get_parameter("blocks.0.nothing"), AttributeError),
                    (lambda m: m.get_parameter("nope.weight"), AttributeError),
                    (lambda m: m.get_buffer("blocks.0.gain"), AttributeError),
                    (lambda m: m.get_buffer("seq.1.nothing"), AttributeError)):
        _both_raise(lambda: fn(tm), lambda: fn(jm), exc)


# ---------------------------------------------------------------- load_state_dict
def _torch_shapes_to_tuples(msg: str) -> str:
    return re.sub(r"torch\.Size\(\[([^\]]*)\]\)",
                  lambda m: str(tuple(int(x) for x in m.group(1).split(",") if x.strip())), msg)


def test_load_state_dict_accepts_torch_tensors_and_returns_keys():
    tm, jm = pair(seed=3)
    res = jm.load_state_dict(tm.state_dict())
    assert res.missing_keys == [] and res.unexpected_keys == []
    assert repr(res) == repr(tm.load_state_dict(tm.state_dict())) == "<All keys matched successfully>"
    for k, v in tm.state_dict().items():
        assert_close(jm.state_dict()[k], v, what=k)
    # numpy and jax arrays too
    jm2 = classes("jparam")["Net"]()
    jm2.load_state_dict({k: np.asarray(v) for k, v in jm.state_dict().items()})
    jm2.load_state_dict(dict(jm.state_dict()))
    for k, v in jm.state_dict().items():
        assert_close(jm2.state_dict()[k], v, what=k)


def test_load_state_dict_non_mapping_typeerror():
    tm, jm = pair()
    _both_raise(lambda: tm.load_state_dict([1, 2]), lambda: jm.load_state_dict([1, 2]), TypeError)


def test_load_state_dict_missing_unexpected_exact_text():
    tm, jm = pair()
    tsd = dict(tm.state_dict())
    del tsd["z"], tsd["blocks.1.shift"]
    tsd["extra.key"] = torch.ones(1)
    tsd["zz"] = torch.ones(2)
    jsd = dict(tsd)
    et, ej = _both_raise(lambda: tm.load_state_dict(tsd), lambda: jm.load_state_dict(jsd), RuntimeError)
    assert ej.startswith("Error(s) in loading state_dict for Net:\n\tMissing key(s) in state_dict: "
                         "\"z\", \"blocks.1.shift\". \n\tUnexpected key(s) in state_dict: ")
    # non-strict: returns the keys in torch's order, loads the rest
    tres = tm.load_state_dict(tsd, strict=False)
    jres = jm.load_state_dict(jsd, strict=False)
    assert jres.missing_keys == tres.missing_keys
    assert jres.unexpected_keys == tres.unexpected_keys
    assert repr(jres) == repr(tres)


def test_load_state_dict_size_mismatch_even_non_strict_and_atomic():
    tm, jm = pair()
    before = {k: to_np(v).copy() for k, v in jm.state_dict().items()}
    for strict in (True, False):
        tsd = {k: v.clone() + 1 for k, v in tm.state_dict().items()}
        tsd["blocks.0.lin.weight"] = torch.ones(3, 4)
        tsd["z"] = torch.ones(2, 2)
        del tsd["seq.0.bias"]
        tbackup = {k: v.clone() for k, v in tm.state_dict().items()}
        et, ej = _both_raise(lambda: tm.load_state_dict(tsd, strict=strict),
                             lambda: jm.load_state_dict(dict(tsd), strict=strict), RuntimeError,
                             normalize=_torch_shapes_to_tuples)
        assert "size mismatch for blocks.0.lin.weight: copying a param with shape (3, 4) from " \
               "checkpoint, the shape in current model is (5, 5)." in ej
        assert "size mismatch for z: copying a param with shape (2, 2) from checkpoint, the shape " \
               "in current model is ()." in ej
        # a failed load changes nothing in jparam (torch, by contrast, has already copied some)
        for k, v in jm.state_dict().items():
            np.testing.assert_array_equal(to_np(v), before[k], err_msg=k)
        with torch.no_grad():
            for k, v in tm.state_dict().items():
                v.copy_(tbackup[k])


def test_load_state_dict_zero_dim_accepts_shape_1_and_casts_dtype():
    tm, jm = pair()
    sd = dict(tm.state_dict())
    sd["z"] = torch.tensor([2.5])
    sd["seq.1.num_batches_tracked"] = torch.tensor(7, dtype=torch.int64)
    sd["blocks.0.gain"] = torch.arange(5, dtype=torch.float64)
    tm.load_state_dict(sd)
    jm.load_state_dict(sd)
    with torch.no_grad():
        assert jm.z.shape == () and float(jm.z) == tm.z.item() == 2.5
    assert jm.blocks[0].gain.dtype == jnp.float32
    assert int(jm.seq[1].num_batches_tracked) == 7
    assert jm.seq[1].num_batches_tracked.dtype.kind == "i"
    assert_close(jm.blocks[0].gain, tm.blocks[0].gain)


def test_load_state_dict_tied_later_key_wins_and_tie_survives():
    tm, jm = pair()
    sd = dict(tm.state_dict())
    sd["emb.weight"] = torch.full_like(sd["emb.weight"], 1.0)
    sd["head.weight"] = torch.full_like(sd["head.weight"], 2.0)
    tm.load_state_dict(sd)
    jm.load_state_dict(sd)
    assert jm.head.weight is jm.emb.weight
    assert_close(jm.emb.weight, tm.emb.weight)
    assert float(jm.emb.weight.data[0, 0]) == 2.0
    # the reverse order: the later key (head.weight) still wins
    sd2 = OrderedDict([(k, v) for k, v in sd.items() if k != "emb.weight"])
    sd2["emb.weight"] = torch.full_like(sd["emb.weight"], 3.0)
    tm.load_state_dict(sd2)
    jm.load_state_dict(sd2)
    assert_close(jm.emb.weight, tm.emb.weight)
    assert jm.head.weight is jm.emb.weight


def test_state_dict_roundtrip_into_torch():
    tm, jm = pair(seed=5)
    tm2 = classes("torch")["Net"]()
    for b in (0, 1):  # non-persistent buffers are not in the state_dict
        tm2.blocks[b].nb = tm.blocks[b].nb.clone()
    tm2.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in jm.state_dict().items()})
    idx = torch.tensor(rand_idx(4))
    tm.eval()
    tm2.eval()
    with torch.no_grad():
        for a, b in zip(tm(idx), tm2(idx)):
            assert_close(a, b)


def test_zero_grad_is_pure_and_delattr():
    jm = pair()[1]
    loss, jm2 = jparam.backward(lambda m, i: jnp.sum(m(i)[0] ** 2), jm, jnp.asarray(rand_idx()))
    assert all(p.grad is None for p in jm.parameters())
    assert jm2.emb.weight.grad is not None
    jm3 = jm2.zero_grad()
    assert all(p.grad is None for p in jm3.parameters())
    assert jm2.emb.weight.grad is not None
    jm4 = jm2.zero_grad(set_to_none=False)
    assert float(jnp.abs(jm4.emb.weight.grad).sum()) == 0.0
    assert jm4.frozen.grad is None
    del jm.blocks[0].plain
    assert "plain" not in vars(jm.blocks[0])


def test_assign_wrong_kinds_to_registered_names():
    tm, jm = pair()
    # a tensor to a child-module name
    with pytest.raises(TypeError, match=r"cannot assign 'torch\.FloatTensor' as child module 'lin'"):
        tm.blocks[0].lin = torch.ones(2)
    with pytest.raises(TypeError, match=r"cannot assign '.*' as child module 'lin' \(jparam\.nn\.Module or None expected\)"):
        jm.blocks[0].lin = jnp.ones(2)
    # a non-array to a buffer name
    with pytest.raises(TypeError, match="cannot assign 'int' as buffer 'shift'"):
        tm.blocks[0].shift = 3
    with pytest.raises(TypeError, match="cannot assign 'int' as buffer 'shift'"):
        jm.blocks[0].shift = 3
    # a module to a parameter name (torch: TypeError too)
    with pytest.raises(TypeError):
        tm.blocks[0].gain = tnn.Linear(1, 1)
    with pytest.raises(TypeError):
        jm.blocks[0].gain = jnn.Linear(1, 1)
    assert _names(jm.named_parameters()) == _names(tm.named_parameters())
    # a Parameter replacing a submodule, and a module replacing a buffer: re-registered like torch
    tm.blocks[0].lin = tnn.Parameter(torch.ones(2))
    jm.blocks[0].lin = jnn.Parameter(jnp.ones(2))
    tm.blocks[1].shift = tnn.Linear(1, 1)
    jm.blocks[1].shift = jnn.Linear(1, 1)
    assert _names(jm.named_parameters()) == _names(tm.named_parameters())
    assert _names(jm.named_buffers()) == _names(tm.named_buffers())
    assert _names(jm.named_modules()) == _names(tm.named_modules())
    assert list(jm.state_dict()) == list(tm.state_dict())
    # None to a module name keeps the slot (skipped everywhere)
    tm.shared = None
    jm.shared = None
    assert _names(jm.named_modules()) == _names(tm.named_modules())
    assert list(jm.state_dict()) == list(tm.state_dict())


def test_delattr_parameter_buffer_module_like_torch():
    tm, jm = pair()
    for mod in (tm, jm):
        del mod.z
        del mod.blocks[0].shift
        del mod.heads
    assert _names(jm.named_parameters()) == _names(tm.named_parameters())
    assert _names(jm.named_buffers()) == _names(tm.named_buffers())
    assert _names(jm.named_modules()) == _names(tm.named_modules())
    assert list(jm.state_dict()) == list(tm.state_dict())
    with pytest.raises(AttributeError):
        jm.z
    # re-registering the name as a plain attribute is then allowed
    jm.z = 3
    assert jm.z == 3 and "z" not in jm.state_dict()


def test_container_extras_like_torch():
    ts = tnn.Sequential(tnn.Linear(1, 2), tnn.Linear(2, 3), tnn.Linear(3, 4))
    js = jnn.Sequential(jnn.Linear(1, 2), jnn.Linear(2, 3), jnn.Linear(3, 4))
    # slicing shares the module objects (torch)
    assert js[1:][0] is js[1]
    assert ts[1:][0] is ts[1]
    assert repr(js + js[:1]) == repr(ts + ts[:1])
    assert repr(js.pop(1)) == repr(ts.pop(1))
    assert _view(js) == _view(ts)
    tl = tnn.ModuleList([tnn.Linear(1, 1)])
    jl = jnn.ModuleList([jnn.Linear(1, 1)])
    tl += [tnn.Linear(2, 2)]
    jl += [jnn.Linear(2, 2)]
    assert _view(jl) == _view(tl)
    assert repr(jl + jl) == repr(tl + tl)
    assert [repr(m) for m in jl] == [repr(m) for m in tl]
    # the forward of a Sequential matches torch
    ts = tnn.Sequential(tnn.Linear(1, 2), tnn.Linear(2, 3), tnn.Linear(3, 4))
    js = jnn.Sequential(jnn.Linear(1, 2), jnn.Linear(2, 3), jnn.Linear(3, 4))
    with torch.no_grad():
        for lin in ts:
            lin.weight.normal_()
    js.load_state_dict(ts.state_dict())
    x = randn(3, 1, seed=9)
    assert_close(js(jnp.asarray(x)), ts(torch.tensor(x)).detach())


def test_forward_hooks_like_torch():
    tm, jm = pair()
    calls = {"torch": [], "jparam": []}

    def pre(lib):
        def hook(mod, args):
            calls[lib].append(("pre", type(mod).__name__))
            return (args[0] * 2,)
        return hook

    def post(lib):
        def hook(mod, args, out):
            calls[lib].append(("post", type(mod).__name__))
            return out + 1
        return hook

    ht = [tm.seq[2].register_forward_pre_hook(pre("torch")), tm.seq[2].register_forward_hook(post("torch"))]
    hj = [jm.seq[2].register_forward_pre_hook(pre("jparam")), jm.seq[2].register_forward_hook(post("jparam"))]
    idx = rand_idx(13)
    with torch.no_grad():
        to = tm(torch.tensor(idx))
    jo = jm(jnp.asarray(idx))
    assert calls["jparam"] == calls["torch"] == [("pre", "Linear"), ("post", "Linear")]
    for a, b in zip(jo, to):
        assert_close(a, b)
    # hooks survive jit (static) and can be removed
    jo2 = jax.jit(lambda m, i: m(i))(jm, jnp.asarray(idx))
    assert_close(jo2[0], to[0])
    for h in ht + hj:
        h.remove()
    tm.train()
    with torch.no_grad():
        to3 = tm(torch.tensor(idx))
    jo3 = jm(jnp.asarray(idx))
    assert_close(jo3[0], to3[0])


def test_setup_methods_on_a_model_returned_by_jit():
    tm, jm = pair()
    out = jax.jit(lambda m: m)(jm)
    assert out.eval() is out
    assert all(not m.training for m in out.modules())
    assert jm.training  # the input is a different object
    res = out.load_state_dict(tm.state_dict())
    assert not res.missing_keys
    out.requires_grad_(False)
    assert not out.emb.weight.requires_grad and out.head.weight is out.emb.weight
    out2 = jax.jit(lambda m: m)(jm)
    out2.to(jnp.bfloat16)
    assert out2.emb.weight.dtype == jnp.bfloat16 and out2.head.weight is out2.emb.weight
    assert jm.emb.weight.dtype == jnp.float32
    out3 = jax.jit(lambda m: m)(jm)
    visited = []
    out3.apply(lambda m: visited.append(type(m).__name__))
    tv = []
    tm.apply(lambda m: tv.append(type(m).__name__))
    assert visited == tv
    # attribute assignment on a jit output is reflected in the next flatten
    out3.blocks[0].gain = jnn.Parameter(jnp.full((5,), 7.0))
    again = jax.jit(lambda m: m)(out3)
    assert float(again.blocks[0].gain.data[0]) == 7.0


def test_deepcopy_keeps_ties_and_is_independent():
    import copy

    tm, jm = pair()
    c = copy.deepcopy(jm)
    assert c.head.weight is c.emb.weight and c.emb.weight is not jm.emb.weight
    assert c.shared2 is c.shared
    assert _names(c.named_parameters()) == _names(jm.named_parameters())
    c.emb.weight.data = jnp.zeros_like(c.emb.weight.data)
    assert float(jnp.abs(jm.emb.weight.data).sum()) > 0
    assert jax.tree_util.tree_structure(c) == jax.tree_util.tree_structure(jm)


def test_dict_containers_from_containers_like_torch():
    td = tnn.ModuleDict({"x": tnn.Linear(1, 1), "b": tnn.Linear(2, 2)})
    jd = jnn.ModuleDict({"x": jnn.Linear(1, 1), "b": jnn.Linear(2, 2)})
    td2, jd2 = tnn.ModuleDict(td), jnn.ModuleDict(jd)
    assert list(jd2.keys()) == list(td2.keys()) == ["x", "b"]
    assert jd2["x"] is jd["x"]
    td2.update([("c", tnn.Linear(3, 3))])
    jd2.update([("c", jnn.Linear(3, 3))])
    td2.update(tnn.ModuleDict({"d": tnn.Linear(4, 4)}))
    jd2.update(jnn.ModuleDict({"d": jnn.Linear(4, 4)}))
    assert repr(jd2) == repr(td2)
    tp = tnn.ParameterDict({"w": torch.ones(1)})
    jp = jnn.ParameterDict({"w": jnp.ones(1)})
    tp.update(tnn.ParameterDict({"b": torch.ones(2), "a": torch.ones(3)}))
    jp.update(jnn.ParameterDict({"b": jnp.ones(2), "a": jnp.ones(3)}))
    assert list(jp.keys()) == list(tp.keys())


def test_batchnorm_single_value_per_channel_in_training_raises_like_torch():
    for shape in ((1, 3), (1, 3, 1)):
        with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
            tnn.BatchNorm1d(3)(torch.ones(shape))
        with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
            jnn.BatchNorm1d(3)(jnp.ones(shape))
    # fine in eval mode, and with more than one value per channel
    assert jnn.BatchNorm1d(3).eval()(jnp.ones((1, 3))).shape == (1, 3)
    assert jnn.BatchNorm1d(3)(jnp.ones((1, 3, 2))).shape == (1, 3, 2)


def test_set_submodule_like_torch():
    tm, jm = pair()
    tm.set_submodule("blocks.0.lin", tnn.Linear(5, 5, bias=False))
    jm.set_submodule("blocks.0.lin", jnn.Linear(5, 5, bias=False))
    tm.set_submodule("blocks.1.extra", tnn.Linear(5, 2))  # strict=False (default) adds it
    jm.set_submodule("blocks.1.extra", jnn.Linear(5, 2))
    assert _names(jm.named_modules()) == _names(tm.named_modules())
    assert list(jm.state_dict()) == list(tm.state_dict())
    assert repr(jm.blocks) == repr(tm.blocks)
    for fn, exc in ((lambda m, nn: m.set_submodule("", nn.Linear(1, 1)), ValueError),
                    (lambda m, nn: m.set_submodule("blocks.0.lin", 3), ValueError),
                    (lambda m, nn: m.set_submodule("blocks.0.gain", nn.Linear(1, 1)), AttributeError),
                    (lambda m, nn: m.set_submodule("nope.lin", nn.Linear(1, 1)), AttributeError),
                    (lambda m, nn: m.set_submodule("blocks.0.other", nn.Linear(1, 1), strict=True),
                     AttributeError)):
        et, ej = _both_raise(lambda: fn(tm, tnn), lambda: fn(jm, jnn), exc,
                             normalize=lambda s: re.sub(r"<class '[^']*'>", "<class>", s))
    assert _names(jm.named_modules()) == _names(tm.named_modules())


def test_reregister_buffer_persistence_and_small_reprs_like_torch():
    assert repr(jnn.Dropout(0.25)) == repr(tnn.Dropout(0.25))
    assert repr(jnn.Identity()) == repr(tnn.Identity())
    t, j = tnn.Linear(2, 2), jnn.Linear(2, 2)
    for persistent in (True, True, False, True):
        t.register_buffer("b", torch.ones(1), persistent=persistent)
        j.register_buffer("b", jnp.ones(1), persistent=persistent)
        t.register_buffer("c", torch.ones(1))
        j.register_buffer("c", jnp.ones(1))
        assert list(j.state_dict()) == list(t.state_dict())
        assert _names(j.named_buffers()) == _names(t.named_buffers())
