"""PyTorch on the first CUDA device if there is one, else on CPU with ``torch.set_num_threads`` =
the cores XLA uses. On CUDA, float32 matmuls and convolutions may use TF32,
as JAX's default precision does. Variants: ``torch`` (eager), ``torch_compile``
(``torch.compile(model)``), ``torch_bf16`` (eager under ``torch.autocast(dtype=torch.bfloat16)``)."""
from __future__ import annotations

import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmarks.frameworks import Runner

torch.set_num_threads(len(os.sched_getaffinity(0)))
if torch.cuda.is_available():
    torch.backends.cuda.matmul.allow_tf32 = True     # JAX's default float32 matmul precision
    torch.backends.cudnn.allow_tf32 = True


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(32)
        self.drop = nn.Dropout(0.25)
        self.fc = nn.Linear(32 * 7 * 7, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        return self.fc(self.drop(x.flatten(1)))


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = (a.view(b, t, self.heads, d // self.heads).transpose(1, 2) for a in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class GPT(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.wte = nn.Embedding(c.vocab, c.d)
        self.wpe = nn.Embedding(c.seq, c.d)
        self.blocks = nn.ModuleList(Block(c.d, c.heads) for _ in range(c.layers))
        self.ln_f = nn.LayerNorm(c.d)
        self.head = nn.Linear(c.d, c.vocab, bias=False)
        self.head.weight = self.wte.weight            # tied

    def forward(self, tok):
        h = self.wte(tok) + self.wpe(torch.arange(tok.shape[1], device=tok.device))
        for blk in self.blocks:
            h = blk(h)
        return self.head(self.ln_f(h))


def make_model(c) -> nn.Module:
    if c.kind == "mlp":
        layers = []
        for i, (a, b) in enumerate(zip(c.sizes[:-1], c.sizes[1:])):
            layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(c.sizes) - 2 else [])
        return nn.Sequential(*layers)
    if c.kind == "cnn":
        return CNN()
    if c.kind == "gpt":
        return GPT(c)
    raise ValueError(c.kind)


def build(c, sd, data, variant: str = "torch") -> Runner:
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model = make_model(c)
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in sd.items()})
    model.to(dev).train()
    if c.opt == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-8)
    x = torch.from_numpy(data[0]).long() if c.kind == "gpt" else torch.from_numpy(data[0])
    y = torch.from_numpy(data[1])
    y = y.long() if c.loss == "ce" else y
    x, y = x.to(dev), y.to(dev)
    fwd = torch.compile(model) if variant == "torch_compile" else model
    amp = variant == "torch_bf16"

    def loss_fn(out):
        if c.loss == "ce":
            return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
        return F.mse_loss(out, y)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            loss = loss_fn(fwd(x))
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return loss.detach().cpu()

    return Runner(step)
