"""jparam: filled in once the core lands (phase 2)."""
from __future__ import annotations


def build(c, sd, data, variant: str = "jparam"):
    raise ImportError("jparam.nn is not available yet")
