"""``jparam.from_torch``: build the jparam twin of a standard ``torch.nn`` model.

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
from typing import Any, Callable

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


def from_torch(torch_module: Any) -> Any:
    """The ``jparam.nn`` twin of a ``torch.nn`` model, with the same weights.

    Standard layers map to the ``jparam.nn`` class of the same name (constructor arguments
    read from the torch module); ``Sequential``, ``ModuleList`` and ``ModuleDict`` are rebuilt
    around converted children. Weights and buffers are copied with ``load_state_dict``, and
    training mode, ``requires_grad=False`` and tied parameters (one parameter at two
    attribute paths) are preserved. A custom torch module class raises ``TypeError`` telling
    how to port it (write the mirror class, then ``load_state_dict``).

    Example:
        >>> tnet = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> net = jparam.from_torch(tnet)
        >>> net(jnp.ones((3, 4))).shape
        (3, 2)
    """
    import torch

    from jparam import nn as jnn

    if not isinstance(torch_module, torch.nn.Module):
        raise TypeError(f"jparam.from_torch expects a torch.nn.Module, got {type(torch_module).__name__}")
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
