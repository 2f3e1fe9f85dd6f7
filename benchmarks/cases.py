"""Benchmark cases: one config each, a shared initial state dict and shared data.

Every framework builds its model from the same initial weights (a dict of numpy arrays
named and laid out as ``torch.nn.Module.state_dict()`` would), trains on the same batch
with the same optimizer, and reports the same loss, so the timings compare the same math.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

__all__ = ["Case", "CASES", "GPU_CASES", "case", "init_state", "make_data"]


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    kind: str                      # "mlp" | "cnn" | "gpt"
    title: str
    batch: int
    opt: str                       # "sgd" (lr 0.01, momentum 0.9) | "adam" (lr 1e-3)
    loss: str                      # "ce" | "mse"
    sizes: tuple = ()              # mlp: layer widths, input first
    layers: int = 0                # gpt: decoder blocks
    d: int = 128
    heads: int = 4
    seq: int = 64
    vocab: int = 512
    deterministic: bool = True     # False when dropout makes losses framework-specific

    def with_depth(self, depth: int) -> "Case":
        """The same case with ``depth`` Linear layers (mlp) or decoder blocks (gpt)."""
        if self.kind == "mlp":
            w = self.sizes[1]
            return dataclasses.replace(self, sizes=(self.sizes[0],) + (w,) * depth)
        if self.kind == "gpt":
            return dataclasses.replace(self, layers=depth)
        raise ValueError(f"case {self.name!r} has no depth knob")

    @property
    def depth(self) -> int:
        return len(self.sizes) - 1 if self.kind == "mlp" else self.layers


CASES: dict[str, Case] = {
    "mlp_small": Case("mlp_small", "mlp", "MLP 784-256-10, batch 32 (dispatch-bound)",
                      batch=32, opt="sgd", loss="ce", sizes=(784, 256, 10)),
    "mlp_deep": Case("mlp_deep", "mlp", "MLP 64 x Linear(32, 32), batch 32 (per-leaf overhead)",
                     batch=32, opt="sgd", loss="mse", sizes=(32,) * 65),
    "mlp_wide": Case("mlp_wide", "mlp", "MLP 3 x Linear(1024, 1024), batch 128 (compute-bound)",
                     batch=128, opt="sgd", loss="mse", sizes=(1024,) * 4),
    "cnn": Case("cnn", "cnn", "CNN 2 x (Conv-BN2d-ReLU-MaxPool) + Dropout + Linear, 1x28x28, batch 32",
                batch=32, opt="adam", loss="ce", deterministic=False),
    "gpt": Case("gpt", "gpt", "GPT decoder 4 blocks, d 128, 4 heads, seq 64, vocab 512, tied, batch 8",
                batch=8, opt="adam", loss="ce", layers=4),
}


# Sized for one GPU (the small cases above are launch-bound there); `benchmarks/gpu_check.sh`.
GPU_CASES: dict[str, Case] = {
    "cnn_gpu": Case("cnn_gpu", "cnn", "CNN as `cnn`, batch 1024 (GPU-sized)",
                    batch=1024, opt="adam", loss="ce", deterministic=False),
    "gpt_gpu": Case("gpt_gpu", "gpt", "GPT decoder 6 blocks, d 768, 12 heads, seq 512, vocab 16384, "
                    "tied, batch 16 (GPU-sized)", batch=16, opt="adam", loss="ce", layers=6,
                    d=768, heads=12, seq=512, vocab=16384),
}


def case(name: str, depth: int | None = None) -> Case:
    if name not in CASES and name not in GPU_CASES:
        raise KeyError(f"unknown case {name!r}; known: {sorted(CASES) + sorted(GPU_CASES)}")
    c = CASES[name] if name in CASES else GPU_CASES[name]
    return c if depth is None else c.with_depth(depth)


def _uniform(rng, shape, fan_in):
    b = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-b, b, size=shape).astype(np.float32)


def init_state(c: Case, seed: int = 0) -> dict[str, np.ndarray]:
    """Initial weights, torch ``state_dict`` names and layouts (torch's default init)."""
    rng = np.random.default_rng(seed)
    sd: dict[str, np.ndarray] = {}

    def linear(prefix, n_in, n_out, bias=True):
        sd[prefix + "weight"] = _uniform(rng, (n_out, n_in), n_in)
        if bias:
            sd[prefix + "bias"] = _uniform(rng, (n_out,), n_in)

    if c.kind == "mlp":
        # nn.Sequential(Linear, ReLU, Linear, ReLU, ..., Linear): Linear i sits at index 2i.
        for i, (a, b) in enumerate(zip(c.sizes[:-1], c.sizes[1:])):
            linear(f"{2 * i}.", a, b)
    elif c.kind == "cnn":
        for name, cin, cout in (("conv1.", 1, 16), ("conv2.", 16, 32)):
            sd[name + "weight"] = _uniform(rng, (cout, cin, 3, 3), cin * 9)
            sd[name + "bias"] = _uniform(rng, (cout,), cin * 9)
            bn = "bn" + name[-2:]
            sd[bn + "weight"] = np.ones(cout, np.float32)
            sd[bn + "bias"] = np.zeros(cout, np.float32)
            sd[bn + "running_mean"] = np.zeros(cout, np.float32)
            sd[bn + "running_var"] = np.ones(cout, np.float32)
            sd[bn + "num_batches_tracked"] = np.zeros((), np.int64)
        linear("fc.", 32 * 7 * 7, 10)
    elif c.kind == "gpt":
        d = c.d
        sd["wte.weight"] = rng.normal(size=(c.vocab, d)).astype(np.float32) * 0.02
        sd["wpe.weight"] = rng.normal(size=(c.seq, d)).astype(np.float32) * 0.02
        for i in range(c.layers):
            p = f"blocks.{i}."
            for ln in ("ln1.", "ln2."):
                sd[p + ln + "weight"] = np.ones(d, np.float32)
                sd[p + ln + "bias"] = np.zeros(d, np.float32)
            linear(p + "qkv.", d, 3 * d)
            linear(p + "proj.", d, d)
            linear(p + "fc1.", d, 4 * d)
            linear(p + "fc2.", 4 * d, d)
        sd["ln_f.weight"] = np.ones(d, np.float32)
        sd["ln_f.bias"] = np.zeros(d, np.float32)
        sd["head.weight"] = sd["wte.weight"]          # tied, listed twice like torch
    else:
        raise ValueError(c.kind)
    return sd


def make_data(c: Case, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """One fixed batch ``(x, y)`` as numpy arrays (NCHW images, int32 labels/tokens)."""
    rng = np.random.default_rng(seed)
    if c.kind == "mlp":
        x = rng.normal(size=(c.batch, c.sizes[0])).astype(np.float32)
        if c.loss == "ce":
            y = rng.integers(0, c.sizes[-1], size=(c.batch,)).astype(np.int32)
        else:
            y = rng.normal(size=(c.batch, c.sizes[-1])).astype(np.float32)
        return x, y
    if c.kind == "cnn":
        x = rng.normal(size=(c.batch, 1, 28, 28)).astype(np.float32)
        return x, rng.integers(0, 10, size=(c.batch,)).astype(np.int32)
    if c.kind == "gpt":
        tok = rng.integers(0, c.vocab, size=(c.batch, c.seq + 1)).astype(np.int32)
        return tok[:, :-1], tok[:, 1:]
    raise ValueError(c.kind)


def describe(c: Case) -> dict[str, Any]:
    return dataclasses.asdict(c)
