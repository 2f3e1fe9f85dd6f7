import numpy as np
import pytest
import torch
from torch import nn as tnn

from jparam import nn
from _fcompare import randn
from _lcompare import compare_layer

rng = np.random.default_rng(0)
X, Y = randn(rng, 4, 5), randn(rng, 4, 5)
T = np.array([0, 3, 4, 1])
W = np.abs(randn(rng, 5)) + 0.2
P = (1 / (1 + np.exp(-X))).astype(np.float32)
U = rng.uniform(size=(4, 5)).astype(np.float32)
S = np.array([1, -1, -1, 1], np.float32)

CASES = [
    ("L1Loss", {}, [X, Y]), ("MSELoss", dict(reduction="sum"), [X, Y]),
    ("SmoothL1Loss", dict(beta=0.5), [X, Y]), ("HuberLoss", dict(delta=0.7, reduction="none"), [X, Y]),
    ("CrossEntropyLoss", {}, [X, T]), ("CrossEntropyLoss", dict(weight=W, label_smoothing=0.1), [X, T]),
    ("CrossEntropyLoss", dict(ignore_index=3, reduction="sum"), [X, T]),
    ("CrossEntropyLoss", dict(label_smoothing=0.2), [X, U / U.sum(1, keepdims=True)]),
    ("NLLLoss", dict(weight=W), [X, T]), ("BCELoss", {}, [P, U]), ("BCELoss", dict(weight=W), [P, U]),
    ("BCEWithLogitsLoss", dict(pos_weight=W), [X, U]), ("KLDivLoss", dict(reduction="batchmean"), [X, U]),
    ("KLDivLoss", dict(log_target=True), [X, Y]),
    ("CosineEmbeddingLoss", dict(margin=0.1), [X, Y, S]), ("MarginRankingLoss", dict(margin=0.2), [X[:, 0], Y[:, 0], S]),
    ("TripletMarginLoss", dict(swap=True), [X, Y, U]), ("HingeEmbeddingLoss", {}, [X[:, 0], S]),
    ("SoftMarginLoss", {}, [X, np.sign(Y)]), ("MultiLabelSoftMarginLoss", {}, [X, (U > 0.5).astype(np.float32)]),
    ("MultiMarginLoss", dict(p=2, margin=0.5), [X, T]), ("PoissonNLLLoss", {}, [X, np.abs(Y)]),
    ("GaussianNLLLoss", dict(full=True), [X, Y, np.abs(U) + 0.1]),
]


@pytest.mark.parametrize("name,kw,inputs", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_loss_layer(name, kw, inputs):
    tkw = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    tm, jm = getattr(tnn, name)(**tkw), getattr(nn, name)(**kw)
    inputs = list(inputs)
    nodiff = (len(inputs) - 1,) if name in ("SoftMarginLoss", "MultiLabelSoftMarginLoss") else ()
    compare_layer(tm, jm, inputs, "loss", modes=(True,), steps=1, nodiff=nodiff)


def test_legacy_args_and_buffers():
    m = nn.CrossEntropyLoss(weight=W)
    assert list(m.state_dict()) == list(tnn.CrossEntropyLoss(weight=torch.tensor(W)).state_dict())
    assert nn.MSELoss(size_average=False).reduction == tnn.MSELoss(size_average=False).reduction
    assert nn.L1Loss(reduce=False).reduction == "none"
