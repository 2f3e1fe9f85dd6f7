"""Port a GPT-style decoder from PyTorch to jparam, check the numbers, then train it under jax.jit.

Run:  python examples/gpt_port.py [--steps 300] [--corpus zen|stdlib] [--out examples/gpt_loss.png]

1. ``TorchGPT`` is a small GPT written in PyTorch: token + position embeddings, pre-norm
   blocks (causal ``nn.MultiheadAttention`` and a GELU MLP), a final ``LayerNorm`` and an
   output head tied to the token embedding (``self.head.weight = self.tok_emb.weight``).
2. ``GPT`` is the same class with ``torch.nn`` changed to ``jparam.nn`` (and ``torch.``
   tensor calls changed to ``jnp.``). It loads ``TorchGPT``'s ``state_dict()`` unchanged
   and gives the same logits.
3. The loaded model trains under ``jax.jit`` (AdamW with torch's param-group recipe: no
   weight decay on biases, norms and embeddings) on character-level text that ships with
   Python, prints a sample, saves the loss curve, and checks that the head is still tied.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import torch

import jparam
import jparam.nn.functional as F
from jparam import nn, optim

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _text  # noqa: E402  (examples/_text.py: corpus, CharVocab, batches)


# ----------------------------------------------------------------------------- PyTorch
class TorchBlock(torch.nn.Module):
    def __init__(self, d_model: int, n_head: int, dropout: float):
        super().__init__()
        self.ln1 = torch.nn.LayerNorm(d_model)
        self.attn = torch.nn.MultiheadAttention(d_model, n_head, dropout=dropout, batch_first=True)
        self.ln2 = torch.nn.LayerNorm(d_model)
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(d_model, 4 * d_model), torch.nn.GELU(),
            torch.nn.Linear(4 * d_model, d_model), torch.nn.Dropout(dropout))

    def forward(self, x, mask):
        h = self.ln1(x)
        a, _ = self.attn(h, h, h, attn_mask=mask, need_weights=False)
        x = x + a
        return x + self.mlp(self.ln2(x))


class TorchGPT(torch.nn.Module):
    def __init__(self, vocab_size: int, block_size: int = 64, d_model: int = 64, n_head: int = 4,
                 n_layer: int = 2, dropout: float = 0.1):
        super().__init__()
        self.block_size = block_size
        self.tok_emb = torch.nn.Embedding(vocab_size, d_model)
        self.pos_emb = torch.nn.Embedding(block_size, d_model)
        self.drop = torch.nn.Dropout(dropout)
        self.blocks = torch.nn.ModuleList(TorchBlock(d_model, n_head, dropout) for _ in range(n_layer))
        self.ln_f = torch.nn.LayerNorm(d_model)
        self.head = torch.nn.Linear(d_model, vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight                    # weight tying (GPT-2)

    def forward(self, idx):
        T = idx.shape[1]
        x = self.drop(self.tok_emb(idx) + self.pos_emb(torch.arange(T)))
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)  # True = may not attend
        for block in self.blocks:
            x = block(x, mask)
        return self.head(self.ln_f(x))


# ----------------------------------------------------------------------------- jparam
# The same two classes: ``torch.nn`` -> ``nn`` (jparam.nn), ``torch.arange/triu/ones`` -> ``jnp``.
class Block(nn.Module):
    def __init__(self, d_model: int, n_head: int, dropout: float):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = nn.MultiheadAttention(d_model, n_head, dropout=dropout, batch_first=True)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, 4 * d_model), nn.GELU(),
            nn.Linear(4 * d_model, d_model), nn.Dropout(dropout))

    def forward(self, x, mask):
        h = self.ln1(x)
        a, _ = self.attn(h, h, h, attn_mask=mask, need_weights=False)
        x = x + a
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, vocab_size: int, block_size: int = 64, d_model: int = 64, n_head: int = 4,
                 n_layer: int = 2, dropout: float = 0.1):
        super().__init__()
        self.block_size = block_size
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(block_size, d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(d_model, n_head, dropout) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight                    # one Parameter, two paths

    def forward(self, idx):
        T = idx.shape[1]
        x = self.drop(self.tok_emb(idx) + self.pos_emb(jnp.arange(T)))
        mask = jnp.triu(jnp.ones((T, T), dtype=bool), 1)         # True = may not attend
        for block in self.blocks:
            x = block(x, mask)
        return self.head(self.ln_f(x))


# ----------------------------------------------------------------------------- port + check
@jax.jit
def forward(model, idx):
    return model(idx)


def init_weights_(torch_model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """GPT-2's init on the torch model (weights ~ N(0, 0.02), as nanoGPT), then a little
    noise on every parameter torch sets to a constant (LayerNorm weight/bias, biases), so
    the parity check exercises every tensor of the state_dict."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in torch_model.parameters():                       # tied weights listed once
            if p.ndim >= 2:
                p.copy_(0.02 * torch.randn(p.shape, generator=g))
            else:
                p.add_(0.02 * torch.randn(p.shape, generator=g))
    return torch_model


def port(torch_model: TorchGPT) -> GPT:
    """A jparam ``GPT`` with the same configuration, holding ``torch_model``'s weights."""
    tm = torch_model
    model = GPT(tm.tok_emb.num_embeddings, tm.block_size, tm.tok_emb.embedding_dim,
                tm.blocks[0].attn.num_heads, len(tm.blocks), tm.drop.p)
    model.load_state_dict(tm.state_dict())                     # torch tensors, as they are
    model.train(tm.training)
    return model


def max_logit_diff(torch_model: TorchGPT, model: GPT, idx: np.ndarray) -> float:
    """Max |torch - jparam| of the eval-mode logits on ``idx`` (int ids, ``(N, T)``)."""
    torch_model.eval()
    model.eval()
    with torch.no_grad():
        ref = torch_model(torch.from_numpy(np.asarray(idx, np.int64))).numpy()
    out = np.asarray(forward(model, jnp.asarray(idx, jnp.int32)))
    return float(np.max(np.abs(out - ref)))


# ----------------------------------------------------------------------------- training
def loss_fn(model, x, y):
    logits = model(x)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


@partial(jax.jit, donate_argnums=(0, 1))       # parameters and optimizer state updated in place
def train_step(model, opt, x, y):
    model = model.zero_grad()                                        # opt.zero_grad()
    loss, model = jparam.backward(loss_fn, model, x, y)              # loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    model, opt = opt.step(model)                                     # opt.step()
    return model, opt, loss


@jax.jit
def _next_token(model, window, last, key, temperature):
    logits = model(window[None])[0, last] / temperature
    return jax.random.categorical(key, logits)


def generate(model: GPT, vocab: _text.CharVocab, prompt: str, n: int, temperature: float = 0.8,
             seed: int = 0) -> str:
    """Sample ``n`` characters after ``prompt`` (eval mode; one compile: fixed-size window)."""
    was_training = model.training
    model.eval()
    ids = list(vocab.encode(prompt))
    key = jax.random.key(seed)
    B = model.block_size
    for _ in range(n):
        ctx = ids[-B:]
        window = np.zeros(B, np.int32)
        window[:len(ctx)] = ctx           # causal: the padding after `last` is never seen
        key, sub = jax.random.split(key)
        ids.append(int(_next_token(model, window, len(ctx) - 1, sub, temperature)))
    model.train(was_training)
    return vocab.decode(ids)


def param_groups(model, weight_decay: float = 0.1) -> list:
    """torch's GPT recipe: weight decay on the matrices only (not on biases, norms or
    embeddings). The same code builds the groups of the torch model and of the jparam one."""
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "emb" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "emb" not in n)]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: GPT, lr: float) -> optim.AdamW:
    return optim.AdamW(param_groups(model), lr=lr, betas=(0.9, 0.99))


def save_loss_curve(losses, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = np.asarray(losses)
    k = max(1, len(losses) // 30)
    smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(np.arange(1, len(losses) + 1), losses, alpha=0.35, label="step loss")
    ax.plot(np.arange(k, len(losses) + 1), smooth, label=f"mean of {k}")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/char)")
    ax.set_title("GPT ported from PyTorch, trained with jparam under jax.jit")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--corpus", choices=("zen", "stdlib"), default="zen")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--block-size", type=int, default=64)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--n-layer", type=int, default=2)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--sample-chars", type=int, default=300)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "gpt_loss.png"),
                    help="loss curve PNG ('' to skip)")
    ap.add_argument("--save", default="", help="save the trained weights here (safetensors)")
    args = ap.parse_args(argv)
    # float32 matmuls as torch's CPU kernels (GPUs/TPUs default to TF32/bf16 passes)
    jax.config.update("jax_default_matmul_precision", "highest")

    text = _text.corpus(args.corpus)
    vocab = _text.CharVocab(text)
    data = vocab.encode(text)
    print(f"corpus '{args.corpus}': {len(text)} characters, vocabulary of {len(vocab)}")

    # 1-2. the PyTorch model, its state_dict loaded into the jparam mirror, same logits
    torch.manual_seed(0)
    jparam.manual_seed(0)
    torch_model = init_weights_(TorchGPT(len(vocab), args.block_size, args.d_model, args.n_head,
                                      args.n_layer))
    model = port(torch_model)
    idx = np.random.default_rng(0).integers(0, len(vocab), (4, args.block_size))
    diff = max_logit_diff(torch_model, model, idx)
    print(f"loaded torch state_dict ({len(torch_model.state_dict())} keys); "
          f"eval logits max |torch - jparam| = {diff:.2e}")
    print(f"head tied to tok_emb after loading: {model.head.weight is model.tok_emb.weight}")

    # 3. train under jit
    model.train()
    opt = make_optimizer(model, args.lr)
    print(f"AdamW over {sum(p.size for p in model.parameters())} parameters "
          f"({len(list(model.parameters()))} tensors: the tied head is counted once)")
    stream = _text.batches(data, args.block_size, args.batch_size, seed=0)
    losses, t0 = [], time.perf_counter()
    every = max(1, args.steps // 10)
    for step in range(1, args.steps + 1):
        x, y = next(stream)
        model, opt, loss = train_step(model, opt, x, y)
        losses.append(loss)
        if step == 1 or step % every == 0 or step == args.steps:
            recent = float(jnp.mean(jnp.stack(losses[-every:])))
            print(f"step {step:4d}  loss {recent:.4f}  ({time.perf_counter() - t0:.1f}s)")
    losses = [float(v) for v in losses]
    tied = model.head.weight is model.tok_emb.weight and bool(
        jnp.array_equal(model.head.weight.data, model.tok_emb.weight.data))
    print(f"train_step compiled {train_step._cache_size()} time(s); "
          f"head still tied to tok_emb: {tied}")

    prompt = text[:20]
    sample = generate(model, vocab, prompt, args.sample_chars)
    print("sample:\n" + "-" * 60 + "\n" + sample + "\n" + "-" * 60)
    if args.out:
        save_loss_curve(losses, args.out)
        print(f"loss curve saved to {args.out}")
    if args.save:
        jparam.save(model, args.save)                        # a standard safetensors file
        print(f"weights saved to {args.save} (torch: safetensors.torch.load_file + load_state_dict)")
    return {"losses": losses, "logit_diff": diff, "tied": tied, "sample": sample,
            "model": model, "opt": opt, "vocab": vocab, "torch_model": torch_model}


if __name__ == "__main__":
    main()
