"""``jparam.from_torch``: turn a torch model into a trainable jparam module.

Two paths. A model built only from standard ``torch.nn`` layers and containers becomes the
tree of ``jparam.nn`` modules described below (idiomatic jparam, each layer callable on its
own). Any other model (custom classes, a model library's blocks, code in ``forward``) is
captured with ``torch.export`` and becomes an :class:`~jparam._export_module.ExportedModule`
that runs the exported graph with JAX (``jparam/_export_*.py``; ``docs/porting.md``).

The structured path:

Every ``torch.nn`` layer class maps to the ``jparam.nn`` class of the same name, built with
the constructor arguments read back from the torch module's attributes (torch stores them
under their own names: ``in_features``, ``kernel_size``, ``eps`` ...).  Containers
(``Sequential``, ``ModuleList``, ``ModuleDict``) are rebuilt around the converted children.
The weights are then copied with ``load_state_dict(torch_module.state_dict())``; training
mode, frozen parameters and tied parameters are carried over.

A user-defined torch class cannot be converted (its ``forward`` is Python code using torch):
port it by writing the mirror class with ``jparam.nn`` and loading the state dict.
"""
from __future__ import annotations

import inspect
from collections import OrderedDict
from typing import Any, Callable, Optional

__all__ = ["from_torch"]

# arguments that are never read back from the torch module
_SKIP = {"self", "device", "dtype", "_weight", "_freeze", "factory_kwargs"}


class _Unreadable(Exception):
    pass


def _activation_name(fn: Any) -> Any:
    """TransformerEncoderLayer stores ``activation`` as a function or a module."""
    name = getattr(fn, "__name__", None) or type(fn).__name__
    name = name.lower()
    if name in ("relu", "gelu"):
        return name
    raise _Unreadable(f"activation {fn!r}")


def _special_args(tm: Any, path: str, jnn: Any) -> dict[str, Callable[[Any], Any]] | None:
    """Arguments torch does not keep under their constructor name, per class."""
    import torch

    cls = type(tm).__name__
    sub = lambda name, m: _convert(m, f"{path}.{name}" if path else name, jnn)
    if cls in ("TransformerEncoder", "TransformerDecoder"):
        key = "encoder_layer" if cls == "TransformerEncoder" else "decoder_layer"
        # torch keeps num_layers clones in `layers`; the constructor clones its argument
        return {key: lambda m: sub("layers.0", m.layers[0])}
    if cls == "MultiheadAttention":
        return {"bias": lambda m: m.in_proj_bias is not None,
                "add_bias_kv": lambda m: m.bias_k is not None,
                "dropout": lambda m: m.dropout}
    if cls in ("TransformerEncoderLayer", "TransformerDecoderLayer"):
        return {"d_model": lambda m: m.self_attn.embed_dim,
                "nhead": lambda m: m.self_attn.num_heads,
                "dim_feedforward": lambda m: m.linear1.out_features,
                "dropout": lambda m: m.dropout.p,
                "activation": lambda m: (sub("activation", m.activation)
                                         if isinstance(m.activation, torch.nn.Module)
                                         else _activation_name(m.activation)),
                "layer_norm_eps": lambda m: m.norm1.eps,
                "batch_first": lambda m: m.self_attn.batch_first,
                "norm_first": lambda m: m.norm_first,
                "bias": lambda m: m.linear1.bias is not None}
    if cls == "Transformer":
        # torch keeps neither num_*_layers nor the layer options: read them from the layers,
        # and pass the converted stacks as custom_encoder/custom_decoder (no re-initialisation)
        first = lambda m: m.encoder.layers[0]
        return {"d_model": lambda m: m.d_model,
                "nhead": lambda m: m.nhead,
                "num_encoder_layers": lambda m: len(m.encoder.layers),
                "num_decoder_layers": lambda m: len(m.decoder.layers),
                "dim_feedforward": lambda m: first(m).linear1.out_features,
                "dropout": lambda m: first(m).dropout.p,
                "activation": lambda m: (sub("encoder.layers.0.activation", first(m).activation)
                                         if isinstance(first(m).activation, torch.nn.Module)
                                         else _activation_name(first(m).activation)),
                "layer_norm_eps": lambda m: first(m).norm1.eps,
                "batch_first": lambda m: m.batch_first,
                "norm_first": lambda m: first(m).norm_first,
                "bias": lambda m: first(m).linear1.bias is not None,
                "custom_encoder": lambda m: sub("encoder", m.encoder),
                "custom_decoder": lambda m: sub("decoder", m.decoder)}
    if cls in ("Upsample",):
        return {"size": lambda m: m.size, "scale_factor": lambda m: m.scale_factor}
    return None


def _dtype_of(tm: Any) -> Any:
    import torch

    for t in list(tm.parameters(recurse=False)) + list(tm.buffers(recurse=False)):
        if t.is_floating_point():
            if t.dtype == torch.float32:
                return None
            from jparam._convert import torch_dtype_to_numpy

            return torch_dtype_to_numpy(t.dtype)
    return None


def _read_args(tm: Any, jcls: type, path: str, jnn: Any) -> dict[str, Any]:
    import torch

    sig = inspect.signature(jcls.__init__)
    special = _special_args(tm, path, jnn) or {}
    kwargs: dict[str, Any] = {}
    for name, prm in sig.parameters.items():
        if name in _SKIP or prm.kind in (prm.VAR_POSITIONAL, prm.VAR_KEYWORD):
            continue
        try:
            if name in special:
                val = special[name](tm)
            elif hasattr(tm, name):
                val = getattr(tm, name)
                if isinstance(val, torch.Tensor) or (val is None and name == "bias"):
                    # `bias` is a Parameter (or None) in most layers, a bool in RNNs
                    val = val is not None
                elif isinstance(val, torch.nn.Module):  # e.g. TransformerEncoder's norm
                    val = _convert(val, f"{path}.{name}" if path else name, jnn)
            elif prm.default is not prm.empty:
                continue  # torch does not keep it: jparam's default (= torch's)
            else:
                raise _Unreadable(f"no attribute {name!r}")
        except _Unreadable as e:
            raise TypeError(
                f"jparam.from_torch: cannot read the constructor argument {name!r} of "
                f"torch.nn.{type(tm).__name__} at {path or '<root>'} ({e}); build "
                f"jparam.nn.{jcls.__name__} yourself and load_state_dict the torch weights") from None
        kwargs[name] = val
    if "dtype" in sig.parameters:
        dt = _dtype_of(tm)
        if dt is not None:
            kwargs["dtype"] = dt
    return kwargs


def _convert(tm: Any, path: str, jnn: Any) -> Any:
    import torch

    cls = type(tm)
    where = path or "<root>"
    if not cls.__module__.startswith("torch.nn"):
        raise TypeError(
            f"jparam.from_torch: {cls.__module__}.{cls.__qualname__} at {where} is a custom torch "
            "module; only torch.nn layers and containers are converted automatically. Port it by "
            f"writing the mirror class `class {cls.__name__}(jparam.nn.Module)` with the same "
            "attribute names (torch.nn -> jparam.nn) and the same forward, then "
            "`jmodel.load_state_dict(torch_model.state_dict())` (jparam.from_torch converts its "
            "standard submodules one by one if that helps).")
    jcls = getattr(jnn, cls.__name__, None)
    if jcls is None or not isinstance(jcls, type):
        raise NotImplementedError(
            f"jparam.from_torch: torch.nn.{cls.__name__} at {where} has no jparam.nn "
            "counterpart yet")
    child = lambda name, m: _convert(m, f"{path}.{name}" if path else name, jnn)
    if isinstance(tm, torch.nn.Sequential):
        items = [(n, child(n, m)) for n, m in tm.named_children()]
        if [n for n, _ in items] == [str(i) for i in range(len(items))]:
            return jcls(*[m for _, m in items])
        return jcls(OrderedDict(items))
    if isinstance(tm, torch.nn.ModuleList):
        return jcls([child(n, m) for n, m in tm.named_children()])
    if isinstance(tm, torch.nn.ModuleDict):
        return jcls(OrderedDict((n, child(n, m)) for n, m in tm.named_children()))
    if isinstance(tm, (torch.nn.ParameterList, torch.nn.ParameterDict)):
        raise NotImplementedError(f"jparam.from_torch: {cls.__name__} at {where}: build it "
                                  "with jparam.nn and load_state_dict the torch weights")
    return jcls(**_read_args(tm, jcls, path, jnn))


def _structured(torch_module: Any) -> Any:
    from jparam import nn as jnn

    jm = _convert(torch_module, "", jnn)
    jm.load_state_dict(torch_module.state_dict())
    # tied parameters: torch lists a shared Parameter once; give jparam the same sharing
    first: dict[int, str] = {}
    for name, p in torch_module.named_parameters(remove_duplicate=False):
        if id(p) in first:
            owner, _, attr = name.rpartition(".")
            setattr(jm.get_submodule(owner), attr, jm.get_parameter(first[id(p)]))
        else:
            first[id(p)] = name
    for name, p in torch_module.named_parameters():
        if not p.requires_grad:
            jm.get_parameter(name).requires_grad_(False)
    for name, m in torch_module.named_modules():
        jm.get_submodule(name).training = m.training
    return jm


def _exported(torch_module: Any, args: tuple, kwargs: Optional[dict], dynamic_shapes: Any) -> Any:
    from jparam._convert import torch_to_jax
    from jparam._export_capture import capture, layout_of
    from jparam._export_module import ExportedModule

    modes = {name: m.training for name, m in torch_module.named_modules(remove_duplicate=False)}
    mode = torch_module.training
    try:
        # the current mode as it is (a submodule may be in the other mode), then the other
        current = capture(torch_module, args, kwargs, dynamic_shapes)
        torch_module.train(not mode)
        other = capture(torch_module, args, kwargs, dynamic_shapes)
    finally:
        for name, m in torch_module.named_modules(remove_duplicate=False):
            m.training = modes[name]
    layout = layout_of(torch_module)
    train, eval_ = (current, other) if mode else (other, current)
    jm = ExportedModule(layout, train, eval_)
    jm.load_state_dict(torch_module.state_dict())
    for name, b in torch_module.named_buffers(remove_duplicate=False):  # non-persistent ones
        owner, _, attr = name.rpartition(".")
        sub = jm.get_submodule(owner)
        if attr in sub._non_persistent_buffers_set:
            setattr(sub, attr, torch_to_jax(b))
    return jm


def _is_standard(torch_module: Any) -> bool:
    from jparam import nn as jnn

    for _, m in torch_module.named_modules():
        cls = type(m)
        if not cls.__module__.startswith("torch.nn") or not isinstance(
                getattr(jnn, cls.__name__, None), type):
            return False
    return True


def from_torch(torch_module: Any, example_args: Optional[tuple] = None,
               example_kwargs: Optional[dict] = None, dynamic_shapes: Any = None, *,
               export: Optional[bool] = None) -> Any:
    """A trainable jparam module with ``torch_module``'s weights, names and outputs.

    **Standard layers** (every submodule a ``torch.nn`` class jparam has): the ``jparam.nn``
    twin, layer for layer (constructor arguments read from the torch modules, weights
    copied, training mode, ``requires_grad=False`` and ties preserved).

    **Any other model** (custom classes, a model library's blocks): pass example inputs. The
    model is captured with ``torch.export`` (in both training modes) and returned as an
    ``ExportedModule`` whose parameters and buffers have exactly torch's ``state_dict``
    names (ties kept as one Parameter) and whose forward runs the exported ATen graph with
    JAX; gradients, ``train()``/``eval()``, BatchNorm statistics and dropout work as in
    jparam's own layers. ``example_args`` / ``example_kwargs`` / ``dynamic_shapes`` are
    ``torch.export.export``'s; dims not declared dynamic are fixed to the example's sizes.
    Torch is needed only here: the result runs, trains and reloads without it
    (``ExportedModule.save_graph`` / ``load_graph``). An operator jparam does not implement
    raises ``NotImplementedError`` naming it, the graph node and the source line.

    ``export=True`` forces the export path, ``export=False`` the structured one; by default
    the structured path is used where it applies.

    Example:
        >>> tnet = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> net = jparam.from_torch(tnet)
        >>> net(jnp.ones((3, 4))).shape
        (3, 2)
        >>> class Scale(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.w = torch.nn.Parameter(torch.ones(4))
        ...     def forward(self, x):
        ...         return (x * self.w).sum(-1)
        >>> jparam.from_torch(Scale(), example_args=(torch.ones(2, 4),))(jnp.ones((2, 4))).shape
        (2,)
    """
    import torch

    if not isinstance(torch_module, torch.nn.Module):
        raise TypeError(f"jparam.from_torch expects a torch.nn.Module, got {type(torch_module).__name__}")
    has_inputs = example_args is not None or example_kwargs is not None
    if export is None and not has_inputs:
        try:
            return _structured(torch_module)
        except (TypeError, NotImplementedError) as e:
            raise type(e)(f"{e} Or pass example inputs, jparam.from_torch(model, "
                          "example_args=(x,)): any model then converts through torch.export.") from None
    if export is None:
        if _is_standard(torch_module):
            try:
                return _structured(torch_module)
            except (TypeError, NotImplementedError):
                pass  # a layer option the structured path cannot read: export it
        export = True
    if not export:
        return _structured(torch_module)
    if not has_inputs:
        raise TypeError("jparam.from_torch(..., export=True) captures the forward with "
                        "torch.export, which needs example inputs: example_args=(x,) (and "
                        "example_kwargs=/dynamic_shapes= as in torch.export.export)")
    if example_args is not None and not isinstance(example_args, tuple):
        raise TypeError(f"jparam.from_torch: example_args must be a tuple (as in "
                        f"torch.export.export), got {type(example_args).__name__}")
    return _exported(torch_module, example_args or (), example_kwargs, dynamic_shapes)
