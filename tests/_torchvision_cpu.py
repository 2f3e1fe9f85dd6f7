"""Import torchvision next to a CPU-only torch (test helper).

PyPI's torchvision wheel for torch 2.13.0 links its C++ operators (``nms``, ``roi_align``)
against CUDA libraries a CPU torch does not ship, and ``import torchvision`` then fails
while registering their fake kernels. The models (``resnet18``, ``VisionTransformer``) are
pure Python and need none of them: where the extension cannot load, the two operator
schemas torchvision registers fake kernels for at import are declared (no kernels), so the
import succeeds. ``transformers`` imports torchvision when it is installed, so import this
module before either.
"""
from __future__ import annotations

import importlib.util
import os

import torch

_LIB = None


def _ensure() -> None:
    global _LIB
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return
    folder = spec.submodule_search_locations[0]
    libs = [f for f in os.listdir(folder) if f.startswith("_C") and f.endswith(".so")]
    try:
        if libs:
            torch.ops.load_library(os.path.join(folder, libs[0]))
            return
    except OSError:
        pass
    if not hasattr(torch.ops.torchvision, "nms"):
        _LIB = torch.library.Library("torchvision", "DEF")
        _LIB.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _LIB.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


_ensure()
