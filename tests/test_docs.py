"""Every Python block of README.md and docs/*.md runs here, so the documentation cannot drift.

One test per page. The page's ```python blocks run in order in one namespace (a later block
uses what an earlier one defined, as a reader would), after a short prelude from ``PRELUDES``
below that defines the page's placeholders (``batches``, ``loss_fn``, a torch model to load ...).
The prelude defines only what the page leaves to the reader; the blocks themselves are never
copied or edited here. A block written as a ``>>>`` session is run with ``doctest``, so its
printed output is checked too.

A block that cannot run (shortened code, a shell transcript in a python fence) is marked on
the line right before its fence with an HTML comment, invisible on GitHub::

    <!-- not-run: shortened; the full class is examples/gpt_port.py -->

Use it sparingly: a reason is required. A failure names the page and the line of the block,
and the traceback points into the markdown file.
"""
from __future__ import annotations

import doctest
import pathlib
import re
import sys
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jparam
from jparam import nn, optim

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NOT_RUN = re.compile(r"^<!--\s*not-run:\s*(?P<reason>\S.*?)\s*-->\s*$")
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w+-]*)\s*$")


@dataclass(frozen=True)
class Block:
    line: int          # 1-based line of the block's first code line in the page
    source: str
    not_run: str | None  # the reason given by a ``not-run`` marker, or None


def python_blocks(text: str) -> list[Block]:
    """The ```python / ```py blocks of a markdown text, with their line numbers and markers."""
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not FENCE.match(lines[j]):
            j += 1
        if m["lang"] in ("python", "py"):
            k = i - 1
            while k >= 0 and not lines[k].strip():
                k -= 1
            marker = NOT_RUN.match(lines[k].strip()) if k >= 0 else None
            indent = len(m["indent"])
            body = "\n".join(ln[indent:] for ln in lines[i + 1:j])
            blocks.append(Block(i + 2, body + "\n", marker["reason"] if marker else None))
        i = j + 1
    return blocks


# ----------------------------------------------------------------------------- preludes
# What each page leaves to the reader. Keep these tiny: the whole file must run in seconds.
_COMMON = """
import jax, jax.numpy as jnp, numpy as np, torch
import jparam
from jparam import nn, optim
import jparam.nn.functional as F
from jparam.optim import lr_scheduler
rng = np.random.default_rng(0)
def randn(*shape):
    return jnp.asarray(rng.normal(size=shape), jnp.float32)
"""

PRELUDES: dict[str, str] = {
    "README.md": """
batches = [(randn(4, 8), randn(4, 8)) for _ in range(2)]
""",
    "docs/optim.md": """
import optax
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 8)
        self.head = nn.Linear(8, 2)
    def forward(self, x):
        return self.head(jnp.tanh(self.body(x)))
model = Net()
def loss_fn(model, x, y):
    return jnp.mean((model(x) - y) ** 2)
batches = [(randn(4, 4), randn(4, 2)) for _ in range(2)]
class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Linear(4, 8)
        self.head = torch.nn.Linear(8, 2)
torch_model = TorchNet()
params = {"w": randn(3, 2), "b": randn(2)}
grads = {"w": randn(3, 2), "b": randn(2)}
""",
    "docs/amp.md": """
model = nn.Linear(4, 3)
opt = optim.SGD(model.parameters(), lr=0.1)
scaler = jparam.amp.GradScaler("cuda")
x, y = randn(8, 4), jnp.asarray(rng.integers(0, 3, 8))
""",
    "docs/checkpoints.md": """
torch.save(torch.nn.Sequential(torch.nn.Linear(4, 3)).state_dict(), "pytorch_model.bin")
model = nn.Sequential(nn.Linear(4, 3))
opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
sched = lr_scheduler.StepLR(opt, step_size=2)
step = 10
Net = lambda: nn.Sequential(nn.Linear(4, 3))
def shard(model):
    model.to(jax.sharding.SingleDeviceSharding(jax.devices()[0]))
""",
    "docs/porting.md": """
from functools import partial
class SomeLibraryModel(torch.nn.Module):      # a custom class: from_torch exports it
    def __init__(self, config):
        super().__init__()
        self.emb = torch.nn.Embedding(config["vocab"], 8)
        self.out = torch.nn.Linear(8, config["vocab"])
    def forward(self, ids):
        return self.out(torch.tanh(self.emb(ids)))
config = {"vocab": 11}
ids = torch.randint(0, 11, (2, 5))
sys.path.insert(0, str(ROOT / "examples"))
import gpt_port
TorchBlock, GPT = gpt_port.TorchBlock, gpt_port.GPT
vocab_size = 11
idx = np.random.default_rng(0).integers(0, vocab_size, size=(2, 8))
loss_fn = gpt_port.loss_fn
def torch_loss_fn(model, x, y):
    logits = model(x)
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
_xy = [np.random.default_rng(s).integers(0, vocab_size, size=(2, 9)) for s in range(2)]
batches = [(jnp.asarray(a[:, :-1]), jnp.asarray(a[:, 1:])) for a in _xy]
torch_batches = [(torch.from_numpy(a[:, :-1]), torch.from_numpy(a[:, 1:])) for a in _xy]
""",
    "docs/layers_attention_rnn.md": """
torch_encoder = torch.nn.TransformerEncoder(
    torch.nn.TransformerEncoderLayer(64, 4, batch_first=True), num_layers=2)
torch_lstm = torch.nn.LSTM(32, 64, num_layers=2, bidirectional=True, batch_first=True)
x = randn(2, 5, 64)
pad = jnp.array([[False] * 5, [False] * 3 + [True] * 2])
seq = randn(2, 5, 32)
""",
}


def _rel(page: pathlib.Path) -> str:
    return page.relative_to(ROOT).as_posix()


def _run_block(page: str, block: Block, ns: dict) -> None:
    if block.source.lstrip().startswith(">>>"):
        test = doctest.DocTestParser().get_doctest(block.source, ns, page, page, block.line - 1)
        out: list[str] = []
        runner = doctest.DocTestRunner(
            optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        runner.run(test, out=out.append, clear_globs=False)
        if runner.failures:
            pytest.fail(f"{page}:{block.line}: the >>> block's output differs:\n" + "".join(out),
                        pytrace=False)
        return
    try:
        exec(compile("\n" * (block.line - 1) + block.source, str(ROOT / page), "exec"), ns)
    except Exception as e:
        raise AssertionError(f"{page}:{block.line}: this block raised {type(e).__name__}: {e}") from e


PAGES_WITH_CODE = [p for p in PAGES if python_blocks(p.read_text())]


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=_rel)
def test_page_runs(page: pathlib.Path, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)       # pages write files ("model.safetensors", "ckpt/...")
    monkeypatch.setattr(sys, "path", list(sys.path))
    jparam.manual_seed(0)
    torch.manual_seed(0)
    name = _rel(page)
    ns: dict = {"__name__": "__docs__", "ROOT": ROOT, "sys": sys}
    exec(compile(_COMMON + PRELUDES.get(name, ""), f"<prelude of {name} in {__file__}>", "exec"), ns)
    ran = 0
    for block in python_blocks(page.read_text()):
        if block.not_run is None:
            _run_block(name, block, ns)
            ran += 1
    assert ran, f"{name}: every python block is marked not-run"


def test_every_prelude_names_a_page_with_code() -> None:
    assert set(PRELUDES) <= {_rel(p) for p in PAGES_WITH_CODE}


def test_block_parser_lines_and_markers() -> None:
    text = ("# t\n\n```python\na = 1\n```\n\n<!-- not-run: shortened -->\n```python\nb = (\n```\n"
            "```bash\nls\n```\n  ```py\n  c = 3\n  ```\n")
    blocks = python_blocks(text)
    assert [(b.line, b.source, b.not_run) for b in blocks] == [
        (4, "a = 1\n", None), (9, "b = (\n", "shortened"), (15, "c = 3\n", None)]


def test_failure_names_page_and_line(tmp_path) -> None:
    with pytest.raises(AssertionError, match=r"docs/x\.md:7: this block raised ZeroDivisionError") as e:
        _run_block("docs/x.md", Block(7, "a = 1\nb = a / 0\n", None), {})
    tb = e.value.__cause__.__traceback__
    while tb.tb_next:
        tb = tb.tb_next
    assert tb.tb_lineno == 8 and tb.tb_frame.f_code.co_filename.endswith("docs/x.md")


def test_syntax_error_names_page_and_line() -> None:
    with pytest.raises(AssertionError, match=r"docs/x\.md:3: this block raised SyntaxError"):
        _run_block("docs/x.md", Block(3, "a = (\n", None), {})


def test_doctest_block_output_is_checked() -> None:
    _run_block("docs/x.md", Block(3, ">>> 1 + 1\n2\n", None), {})
    with pytest.raises(pytest.fail.Exception, match=r"docs/x\.md:3"):
        _run_block("docs/x.md", Block(3, ">>> 1 + 1\n3\n", None), {})


# ----------------------------------------------------------------------------- jparam -> torch
def _doc_function(page: str, name: str):
    """The function ``name`` exactly as the block of ``page`` that defines it writes it."""
    (block,) = [b for b in python_blocks((ROOT / page).read_text()) if f"def {name}(" in b.source]
    ns: dict = {}
    exec(compile("\n" * (block.line - 1) + block.source, str(ROOT / page), "exec"), ns)
    return ns[name]


_RESUME_CASES = [
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.1)),
    ("AdamW", dict(lr=0.01)),
    ("Adamax", dict(lr=0.01)),
    ("NAdam", dict(lr=0.01)),
    ("RAdam", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01)),
    ("Adadelta", dict(lr=1.0)),
]


@pytest.mark.parametrize("name,kwargs", _RESUME_CASES, ids=[c[0] for c in _RESUME_CASES])
def test_optim_md_resumes_a_jparam_run_in_torch(name, kwargs) -> None:
    """docs/optim.md's conversion: 3 steps in jparam, then torch continues from the converted
    state for 3 steps and takes the same steps as jparam continuing on its own."""
    to_torch = _doc_function("docs/optim.md", "optimizer_state_dict_to_torch")

    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(5, 3)).astype(np.float32) for _ in range(6)]
    torch.manual_seed(0)
    tmodel = torch.nn.Linear(3, 2)
    model = nn.Linear(3, 2)
    model.load_state_dict(tmodel.state_dict())
    opt = getattr(optim, name)(model.parameters(), **kwargs)

    def loss_fn(m, x):
        return jnp.sum(jnp.tanh(m(x)) ** 2)

    for x in xs[:3]:
        model = model.zero_grad()
        _, model = jparam.backward(loss_fn, model, jnp.asarray(x))
        model, opt = opt.step(model)

    tmodel.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in model.state_dict().items()})
    topt = getattr(torch.optim, name)(tmodel.parameters(), **kwargs)
    topt.load_state_dict(to_torch(opt.state_dict()))
    for i, s in topt.state_dict()["state"].items():     # the state arrived exactly
        ours = opt.state_dict()["state"][i]
        assert list(s) == list(ours)
        for k in s:
            np.testing.assert_array_equal(s[k].numpy(), np.asarray(ours[k]), err_msg=f"{name} {i} {k}")

    for x in xs[3:]:
        model = model.zero_grad()
        _, model = jparam.backward(loss_fn, model, jnp.asarray(x))
        model, opt = opt.step(model)
        topt.zero_grad()
        torch.sum(torch.tanh(tmodel(torch.from_numpy(x))) ** 2).backward()
        topt.step()
    for k, v in tmodel.state_dict().items():
        np.testing.assert_allclose(np.asarray(model.state_dict()[k]), v.numpy(), rtol=1e-5,
                                   atol=1e-7, err_msg=f"{name}: {k} after resuming in torch")
