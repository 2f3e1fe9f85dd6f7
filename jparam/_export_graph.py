"""The torch-free form of a ``torch.export`` graph, as ``jparam.from_torch`` stores it.

``jparam.from_torch`` captures a model with ``torch.export`` once, at conversion time, and
turns the graph into the plain Python values defined here: every node is an operator name
(``"aten.add.Tensor"``), its arguments (numbers, strings, ``None``, :class:`Ref` to an
earlier node's value, :class:`DType`, nested lists) and where it came from (the user's
source line and module path, for error messages). Nothing here imports torch, so the
converted module runs, trains and reloads (:meth:`Graph.to_json` / :meth:`Graph.from_json`)
in a process without torch.
"""
from __future__ import annotations

import base64
import collections
import dataclasses
import functools
import hashlib
from typing import Any

import jax
import numpy as np

__all__ = ["Ref", "DType", "Node", "Spec", "Graph", "ExportOutput"]


@dataclasses.dataclass(frozen=True)
class Ref:
    """The value of the graph node (or input) called ``name``."""

    name: str


@dataclasses.dataclass(frozen=True)
class DType:
    """A torch dtype argument, by NumPy name (``"float32"``, ``"int64"``, ``"bool"``...)."""

    name: str


@dataclasses.dataclass(frozen=True)
class Node:
    """One operator call: ``name = op(*args, **kwargs)``.

    ``where`` is the user's source line the node came from (torch's ``stack_trace``, last
    frame) and ``module`` the torch module path that called it, both for error messages.
    """

    name: str
    op: str
    args: tuple
    kwargs: tuple          # ((key, value), ...)
    where: str = ""
    module: str = ""


@dataclasses.dataclass(frozen=True)
class Spec:
    """A torch pytree spec without torch: how flat values nest into the user's structure.

    ``kind`` is ``"leaf"``, ``"none"``, ``"tuple"``, ``"list"``, ``"dict"``, ``"namedtuple"``
    (``name`` and ``keys`` give the class) or ``"mapping"`` (a dict-like output such as a
    model library's ``ModelOutput``: rebuilt as :class:`ExportOutput`, ``name`` is its class).
    """

    kind: str
    children: tuple = ()
    keys: tuple = ()
    name: str = ""

    @property
    def n_leaves(self) -> int:
        if self.kind == "leaf":
            return 1
        return sum(c.n_leaves for c in self.children)

    def flatten(self, value: Any, where: str = "input") -> list:
        """The leaves of ``value``, checked against this structure (clear error on mismatch)."""
        out: list = []
        self._flatten(value, where, out)
        return out

    def _flatten(self, value: Any, where: str, out: list) -> None:
        if self.kind == "leaf":
            out.append(value)
        elif self.kind == "none":
            if value is not None:
                raise TypeError(f"{where}: expected None (as in the example inputs), got "
                                f"{type(value).__name__}")
        elif self.kind in ("tuple", "list", "namedtuple"):
            if not isinstance(value, (tuple, list)) or len(value) != len(self.children):
                n = len(value) if isinstance(value, (tuple, list)) else type(value).__name__
                raise TypeError(f"{where}: expected a {self.kind} of {len(self.children)} items "
                                f"(the structure of the example inputs), got {n}")
            for i, (c, v) in enumerate(zip(self.children, value)):
                c._flatten(v, f"{where}[{i}]", out)
        else:  # dict / mapping
            if not isinstance(value, dict) or set(value) != set(self.keys):
                got = sorted(value) if isinstance(value, dict) else type(value).__name__
                raise TypeError(f"{where}: expected the keys {sorted(self.keys)} (as in the "
                                f"example inputs), got {got}")
            for k, c in zip(self.keys, self.children):
                c._flatten(value[k], f"{where}[{k!r}]", out)

    def unflatten(self, leaves: list) -> Any:
        it = iter(leaves)
        return self._unflatten(it)

    def _unflatten(self, it) -> Any:
        if self.kind == "leaf":
            return next(it)
        if self.kind == "none":
            return None
        vals = [c._unflatten(it) for c in self.children]
        if self.kind == "tuple":
            return tuple(vals)
        if self.kind == "list":
            return vals
        if self.kind == "namedtuple":
            return _namedtuple(self.name, self.keys)(*vals)
        if self.kind == "dict":
            return dict(zip(self.keys, vals))
        return ExportOutput(zip(self.keys, vals))


@functools.lru_cache(maxsize=None)
def _namedtuple(name: str, fields: tuple) -> type:
    return collections.namedtuple(name, fields)


class ExportOutput(dict):
    """A dict-like model output (e.g. a model library's ``ModelOutput``) without torch.

    Read it like the original: ``out.logits``, ``out["logits"]`` or ``out[0]`` (the first
    field), ``out.to_tuple()``. It is a JAX pytree, so a jitted function may return it.

    Example:
        >>> from jparam._export_graph import ExportOutput
        >>> out = ExportOutput(logits=jnp.ones(2))
        >>> out.logits.shape, out[0].shape
        ((2,), (2,))
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"this output has no field {name!r} (fields: {list(self)})") from None

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, (int, slice)):
            return self.to_tuple()[key]
        return dict.__getitem__(self, key)

    def to_tuple(self) -> tuple:
        return tuple(self.values())


jax.tree_util.register_pytree_with_keys(
    ExportOutput,
    lambda o: ([(jax.tree_util.DictKey(k), v) for k, v in o.items()], tuple(o)),
    lambda keys, vals: ExportOutput(zip(keys, vals)),
    flatten_func=lambda o: (list(o.values()), tuple(o)))


@dataclasses.dataclass(frozen=True, eq=False)
class Graph:
    """One exported forward (one training mode), torch-free.

    inputs:    ``(placeholder, kind, target)`` per graph input, kind ``"parameter"``,
               ``"buffer"``, ``"constant"`` (a tensor in ``constants``) or ``"user"``
               (``target`` is then the index among the flat user inputs)
    nodes:     the operator calls, in order
    outputs:   the values of the user outputs (``Ref`` or constants), nested by ``out_spec``
    mutations: ``(buffer name, Ref)``: buffers the forward updates (BatchNorm statistics)
    in_spec:   the structure of ``(args, kwargs)``; ``user_constants`` the specialised
               non-tensor user inputs ``(flat index, value)``; ``user_meta`` per user
               input ``(shape, dtype kind "f"/"i"/"b"/"c")`` or None, a dim of the shape an
               int (static), ``(min, max)`` (dynamic; a bound None when unbounded) or None
               (dynamic, unchecked)
    """

    inputs: tuple
    nodes: tuple
    outputs: tuple
    mutations: tuple
    in_spec: Spec
    out_spec: Spec
    constants: dict = dataclasses.field(default_factory=dict)
    user_constants: tuple = ()
    user_meta: tuple = ()

    @functools.cached_property
    def fingerprint(self) -> str:
        h = hashlib.sha256(repr((self.inputs, self.nodes, self.outputs, self.mutations,
                                 self.in_spec, self.out_spec, self.user_constants,
                                 self.user_meta)).encode())
        for k in sorted(self.constants):
            a = np.ascontiguousarray(self.constants[k])
            h.update(k.encode() + str(a.dtype).encode() + repr(a.shape).encode() + a.tobytes())
        return h.hexdigest()

    # a static attribute of the module: part of the jit cache key, compared by content
    def __hash__(self) -> int:
        return hash(self.fingerprint)

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, Graph) and self.fingerprint == other.fingerprint

    @property
    def random(self) -> bool:
        """Whether the forward draws random numbers (dropout in training mode)."""
        from jparam._export_ops import RANDOM_OPS

        return any(n.op in RANDOM_OPS for n in self.nodes)

    def ops(self) -> list:
        return sorted({n.op for n in self.nodes})

    # ------------------------------------------------------------------ JSON
    def to_json(self) -> dict:
        """A JSON-able dict (constants base64-encoded); :meth:`from_json` inverts it."""
        return {"format": "jparam.export_graph/1",
                "inputs": _enc(self.inputs), "nodes": [_enc_node(n) for n in self.nodes],
                "outputs": _enc(self.outputs), "mutations": _enc(self.mutations),
                "in_spec": _enc_spec(self.in_spec), "out_spec": _enc_spec(self.out_spec),
                "user_constants": _enc(self.user_constants), "user_meta": _enc(self.user_meta),
                "constants": {k: {"dtype": str(v.dtype), "shape": list(v.shape),
                                  "data": base64.b64encode(np.ascontiguousarray(v).tobytes()).decode()}
                              for k, v in self.constants.items()}}

    @classmethod
    def from_json(cls, d: dict) -> "Graph":
        if not isinstance(d, dict) or d.get("format") != "jparam.export_graph/1":
            raise ValueError("not a jparam export graph (expected format 'jparam.export_graph/1')")
        consts = {}
        for k, v in d["constants"].items():
            dt = np.dtype(v["dtype"]) if v["dtype"] != "bfloat16" else np.dtype(jax.numpy.bfloat16)
            consts[k] = np.frombuffer(base64.b64decode(v["data"]), dt).reshape(v["shape"]).copy()
        return cls(inputs=_dec(d["inputs"]), nodes=tuple(_dec_node(n) for n in d["nodes"]),
                   outputs=_dec(d["outputs"]), mutations=_dec(d["mutations"]),
                   in_spec=_dec_spec(d["in_spec"]), out_spec=_dec_spec(d["out_spec"]),
                   constants=consts, user_constants=_dec(d["user_constants"]),
                   user_meta=_dec(d["user_meta"]))


def _enc(v: Any) -> Any:
    if isinstance(v, Ref):
        return {"ref": v.name}
    if isinstance(v, DType):
        return {"dtype": v.name}
    if isinstance(v, (tuple, list)):
        return {"seq": [_enc(e) for e in v], "tuple": isinstance(v, tuple)}
    if isinstance(v, float) and not np.isfinite(v):
        return {"float": repr(v)}
    return v


def _dec(v: Any) -> Any:
    if isinstance(v, dict):
        if "ref" in v:
            return Ref(v["ref"])
        if "dtype" in v:
            return DType(v["dtype"])
        if "float" in v:
            return float(v["float"])
        items = [_dec(e) for e in v["seq"]]
        return tuple(items) if v["tuple"] else items
    return v


def _enc_node(n: Node) -> dict:
    return {"name": n.name, "op": n.op, "args": _enc(n.args), "kwargs": _enc(n.kwargs),
            "where": n.where, "module": n.module}


def _dec_node(d: dict) -> Node:
    return Node(d["name"], d["op"], _dec(d["args"]), _dec(d["kwargs"]), d["where"], d["module"])


def _enc_spec(s: Spec) -> dict:
    return {"kind": s.kind, "children": [_enc_spec(c) for c in s.children],
            "keys": list(s.keys), "name": s.name}


def _dec_spec(d: dict) -> Spec:
    return Spec(d["kind"], tuple(_dec_spec(c) for c in d["children"]), tuple(d["keys"]), d["name"])
