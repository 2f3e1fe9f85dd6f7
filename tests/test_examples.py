"""The porting examples against torch: same logits, same BatchNorm statistics and weights
after a train step, tied weights that stay tied under jit, and tiny end-to-end runs."""
from __future__ import annotations

import importlib.util
import pathlib
import sys

import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jparam

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_examples_{name}", EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


resnet = _load("resnet_port")
gpt = _load("gpt_port")


def _assert_state_dicts_close(got, ref, rtol=1e-4, atol=1e-6):
    assert list(got) == list(ref)
    for k in ref:
        np.testing.assert_allclose(np.asarray(got[k], np.float64), ref[k].double().numpy(),
                                   rtol=rtol, atol=atol, err_msg=k)


# ----------------------------------------------------------------------------- ResNet
def _resnet_pair(width=4, seed=0):
    torch.manual_seed(seed)
    jparam.manual_seed(seed)
    tm = resnet.randomize_(resnet.TorchResNet(1, width, 10), seed)
    return tm, resnet.port(tm)


def test_resnet_state_dict_keys_and_eval_logits_match_torch():
    tm, model = _resnet_pair()
    assert list(model.state_dict()) == list(tm.state_dict())
    x = np.random.default_rng(1).normal(size=(6, 1, 8, 8)).astype(np.float32)
    tm.eval()
    model.eval()
    with torch.no_grad():
        ref = tm(torch.from_numpy(x)).numpy()
    out = np.asarray(resnet.forward(model, jnp.asarray(x)))
    assert out.shape == (6, 10)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
    assert resnet.max_logit_diff(tm, model, x) < 1e-4


def test_resnet_train_step_matches_torch_running_stats_and_weights():
    tm, model = _resnet_pair()
    rng = np.random.default_rng(2)
    x = rng.normal(size=(8, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 10, 8).astype(np.int32)
    before = {k: np.asarray(v) for k, v in model.state_dict().items()}
    model, diffs = resnet.compare_train_step(tm, model, x, y)
    got, ref = model.state_dict(), tm.state_dict()
    _assert_state_dicts_close(got, ref)
    for k in ("bn1.running_mean", "layer2.downsample.1.running_var", "layer1.conv2.weight"):
        assert not np.allclose(np.asarray(got[k]), before[k]), f"{k} did not change in the step"
    assert int(got["bn1.num_batches_tracked"]) == 11 == int(ref["bn1.num_batches_tracked"])
    assert diffs["loss"] < 1e-5 and diffs["running_stats"] < 1e-5 and diffs["params"] < 1e-5


def test_resnet_main_tiny_run_loss_decreases():
    res = resnet.main(["--epochs", "3", "--steps", "6", "--width", "4", "--batch-size", "32"])
    assert res["losses"][-1] < res["losses"][0]
    assert res["logit_diff"] < 1e-4 and max(res["step_diffs"].values()) < 1e-4
    assert 0.0 <= res["accuracy"] <= 1.0
    assert res["traces"] == 1      # the parity step and the training loop share one compile


# ----------------------------------------------------------------------------- GPT
TINY = dict(vocab_size=11, block_size=8, d_model=16, n_head=2, n_layer=2, dropout=0.0)


def _gpt_pair(seed=0, **over):
    cfg = {**TINY, **over}
    torch.manual_seed(seed)
    jparam.manual_seed(seed)
    tm = gpt.init_weights_(gpt.TorchGPT(**cfg), seed)
    return tm, gpt.port(tm)


def test_gpt_port_keeps_tie_and_eval_logits_match_torch():
    tm, model = _gpt_pair(dropout=0.1)
    assert list(model.state_dict()) == list(tm.state_dict())
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in tm.named_parameters()]
    assert model.head.weight is model.tok_emb.weight
    idx = np.random.default_rng(3).integers(0, TINY["vocab_size"], (3, TINY["block_size"]))
    tm.eval()
    model.eval()
    with torch.no_grad():
        ref = tm(torch.from_numpy(idx)).numpy()
    out = np.asarray(gpt.forward(model, jnp.asarray(idx, jnp.int32)))
    assert out.shape == (3, TINY["block_size"], TINY["vocab_size"])
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
    # shorter sequences use a smaller causal mask and the first positions of pos_emb
    with torch.no_grad():
        ref5 = tm(torch.from_numpy(idx[:, :5])).numpy()
    np.testing.assert_allclose(np.asarray(gpt.forward(model, jnp.asarray(idx[:, :5], jnp.int32))), ref5,
                               rtol=1e-4, atol=1e-5)


def test_gpt_adamw_steps_match_torch_with_tied_weights_and_groups():
    tm, model = _gpt_pair()
    rng = np.random.default_rng(4)
    topt = torch.optim.AdamW(gpt.param_groups(tm), lr=1e-2, betas=(0.9, 0.99))
    opt = gpt.make_optimizer(model, lr=1e-2)
    for _ in range(3):
        x = rng.integers(0, TINY["vocab_size"], (4, TINY["block_size"]))
        y = rng.integers(0, TINY["vocab_size"], (4, TINY["block_size"]))
        topt.zero_grad()
        logits = tm(torch.from_numpy(x))
        tloss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                  torch.from_numpy(y).reshape(-1))
        tloss.backward()
        torch.nn.utils.clip_grad_norm_(tm.parameters(), 1.0)
        topt.step()
        model, opt, loss = gpt.train_step(model, opt, jnp.asarray(x, jnp.int32), jnp.asarray(y, jnp.int32))
        np.testing.assert_allclose(float(loss), tloss.item(), rtol=1e-5)
    # The key part of in_proj_bias has a gradient that is zero in exact arithmetic (adding a
    # constant to all of a query's scores leaves its softmax unchanged); Adam divides the
    # rounding noise by its own RMS, so there both frameworks move by noise of size lr.
    E = TINY["d_model"]
    got, ref = dict(model.state_dict()), dict(tm.state_dict())
    for b in range(TINY["n_layer"]):
        k = f"blocks.{b}.attn.in_proj_bias"
        assert float(tm.blocks[b].attn.in_proj_bias.grad[E:2 * E].abs().max()) < 1e-6
        keep = np.r_[0:E, 2 * E:3 * E]
        got[k], ref[k] = np.asarray(got[k])[keep], ref[k][keep]
    _assert_state_dicts_close(got, ref)
    assert model.head.weight is model.tok_emb.weight
    st = opt.state_dict()["state"]
    assert len(st) == len(list(tm.parameters()))              # one AdamW state for the tied weight


@pytest.fixture(scope="module")
def gpt_run(tmp_path_factory):
    """One tiny run of the example's main(): 40 jitted AdamW steps, PNG and safetensors out."""
    d = tmp_path_factory.mktemp("gpt")
    png, st = d / "loss.png", d / "gpt.safetensors"
    res = gpt.main(["--steps", "40", "--batch-size", "8", "--block-size", "16", "--d-model", "16",
                    "--n-layer", "1", "--n-head", "2", "--sample-chars", "12",
                    "--out", str(png), "--save", str(st)])
    return res, png, st


def test_gpt_head_stays_tied_after_jitted_steps(gpt_run):
    res, _, _ = gpt_run
    model, tm = res["model"], res["torch_model"]
    assert res["tied"]
    assert model.head.weight is model.tok_emb.weight
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in tm.named_parameters()]
    sd = model.state_dict()
    np.testing.assert_array_equal(np.asarray(sd["head.weight"]), np.asarray(sd["tok_emb.weight"]))
    w0 = tm.tok_emb.weight.detach().numpy()                   # the weights before training
    assert not np.allclose(np.asarray(sd["tok_emb.weight"]), w0, atol=1e-3)


def test_gpt_main_tiny_run_loss_decreases_and_weights_load_back_into_torch(gpt_run):
    res, png, st = gpt_run
    losses = res["losses"]
    assert len(losses) == 40 and np.mean(losses[-5:]) < np.mean(losses[:5])
    assert res["logit_diff"] < 1e-4
    assert res["sample"].startswith(gpt._text.corpus("zen")[:20]) and len(res["sample"]) == 32
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the trained weights, saved by jparam.save, load into the torch class unchanged
    from safetensors.torch import load_file

    model = res["model"]
    tm = gpt.TorchGPT(len(res["vocab"]), 16, 16, 2, 1)
    tm.load_state_dict(load_file(str(st)))
    assert tm.head.weight is tm.tok_emb.weight
    idx = np.random.default_rng(5).integers(0, len(res["vocab"]), (2, 16))
    assert gpt.max_logit_diff(tm, model, idx) < 1e-4
