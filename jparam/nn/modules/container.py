"""Containers: Sequential, ModuleList, ModuleDict, ParameterList, ParameterDict (torch's API)."""
from __future__ import annotations

import operator
from collections import OrderedDict
from typing import Any, Iterable, Iterator, Mapping, Optional, Union

import jax

from jparam._module import Module, _addindent
from jparam._parameter import Parameter

__all__ = ["Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict"]


def _norm_index(idx: Any, n: int, what: str) -> int:
    idx = operator.index(idx)
    if not -n <= idx < n:
        raise IndexError(f"index {idx} is out of range for {what} of length {n}")
    return idx % n


class _IndexedModules(Module):
    """Shared machinery of Sequential and ModuleList: children named "0", "1", ..."""

    def _items(self) -> list:
        return [(k, m) for k, m in self._jp_own(("m",))]

    def _renumber(self, modules: list) -> None:
        for k, _ in self._items():
            self._jp_unregister(k)
        for i, m in enumerate(modules):
            self.add_module(str(i), m)

    def __len__(self) -> int:
        return len(self._items())

    def __iter__(self) -> Iterator[Module]:
        return iter([m for _, m in self._items()])

    def __setitem__(self, idx: int, module: Module) -> None:
        items = self._items()
        setattr(self, items[_norm_index(idx, len(items), type(self).__name__)][0], module)

    def __delitem__(self, idx: Union[int, slice]) -> None:
        items = self._items()
        if isinstance(idx, slice):
            drop = {k for k, _ in items[idx]}
        else:
            drop = {items[_norm_index(idx, len(items), type(self).__name__)][0]}
        self._renumber([m for k, m in items if k not in drop])

    def append(self, module: Module):
        """Append ``module`` at the end; returns self."""
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules: Iterable[Module]):
        for m in modules:
            self.append(m)
        return self

    def insert(self, index: int, module: Module) -> None:
        mods = [m for _, m in self._items()]
        n = len(mods)
        index = operator.index(index)
        if index < 0:
            index += n
        mods.insert(max(0, min(index, n)), module)
        self._renumber(mods)

    def pop(self, key: int = -1) -> Module:
        v = self[key]
        del self[key]
        return v

    def __dir__(self):
        return [k for k in super().__dir__() if not k.isdigit()]


class Sequential(_IndexedModules):
    """Chain of modules called in order (``Sequential(*mods)`` or ``Sequential(OrderedDict)``).

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
        >>> net[0], net[-1]
        (Linear(in_features=4, out_features=8, bias=True), Linear(in_features=8, out_features=1, bias=True))
        >>> net[:2]
        Sequential(
          (0): Linear(in_features=4, out_features=8, bias=True)
          (1): ReLU()
        )
    """

    def __init__(self, *args: Any) -> None:
        super().__init__()
        if len(args) == 1 and isinstance(args[0], OrderedDict):
            for k, m in args[0].items():
                self.add_module(k, m)
        else:
            for i, m in enumerate(args):
                self.add_module(str(i), m)

    def __getitem__(self, idx: Union[int, slice]) -> Any:
        items = self._items()
        if isinstance(idx, slice):
            return type(self)(OrderedDict(items[idx]))
        return items[_norm_index(idx, len(items), "Sequential")][1]

    def __add__(self, other: "Sequential") -> "Sequential":
        if not isinstance(other, Sequential):
            raise ValueError("add operator supports only objects of Sequential class, "
                             f"but {type(other)} is given.")
        return Sequential(*list(self), *list(other))

    def forward(self, input: Any) -> Any:
        for m in self:
            input = m(input)
        return input


class ModuleList(_IndexedModules):
    """A list of submodules, registered under "0", "1", ... (no forward).

    Example:
        >>> layers = nn.ModuleList([nn.Linear(4, 4) for _ in range(3)])
        >>> len(layers), len(list(layers.parameters()))
        (3, 6)
    """

    def __init__(self, modules: Optional[Iterable[Module]] = None) -> None:
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def __getitem__(self, idx: Union[int, slice]) -> Any:
        items = self._items()
        if isinstance(idx, slice):
            return ModuleList([m for _, m in items[idx]])
        return items[_norm_index(idx, len(items), "ModuleList")][1]

    def __iadd__(self, modules: Iterable[Module]) -> "ModuleList":
        return self.extend(modules)

    def __add__(self, other: Iterable[Module]) -> "ModuleList":
        return ModuleList(list(self) + list(other))

    def __repr__(self) -> str:
        reprs = [repr(m) for m in self]
        if not reprs:
            return self._get_name() + "()"
        blocks, spans = [reprs[0]], [[0, 0]]
        for i, r in enumerate(reprs[1:], 1):
            if r == blocks[-1]:
                spans[-1][1] += 1
            else:
                blocks.append(r)
                spans.append([i, i])
        lines = []
        for (a, b), r in zip(spans, blocks):
            s = f"({a}): {r}" if a == b else f"({a}-{b}): {b - a + 1} x {r}"
            lines.append(_addindent(s, 2))
        return self._get_name() + "(\n  " + "\n  ".join(lines) + "\n)"

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("ModuleList has no forward; iterate over it in your module's forward")


class ModuleDict(Module):
    """An insertion-ordered dict of submodules.

    Example:
        >>> heads = nn.ModuleDict({"cls": nn.Linear(8, 10), "reg": nn.Linear(8, 1)})
        >>> list(heads), list(heads.state_dict())
        (['cls', 'reg'], ['cls.weight', 'cls.bias', 'reg.weight', 'reg.bias'])
    """

    def __init__(self, modules: Optional[Mapping[str, Module]] = None) -> None:
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key: str) -> Module:
        d = dict(self._jp_own(("m",)))
        if key not in d:
            raise KeyError(key)
        return d[key]

    def __setitem__(self, key: str, module: Module) -> None:
        self.add_module(key, module)

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self._jp_unregister(key)

    def __len__(self) -> int:
        return len(list(self._jp_own(("m",))))

    def __iter__(self) -> Iterator[str]:
        return iter([k for k, _ in self._jp_own(("m",))])

    def __contains__(self, key: str) -> bool:
        return key in dict(self._jp_own(("m",)))

    def keys(self):
        return [k for k, _ in self._jp_own(("m",))]

    def items(self):
        return list(self._jp_own(("m",)))

    def values(self):
        return [m for _, m in self._jp_own(("m",))]

    def update(self, modules: Union[Mapping[str, Module], Iterable]) -> None:
        """Add ``(key, module)`` entries from a mapping, a ModuleDict, or an iterable of pairs."""
        items = modules.items() if isinstance(modules, (Mapping, ModuleDict)) else modules
        for k, m in items:
            self[k] = m

    def pop(self, key: str) -> Module:
        v = self[key]
        del self[key]
        return v

    def clear(self) -> None:
        for k in self.keys():
            del self[k]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("ModuleDict has no forward")


def _as_param(v: Any) -> Any:
    if isinstance(v, Parameter) or v is None:
        return v
    if isinstance(v, jax.Array) or hasattr(v, "shape"):
        return Parameter(v)
    return v


def _param_line(k: str, p: Any) -> str:
    if isinstance(p, Parameter):
        return f"({k}): Parameter containing: [{p.dtype} of size {tuple(p.shape)}]"
    return f"({k}): Object of type: {type(p).__name__}"


class ParameterList(Module):
    """A list of Parameters (arrays are wrapped into Parameters), named "0", "1", ...

    Example:
        >>> ws = nn.ParameterList([jnp.ones(3), jnp.zeros(2)])
        >>> [p.shape for p in ws], list(ws.state_dict())
        ([(3,), (2,)], ['0', '1'])
    """

    def __init__(self, values: Optional[Iterable[Any]] = None) -> None:
        super().__init__()
        if values is not None:
            self.extend(values)

    def __len__(self) -> int:
        return len(self._jp_keys())

    def _jp_keys(self) -> list:
        return [k for k, _ in self._jp_own(("p",))]

    def __getitem__(self, idx: Union[int, slice]) -> Any:
        keys = list(self._jp_keys())
        if isinstance(idx, slice):
            return ParameterList([getattr(self, k) for k in keys[idx]])
        return getattr(self, keys[_norm_index(idx, len(keys), "ParameterList")])

    def __setitem__(self, idx: int, value: Any) -> None:
        keys = list(self._jp_keys())
        setattr(self, keys[_norm_index(idx, len(keys), "ParameterList")], _as_param(value))

    def __iter__(self) -> Iterator[Any]:
        return iter([getattr(self, k) for k in list(self._jp_keys())])

    def __iadd__(self, values: Iterable[Any]) -> "ParameterList":
        return self.extend(values)

    def append(self, value: Any) -> "ParameterList":
        setattr(self, str(len(self)), _as_param(value))
        return self

    def extend(self, values: Iterable[Any]) -> "ParameterList":
        for v in values:
            self.append(v)
        return self

    def extra_repr(self) -> str:
        return "\n".join(_param_line(k, getattr(self, k)) for k in self._jp_keys())

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("ParameterList has no forward")


class ParameterDict(Module):
    """An insertion-ordered dict of Parameters (arrays are wrapped into Parameters).

    Example:
        >>> pd = nn.ParameterDict({"scale": jnp.ones(3)})
        >>> pd["scale"]
        Parameter containing:
        Array([1., 1., 1.], dtype=float32)
    """

    def __init__(self, parameters: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__()
        if parameters is not None:
            self.update(parameters)

    def keys(self) -> list:
        reg = self._jp_own(("p",))
        return [k for k, _ in reg]

    def __getitem__(self, key: str) -> Any:
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def __setitem__(self, key: str, value: Any) -> None:
        v = _as_param(value)
        if isinstance(v, Parameter):
            setattr(self, key, v)
        else:
            raise TypeError(f"ParameterDict value for key '{key}' must be an array or Parameter, "
                            f"got {type(value).__name__}")

    def __delitem__(self, key: str) -> None:
        if key not in self.keys():
            raise KeyError(key)
        self._jp_unregister(key)

    def __contains__(self, key: str) -> bool:
        return key in self.keys()

    def __len__(self) -> int:
        return len(self.keys())

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def items(self) -> list:
        return [(k, getattr(self, k)) for k in self.keys()]

    def values(self) -> list:
        return [getattr(self, k) for k in self.keys()]

    def update(self, values: Union[Mapping[str, Any], Iterable]) -> None:
        """Add entries; like torch, a plain (unordered) mapping is added in sorted key order."""
        if isinstance(values, (OrderedDict, ParameterDict)):
            items = values.items()
        elif isinstance(values, Mapping):
            items = sorted(values.items())
        else:
            items = values
        for k, v in items:
            self[k] = v

    def pop(self, key: str) -> Any:
        v = self[key]
        del self[key]
        return v

    def extra_repr(self) -> str:
        return "\n".join(_param_line(k, v) for k, v in self.items())

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("ParameterDict has no forward")
