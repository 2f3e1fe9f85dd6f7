"""``jparam.func``: torch.func-style functional API over modules."""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence, Union

from jparam import _flatten as fl
from jparam._convert import to_jax_array
from jparam._module import Module
from jparam._parameter import Parameter

__all__ = ["functional_call"]


def _slots(m: Module) -> dict:
    """name -> (owner, attribute, kind) for every parameter and buffer (non-persistent too),
    under every name (tied entries repeat)."""
    out: dict = {}

    def walk(mod: Module, prefix: str) -> None:
        d = mod.__dict__
        for name, kind in d["_jp_reg"].items():
            v = d[name]
            if v is None:
                continue
            if kind == "m":
                walk(v, prefix + name + ".")
            else:
                out[prefix + name] = (mod, name, kind)

    m.__dict__  # noqa: B018
    walk(m, "")
    return out


def functional_call(module: Module,
                    parameter_and_buffer_dicts: Union[Mapping[str, Any], Sequence[Mapping[str, Any]]],
                    args: Any = None, kwargs: Optional[Dict[str, Any]] = None, *,
                    tie_weights: bool = True, strict: bool = False) -> Any:
    """Call ``module`` with some parameters/buffers replaced by name (torch.func semantics).

    The module itself is not modified: the call runs on a copy. Missing names keep the
    module's own values; with ``tie_weights=True`` a value given for one name of a tied
    pair applies to both (``tie_weights=False`` unties them for this call). ``strict=True``
    requires exactly the module's names. Differentiable: use it under ``jax.grad``.

    Example:
        >>> params = dict(model.named_parameters())
        >>> grads = jax.grad(lambda p: jnp.sum(functional_call(model, p, (x,))))(
        ...     {k: v.data for k, v in params.items()})
        >>> grads["weight"].shape, grads["bias"].shape
        ((2, 4), (2,))
    """
    dicts = [parameter_and_buffer_dicts] if isinstance(parameter_and_buffer_dicts, Mapping) \
        else list(parameter_and_buffer_dicts)
    merged: dict = {}
    for d in dicts:
        for k, v in d.items():
            if k in merged:
                raise ValueError(f"{k} appeared in multiple dictionaries; behavior of functional call is ambiguous")
            merged[k] = v
    if args is None:
        args = ()
    elif not isinstance(args, tuple):
        args = (args,)
    kwargs = kwargs or {}
    leaves, aux = fl.flatten_module(module)
    m = fl.unflatten_module(aux, list(leaves))
    fl.materialize(m)
    slots = _slots(m)
    if strict:
        missing = [k for k in slots if k not in merged]
        unexpected = [k for k in merged if k not in slots]
        if missing or unexpected:
            msg = []
            if unexpected:
                msg.append("Unexpected key(s): {}.".format(", ".join(map(repr, unexpected))))
            if missing:
                msg.append("Missing key(s): {}.".format(", ".join(map(repr, missing))))
            raise RuntimeError("Error(s) in reparametrizing for {}:\n\t{}".format(type(module).__name__, "\n\t".join(msg)))
    else:
        unexpected = [k for k in merged if k not in slots]
        if unexpected:
            raise KeyError(f"functional_call: no parameter or buffer named {unexpected[0]!r} in "
                           f"{type(module).__name__}")
    if tie_weights:
        by_obj: dict = {}
        for k in merged:
            mod, name, kind = slots[k]
            obj = mod.__dict__[name]
            if kind == "p":
                by_obj.setdefault(id(obj), []).append(k)
        clash = [ks for ks in by_obj.values() if len(ks) > 1
                 and any(merged[ks[0]] is not merged[k] for k in ks[1:])]
        if clash:
            raise ValueError(f"functional_call got multiple values for keys {clash[0]}, which are tied. "
                             "Consider using tie_weights=False")
    for k, v in merged.items():
        mod, name, kind = slots[k]
        val = v._data if isinstance(v, Parameter) else to_jax_array(v, f"functional_call['{k}']")
        if kind == "p":
            old = mod.__dict__[name]
            if tie_weights:
                old._data = val
            else:
                mod.__dict__[name] = Parameter._make(val, None, old.requires_grad, old._jp_id, False)
        else:
            mod.__dict__[name] = val
    return m(*args, **kwargs)
