"""Names every docstring example in ``jparam/`` may use without importing them.

``python -m pytest`` runs each ``>>>`` example under ``jparam/`` as a test
(``--doctest-modules``; see ``[tool.pytest.ini_options]`` in pyproject.toml). Each example
starts from the module's own globals plus the names below, with ``jparam.manual_seed(0)`` and a
fresh set of small objects, so outputs that depend on initialisation are the same in every run
and in every xdist worker:

- ``jax``, ``jnp``, ``np``, ``jparam``, ``nn``, ``optim``, ``F`` (``jparam.nn.functional``),
  ``lr_scheduler`` (``jparam.optim.lr_scheduler``), ``optax``, ``torch``;
- ``model = nn.Linear(4, 2)``, ``x`` (8, 4) and ``y`` (8, 2) float32 inputs and targets,
  ``loss_fn(model, x, y)`` (mean squared error) and ``opt = optim.SGD(model.parameters(),
  lr=0.1)``.

Each example runs in its own empty temporary directory, so it may write files
(``jparam.save(model.state_dict(), "model.safetensors")``).

This file sits at the repository root, outside the ``jparam`` package, so ``import jparam`` never
imports it and the wheel does not ship it.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _pytest.doctest import DoctestItem

import jparam
from jparam import nn, optim
from jparam.nn import functional as F


@pytest.fixture(autouse=True)
def _doctest_globals(request: pytest.FixtureRequest) -> None:
    """Fill ``doctest_namespace`` for docstring examples; does nothing for ordinary tests."""
    if not isinstance(request.node, DoctestItem):
        return
    import torch  # examples that compare with torch use it; jparam itself never imports it

    import optax

    request.getfixturevalue("monkeypatch").chdir(request.getfixturevalue("tmp_path"))
    jparam.manual_seed(0)
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    rng = np.random.default_rng(0)
    ns = request.getfixturevalue("doctest_namespace")
    ns.update(jax=jax, jnp=jnp, np=np, jparam=jparam, nn=nn, optim=optim, F=F,
              lr_scheduler=optim.lr_scheduler, optax=optax, torch=torch,
              model=model,
              x=jnp.asarray(rng.normal(size=(8, 4)), jnp.float32),
              y=jnp.asarray(rng.normal(size=(8, 2)), jnp.float32),
              loss_fn=_mse, opt=optim.SGD(model.parameters(), lr=0.1))


def _mse(model: nn.Module, x: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean((model(x) - y) ** 2)
