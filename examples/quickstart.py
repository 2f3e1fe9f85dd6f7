"""Train a small MLP on scikit-learn's handwritten digits with jparam, under jax.jit.

Run:  python examples/quickstart.py [--epochs 30]

The model is written exactly as in PyTorch (nn.Module, nn.Linear, BatchNorm1d, Dropout);
the training step is the torch loop (zero_grad → backward → step) as one jitted function.
"""
from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import jparam
from jparam import nn, optim


class MLP(nn.Module):
    def __init__(self, d_in: int, hidden: int, n_classes: int, p_drop: float = 0.1):
        super().__init__()
        self.fc1 = nn.Linear(d_in, hidden)
        self.bn1 = nn.BatchNorm1d(hidden)          # running stats update inside forward
        self.drop = nn.Dropout(p_drop)             # fresh mask every step, no key argument
        self.fc2 = nn.Linear(hidden, n_classes)

    def forward(self, x):
        h = jax.nn.relu(self.bn1(self.fc1(x)))
        return self.fc2(self.drop(h))


def cross_entropy(logits, labels):
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=-1))


def loss_fn(model, x, y):
    return cross_entropy(model(x), y)


@jax.jit
def train_step(model, opt, x, y):
    model = model.zero_grad()
    loss, model = jparam.backward(loss_fn, model, x, y)
    model, opt = opt.step(model)
    return model, opt, loss


@jax.jit
def accuracy(model, x, y):
    return jnp.mean(jnp.argmax(model(x), -1) == y)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.05)
    args = ap.parse_args()

    jparam.manual_seed(0)
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int32)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    print(f"digits: {len(x_tr)} train / {len(x_te)} test images of 8x8, 10 classes")

    model = MLP(64, 128, 10)
    opt = optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=1e-4)
    print(model)

    rng = np.random.default_rng(0)
    steps_per_epoch = len(x_tr) // args.batch_size
    t0 = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        model.train()
        perm = rng.permutation(len(x_tr))
        losses = []
        for s in range(steps_per_epoch):
            idx = perm[s * args.batch_size:(s + 1) * args.batch_size]
            model, opt, loss = train_step(model, opt, x_tr[idx], y_tr[idx])
            losses.append(loss)
        if epoch == 1 or epoch % 5 == 0 or epoch == args.epochs:
            model.eval()
            acc = float(accuracy(model, x_te, y_te))
            print(f"epoch {epoch:3d}  loss {float(jnp.mean(jnp.stack(losses))):.4f}  "
                  f"test acc {acc:.4f}  ({time.perf_counter() - t0:.1f}s)")
    model.eval()
    final = float(accuracy(model, x_te, y_te))
    print(f"final test accuracy: {final:.4f}  (train_step compiled {train_step._cache_size()} time(s))")


if __name__ == "__main__":
    main()
