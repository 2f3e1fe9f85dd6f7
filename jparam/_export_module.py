"""``ExportedModule``: a torch model captured by ``torch.export``, as a trainable jparam module.

The parameters and buffers sit in a tree of :class:`TorchSubmodule` containers that mirrors
the torch model's module paths, so ``state_dict()`` and ``named_parameters()`` have exactly
torch's names and order (ties kept: one ``Parameter`` at every path torch shares it). The
root's ``forward`` interprets the exported graph (ATen operators, run with JAX) on the
current parameter values; buffers the graph updates (BatchNorm statistics) are assigned back
in ``forward``, like ``jparam.nn.BatchNorm2d`` does, and dropout draws from the module's own
key. Two graphs are kept, one per mode (``train()`` / ``eval()`` pick one), because a torch
model may run different Python in each mode.
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jparam._export_graph import DType, Graph, Ref
from jparam._export_ops import OPS, RANDOM_OPS
from jparam._module import Module
from jparam._parameter import Parameter
from jparam._random import module_key, new_key_leaf
from jparam._tracing import TracerLeakError

__all__ = ["ExportedModule", "TorchSubmodule"]

_FORMAT = "jparam.exported_module/1"


class TorchSubmodule(Module):
    """A container holding one torch submodule's parameters, buffers and children.

    It has no ``forward`` of its own: the exported graph of the root runs the whole model.
    ``torch_class`` names the torch class it stands for.

    Example:
        >>> tnet = torch.nn.Sequential(torch.nn.Linear(2, 2))
        >>> net = jparam.from_torch(tnet, example_args=(torch.ones(1, 2),), export=True)
        >>> type(net.get_submodule("0")).__name__, net.get_submodule("0").torch_class
        ('TorchSubmodule', 'torch.nn.modules.linear.Linear')
    """

    def __init__(self, torch_class: str = "") -> None:
        super().__init__()
        self.torch_class = torch_class

    def __getitem__(self, idx: Any) -> Module:
        return getattr(self, str(idx))

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"{self.torch_class or 'this submodule'} is part of a model converted with "
            "torch.export: only the root module runs (its graph covers the whole forward). "
            "Call the root, or port this block by hand (docs/porting.md).")

    def extra_repr(self) -> str:
        return self.torch_class


def _build_tree(root: Module, layout: list) -> None:
    """Create containers, Parameters (zeros) and buffers (zeros) as ``layout`` describes."""
    mods: dict[str, Module] = {"": root}
    objs: dict[str, Any] = {}
    for entry in layout[1:]:
        mods[entry["path"]] = TorchSubmodule(entry["cls"])
    for entry in layout:
        m = mods[entry["path"]]
        m.training = entry["training"]
        pre = entry["path"] + "." if entry["path"] else ""
        for item in entry["items"]:
            kind, name = item[0], item[1]
            if kind == "tie":
                kind, name, first = item[1], item[2], item[3]
                if kind == "p":
                    m.register_parameter(name, objs[first])
                elif kind == "b":
                    m.register_buffer(name, objs[first])
                else:
                    setattr(m, name, mods[first])
            elif kind == "p":
                if item[2] is None:
                    m.register_parameter(name, None)
                    continue
                p = Parameter(jnp.zeros(item[2], _dtype(item[3])), requires_grad=item[4])
                m.register_parameter(name, p)
                objs[pre + name] = p
            elif kind == "b":
                if item[2] is None:
                    m.register_buffer(name, None)
                    continue
                b = jnp.zeros(item[2], _dtype(item[3]))
                m.register_buffer(name, b, persistent=item[4])
                objs[pre + name] = b
            elif len(item) > 2:  # ["m", name, None]
                m.add_module(name, None)
            else:
                m.add_module(name, mods[pre + name])


def _dtype(name: str) -> Any:
    return jax.dtypes.canonicalize_dtype(jnp.bfloat16 if name == "bfloat16" else np.dtype(name))


def _kind_of(dtype: Any) -> str:
    if dtype == jnp.bool_:
        return "b"
    if jnp.issubdtype(dtype, jnp.floating):
        return "f"
    return "c" if jnp.issubdtype(dtype, jnp.complexfloating) else "i"


class _Keys:
    """Fresh PRNG keys for the random nodes of one forward, drawn from the module's key."""

    def __init__(self, module: Module) -> None:
        self.module, self.base, self.count = module, None, 0

    def __call__(self) -> jax.Array:
        if self.base is None:
            self.base = module_key(self.module)
        self.count += 1
        return jax.random.fold_in(self.base, self.count)


class ExportedModule(Module):
    """A torch model captured with ``torch.export``, trainable with jparam.

    Built by :func:`jparam.from_torch` (or rebuilt without torch by :meth:`load_graph`).
    ``named_parameters()``, ``state_dict()`` and submodule paths are torch's; calling the
    module runs the exported graph with JAX on the current weights; ``train()`` / ``eval()``
    choose the graph exported in that mode. Inputs take the structure of the example inputs
    (arrays where torch had tensors); dims not declared dynamic keep their example size.

    Example:
        >>> class Net(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.fc = torch.nn.Linear(3, 2)
        ...     def forward(self, x):
        ...         return torch.tanh(self.fc(x)) * 2
        >>> net = jparam.from_torch(Net(), example_args=(torch.ones(4, 3),))
        >>> net(jnp.ones((4, 3))).shape, [n for n, _ in net.named_parameters()]
        ((4, 2), ['fc.weight', 'fc.bias'])
    """

    def __init__(self, layout: list, graph_train: Graph, graph_eval: Graph) -> None:
        super().__init__()
        self.torch_class = layout[0]["cls"]
        self._jp_layout = json.dumps(layout)     # static, hashable
        self._graph_train = graph_train
        self._graph_eval = graph_eval
        _build_tree(self, layout)
        if graph_train.random or graph_eval.random:
            self._rng = new_key_leaf()

    @property
    def graph(self) -> Graph:
        """The graph this mode runs (``self.training`` chooses)."""
        return self._graph_train if self.training else self._graph_eval

    def extra_repr(self) -> str:
        return f"{self.torch_class}, {len(self.graph.nodes)} graph nodes"

    # ------------------------------------------------------------------ running the graph
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        g = self.graph
        flat = g.in_spec.flatten((args, kwargs), "inputs (args, kwargs)")
        consts = dict(g.user_constants)
        env: dict[str, Any] = {}
        for ph, kind, target in g.inputs:
            if kind == "parameter":
                env[ph] = jnp.asarray(self.get_parameter(target))
            elif kind == "buffer":
                env[ph] = self.get_buffer(target)
            elif kind == "constant":
                env[ph] = jnp.asarray(g.constants[target])
            elif target in consts:
                if flat[target] != consts[target]:
                    raise ValueError(f"{type(self).__name__}: input {ph!r} was {consts[target]!r} "
                                     f"when the model was exported (non-tensor inputs are fixed "
                                     f"at export time), got {flat[target]!r}")
                env[ph] = consts[target]
            else:
                env[ph] = self._user_input(ph, flat[target], g.user_meta[target])
        keys = _Keys(self)
        for node in g.nodes:
            args_ = _resolve(node.args, env)
            kw = dict(_resolve(node.kwargs, env))
            if node.op in RANDOM_OPS:
                kw["rng"] = keys
            try:
                env[node.name] = OPS[node.op](*args_, **kw)
            except TracerLeakError:
                raise
            except Exception as e:
                raise RuntimeError(
                    f"{type(self).__name__}: {node.op} failed at graph node {node.name!r} "
                    f"({node.module or 'root'}; {node.where or 'no source line'}): "
                    f"{type(e).__name__}: {e}") from e
        for target, val in g.mutations:
            owner, _, attr = target.rpartition(".")
            mod = self.get_submodule(owner) if owner else self
            old = getattr(mod, attr)
            setattr(mod, attr, jnp.asarray(_resolve(val, env)).astype(old.dtype))
        return g.out_spec.unflatten([_resolve(o, env) for o in g.outputs])

    def _user_input(self, ph: str, value: Any, meta: Optional[tuple]) -> Any:
        from jparam._convert import to_jax_array

        if meta is None:
            return value
        x = to_jax_array(value, f"input {ph!r}")
        shape, kind = meta
        if len(shape) != x.ndim or any(isinstance(s, int) and s != d for s, d in zip(shape, x.shape)):
            want = tuple(s if isinstance(s, int) else "*" for s in shape)
            raise ValueError(f"{type(self).__name__}: input {ph!r} has shape {tuple(x.shape)}, "
                             f"expected {want} as exported (* = a dynamic dim; declare more "
                             "with from_torch(..., dynamic_shapes=...))")
        for i, (s, d) in enumerate(zip(shape, x.shape)):
            if isinstance(s, (tuple, list)) and not ((s[0] is None or d >= s[0]) and
                                                     (s[1] is None or d <= s[1])):
                lo, hi = ("" if b is None else b for b in s)
                raise ValueError(f"{type(self).__name__}: input {ph!r} has shape "
                                 f"{tuple(x.shape)}: dim {i} is {d}, outside the range "
                                 f"[{lo}, {hi}] of its dynamic dim at export (torch's exported "
                                 "program refuses it too)")
        if _kind_of(x.dtype) != kind:
            names = {"f": "floating", "i": "integer", "b": "bool", "c": "complex"}
            raise TypeError(f"{type(self).__name__}: input {ph!r} has dtype {x.dtype}, expected "
                            f"a {names[kind]} array as in the example inputs")
        return x

    # ------------------------------------------------------------------ saving the graph
    def save_graph(self, path: str) -> None:
        """Write both graphs and the module layout as JSON (atomically); no weights.

        Save weights with ``jparam.save(model, ...)``; :meth:`load_graph` plus
        ``load_state_dict`` rebuild the model in a process without torch.

        Example:
            >>> import os, tempfile
            >>> net = jparam.from_torch(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.GELU()),
            ...                         example_args=(torch.ones(1, 2),), export=True)
            >>> f = os.path.join(tempfile.mkdtemp(), "net.graph.json")
            >>> net.save_graph(f)
            >>> twin = jparam.ExportedModule.load_graph(f)
            >>> _ = twin.load_state_dict(net.state_dict())
            >>> bool(jnp.all(twin(jnp.ones((1, 2))) == net(jnp.ones((1, 2)))))
            True
        """
        text = json.dumps({"format": _FORMAT, "layout": json.loads(self._jp_layout),
                           "train": self._graph_train.to_json(),
                           "eval": self._graph_eval.to_json()})
        folder = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    @classmethod
    def load_graph(cls, path: str) -> "ExportedModule":
        """Rebuild a module written by :meth:`save_graph` (zero weights; torch not needed).

        Example:
            >>> # see save_graph
        """
        with open(path) as f:
            try:
                d = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: not a jparam exported-module file ({e})") from None
        if not isinstance(d, dict) or d.get("format") != _FORMAT:
            raise ValueError(f"{path}: not a jparam exported-module file "
                             f"(expected format {_FORMAT!r})")
        return cls(d["layout"], Graph.from_json(d["train"]), Graph.from_json(d["eval"]))


def _resolve(a: Any, env: dict) -> Any:
    if isinstance(a, Ref):
        return env[a.name]
    if isinstance(a, tuple):
        return tuple(_resolve(e, env) for e in a)
    if isinstance(a, list):
        return [_resolve(e, env) for e in a]
    if isinstance(a, DType):
        return _dtype(a.name)
    return a
