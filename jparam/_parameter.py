"""``Parameter`` and ``Buffer``: the two kinds of registered array state.

A :class:`Parameter` is a small mutable wrapper around one array with a static
``requires_grad`` flag and a ``grad`` slot, exactly like ``torch.nn.Parameter``.  It is
usable wherever an array is (``jnp`` functions, operators, ``.shape``), and it is a
pytree node on its own.  Inside a :class:`~jparam.nn.Module` it is not a node: the module
flattens all its parameters into one flat list (see ``docs/design.md``).

A :class:`Buffer` is only a marker, as in torch: ``self.x = nn.Buffer(a)`` registers a
buffer and stores the plain array.
"""
from __future__ import annotations

import itertools
import math
import operator
import threading
import weakref
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jparam._tracing import check_no_leak, trace_state_clean

_Tracer = jax.core.Tracer

__all__ = ["Parameter", "Buffer", "token_ref"]

_ids = itertools.count(1)  # identity tokens (``Parameter._jp_id``), unique in the process


class _Token:
    """A parameter's identity token inside one pickle or one ``copy.deepcopy``.

    Everything that names a parameter by its token (the parameter itself, an optimizer's
    param groups) names the one ``_Token`` object :func:`token_ref` gives for it, so pickle's
    memo (and deepcopy's) writes it once; loading (copying) gives every reference one fresh
    token. So ``pickle.loads(pickle.dumps((model, opt)))`` keeps the optimizer's link to the
    model's parameters, as torch's pickle keeps its tensors shared, and every load is a new,
    independent set of parameters (never a token of a live one)."""

    __slots__ = ("value", "__weakref__")

    def __init__(self, value: int) -> None:
        self.value = value

    def __reduce__(self):
        return (_new_token, ())

    def __deepcopy__(self, memo: dict) -> "_Token":
        return _new_token()


def _new_token() -> _Token:
    return _Token(next(_ids))


# token -> its _Token while something holds it (a pickler's or deepcopy's memo holds it for the
# whole dump/copy); it decides no value's meaning, only that one dump names one token once
_token_refs: "weakref.WeakValueDictionary[int, _Token]" = weakref.WeakValueDictionary()
_token_lock = threading.Lock()


def token_ref(token: int) -> _Token:
    """The ``_Token`` standing for ``token`` in a pickle or deepcopy (see :class:`_Token`).

    Example:
        >>> w = Parameter(jnp.ones(2))
        >>> token_ref(w._jp_id) is token_ref(w._jp_id)
        True
    """
    with _token_lock:
        t = _token_refs.get(token)
        if t is None:
            t = _token_refs[token] = _Token(token)
        return t


def _unwrap(x):
    return x._data if type(x) is Parameter or isinstance(x, Parameter) else x


class Parameter:
    """A trainable array: ``torch.nn.Parameter`` for JAX.

    ``requires_grad`` is static (changing it retraces a jitted function); ``grad`` is
    ``None`` until :func:`jparam.backward` fills it, and sums over backward calls until
    ``zero_grad``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jparam import nn
        >>> w = nn.Parameter(jnp.ones((2, 3)))
        >>> (w * 2).sum(), w.shape, w.requires_grad
        (Array(12., dtype=float32), (2, 3), True)
    """

    # _jp_owner: weakref to the module that registered it last (lets an optimizer find the
    # model its parameters live in, see optim/optimizer.py)
    __slots__ = ("_data", "_grad", "requires_grad", "_jp_id", "_jp_outer", "_jp_owner", "__weakref__")
    __array_priority__ = 200

    def __init__(self, data: Any = None, requires_grad: bool = True) -> None:
        if data is None:
            data = jnp.zeros((0,), jnp.float32)
        elif isinstance(data, Parameter):
            data = data._data
        elif not isinstance(data, jax.Array):
            data = _as_array(data, "Parameter data")
        if not isinstance(requires_grad, bool):
            raise TypeError(f"requires_grad must be a bool, got {type(requires_grad).__name__}")
        self._data = data
        self._grad = None
        self.requires_grad = requires_grad
        self._jp_id = next(_ids)
        self._jp_outer = trace_state_clean()
        self._jp_owner = None

    @classmethod
    def _make(cls, data, grad, requires_grad, token, outer):
        p = object.__new__(cls)
        p._data, p._grad, p.requires_grad, p._jp_id, p._jp_outer = data, grad, requires_grad, token, outer
        p._jp_owner = None
        return p

    # -- the wrapped array ------------------------------------------------------------
    @property
    def data(self) -> jax.Array:
        """The wrapped array, outside autodiff as torch's ``.data`` is.

        A forward that reads ``p.data`` gives ``p`` no gradient (``stop_gradient`` is applied
        when the array is being traced). To compute with the parameter differentiably use the
        Parameter itself (``x @ p.T``, ``jnp.tanh(p)``) or ``jnp.asarray(p)``.
        """
        d = self._data
        return jax.lax.stop_gradient(d) if isinstance(d, _Tracer) else d

    @data.setter
    def data(self, value: Any) -> None:
        if isinstance(value, Parameter):
            value = value._data
        elif not isinstance(value, jax.Array):
            value = _as_array(value, "Parameter.data")
        if self._jp_outer:
            check_no_leak(value, "Parameter.data")
        self._data = value

    @property
    def grad(self) -> Optional[jax.Array]:
        """Accumulated gradient, or ``None`` (torch semantics)."""
        return self._grad

    @grad.setter
    def grad(self, value: Any) -> None:
        if value is not None:
            if isinstance(value, Parameter):
                value = value._data
            value = _as_array(value, "Parameter.grad")
            if tuple(value.shape) != tuple(self._data.shape):
                raise ValueError(
                    f"assigned grad has shape {tuple(value.shape)}, but the parameter has "
                    f"shape {tuple(self._data.shape)}")
            if self._jp_outer:
                check_no_leak(value, "Parameter.grad")
        self._grad = value

    def requires_grad_(self, requires_grad: bool = True) -> "Parameter":
        """Set ``requires_grad`` in place and return ``self`` (setup-time, like torch)."""
        if not isinstance(requires_grad, bool):
            raise TypeError(f"requires_grad must be a bool, got {type(requires_grad).__name__}")
        self.requires_grad = requires_grad
        return self

    def detach(self) -> jax.Array:
        """The data as a plain array with ``stop_gradient`` applied."""
        return jax.lax.stop_gradient(self._data)

    @property
    def size(self) -> "_Size":
        """The element count (an ``int``, as JAX's ``.size``), also callable as torch's
        ``p.size()`` (the shape tuple) and ``p.size(dim)``.

        Example:
            >>> w = nn.Parameter(jnp.ones((2, 3)))
            >>> w.size, w.size(), w.size(-1)
            (6, (2, 3), 3)
        """
        return _Size(self._data.shape)

    def numel(self) -> int:
        return int(np.prod(self._data.shape, dtype=np.int64))

    def dim(self) -> int:
        return self._data.ndim

    def item(self):
        return self._data.item()

    def clone(self) -> "Parameter":
        return Parameter(self._data, self.requires_grad)

    def __jax_array__(self) -> jax.Array:
        return self._data

    def __array__(self, dtype=None, copy=None):
        a = np.asarray(self._data)
        return a.astype(dtype) if dtype is not None else a

    # attribute access falls through to the array (shape, dtype, ndim, T, reshape, sum, ...)
    def __getattr__(self, name: str):
        if name.startswith("__") or name in Parameter.__slots__:
            raise AttributeError(name)
        return getattr(self._data, name)

    def __reduce__(self):
        return (_unpickle_parameter, (self._data, self._grad, self.requires_grad, token_ref(self._jp_id)))

    def __deepcopy__(self, memo):
        import copy

        # copy the arrays too (as jax.Array's deepcopy does): a donating train step must not
        # delete a snapshot's buffers
        token = copy.deepcopy(token_ref(self._jp_id), memo).value
        p = Parameter._make(copy.deepcopy(self._data, memo), copy.deepcopy(self._grad, memo),
                            self.requires_grad, token, trace_state_clean())
        memo[id(self)] = p
        return p

    def __copy__(self):
        return Parameter._make(self._data, self._grad, self.requires_grad, next(_ids), trace_state_clean())

    # container protocol
    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self):
        return iter(self._data)

    def __getitem__(self, idx):
        return self._data[_unwrap(idx)]

    def __bool__(self) -> bool:
        return bool(self._data)

    def __float__(self) -> float:
        return float(self._data)

    def __int__(self) -> int:
        return int(self._data)

    def __index__(self) -> int:
        return operator.index(self._data)

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        body = repr(self._data)
        rg = "" if self.requires_grad else ", requires_grad=False"
        return f"Parameter containing:\n{body}{rg}"


def _binop(name: str):
    op = getattr(operator, name)

    def fwd(self, other):
        return op(self._data, _unwrap(other))

    def rev(self, other):
        return op(_unwrap(other), self._data)

    return fwd, rev


for _n in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul",
           "and_", "or_", "xor", "lshift", "rshift"):
    _f, _r = _binop(_n)
    _base = _n.rstrip("_")
    setattr(Parameter, f"__{_base}__", _f)
    setattr(Parameter, f"__r{_base}__", _r)
for _n in ("lt", "le", "gt", "ge", "eq", "ne"):
    _f, _ = _binop(_n)
    setattr(Parameter, f"__{_n}__", _f)
for _n in ("neg", "pos", "abs", "invert"):
    setattr(Parameter, f"__{_n}__", (lambda o: lambda self: o(self._data))(getattr(operator, _n)))
Parameter.__hash__ = object.__hash__


def _unpickle_parameter(data, grad, requires_grad, token: Optional[_Token] = None) -> Parameter:
    return Parameter._make(data, grad, requires_grad, next(_ids) if token is None else token.value,
                           trace_state_clean())


class _Size(int):
    """``Parameter.size``: an ``int`` (the element count) that torch code can call."""

    def __new__(cls, shape: tuple) -> "_Size":
        self = super().__new__(cls, math.prod(shape))
        self._shape = tuple(shape)
        return self

    def __call__(self, dim: Optional[int] = None):
        if dim is None:
            return self._shape
        try:
            return self._shape[operator.index(dim)]
        except IndexError:
            n = len(self._shape)
            raise IndexError(f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], "
                             f"but got {dim})") from None

    def __reduce__(self):
        return (int, (int(self),))


def _lax_error(p: Parameter):
    raise ValueError(
        "a jparam Parameter was passed to a jax.lax primitive (or another function that does "
        "not convert its inputs); pass the array instead: jnp.asarray(p), or call the "
        "jax.numpy function, which accepts Parameters (gradients flow in both cases; "
        "p.data is detached, as torch's)")


try:  # lax primitives canonicalize their operands without calling __jax_array__ and raise
    # the same ValueError with a message that does not name the fix (private JAX tables)
    from jax._src.core import pytype_aval_mappings as _aval_mappings
    from jax._src.dtypes import canonicalize_value_handlers as _canonicalize_handlers

    _aval_mappings[Parameter] = _lax_error
    _canonicalize_handlers[Parameter] = _lax_error
except Exception:  # pragma: no cover - JAX's own error stands
    pass


def _param_flatten(p: Parameter):
    return (p._data, p._grad), (p.requires_grad, p._jp_id)


def _param_unflatten(aux, children):
    data, grad = children
    return Parameter._make(data, grad, aux[0], aux[1], trace_state_clean())


jax.tree_util.register_pytree_node(Parameter, _param_flatten, _param_unflatten)


class Buffer:
    """Marker that registers a buffer when assigned to a module attribute (torch's ``nn.Buffer``).

    The module stores the plain array; ``persistent=False`` keeps it out of ``state_dict``.

    Example:
        >>> class M(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.running = nn.Buffer(jnp.zeros(3))
        ...         self.scratch = nn.Buffer(jnp.zeros(3), persistent=False)
        >>> m = M()
        >>> list(m.state_dict()), [name for name, _ in m.named_buffers()], list(m.parameters())
        (['running'], ['running', 'scratch'], [])
    """

    __slots__ = ("data", "persistent")

    def __init__(self, data: Any = None, *, persistent: bool = True) -> None:
        if data is not None and not isinstance(data, jax.Array):
            data = _as_array(data, "Buffer data")
        self.data = data
        self.persistent = bool(persistent)

    def __repr__(self) -> str:
        return f"Buffer({self.data!r}, persistent={self.persistent})"


def _as_array(value: Any, what: str) -> jax.Array:
    """Convert array-likes (NumPy, torch tensors, lists) to a jax array, or raise clearly."""
    from jparam._convert import to_jax_array

    return to_jax_array(value, what)
