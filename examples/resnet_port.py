"""Port a small ResNet from PyTorch to jparam, check the numbers, then train it under jax.jit.

Run:  python examples/resnet_port.py [--epochs 8]

1. ``TorchResNet`` is a small ResNet written in PyTorch: a conv-bn-relu stem, two residual
   basic blocks (the second with a strided 1x1-conv shortcut), max and adaptive average
   pooling, and a linear head.
2. ``ResNet`` is the same code with ``torch.nn`` changed to ``jparam.nn``. It loads
   ``TorchResNet``'s ``state_dict()`` (BatchNorm running statistics included) unchanged and
   gives the same logits in eval mode, and the same running statistics and weights after
   one SGD step in train mode.
3. The loaded model trains under ``jax.jit`` on scikit-learn's digits (8x8 images as
   ``1x8x8``), printing progress and the final test accuracy.
"""
from __future__ import annotations

import argparse
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import torch

import jparam
import jparam.nn.functional as F
from jparam import nn, optim


# ----------------------------------------------------------------------------- PyTorch
class TorchBasicBlock(torch.nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(out_ch)
        self.relu = torch.nn.ReLU()
        self.conv2 = torch.nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(out_ch)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = torch.nn.Sequential(
                torch.nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), torch.nn.BatchNorm2d(out_ch))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class TorchResNet(torch.nn.Module):
    def __init__(self, in_channels: int = 1, width: int = 16, num_classes: int = 10):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(width)
        self.relu = torch.nn.ReLU()
        self.layer1 = TorchBasicBlock(width, width)
        self.maxpool = torch.nn.MaxPool2d(2)
        self.layer2 = TorchBasicBlock(width, 2 * width, stride=2)
        self.avgpool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(2 * width, num_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))        # (N, w, 8, 8)
        x = self.maxpool(self.layer1(x))              # (N, w, 4, 4)
        x = self.avgpool(self.layer2(x))              # (N, 2w, 1, 1)
        return self.fc(x.reshape(x.shape[0], -1))


# ----------------------------------------------------------------------------- jparam
# The same two classes with ``torch.nn`` changed to ``nn`` (jparam.nn): nothing else.
class BasicBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, in_channels: int = 1, width: int = 16, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.layer1 = BasicBlock(width, width)
        self.maxpool = nn.MaxPool2d(2)
        self.layer2 = BasicBlock(width, 2 * width, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.maxpool(self.layer1(x))
        x = self.avgpool(self.layer2(x))
        return self.fc(x.reshape(x.shape[0], -1))


# ----------------------------------------------------------------------------- port + check
@jax.jit
def forward(model, x):
    return model(x)


def randomize_(torch_model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random BatchNorm affine parameters and running statistics (torch starts them at
    1/0 and 0/1), so that the eval-mode comparison exercises every buffer."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in torch_model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(1 + 0.2 * torch.randn(c, generator=g))
                m.bias.copy_(0.2 * torch.randn(c, generator=g))
                m.running_mean.copy_(0.2 * torch.randn(c, generator=g))
                m.running_var.copy_(0.5 + torch.rand(c, generator=g))
                m.num_batches_tracked.fill_(10)
    return torch_model


def port(torch_model: TorchResNet) -> ResNet:
    """A jparam ``ResNet`` of the same shape holding ``torch_model``'s weights and buffers."""
    tm = torch_model
    model = ResNet(tm.conv1.in_channels, tm.conv1.out_channels, tm.fc.out_features)
    model.load_state_dict(tm.state_dict())
    model.train(tm.training)
    return model


def max_logit_diff(torch_model: TorchResNet, model: ResNet, x: np.ndarray) -> float:
    """Max |torch - jparam| of the eval-mode logits on ``x`` (``(N, C, H, W)`` float32)."""
    torch_model.eval()
    model.eval()
    with torch.no_grad():
        ref = torch_model(torch.from_numpy(x)).numpy()
    out = np.asarray(forward(model, jnp.asarray(x)))
    return float(np.max(np.abs(out - ref)))


def loss_fn(model, x, y):
    return F.cross_entropy(model(x), y)


TRACES = {"train_step": 0}    # how many times jax traced (and so compiled) train_step


@partial(jax.jit, donate_argnums=(0, 1))        # parameters and optimizer state updated in place
def train_step(model, opt, x, y):
    TRACES["train_step"] += 1                   # plain Python: runs only while jax traces
    model = model.zero_grad()                                       # opt.zero_grad()
    loss, model = jparam.backward(loss_fn, model, x, y)             # loss.backward()
    model, opt = opt.step(model)                                    # opt.step()
    return model, opt, loss


def compare_train_step(torch_model: TorchResNet, model: ResNet, x: np.ndarray, y: np.ndarray,
                       lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 5e-4):
    """One SGD step in train mode on both models, same batch. Returns the stepped jparam
    model and the max abs differences of the loss, BatchNorm buffers and parameters."""
    torch_model.train()
    model.train()
    topt = torch.optim.SGD(torch_model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    topt.zero_grad()
    tloss = torch.nn.functional.cross_entropy(torch_model(torch.from_numpy(x)), torch.from_numpy(y).long())
    tloss.backward()
    topt.step()

    opt = optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    model, opt, loss = train_step(model, opt, jnp.asarray(x), jnp.asarray(y))

    ref, got = torch_model.state_dict(), model.state_dict()

    def diff(keys):
        return max(float(np.max(np.abs(np.asarray(got[k], np.float64) - ref[k].double().numpy())))
                   for k in keys)
    stats = [k for k in ref if k.endswith(("running_mean", "running_var"))]
    params = [n for n, _ in torch_model.named_parameters()]
    return model, {
        "loss": abs(float(loss) - tloss.item()),
        "running_stats": diff(stats),
        "num_batches_tracked": diff([k for k in ref if k.endswith("num_batches_tracked")]),
        "params": diff(params),
    }


@jax.jit
def accuracy(model, x, y):
    return jnp.mean(jnp.argmax(model(x), -1) == y)


def load_digits_nchw():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)   # NCHW, as torch
    y = digits.target.astype(np.int32)
    return train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--steps", type=int, default=0, help="stop each epoch after this many steps (0: all)")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.05)
    args = ap.parse_args(argv)
    # float32 matmuls as torch's CPU kernels (GPUs/TPUs default to TF32/bf16 passes)
    jax.config.update("jax_default_matmul_precision", "highest")

    traces_before = TRACES["train_step"]
    x_tr, x_te, y_tr, y_te = load_digits_nchw()
    print(f"digits: {len(x_tr)} train / {len(x_te)} test images of 1x8x8, 10 classes")

    # 1-2. the PyTorch model, its state_dict loaded into the jparam mirror, same numbers
    torch.manual_seed(0)
    jparam.manual_seed(0)
    torch_model = randomize_(TorchResNet(1, args.width, 10))
    model = port(torch_model)
    diff = max_logit_diff(torch_model, model, x_te[:64])
    print(f"loaded torch state_dict ({len(torch_model.state_dict())} keys); "
          f"eval logits max |torch - jparam| = {diff:.2e}")
    # (the same SGD settings as the training below, so train_step compiles once for both)
    b = args.batch_size
    model, step_diffs = compare_train_step(torch_model, model, x_tr[:b], y_tr[:b], lr=args.lr)
    print("after one SGD step in train mode, max |torch - jparam|: "
          + ", ".join(f"{k} {v:.2e}" for k, v in step_diffs.items()))

    # 3. train the loaded model under jit
    model.train()
    opt = optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    rng = np.random.default_rng(0)
    steps = len(x_tr) // args.batch_size
    if args.steps:
        steps = min(steps, args.steps)
    history, t0 = [], time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        model.train()
        perm = rng.permutation(len(x_tr))
        losses = []
        for s in range(steps):
            idx = perm[s * args.batch_size:(s + 1) * args.batch_size]
            model, opt, loss = train_step(model, opt, x_tr[idx], y_tr[idx])
            losses.append(loss)
        history.append(float(jnp.mean(jnp.stack(losses))))
        model.eval()
        acc = float(accuracy(model, x_te, y_te))
        print(f"epoch {epoch:3d}  loss {history[-1]:.4f}  test acc {acc:.4f}  "
              f"({time.perf_counter() - t0:.1f}s)")
    model.eval()
    final = float(accuracy(model, x_te, y_te))
    traces = TRACES["train_step"] - traces_before
    print(f"final test accuracy: {final:.4f}  (train_step traced and compiled {traces} time(s))")
    return {"losses": history, "accuracy": final, "logit_diff": diff, "step_diffs": step_diffs,
            "model": model, "traces": traces}


if __name__ == "__main__":
    main()
