"""Every jparam name the docs' mapping tables (README.md, docs/*.md) give is reachable where
the table says: a layer table row names the file that defines each layer, a ``torch | jparam
| file`` row names a namespace (``F``) or file, and the README's porting table names
``jparam`` / ``nn`` / model / optimizer attributes that exist."""
from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

import jparam
from jparam import nn
from jparam.nn import functional as F

ROOT = Path(__file__).resolve().parent.parent


def _rows(path: Path, header: str) -> list:
    """Cells of the rows of the table whose header row starts with ``header``."""
    rows, inside = [], False
    for line in path.read_text().splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not inside and line.startswith(header):
                inside = True
                continue
            if inside and not set(line) <= set("|- "):
                rows.append(cells)
        else:
            inside = False
    assert rows, f"no table starting with {header!r} in {path.name}"
    return rows


def _expand(name: str) -> list:
    """``Conv1d/2d/3d`` -> Conv1d, Conv2d, Conv3d; ``ZeroPad`` + suffix ``(1d/2d/3d)``."""
    m = re.fullmatch(r"(\w+?)(\dd)((?:/\dd)+)", name)
    if m:
        return [m.group(1) + m.group(2)] + [m.group(1) + s for s in m.group(3).split("/")[1:]]
    return [name]


def _defined_in(obj, relpath: str) -> bool:
    mod = importlib.import_module(obj.__module__)
    return Path(mod.__file__).resolve() == (ROOT / relpath).resolve()


def _drop_parentheticals(text: str) -> str:
    out, depth = [], 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def test_layers_table_names_exist_in_the_named_files():
    checked = 0
    for files, layers in _rows(ROOT / "docs/layers.md", "| family | layers |"):
        paths = [f"jparam/nn/modules/{f.strip()}" for f in files.split(",")]
        all_dims = "(1d/2d/3d)" in layers  # "ConstantPad, ZeroPad, ... (1d/2d/3d)"
        for item in _drop_parentheticals(layers).split(":")[0].split(","):
            item = item.strip()
            names = [item + s for s in ("1d", "2d", "3d")] if all_dims else _expand(item)
            for name in names:
                assert hasattr(nn, name), f"docs/layers.md: nn.{name} does not exist"
                assert any(_defined_in(getattr(nn, name), p) for p in paths), \
                    f"docs/layers.md: nn.{name} is not defined in {paths}"
                checked += 1
    assert checked > 100


def _backticked(cell: str) -> list:
    return re.findall(r"`([^`]+)`", cell)


def test_attention_rnn_table_names_are_reachable():
    rows = _rows(ROOT / "docs/layers_attention_rnn.md", "| torch | jparam | file |")
    checked = 0
    for torch_col, jp_col, where in rows:
        namespace = F if where.startswith("`F`") else nn
        path = _backticked(where)[-1]
        codes = _backticked(jp_col)
        if jp_col.startswith("same"):  # "same names" / "same signature": the torch column's
            codes += _backticked(torch_col)
        for code in codes:
            name = code.split("(")[0].strip()
            if name.startswith("_VF") or not re.fullmatch(r"(?:F\.|nn\.)?\w+", name):
                continue
            ns = F if name.startswith("F.") else nn if name.startswith("nn.") else namespace
            if ns is nn and not name.split(".")[-1][0].isupper():
                continue  # an attribute name in the prose (`out_proj`)
            obj = getattr(ns, name.split(".")[-1], None)
            assert obj is not None, f"docs/layers_attention_rnn.md: {name} is not reachable"
            assert _defined_in(obj, path), f"docs/layers_attention_rnn.md: {name} is not in {path}"
            checked += 1
    assert checked >= 20


def test_optim_table_classes_are_reachable():
    for cls_col, module_col, _ in _rows(ROOT / "docs/optim.md", "| class | module |"):
        path = "jparam/" + _backticked(module_col)[0]
        for name in _backticked(cls_col):
            obj = getattr(jparam.optim, name, None)
            assert obj is not None, f"jparam.optim.{name} does not exist"
            assert _defined_in(obj, path), f"jparam.optim.{name} is not defined in {path}"


_OWNERS = {"jparam": jparam, "nn": nn, "model": nn.Module, "opt": jparam.optim.Optimizer,
           "torch.nn.utils": nn.utils, "F": F}


def _resolve(dotted: str):
    head, *rest = dotted.split(".")
    obj = _OWNERS.get(head)
    if obj is None:
        return None, False
    for part in rest:
        obj = getattr(obj, part, None)
        if obj is None:
            return dotted, False
    return dotted, True


def test_readme_porting_table_names_exist():
    rows = _rows(ROOT / "README.md", "| PyTorch | jparam |")
    checked = 0
    for torch_col, jp_col in rows:
        code = " ".join(_backticked(jp_col))
        if "the same" in jp_col:  # the torch column's code works unchanged
            code += " " + " ".join(_backticked(torch_col)).replace("torch.nn.utils.", "nn.utils.")
        for dotted in re.findall(r"\b(?:jparam|nn|model|opt)(?:\.\w+)+", code):
            name, ok = _resolve(dotted)
            assert ok, f"README porting table: {name} does not exist"
            checked += 1
        for method in re.findall(r"(?<![\w.])\.?(requires_grad_|register_buffer|load_state_dict)\(", code):
            assert hasattr(nn.Module, method) or hasattr(nn.Parameter, method)
    assert checked >= 10


@pytest.mark.parametrize("name", ["scaled_dot_product_attention", "multi_head_attention_forward",
                                  "rnn_tanh", "rnn_relu", "lstm", "gru", "rnn_tanh_cell",
                                  "rnn_relu_cell", "lstm_cell", "gru_cell", "linear", "dropout"])
def test_functional_exports(name):
    assert name in F.__all__ and callable(getattr(F, name))
