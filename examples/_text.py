"""Character-level text that ships with Python, for the GPT example (no downloads).

``corpus("zen")`` is the Zen of Python (``this.s``, stored ROT13-encoded in the standard
library); ``corpus("stdlib")`` is the source of a few small standard-library modules.
``CharVocab`` maps characters to ids and back; ``batches`` draws random training windows.
"""
from __future__ import annotations

import codecs
import contextlib
import importlib
import inspect
import io

import numpy as np

STDLIB_MODULES = ("textwrap", "bisect", "heapq", "colorsys", "fnmatch")


def zen() -> str:
    """The Zen of Python, decoded from ``this.s`` (importing ``this`` prints it: silenced)."""
    with contextlib.redirect_stdout(io.StringIO()):
        import this
    return codecs.decode(this.s, "rot13") + "\n"


def corpus(name: str = "zen") -> str:
    """``"zen"``: the Zen of Python (857 characters); ``"stdlib"``: source of a few modules."""
    if name == "zen":
        return zen()
    if name == "stdlib":
        return "\n\n".join(inspect.getsource(importlib.import_module(m)) for m in STDLIB_MODULES)
    raise ValueError(f"unknown corpus {name!r}: expected 'zen' or 'stdlib'")


class CharVocab:
    """Sorted set of the characters in ``text``; ``encode``/``decode`` between str and ids."""

    def __init__(self, text: str):
        self.chars = sorted(set(text))
        self.index = {c: i for i, c in enumerate(self.chars)}

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        return np.array([self.index[c] for c in text], np.int32)

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)


def batches(data: np.ndarray, block_size: int, batch_size: int, seed: int = 0):
    """Endless random ``(x, y)`` windows of ``block_size`` ids, ``y`` shifted by one."""
    if len(data) <= block_size:
        raise ValueError(f"text of {len(data)} characters is too short for block_size {block_size}")
    rng = np.random.default_rng(seed)
    offsets = np.arange(block_size)
    while True:
        starts = rng.integers(0, len(data) - block_size, size=batch_size)
        idx = starts[:, None] + offsets
        yield data[idx], data[idx + 1]
