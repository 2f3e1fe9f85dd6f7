"""One module per framework; each exposes ``build(case, state_dict, data) -> Runner``."""
from __future__ import annotations

import importlib
from typing import Any, Callable, Optional

# key -> (module, display name). Order is the column order of the tables.
FRAMEWORKS: dict[str, tuple[str, str]] = {
    "jax": ("pure_jax", "pure JAX (jax.jit + optax)"),
    "jax_scan": ("pure_jax", "pure JAX, layers stacked + lax.scan"),
    "jparam": ("jparam_impl", "jparam (jax.jit)"),
    "jparam_scan": ("jparam_impl", "jparam StackedBlocks (lax.scan)"),
    "equinox": ("equinox_impl", "Equinox (filter_jit)"),
    "nnx": ("nnx_impl", "Flax NNX (nnx.jit)"),
    "nnx_split": ("nnx_impl", "Flax NNX (split/merge + jax.jit)"),
    "torch": ("torch_impl", "PyTorch eager"),
    # mixed precision and compiled PyTorch (benchmarks/gpu_check.sh runs them on a GPU)
    "jparam_bf16": ("jparam_impl", "jparam, jparam.autocast(bfloat16)"),
    "torch_bf16": ("torch_impl", "PyTorch eager, torch.autocast(bfloat16)"),
    "torch_compile": ("torch_impl", "PyTorch torch.compile"),
}
VARIANTS = ("nnx_split", "jparam_scan", "jax_scan", "jparam_bf16", "torch_bf16", "torch_compile")


class Runner:
    """A ready-to-run training loop for one (framework, case).

    ``step()`` runs one training step on the fixed batch, blocks until it is done and
    returns the loss.  ``lower()`` returns the ``jax.stages.Lowered`` of the jitted step
    (for XLA's memory analysis) or ``None``.
    """

    def __init__(self, step: Callable[[], Any], lower: Optional[Callable[[], Any]] = None):
        self.step = step
        self.lower = lower


def jit_runner(train_step, state: tuple, args: tuple, **jit_kwargs) -> Runner:
    """``jax.jit(train_step, donate_argnums=<all of state>)`` called as
    ``train_step(*state, *args) -> (*new_state, loss)``."""
    import jax

    jitted = jax.jit(train_step, donate_argnums=tuple(range(len(state))), **jit_kwargs)
    holder = [tuple(state)]
    n = len(state)

    def step():
        out = jitted(*holder[0], *args)
        holder[0] = out[:n]
        return jax.block_until_ready(out[n])

    return Runner(step, lambda: jitted.lower(*holder[0], *args))


def build(framework: str, case, state_dict, data) -> Runner:
    module, _ = FRAMEWORKS[framework]
    mod = importlib.import_module(f"benchmarks.frameworks.{module}")
    if framework in VARIANTS:
        return mod.build(case, state_dict, data, variant=framework)
    return mod.build(case, state_dict, data)
