"""``Module``: torch's ``nn.Module`` API on a JAX pytree.

Registration follows torch's ``__setattr__``; every subclass is registered as a pytree
node whose flatten is :func:`jparam._flatten.flatten_module` (one node per model).
Setup-time methods (``train``, ``eval``, ``requires_grad_``, ``load_state_dict``, ``to``,
``apply``, attribute assignment) mutate in place like torch; training-step methods
(``zero_grad``) return a new module and leave their input alone.
"""
from __future__ import annotations

import weakref
from collections import OrderedDict, namedtuple
from collections.abc import MutableMapping, MutableSet
from typing import Any, Callable, Iterator, Mapping, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from jparam import _flatten as fl
from jparam._convert import as_dtype, to_jax_as, type_name as _typename
from jparam._parameter import Buffer, Parameter, _as_array
from jparam._tracing import check_no_leak, trace_state_clean

__all__ = ["Module"]

_ARRAYS = (jax.Array, np.ndarray)


def _is_torch(v: Any, name: str) -> bool:
    t = type(v)
    return t.__name__ == name and t.__module__.split(".")[0] == "torch"


def _is_device(a: Any) -> bool:
    return isinstance(a, (jax.Device, jax.sharding.Sharding)) or _is_torch(a, "device") or (
        isinstance(a, str) and a.split(":")[0] in ("cpu", "cuda", "gpu", "tpu"))


def _torch_device_name(device: Any) -> Any:
    """A ``torch.device`` as the platform string ``to()`` understands (``"cuda:1"``)."""
    if _is_torch(device, "device"):
        return device.type if device.index is None else f"{device.type}:{device.index}"
    return device


def _d(m: "Module") -> dict:
    """The module's ``__dict__``, built first if the module is lazy."""
    d = m.__dict__
    if "_jp_lazy" in d:
        fl.materialize(m)
    return d


def _addindent(s: str, n: int) -> str:
    lines = s.split("\n")
    if len(lines) == 1:
        return s
    return lines[0] + "\n" + "\n".join(" " * n + ln for ln in lines[1:])


class _IncompatibleKeys(namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])):
    def __repr__(self) -> str:
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return super().__repr__()

    __str__ = __repr__


def _apply_load(writes: list) -> None:
    """Perform the writes planned (and validated) by ``Module._jp_plan_load``."""
    for mod, name, kind, val in writes:
        if kind == "p":
            mod.__dict__[name].data = val
        else:
            mod.__dict__[name] = val


class _RemovableHandle:
    def __init__(self, module: "Module", attr: str, key: int):
        self._module, self._attr, self._key = module, attr, key

    def remove(self) -> None:
        d = _d(self._module)
        hooks = dict(d.get(self._attr) or {})
        hooks.pop(self._key, None)
        d[self._attr] = hooks or None


_hook_ids = iter(range(1, 1 << 62))


class _Members(MutableMapping):
    """A live view of one kind of a module's registered members: torch's ``_parameters``,
    ``_buffers`` and ``_modules`` dicts. Reads see the module's current members in
    registration order; ``view[name] = v`` registers (in place when ``name`` is already a
    member of this kind) and ``del view[name]`` unregisters, as writes to torch's dicts do."""

    __slots__ = ("_module", "_kinds")

    def __init__(self, module: "Module", kinds: tuple) -> None:
        self._module, self._kinds = module, kinds

    def _reg(self) -> dict:
        return _d(self._module)["_jp_reg"]

    def __getitem__(self, name: str) -> Any:
        if self._reg().get(name) not in self._kinds:
            raise KeyError(name)
        return self._module.__dict__[name]

    def __iter__(self) -> Iterator[str]:
        return iter([n for n, k in self._reg().items() if k in self._kinds])

    def __len__(self) -> int:
        return sum(1 for k in self._reg().values() if k in self._kinds)

    def __setitem__(self, name: str, value: Any) -> None:
        m, kind = self._module, self._reg().get(name)
        if kind is not None and kind not in self._kinds:
            m._jp_unregister(name)  # torch's dicts are separate: a name moves between them
        if self._kinds == ("p",):
            m.register_parameter(name, value)
        elif self._kinds == ("m",):
            m.add_module(name, value)
        else:
            m.register_buffer(name, value, persistent=kind != "bn")

    def __delitem__(self, name: str) -> None:
        if self._reg().get(name) not in self._kinds:
            raise KeyError(name)
        self._module._jp_unregister(name)

    def copy(self) -> "OrderedDict[str, Any]":
        return OrderedDict(self.items())

    def __repr__(self) -> str:
        return f"OrderedDict({list(self.items())!r})"


class _NonPersistent(MutableSet):
    """A live view of torch's ``_non_persistent_buffers_set``: ``add``/``discard`` of a
    buffer name takes it out of / puts it back into ``state_dict``."""

    __slots__ = ("_module",)

    def __init__(self, module: "Module") -> None:
        self._module = module

    def _reg(self) -> dict:
        return _d(self._module)["_jp_reg"]

    def __contains__(self, name: object) -> bool:
        return self._reg().get(name) == "bn"

    def __iter__(self) -> Iterator[str]:
        return iter([n for n, k in self._reg().items() if k == "bn"])

    def __len__(self) -> int:
        return sum(1 for k in self._reg().values() if k == "bn")

    def add(self, name: str) -> None:
        reg = self._reg()
        if reg.get(name) == "b":
            reg[name] = "bn"

    def discard(self, name: str) -> None:
        reg = self._reg()
        if reg.get(name) == "bn":
            reg[name] = "b"

    def __repr__(self) -> str:
        return repr(set(self))


class Module:
    """Base class for all layers and models: ``torch.nn.Module`` for JAX.

    Subclasses are pytrees automatically. Assign ``Parameter``s, ``Buffer``s, submodules,
    arrays (traced, not trained, not saved) and static values (part of the tree
    structure) in ``__init__``, and write ``forward``.

    Example:
        >>> class Block(nn.Module):
        ...     def __init__(self, d):
        ...         super().__init__()
        ...         self.fc = nn.Linear(d, d)
        ...         self.gain = nn.Parameter(jnp.ones(d))
        ...         self.register_buffer("scale", jnp.full(d, 2.0))
        ...     def forward(self, x):
        ...         return self.fc(x) * self.gain * self.scale
        >>> y = Block(4)(jnp.ones((2, 4)))
        >>> y.shape
        (2, 4)
        >>> list(Block(4).state_dict())
        ['gain', 'scale', 'fc.weight', 'fc.bias']
    """

    training: bool

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        jax.tree_util.register_pytree_with_keys(
            cls, fl.flatten_with_keys, fl.unflatten_module, flatten_func=fl.flatten_module)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if args or kwargs:
            raise TypeError(f"{type(self).__name__}.__init__() got unexpected arguments")
        d = self.__dict__
        d["training"] = True
        d["_jp_reg"] = {}
        d["_jp_outer"] = trace_state_clean()

    # ------------------------------------------------------------------ attributes
    def __getattr__(self, name: str) -> Any:
        d = self.__dict__
        if "_jp_lazy" in d:
            fl.materialize(self)
            if name in d:
                return d[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __setattr__(self, name: str, value: Any) -> None:
        d = _d(self)
        reg = d.get("_jp_reg")
        if reg is None:
            for kind, cls in (("parameters", Parameter), ("module", Module), ("buffer", Buffer)):
                if isinstance(value, cls):
                    raise AttributeError(f"cannot assign {kind} before Module.__init__() call")
            object.__setattr__(self, name, value)
            return
        if d.get("_jp_outer"):
            check_no_leak(value, f"attribute '{name}' of {type(self).__name__}")
        kind = reg.get(name)
        if isinstance(value, Parameter):
            if kind != "p":
                self._jp_unregister(name)
            self.register_parameter(name, value)
        elif kind == "p":
            if value is not None:
                raise TypeError(f"cannot assign '{_typename(value)}' as parameter '{name}' "
                                "(jparam.nn.Parameter or None expected)")
            d[name] = None
        elif isinstance(value, Module):
            if kind != "m":  # a replaced child keeps its place (torch's _modules[name] = value)
                self._jp_unregister(name)
            reg[name] = "m"
            d[name] = value
            value.__dict__["_jp_parent"] = weakref.ref(self)
        elif kind == "m":
            if value is not None:
                raise TypeError(f"cannot assign '{_typename(value)}' as child module '{name}' "
                                "(jparam.nn.Module or None expected)")
            d[name] = None
        elif isinstance(value, Buffer):
            self.register_buffer(name, value.data, persistent=value.persistent)
        elif kind in ("b", "bn"):
            if value is not None and not isinstance(value, _ARRAYS):
                if type(value).__module__.startswith("torch"):
                    value = _as_array(value, f"buffer '{name}'")
                else:
                    raise TypeError(f"cannot assign '{_typename(value)}' as buffer '{name}' "
                                    "(jax.Array or None expected)")
            d[name] = value
        else:
            d[name] = value

    def __delattr__(self, name: str) -> None:
        d = _d(self)
        if name in d:
            d.pop(name)
            (d.get("_jp_reg") or {}).pop(name, None)
        else:
            object.__delattr__(self, name)

    def _jp_unregister(self, name: str) -> None:
        d = self.__dict__
        d.pop(name, None)
        (d.get("_jp_reg") or {}).pop(name, None)

    def _jp_check_name(self, name: Any, what: str) -> None:
        if not isinstance(name, str):
            raise TypeError(f"{what} name should be a string. Got {_typename(name)}")
        if "." in name:
            raise KeyError(f"{what} name can't contain \".\"")
        if name == "":
            raise KeyError(f"{what} name can't be empty string \"\"")

    def register_parameter(self, name: str, param: Optional[Parameter]) -> None:
        """Register ``param`` (a ``Parameter`` or ``None``) under ``name``, like torch."""
        d = _d(self)
        if "_jp_reg" not in d:
            raise AttributeError("cannot assign parameter before Module.__init__() call")
        self._jp_check_name(name, "parameter")
        reg = d["_jp_reg"]
        if reg.get(name) != "p" and (name in d or hasattr(type(self), name)):
            raise KeyError(f"attribute '{name}' already exists")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign '{_typename(param)}' object to parameter '{name}' "
                            "(jparam.nn.Parameter or None required)")
        if d.get("_jp_outer") and param is not None:
            check_no_leak(param, f"parameter '{name}'")
        if param is not None:
            param._jp_owner = weakref.ref(self)
        if reg.get(name) == "p":
            d[name] = param
            return
        self._jp_unregister(name)
        reg[name] = "p"
        d[name] = param

    def register_buffer(self, name: str, tensor: Any, persistent: bool = True) -> None:
        """Register an array as a buffer: saved in ``state_dict`` when persistent, never trained."""
        d = _d(self)
        if "_jp_reg" not in d:
            raise AttributeError("cannot assign buffer before Module.__init__() call")
        self._jp_check_name(name, "buffer")
        reg = d["_jp_reg"]
        if reg.get(name) not in ("b", "bn") and (name in d or hasattr(type(self), name)):
            raise KeyError(f"attribute '{name}' already exists")
        if tensor is not None:
            if isinstance(tensor, Parameter) or not (
                    isinstance(tensor, _ARRAYS) or type(tensor).__module__.startswith("torch")):
                raise TypeError(f"cannot assign '{_typename(tensor)}' object to buffer '{name}' "
                                "(jax.Array or None required)")
            tensor = _as_array(tensor, f"buffer '{name}'")
            if d.get("_jp_outer"):
                check_no_leak(tensor, f"buffer '{name}'")
        kind = "b" if persistent else "bn"
        if reg.get(name) in ("b", "bn"):
            reg[name] = kind
            d[name] = tensor
            return
        reg[name] = kind
        d[name] = tensor

    def add_module(self, name: str, module: Optional["Module"]) -> None:
        """Register a child module (torch's ``add_module``)."""
        d = _d(self)
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{_typename(module)} is not a Module subclass")
        if not isinstance(name, str):
            raise TypeError(f"module name should be a string. Got {_typename(name)}")
        reg = d.get("_jp_reg")
        if reg is None:
            raise AttributeError("cannot assign module before Module.__init__() call")
        if reg.get(name) != "m" and (name in d or hasattr(type(self), name)):
            raise KeyError(f"attribute '{name}' already exists")
        if "." in name:
            raise KeyError(f"module name can't contain \".\", got: {name}")
        if name == "":
            raise KeyError("module name can't be empty string \"\"")
        if reg.get(name) != "m":
            self._jp_unregister(name)
        reg[name] = "m"
        d[name] = module
        if module is not None:
            module.__dict__["_jp_parent"] = weakref.ref(self)

    register_module = add_module

    # ------------------------------------------------------------------ own members
    def _jp_own(self, kinds: tuple) -> Iterator[Tuple[str, Any]]:
        d = _d(self)
        for name, kind in d.get("_jp_reg", {}).items():
            if kind in kinds:
                yield name, d[name]

    @property
    def _parameters(self) -> "_Members":
        """Live ``name -> Parameter`` mapping: writes and deletes register/unregister (torch)."""
        return _Members(self, ("p",))

    @property
    def _buffers(self) -> "_Members":
        """Live ``name -> array`` mapping of buffers (writes register a persistent buffer)."""
        return _Members(self, ("b", "bn"))

    @property
    def _modules(self) -> "_Members":
        """Live ``name -> Module`` mapping of children (a replaced child keeps its place)."""
        return _Members(self, ("m",))

    @property
    def _non_persistent_buffers_set(self) -> "_NonPersistent":
        """Live set of the names of buffers left out of ``state_dict``."""
        return _NonPersistent(self)

    # ------------------------------------------------------------------ traversal
    def named_modules(self, memo: Optional[set] = None, prefix: str = "",
                      remove_duplicate: bool = True) -> Iterator[Tuple[str, "Module"]]:
        """Pre-order ``(name, module)`` pairs, self first; shared modules once (torch order)."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, m in self._jp_own(("m",)):
            if m is None:
                continue
            yield from m.named_modules(memo, prefix + ("." if prefix else "") + name, remove_duplicate)

    def modules(self) -> Iterator["Module"]:
        for _, m in self.named_modules():
            yield m

    def named_children(self) -> Iterator[Tuple[str, "Module"]]:
        memo = set()
        for name, m in self._jp_own(("m",)):
            if m is not None and id(m) not in memo:
                memo.add(id(m))
                yield name, m

    def children(self) -> Iterator["Module"]:
        for _, m in self.named_children():
            yield m

    def _named_members(self, kinds: tuple, prefix: str, recurse: bool, remove_duplicate: bool):
        memo: set = set()
        mods = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse \
            else [(prefix, self)]
        for mprefix, m in mods:
            for name, v in m._jp_own(kinds):
                if v is None:
                    continue
                if remove_duplicate:
                    if id(v) in memo:
                        continue
                    memo.add(id(v))
                yield mprefix + ("." if mprefix else "") + name, v

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True) -> Iterator[Tuple[str, Parameter]]:
        """``(name, Parameter)`` in torch's order; a tied parameter is listed once (first name)."""
        yield from self._named_members(("p",), prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True,
                      remove_duplicate: bool = True) -> Iterator[Tuple[str, jax.Array]]:
        yield from self._named_members(("b", "bn"), prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True) -> Iterator[jax.Array]:
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def get_submodule(self, target: str) -> "Module":
        """The submodule at dotted path ``target`` (``""`` is self)."""
        if target == "":
            return self
        mod = self
        for item in target.split("."):
            if not hasattr(mod, item):
                raise AttributeError(type(mod).__name__ + " has no attribute `" + item + "`")
            mod = getattr(mod, item)
            if not isinstance(mod, Module):
                raise AttributeError("`" + item + "` is not an nn.Module")
        return mod

    def set_submodule(self, target: str, module: "Module", strict: bool = False) -> None:
        """Set the submodule at dotted path ``target`` (torch's semantics and errors).

        ``strict=False`` replaces an existing submodule or adds a new one to an existing
        parent; ``strict=True`` only replaces.

        Example:
            >>> net = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
            >>> net.set_submodule("1", nn.Tanh())
            >>> net
            Sequential(
              (0): Linear(in_features=4, out_features=4, bias=True)
              (1): Tanh()
            )
        """
        if target == "":
            raise ValueError("Cannot set the submodule without a target name!")
        *path, last = target.split(".")
        if not isinstance(module, Module):
            raise ValueError("`" + "module" + f"` is not an nn.Module, found {type(module)}")
        parent = self.get_submodule(".".join(path))
        if strict and not hasattr(parent, last):
            raise AttributeError(parent._get_name() + " has no attribute `" + last + "`")
        if hasattr(parent, last) and not isinstance(getattr(parent, last), Module):
            raise AttributeError("`" + last + "` is not an nn.Module")
        setattr(parent, last, module)

    def get_parameter(self, target: str) -> Parameter:
        mod_path, _, name = target.rpartition(".")
        mod = self.get_submodule(mod_path)
        if not hasattr(mod, name):
            raise AttributeError(type(mod).__name__ + " has no attribute `" + name + "`")
        p = getattr(mod, name)
        if not isinstance(p, Parameter):
            raise AttributeError("`" + name + "` is not an nn.Parameter")
        return p

    def get_buffer(self, target: str) -> jax.Array:
        mod_path, _, name = target.rpartition(".")
        mod = self.get_submodule(mod_path)
        if not hasattr(mod, name):
            raise AttributeError(type(mod).__name__ + " has no attribute `" + name + "`")
        if _d(mod).get("_jp_reg", {}).get(name) not in ("b", "bn"):
            raise AttributeError("`" + name + "` is not a buffer")
        return getattr(mod, name)

    # ------------------------------------------------------------------ state dict
    def state_dict(self, destination: Optional[dict] = None, prefix: str = "",
                   keep_vars: bool = False) -> "OrderedDict[str, Any]":
        """Parameters and persistent buffers by dotted name, torch's order; tied ones under every name."""
        if destination is None:
            destination = OrderedDict()
        for name, p in self._jp_own(("p",)):
            if p is not None:
                destination[prefix + name] = p if keep_vars else p._data
        for name, b in self._jp_own(("b",)):
            if b is not None:
                destination[prefix + name] = b
        for name, m in self._jp_own(("m",)):
            if m is not None:
                m.state_dict(destination=destination, prefix=prefix + name + ".", keep_vars=keep_vars)
        return destination

    def _jp_state_slots(self, prefix: str = "", out: Optional[dict] = None) -> dict:
        """name -> (owner module, attribute, kind) for every state_dict entry."""
        if out is None:
            out = OrderedDict()
        for name, kind in _d(self)["_jp_reg"].items():
            v = self.__dict__[name]
            if v is None:
                continue
            if kind in ("p", "b"):
                out[prefix + name] = (self, name, kind)
            elif kind == "m":
                v._jp_state_slots(prefix + name + ".", out)
        return out

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True,
                        assign: bool = False) -> _IncompatibleKeys:
        """Copy arrays (jax, NumPy or torch) into parameters and buffers, in place, like torch.

        Values are cast to the module's dtypes (``assign=True`` keeps the checkpoint's).
        Returns ``(missing_keys, unexpected_keys)``; raises ``RuntimeError`` with torch's
        message on missing/unexpected keys (``strict``) or any size mismatch (always).
        Validation happens before anything is written, so a failed load changes nothing.

        Example:
            >>> torch_model = torch.nn.Linear(4, 2)
            >>> model.load_state_dict(torch_model.state_dict())
            <All keys matched successfully>
            >>> np.array_equal(model.weight, torch_model.weight.detach().numpy())
            True
        """
        writes, missing, unexpected = self._jp_plan_load(state_dict, strict, assign)
        _apply_load(writes)
        return _IncompatibleKeys(missing, unexpected)

    def _jp_plan_load(self, state_dict: Mapping[str, Any], strict: bool = True,
                      assign: bool = False) -> tuple[list, list, list]:
        """Everything ``load_state_dict`` checks, without changing the module.

        Returns ``(writes, missing, unexpected)``, ``writes`` being ``(module, attribute,
        kind, value)`` tuples, or raises the error ``load_state_dict`` would raise.
        ``jparam.load_checkpoint`` validates every target with it before loading any.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"Expected state_dict to be dict-like, got {type(state_dict)}.")
        slots = self._jp_state_slots()
        missing = [k for k in slots if k not in state_dict]
        unexpected = [k for k in state_dict if k not in slots]
        errors, writes = [], []
        for key, (mod, name, kind) in slots.items():
            if key not in state_dict:
                continue
            cur = mod.__dict__[name]
            cur_arr = cur._data if kind == "p" else cur
            value = state_dict[key]
            want = tuple(cur_arr.shape)
            shape = getattr(value, "shape", None)
            if shape is not None and tuple(shape) != want and not (want == () and
                                                                    tuple(shape) == (1,)):
                errors.append(f"size mismatch for {key}: copying a param with shape "
                              f"{tuple(shape)} from checkpoint, the shape in current model is "
                              f"{want}.")
                continue
            try:  # exact cast into the module's dtype, as torch's copy_ (never wraps)
                val = to_jax_as(value, None if assign else cur_arr.dtype, f"state_dict['{key}']")
            except (TypeError, ValueError) as e:
                errors.append(str(e))
                continue
            if tuple(val.shape) != want:
                if want == () and tuple(val.shape) == (1,):
                    val = val.reshape(())
                else:
                    errors.append(f"size mismatch for {key}: copying a param with shape "
                                  f"{tuple(val.shape)} from checkpoint, the shape in current "
                                  f"model is {want}.")
                    continue
            where = getattr(cur_arr, "sharding", None)  # keep the destination's placement, like torch's copy_
            if not assign and where is not None and isinstance(val, jax.Array) \
                    and not isinstance(val, jax.core.Tracer) and val.sharding != where:
                val = jax.device_put(val, where)
            writes.append((mod, name, kind, val))
        if strict:
            if unexpected:
                errors.insert(0, "Unexpected key(s) in state_dict: {}. ".format(
                    ", ".join(f'"{k}"' for k in unexpected)))
            if missing:
                errors.insert(0, "Missing key(s) in state_dict: {}. ".format(
                    ", ".join(f'"{k}"' for k in missing)))
        if errors:
            raise RuntimeError("Error(s) in loading state_dict for {}:\n\t{}".format(
                type(self).__name__, "\n\t".join(errors)))
        for mod, name, kind, val in writes:  # leak checks too: a failed load changes nothing
            outer = mod.__dict__[name]._jp_outer if kind == "p" else mod.__dict__.get("_jp_outer")
            if outer:
                check_no_leak(val, f"{'parameter' if kind == 'p' else 'buffer'} '{name}'")
        return writes, missing, unexpected

    # ------------------------------------------------------------------ modes and dtypes
    def train(self, mode: bool = True) -> "Module":
        """Set training mode recursively (static: changing it retraces); returns self."""
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        for m in self.modules():
            _d(m)["training"] = mode
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> "Module":
        """Freeze (``False``) or unfreeze every parameter in place; returns self."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def apply(self, fn: Callable[["Module"], None]) -> "Module":
        """Call ``fn`` on every submodule (children first) and then self; returns self."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    def _jp_map_arrays(self, fn: Callable[[jax.Array], jax.Array]) -> "Module":
        """Apply ``fn`` to every parameter (and grad) and buffer in place; ties preserved."""
        for p in self.parameters():
            p.data = fn(p._data)
            if p._grad is not None:
                p.grad = fn(p._grad)
        for m in self.modules():
            d = m.__dict__
            for name, kind in d["_jp_reg"].items():
                if kind in ("b", "bn") and d[name] is not None:
                    new = fn(d[name])
                    if d.get("_jp_outer"):
                        check_no_leak(new, f"buffer '{name}'")
                    d[name] = new
        return self

    def to(self, *args: Any, **kwargs: Any) -> "Module":
        """Cast floating parameters and buffers to a dtype and/or move them to a device, in place.

        Accepts ``to(dtype)``, ``to(device)``, ``to(device, dtype)``, ``to(dtype=..., device=...)``;
        a dtype is a JAX/NumPy dtype or a ``torch.dtype``; a device is a ``jax.Device``, a
        sharding, a platform name like ``"cpu"``/``"cuda:0"`` or a ``torch.device``.

        Example:
            >>> model.to(jnp.bfloat16)
            Linear(in_features=4, out_features=2, bias=True)
            >>> model.weight.dtype
            dtype(bfloat16)
        """
        dtype, device = kwargs.pop("dtype", None), kwargs.pop("device", None)
        kwargs.pop("non_blocking", None)
        if kwargs:
            raise TypeError(f"to() got unexpected keyword arguments {sorted(kwargs)}")
        for a in args:
            if _is_device(a):
                device = a
            elif a is not None:
                dtype = a
        device = _torch_device_name(device)
        if dtype is not None:
            dtype = as_dtype(dtype, "to()")
            if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.complexfloating)):
                raise TypeError("nn.Module.to only accepts floating point or complex dtypes, "
                                f"but got desired dtype={dtype}")
            if dtype == jnp.float64 and not jax.config.jax_enable_x64:
                raise TypeError("float64 needs 64-bit mode: jax.config.update('jax_enable_x64', True)")

        if device is not None and isinstance(device, str):
            platform, _, idx = device.partition(":")
            platform = "gpu" if platform == "cuda" else platform
            device = jax.devices(platform)[int(idx) if idx else 0]

        def fn(a):
            if dtype is not None and jnp.issubdtype(a.dtype, jnp.inexact) and a.dtype != dtype:
                a = a.astype(dtype)
            if device is not None:
                a = jax.device_put(a, device)
            return a

        return self._jp_map_arrays(fn)

    def float(self) -> "Module":
        return self.to(jnp.float32)

    def double(self) -> "Module":
        return self.to(jnp.float64)

    def half(self) -> "Module":
        return self.to(jnp.float16)

    def bfloat16(self) -> "Module":
        return self.to(jnp.bfloat16)

    def cpu(self) -> "Module":
        return self.to("cpu")

    # ------------------------------------------------------------------ gradients
    def zero_grad(self, set_to_none: bool = True) -> "Module":
        """A copy of the model with every ``grad`` cleared (``None``, or zeros if not set_to_none).

        Pure: the input is not modified. Use inside a jitted step: ``model = model.zero_grad()``.
        """
        leaves, aux = fl.flatten_module(self)
        bp = aux.bp
        pdata, grads, others = fl.split_leaves(bp, leaves)
        if set_to_none:
            per = [None] * len(pdata)
        else:
            per = [None if g is None else jnp.zeros_like(g) for g in fl.grads_by_param(bp, grads)]
        return fl.assemble(bp, aux.tokens, pdata, per, others)

    # ------------------------------------------------------------------ calling
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f'Module [{type(self).__name__}] is missing the required "forward" function')

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        d = _d(self)
        pre = d.get("_forward_pre_hooks")
        if pre:
            for hook in tuple(pre.values()):
                res = hook(self, args)
                if res is not None:
                    args = res if isinstance(res, tuple) else (res,)
        out = self.forward(*args, **kwargs)
        post = d.get("_forward_hooks")
        if post:
            for hook in tuple(post.values()):
                res = hook(self, args, out)
                if res is not None:
                    out = res
        return out

    def register_forward_pre_hook(self, hook: Callable) -> _RemovableHandle:
        """``hook(module, args) -> None or new args``, run before ``forward`` (static: retraces)."""
        return self._jp_add_hook("_forward_pre_hooks", hook)

    def register_forward_hook(self, hook: Callable) -> _RemovableHandle:
        """``hook(module, args, output) -> None or new output``, run after ``forward``."""
        return self._jp_add_hook("_forward_hooks", hook)

    def _jp_add_hook(self, attr: str, hook: Callable) -> _RemovableHandle:
        d = _d(self)
        key = next(_hook_ids)
        hooks = dict(d.get(attr) or {})
        hooks[key] = hook
        d[attr] = hooks
        return _RemovableHandle(self, attr, key)

    # ------------------------------------------------------------------ repr / copy
    def extra_repr(self) -> str:
        return ""

    def _get_name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [f"({k}): " + _addindent(repr(m), 2) for k, m in self._jp_own(("m",))]
        lines = extra_lines + child_lines
        s = self._get_name() + "("
        if lines:
            if len(extra_lines) == 1 and not child_lines:
                s += extra_lines[0]
            else:
                s += "\n  " + "\n  ".join(lines) + "\n"
        return s + ")"

    def __deepcopy__(self, memo: dict) -> "Module":
        import copy

        d = _d(self)
        new = object.__new__(type(self))
        memo[id(self)] = new
        nd = new.__dict__
        for k, v in d.items():
            if k == "_jp_outer":
                nd[k] = trace_state_clean()
            elif k == "_jp_parent":
                continue  # set when the copy is registered somewhere
            else:
                nd[k] = copy.deepcopy(v, memo)
        me = weakref.ref(new)
        for name, kind in nd.get("_jp_reg", {}).items():
            v = nd.get(name)
            if v is not None and kind == "p":
                v._jp_owner = me
            elif v is not None and kind == "m":
                v.__dict__["_jp_parent"] = me
        return new

    def __getstate__(self) -> dict:
        """Pickle support: the registered members and attributes, without the back-references."""
        return {k: v for k, v in _d(self).items() if k not in ("_jp_parent", "_jp_outer")}

    def __setstate__(self, state: dict) -> None:
        d = self.__dict__
        d.update(state)
        d["_jp_outer"] = trace_state_clean()
        me = weakref.ref(self)
        for name, kind in d.get("_jp_reg", {}).items():
            v = d.get(name)
            if v is not None and kind == "p":
                v._jp_owner = me
            elif v is not None and kind == "m":
                v.__dict__["_jp_parent"] = me

    def __dir__(self):
        _d(self)
        return list(super().__dir__())


jax.tree_util.register_pytree_with_keys(
    Module, fl.flatten_with_keys, fl.unflatten_module, flatten_func=fl.flatten_module)
