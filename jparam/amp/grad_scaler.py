"""``GradScaler``: torch's dynamic loss scaling for float16 training, as a pure pytree.

torch's scaler mutates itself and the optimizer's gradients; here every method that changes
state returns the new objects, in torch's names and argument order, with the model added
where torch reads gradients from the optimizer's parameters:

=====================================  ===================================================
torch                                  jparam
=====================================  ===================================================
``scaler.scale(loss).backward()``      ``loss, model = jparam.backward(lambda m, x:
                                       scaler.scale(loss_fn(m, x)), model, x)``
``scaler.unscale_(opt)``               ``model, scaler = scaler.unscale_(opt, model)``
``scaler.step(opt)``                   ``model, opt, scaler = scaler.step(opt, model)``
``scaler.update()``                    ``scaler = scaler.update()``
=====================================  ===================================================

The scale, the growth tracker and the per-optimizer inf flags are pytree leaves: the scaler
crosses ``jax.jit`` as an argument and a result, and a changing scale never retraces. A
skipped step is chosen with ``jnp.where`` on every leaf of the model and optimizer (no Python
branch on a traced value). Which optimizers have been unscaled since the last ``update`` is
static (the positions of their parameters in ``model.parameters()``), and ``update`` clears it,
so the scaler a step returns has the structure of the one it received.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["GradScaler"]


def _is_traced(x: Any) -> bool:
    return isinstance(x, jax.core.Tracer)


def _owned(optimizer: Any, model: Any) -> Tuple[int, ...]:
    """Positions in ``model.parameters()`` of the parameters with a grad that ``optimizer``
    owns: the ones its ``zero_grad`` clears (its public API; no identity registry)."""
    if not hasattr(optimizer, "zero_grad") or not hasattr(optimizer, "step"):
        raise TypeError(f"GradScaler: expected a jparam optimizer, got {type(optimizer).__name__}")
    if not hasattr(model, "parameters"):
        raise TypeError(f"GradScaler: expected a jparam Module as `model`, got {type(model).__name__}")
    cleared = optimizer.zero_grad(model)
    return tuple(i for i, (p, z) in enumerate(zip(model.parameters(), cleared.parameters()))
                 if p.grad is not None and z.grad is None)


class GradScaler:
    """Dynamic loss scaling (``torch.amp.GradScaler``): multiply the loss by ``scale`` so
    float16 gradients do not underflow, unscale before the optimizer, skip steps whose grads
    have an inf/NaN, back the scale off after such a step and grow it after
    ``growth_interval`` clean ones. ``device`` is accepted for compatibility.

    A jitted float16 step (``loss_fn`` runs the model under ``jparam.autocast``)::

        @jax.jit
        def train_step(model, opt, scaler, x, y):
            model = model.zero_grad()
            loss, model = jparam.backward(lambda m, x, y: scaler.scale(loss_fn(m, x, y)),
                                          model, x, y)
            model, scaler = scaler.unscale_(opt, model)          # optional: before clipping
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            model, opt, scaler = scaler.step(opt, model)         # skipped on inf/NaN
            return model, opt, scaler.update(), loss / scaler.get_scale()

    Differences from torch: a skipped step returns the model with the optimizer's grads
    cleared (as a taken step does) rather than left unscaled; the inverse scale is computed in
    float32 (torch: float64, then float32), equal for power-of-two scales.

    Example:
        >>> model = nn.Linear(2, 1); opt = optim.SGD(model.parameters(), lr=0.1)
        >>> scaler = jparam.amp.GradScaler(init_scale=1024.0)
        >>> loss, model = jparam.backward(lambda m, x: scaler.scale(m(x).sum()), model, jnp.ones((3, 2)))
        >>> model, opt, scaler = scaler.step(opt, model)
        >>> scaler = scaler.update()
        >>> scaler.get_scale()
        1024.0
    """

    def __init__(self, device: str = "cuda", init_scale: float = 2.0 ** 16,
                 growth_factor: float = 2.0, backoff_factor: float = 0.5,
                 growth_interval: int = 2000, enabled: bool = True) -> None:
        if not isinstance(enabled, bool):
            raise TypeError(f"GradScaler: enabled must be a bool, got {type(enabled).__name__}")
        if not float(growth_factor) > 1.0:
            raise ValueError(f"GradScaler: growth_factor should be > 1, got {growth_factor}")
        if not 0.0 < float(backoff_factor) < 1.0:
            raise ValueError(f"GradScaler: backoff_factor should be in (0, 1), got {backoff_factor}")
        if isinstance(growth_interval, bool) or not isinstance(growth_interval, (int, np.integer)) \
                or growth_interval <= 0:
            raise ValueError(f"GradScaler: growth_interval should be a positive int, got {growth_interval!r}")
        if not float(init_scale) > 0.0:
            raise ValueError(f"GradScaler: init_scale should be > 0, got {init_scale}")
        self._device = str(device)
        self._growth_factor = float(growth_factor)
        self._backoff_factor = float(backoff_factor)
        self._growth_interval = int(growth_interval)
        self._enabled = enabled
        self._scale = jnp.asarray(init_scale, jnp.float32)
        self._growth_tracker = jnp.asarray(0, jnp.int32)
        self._unscaled: Tuple[Tuple[int, ...], ...] = ()   # static: optimizers unscaled so far
        self._found_inf: Tuple[jax.Array, ...] = ()          # one flag (0./1.) per entry above

    # ------------------------------------------------------------------ pytree
    def _flatten(self):
        return ((self._scale, self._growth_tracker, self._found_inf),
                (self._device, self._growth_factor, self._backoff_factor, self._growth_interval,
                 self._enabled, self._unscaled))

    @classmethod
    def _unflatten(cls, aux, children) -> "GradScaler":
        s = object.__new__(cls)
        (s._device, s._growth_factor, s._backoff_factor, s._growth_interval, s._enabled,
         s._unscaled) = aux
        s._scale, s._growth_tracker, found = children
        s._found_inf = tuple(found)
        return s

    def _replace(self, **kw: Any) -> "GradScaler":
        s = object.__new__(GradScaler)
        s.__dict__.update(self.__dict__)
        s.__dict__.update(kw)
        return s

    # ------------------------------------------------------------------ the loop
    def scale(self, outputs: Any) -> Any:
        """``outputs`` (an array, or a pytree of arrays) multiplied by the current scale.

        Example:
            >>> jparam.amp.GradScaler(init_scale=8.0).scale(jnp.float32(0.5))
            Array(4., dtype=float32)
        """
        if not self._enabled:
            return outputs
        return jax.tree_util.tree_map(lambda o: o * self._scale, outputs)

    def unscale_(self, optimizer: Any, model: Any) -> Tuple[Any, "GradScaler"]:
        """Divide the grads of ``optimizer``'s parameters in ``model`` by the scale and record
        whether any is inf/NaN; returns ``(model, scaler)`` (new objects). Call it before
        clipping; ``step`` calls it when you did not.

        Example:
            >>> model = nn.Linear(2, 1); opt = optim.SGD(model.parameters(), lr=0.1)
            >>> scaler = jparam.amp.GradScaler(init_scale=4.0)
            >>> _, model = jparam.backward(lambda m: scaler.scale(m.bias.sum()), model)
            >>> model, scaler = scaler.unscale_(opt, model)
            >>> model.bias.grad
            Array([1.], dtype=float32)
        """
        if not self._enabled:
            return model, self
        key = _owned(optimizer, model)
        if key in self._unscaled:
            raise RuntimeError("unscale_() has already been called on this optimizer since the "
                               "last update().")
        model = jax.tree_util.tree_map(lambda a: a, model)          # a copy: the input stays
        params = list(model.parameters())
        inv = jnp.float32(1.0) / self._scale
        found = jnp.zeros((), jnp.float32)
        for i in key:
            p = params[i]
            g = p.grad
            if g.dtype == jnp.float16:
                raise ValueError(f"Attempting to unscale FP16 gradients (parameter {i} of "
                                 f"model.parameters(), shape {tuple(g.shape)}): keep parameters "
                                 "float32 and let jparam.autocast cast inside the ops.")
            found = jnp.maximum(found, jnp.logical_not(jnp.all(jnp.isfinite(g))).astype(jnp.float32))
            p.grad = (g * inv.astype(g.dtype)).astype(g.dtype)
        return model, self._replace(_unscaled=self._unscaled + (key,),
                                    _found_inf=self._found_inf + (found,))

    def step(self, optimizer: Any, model: Any, *args: Any, **kwargs: Any) -> Tuple[Any, Any, "GradScaler"]:
        """``optimizer.step(model)`` unless the (unscaled) grads hold an inf/NaN, then the model
        and optimizer unchanged (grads cleared); returns ``(model, optimizer, scaler)``.

        Example:
            >>> model = nn.Linear(2, 1); opt = optim.SGD(model.parameters(), lr=0.1)
            >>> scaler = jparam.amp.GradScaler()
            >>> _, model = jparam.backward(lambda m: scaler.scale(m.bias.sum() * jnp.inf), model)
            >>> new_model, opt, scaler = scaler.step(opt, model)
            >>> bool((new_model.bias.data == model.bias.data).all())
            True
        """
        if args or kwargs:
            raise RuntimeError("GradScaler.step: closures and extra arguments are not supported "
                               f"(got {len(args)} positional, {sorted(kwargs)} keyword)")
        if not self._enabled:
            model, optimizer = optimizer.step(model)
            return model, optimizer, self
        scaler = self
        key = _owned(optimizer, model)
        if key not in scaler._unscaled:
            model, scaler = scaler.unscale_(optimizer, model)
        skip = scaler._found_inf[scaler._unscaled.index(key)] > 0
        stepped_model, stepped_opt = optimizer.step(model)
        kept_model = optimizer.zero_grad(model)

        def pick(kept, new):
            return jnp.where(skip, kept, new)

        try:
            model = jax.tree_util.tree_map(pick, kept_model, stepped_model)
            optimizer = jax.tree_util.tree_map(pick, optimizer, stepped_opt)
        except ValueError as e:
            raise ValueError(f"GradScaler.step: the optimizer changed the structure of the "
                             f"model or of itself in its step, so a skipped step cannot be "
                             f"selected leaf by leaf ({e})") from None
        return model, optimizer, scaler

    def update(self, new_scale: Optional[Any] = None) -> "GradScaler":
        """The scaler after this iteration: scale × ``backoff_factor`` if any step saw an
        inf/NaN (growth tracker reset), × ``growth_factor`` after ``growth_interval`` clean
        iterations in a row; or ``new_scale`` if given. Returns a new scaler.

        Example:
            >>> s = jparam.amp.GradScaler(init_scale=8.0).update(new_scale=2.0)
            >>> s.get_scale()
            2.0
        """
        if not self._enabled:
            return self
        if new_scale is not None:
            new = jnp.asarray(new_scale, jnp.float32 if isinstance(new_scale, (int, float)) else None)
            if isinstance(new_scale, bool) or new.size != 1 or not jnp.issubdtype(new.dtype, jnp.floating):
                raise ValueError(f"GradScaler.update: new_scale should be a float or a 1-element "
                                 f"floating array, got {new_scale!r}")
            return self._replace(_scale=new.reshape(()).astype(jnp.float32), _unscaled=(),
                                 _found_inf=())
        if not self._found_inf:
            raise RuntimeError("GradScaler.update: no inf checks were recorded prior to update() "
                               "(call step() or unscale_() first).")
        found = sum(self._found_inf[1:], self._found_inf[0]) > 0
        successful = self._growth_tracker + 1
        grow = successful == self._growth_interval
        grown = self._scale * jnp.float32(self._growth_factor)
        scale = jnp.where(found, self._scale * jnp.float32(self._backoff_factor),
                          jnp.where(grow & jnp.isfinite(grown), grown, self._scale))
        tracker = jnp.where(found | grow, 0, successful).astype(jnp.int32)
        return self._replace(_scale=scale, _growth_tracker=tracker, _unscaled=(), _found_inf=())

    # ------------------------------------------------------------------ torch's accessors
    def get_scale(self) -> Any:
        """The current scale: a Python float (1.0 when disabled); an array inside ``jit``."""
        if not self._enabled:
            return 1.0
        return self._scale if _is_traced(self._scale) else float(self._scale)

    def get_growth_factor(self) -> float:
        return self._growth_factor

    def set_growth_factor(self, new_factor: float) -> None:
        self._growth_factor = float(new_factor)

    def get_backoff_factor(self) -> float:
        return self._backoff_factor

    def set_backoff_factor(self, new_factor: float) -> None:
        self._backoff_factor = float(new_factor)

    def get_growth_interval(self) -> int:
        return self._growth_interval

    def set_growth_interval(self, new_interval: int) -> None:
        self._growth_interval = int(new_interval)

    def is_enabled(self) -> bool:
        return self._enabled

    def state_dict(self) -> Dict[str, Any]:
        """torch's keys: ``scale``, ``growth_factor``, ``backoff_factor``, ``growth_interval``,
        ``_growth_tracker`` (``{}`` when disabled). Outside ``jit`` only.

        Example:
            >>> jparam.amp.GradScaler().state_dict()["scale"]
            65536.0
        """
        if not self._enabled:
            return {}
        if _is_traced(self._scale):
            raise RuntimeError("GradScaler.state_dict() reads the scale on the host; call it "
                               "outside jax.jit, on the scaler a jitted step returned.")
        return {"scale": float(self._scale), "growth_factor": self._growth_factor,
                "backoff_factor": self._backoff_factor, "growth_interval": self._growth_interval,
                "_growth_tracker": int(self._growth_tracker)}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Load torch's (or jparam's) scaler state in place (setup-time, like torch).

        Example:
            >>> s = jparam.amp.GradScaler()
            >>> s.load_state_dict({"scale": 128.0, "growth_factor": 2.0, "backoff_factor": 0.5,
            ...                    "growth_interval": 100, "_growth_tracker": 7})
            >>> s.get_scale(), s.get_growth_interval()
            (128.0, 100)
        """
        if not self._enabled:
            raise RuntimeError("Attempting to load_state_dict on a disabled instance of GradScaler.")
        if not isinstance(state_dict, dict):
            raise TypeError(f"GradScaler.load_state_dict: expected a dict, got {type(state_dict).__name__}")
        if len(state_dict) == 0:
            raise RuntimeError("The source state dict is empty, possibly because it was saved "
                               "from a disabled instance of GradScaler.")
        missing = {"scale", "growth_factor", "backoff_factor", "growth_interval",
                   "_growth_tracker"} - set(state_dict)
        if missing:
            raise KeyError(f"GradScaler.load_state_dict: missing keys {sorted(missing)}")
        self._scale = jnp.asarray(float(state_dict["scale"]), jnp.float32)
        self._growth_factor = float(state_dict["growth_factor"])
        self._backoff_factor = float(state_dict["backoff_factor"])
        self._growth_interval = int(state_dict["growth_interval"])
        self._growth_tracker = jnp.asarray(int(state_dict["_growth_tracker"]), jnp.int32)
        self._unscaled, self._found_inf = (), ()

    def __repr__(self) -> str:
        scale = "traced" if _is_traced(self._scale) else float(self._scale)
        return (f"GradScaler(scale={scale}, growth_factor={self._growth_factor}, "
                f"backoff_factor={self._backoff_factor}, growth_interval={self._growth_interval}, "
                f"enabled={self._enabled})")


jax.tree_util.register_pytree_node(GradScaler, lambda s: s._flatten(), GradScaler._unflatten)
