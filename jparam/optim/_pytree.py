"""How an optimizer crosses ``jax.jit``: its pytree form and its host-side control block.

**The pytree.** An optimizer's children are, per param group, a :class:`GroupState`
(``hyper``: the numeric hyperparameters as float32 scalars by name; ``state``: the
transform's state for the group's parameters, e.g. ``AdamState(step, exp_avg, exp_avg_sq,
max_exp_avg_sq)`` with one array per parameter and one ``step`` vector entry per
parameter), plus ``handle``, a ``uint32[2]`` array ``[serial, version]``. Everything static
(the class, each group's parameter positions, structural options such as ``nesterov``, each
parameter's shape and dtype) is the aux :class:`Spec`, compared by jit's cache. So
``jax.tree_util.tree_flatten_with_path(opt)`` reads ``.param_groups[0].hyper['lr']``,
``.param_groups[0].state.exp_avg[2]``, ``.handle``.

**Identity travels as data.** torch has one mutable optimizer; here ``jit`` returns a new
object every step, rebuilt from the output leaves and the aux cached when the step was
*traced*, so the aux cannot say which optimizer an output belongs to (on a cache hit it is
the traced one's). The ``handle`` leaf does: ``serial`` is unique per optimizer for the life
of the process, so it resolves, without any possible collision, to that optimizer's
:class:`Control` (the host side shared by all its incarnations: exact Python hyperparameters,
host-only keys such as ``initial_lr``, and which incarnation is the newest). A pickled or
deep-copied optimizer never carries its serial: it loads with a new control block
(``optimizer.py``, ``_restore``), so it can never resolve to a live optimizer's. ``version``
counts host-side edits, telling whether an incarnation's hyperparameter leaves are older than
the control's values.

**Resolution is lazy**, because reading a jit output waits for the step to finish. A
returned optimizer is resolved (its handle read) only when the host asks something of it
(``param_groups``, ``state_dict()``, a scheduler), or when it goes into the next step after
some host-side edit happened to *any* optimizer (a process-wide edit counter, ``_edits``,
tells "nothing was edited since this incarnation's leaves were made"; it decides no value's
meaning, only whether the slow check can be skipped). The training loop of the README
therefore never waits on the device.

Limitation (documented in docs/design.md): an edit made from *another thread* to an
optimizer while that optimizer's own jit call is between flattening its arguments and
unflattening its results (microseconds: dispatch is asynchronous) reaches it at the
following host-side edit or read.

Example:
    >>> opt = optim.SGD(nn.Linear(2, 1).parameters(), lr=0.1, momentum=0.9)
    >>> [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(opt)[0]][-3:]
    ['.param_groups[0].state.momentum_buffer[1]', '.param_groups[0].state.started', '.handle']
"""
from __future__ import annotations

import itertools
import threading
import weakref
from typing import Any, Dict, NamedTuple, Optional, Tuple

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from jparam._tracing import trace_state_clean

__all__ = ["GroupState", "GroupSpec", "Spec", "Control", "register", "resolve", "newest",
           "ensure_current", "note_edit", "track", "handle_array", "read_handle"]


class GroupState(NamedTuple):
    """One param group's leaves: ``hyper`` (numeric hyperparameters, float32 scalars, a tuple
    of them for ``betas``) and ``state`` (the transform's state for the group's parameters)."""

    hyper: Dict[str, Any]
    state: Any


class GroupSpec(NamedTuple):
    """One param group's static part (compared by jit's cache)."""

    params: tuple  # positions in the model's leaf order (or identity tokens)
    numeric: tuple  # names of the numeric hyperparameters (the keys of GroupState.hyper)
    statics: tuple  # ((key, frozen value), ...): the group's other values the update reads
    struct: tuple  # the optimizer's static structure of the group (e.g. SGD: has a buffer)
    sigs: tuple  # ((shape, dtype), ...) of each parameter


class Spec:
    """An optimizer's pytree aux. ``cls``, ``groups``, ``positional``, ``layout`` and ``tx``
    are compared; ``host`` (defaults and per-group host-only keys such as ``initial_lr``)
    rides along uncompared and is read only by an optimizer unflattened *inside* a trace,
    where it is the traced optimizer's own (outside, the control block is the truth)."""

    __slots__ = ("cls", "groups", "positional", "layout", "tx", "host", "_key", "_hash")

    def __init__(self, cls: type, groups: Tuple[GroupSpec, ...], positional: bool, layout: Any,
                 tx: Any, host: Tuple[dict, tuple]) -> None:
        self.cls, self.groups, self.positional, self.layout, self.tx = cls, groups, positional, layout, tx
        self.host = host
        self._key = (cls, groups, positional, layout, tx)
        self._hash = hash(self._key)

    def replace(self, **kw: Any) -> "Spec":
        args = dict(cls=self.cls, groups=self.groups, positional=self.positional, layout=self.layout,
                    tx=self.tx, host=self.host)
        args.update(kw)
        return Spec(**args)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, Spec) and (self is other or self._key == other._key)

    def __repr__(self) -> str:
        return f"Spec({self.cls.__name__}, groups={len(self.groups)})"


class Control:
    """The host side of one optimizer, shared by all its incarnations outside jit.

    ``groups``: torch's param group dicts with the exact Python values the user set;
    ``numeric``: per group, which keys are numeric hyperparameters (pytree leaves);
    ``tokens``: per group, the parameters' identity tokens; ``placement``: the sharding that
    hyperparameters and step counts get (replicated over the parameters' devices)."""

    __slots__ = ("serial", "version", "groups", "numeric", "defaults", "tokens", "placement",
                 "root_ref", "lock", "_incs", "__weakref__")

    def __init__(self, defaults: dict) -> None:
        self.version = 0
        self.groups: list = []
        self.numeric: list = []
        self.defaults = defaults
        self.tokens: list = []
        self.placement = None
        self.root_ref = None
        self.lock = threading.RLock()
        self._incs: list = []  # (sequence number, weakref) of resolved incarnations
        with _lock:
            self.serial = next(_serials)
            _controls[self.serial] = self

    def add(self, obj: Any) -> None:
        """Record ``obj`` as an incarnation of this optimizer."""
        with self.lock:
            self._incs.append((obj.__dict__["_seq"], weakref.ref(obj)))
            if len(self._incs) > 16:
                self._incs = [(s, r) for s, r in self._incs if r() is not None]

    def newest_known(self) -> Any:
        best, obj = -1, None
        for s, r in self._incs:
            o = r()
            if o is not None and s > best:
                best, obj = s, o
        return obj


_lock = threading.Lock()
_serials = itertools.count(1)
_seqs = itertools.count()
_controls: "weakref.WeakValueDictionary[int, Control]" = weakref.WeakValueDictionary()
_unresolved: list = []  # weakrefs to optimizers returned by jit, not yet matched to a Control
_prune_at = [64]
_edits = [0]  # host-side edits of any optimizer so far
_tls = threading.local()


def next_seq() -> int:
    return next(_seqs)


def note_edit() -> None:
    """Count a host-side edit (every optimizer re-checks its control before its next step)."""
    with _lock:
        _edits[0] += 1


def _explicit(mesh: Any) -> bool:
    return any(t == jax.sharding.AxisType.Explicit for t in getattr(mesh, "axis_types", ()))


def put_replicated(x: Any, placement: Any) -> Any:
    """``x`` on ``placement`` (None: the default device); on a mesh with explicit axes the spec
    is spelled out for ``x``'s rank (``P(None,)`` for a vector), the form a jitted step there
    returns its replicated vectors in (an input placed as ``P()`` would compile the second step
    again). Auto meshes keep ``P()``, the form their steps return.

    Example:
        >>> put_replicated(np.arange(3.0), None).tolist()
        [0.0, 1.0, 2.0]
    """
    if isinstance(placement, NamedSharding) and np.ndim(x) and _explicit(placement.mesh):
        placement = NamedSharding(placement.mesh, PartitionSpec(*([None] * np.ndim(x))))
    return jax.device_put(x, placement)


def handle_array(control: Control) -> Any:
    """The ``[serial, version]`` leaf of ``control``, placed with its hyperparameters."""
    return put_replicated(np.array([control.serial, control.version], np.uint32), control.placement)


def read_handle(obj: Any) -> Optional[Tuple[int, int]]:
    """``(serial, version)`` of an incarnation, or None if its handle is not an array (a
    ``tree_map`` to shapes, say) or was donated."""
    h = obj.__dict__.get("_handle")
    if not isinstance(h, (jax.Array, np.ndarray)) or isinstance(h, jax.core.Tracer) or h.shape != (2,):
        return None
    try:
        v = np.asarray(h)
    except Exception:  # deleted by donation
        return None
    return int(v[0]), int(v[1])


def track(obj: Any) -> None:
    """Remember an optimizer that jit returned, to be matched to its control when needed."""
    with _lock:
        _unresolved.append(weakref.ref(obj))
        if len(_unresolved) >= _prune_at[0]:
            _unresolved[:] = [r for r in _unresolved if r() is not None]
            _prune_at[0] = max(64, 2 * len(_unresolved))


def resolve(obj: Any) -> Optional[Control]:
    """The control block of an incarnation outside jit (reads its handle once)."""
    d = obj.__dict__
    c = d.get("_control")
    if c is not None or not d.get("_outer", False):
        return c
    hv = read_handle(obj)
    if hv is None:
        return None
    c = _controls.get(hv[0])
    if c is None:  # its optimizer is gone (e.g. built inside a trace): adopt the values as a new one
        c = obj._adopt()
    d["_control"] = c
    c.add(obj)
    return c


def newest(control: Control) -> Any:
    """The newest incarnation of ``control`` still alive (torch's one mutable optimizer)."""
    with _lock:
        pending = [r() for r in _unresolved]
        _unresolved.clear()
    for o in pending:
        if o is not None:
            resolve(o)
    return control.newest_known()


def ensure_current(obj: Any) -> None:
    """Before an incarnation outside jit is used: apply host-side edits made since its leaves
    were produced (skipped, without reading the device, when nothing was edited anywhere)."""
    e = _edits[0]
    if obj.__dict__.get("_edits") != e:
        obj._sync_with_control()
        obj.__dict__["_edits"] = e
    _tls.edits = e


def _flatten(obj: Any):
    d = obj.__dict__
    if d["_outer"]:
        ensure_current(obj)
    return (d["_gs"], d["_handle"]), d["_spec"]


_GROUPS_KEY = jax.tree_util.GetAttrKey("param_groups")
_HANDLE_KEY = jax.tree_util.GetAttrKey("handle")


def _flatten_with_keys(obj: Any):
    (gs, h), spec = _flatten(obj)
    return ((_GROUPS_KEY, gs), (_HANDLE_KEY, h)), spec


def _unflatten(spec: Spec, children: Any) -> Any:
    gs, h = children
    obj = object.__new__(spec.cls)
    d = obj.__dict__
    d["_gs"], d["_handle"], d["_spec"], d["_control"], d["_views"] = gs, h, spec, None, None
    d["_outer"] = outer = trace_state_clean()
    if outer:
        d["_seq"] = next(_seqs)
        # the edit count when this thread last flattened an optimizer (the arguments of the
        # call that returned this one): an edit made since forces a check before the next step
        d["_edits"] = getattr(_tls, "edits", -1)
        track(obj)
    return obj


def register(cls: type) -> None:
    """Register an optimizer class as a pytree node."""
    jax.tree_util.register_pytree_with_keys(cls, _flatten_with_keys, _unflatten, _flatten)
