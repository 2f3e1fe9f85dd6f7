"""Tree <-> (flat arrays, JSON skeleton) encoding for jparam training checkpoints.

Used by :mod:`jparam._checkpoint`; array conversion lives in :mod:`jparam._convert`.

Skeleton encoding (JSON, stored in the safetensors metadata under ``jparam.tree``):

- an array leaf           -> ``{"$a": "<key in the file>"}``
- a typed PRNG key array  -> ``{"$k": "<key in the file>", "impl": "<impl name>"}``
- dict (str or int keys)  -> ``{"$d": [[key, node], ...]}`` (order and key types kept)
- collections.Counter     -> ``{"$c": [[key, count], ...]}``
- list / tuple            -> ``{"$l": [...]}`` / ``{"$t": [...]}``
- None, bool, int, str    -> themselves
- float                   -> itself when finite, ``{"$f": "nan" | "inf" | "-inf"}`` otherwise

:func:`decode_tree` trusts nothing in a skeleton read from a file: any node that
:func:`encode_tree` cannot have produced raises ``ValueError`` naming the file.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from ._convert import is_array, is_prng_key, type_name

__all__ = ["encode_tree", "decode_tree", "MAX_DEPTH"]

MAX_DEPTH = 64  # nesting levels of containers a checkpoint may hold

# --------------------------------------------------------------------------- trees

def _path_str(path: tuple) -> str:
    return ".".join(str(p) for p in path) if path else "<root>"


def encode_tree(obj: Any) -> tuple[dict[str, Any], Any]:
    """Split ``obj`` into ``{file_key: array}`` and a JSON-able skeleton.

    Objects with a ``state_dict()`` method (modules, optimizers, schedulers, torch modules)
    are replaced by their state dict.  File keys are the dotted paths.
    """
    arrays: dict[str, Any] = {}
    owners: dict[str, tuple] = {}

    def claim(path: tuple) -> str:
        key = ".".join(str(p) for p in path)
        if key in arrays:
            raise ValueError(f"checkpoint entries {_path_str(owners[key])!r} and "
                             f"{_path_str(path)!r} both map to the file key {key!r}; "
                             "rename one of them")
        owners[key] = path
        return key

    def enc(x: Any, path: tuple, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise ValueError(f"checkpoint entry {_path_str(path)!r}: nesting deeper than "
                             f"{MAX_DEPTH} levels (a reference cycle?)")
        if x is None or isinstance(x, (bool, str)):
            return x
        if isinstance(x, int) and not isinstance(x, bool):
            return int(x)
        if isinstance(x, float):
            return float(x) if math.isfinite(x) else {"$f": repr(float(x))}
        if is_prng_key(x):
            key = claim(path)
            arrays[key] = jax.random.key_data(x)
            return {"$k": key, "impl": str(jax.random.key_impl(x))}
        if is_array(x):
            key = claim(path)
            arrays[key] = x
            return {"$a": key}
        if callable(getattr(x, "state_dict", None)) and not isinstance(x, Mapping):
            return enc(x.state_dict(), path, depth + 1)
        if isinstance(x, Mapping):
            tag = "$c" if isinstance(x, Counter) else "$d"  # Counter: MultiStepLR's milestones
            items = []
            for k, v in x.items():
                if isinstance(k, bool) or not isinstance(k, (str, int)):
                    raise TypeError(f"checkpoint entry {_path_str(path)!r}: key {k!r} has type "
                                    f"{type_name(k)}; keys must be str (or int, as in an "
                                    "optimizer's state)")
                items.append([k if isinstance(k, str) else int(k), enc(v, path + (k,), depth + 1)])
            return {tag: items}
        if isinstance(x, (list, tuple)):
            tag = "$t" if isinstance(x, tuple) else "$l"
            return {tag: [enc(v, path + (i,), depth + 1) for i, v in enumerate(x)]}
        if isinstance(x, (np.ndarray, np.generic)):
            raise TypeError(f"checkpoint entry {_path_str(path)!r}: NumPy array of dtype "
                            f"{x.dtype} is not supported; expected a numeric or bool array")
        raise TypeError(f"checkpoint entry {_path_str(path)!r}: cannot save a value of type "
                        f"{type_name(x)}; expected an array, a module/optimizer (anything with "
                        "state_dict()), a dict/list/tuple of those, or None/bool/int/float/str")

    skeleton = enc(obj, (), 0)
    return arrays, skeleton


_FLOAT_TAGS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def decode_tree(skeleton: Any, arrays: Mapping[str, Any], where: str) -> Any:
    """Inverse of :func:`encode_tree`; ``arrays`` maps file keys to loaded arrays.

    Every node is checked against what :func:`encode_tree` writes; anything else raises
    ``ValueError`` naming ``where`` (the file).
    """
    used: set[str] = set()

    def bad(msg: str) -> ValueError:
        return ValueError(f"{where}: corrupt jparam checkpoint structure: {msg}")

    def pairs(val: Any, tag: str, depth: int) -> list:
        if not isinstance(val, list):
            raise bad(f"{tag!r} holds {type_name(val)}, expected a list of [key, value] pairs")
        out = []
        for item in val:
            if not (isinstance(item, list) and len(item) == 2):
                raise bad(f"{tag!r} entry {item!r:.80} is not a [key, value] pair")
            k, v = item
            if isinstance(k, bool) or not isinstance(k, (str, int)):
                raise bad(f"{tag!r} key {k!r:.80} is not a str or int")
            out.append((k, dec(v, depth + 1)))
        return out

    def dec(node: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise bad(f"nesting deeper than {MAX_DEPTH} levels")
        if node is None or isinstance(node, (bool, int, float, str)):
            if isinstance(node, float) and not math.isfinite(node):
                raise bad(f"non-finite float {node!r} outside a $f tag")
            return node
        if not isinstance(node, dict) or len(node) not in (1, 2):
            raise bad(f"unexpected node {node!r:.80}")
        if "$a" in node or "$k" in node:
            tag = "$a" if "$a" in node else "$k"
            key = node[tag]
            if set(node) != ({"$a"} if tag == "$a" else {"$k", "impl"}):
                raise bad(f"unexpected node {node!r:.80}")
            if not isinstance(key, str) or key not in arrays:
                raise bad(f"the structure refers to tensor {key!r:.80}, which the file lacks")
            if key in used:
                raise bad(f"tensor {key!r} is referred to twice")
            used.add(key)
            if tag == "$a":
                return arrays[key]
            impl = node["impl"]
            try:
                return jax.random.wrap_key_data(arrays[key], impl=impl)
            except Exception as e:  # noqa: BLE001 - jax raises several kinds for a bad impl
                raise bad(f"PRNG key {key!r} with impl {impl!r:.80} cannot be rebuilt "
                          f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
                          ) from None
        if len(node) != 1:
            raise bad(f"unexpected node {node!r:.80}")
        (tag, val), = node.items()
        if tag == "$f":
            if not isinstance(val, str) or val not in _FLOAT_TAGS:
                raise bad(f"float tag {val!r:.80} (expected 'nan', 'inf' or '-inf')")
            return _FLOAT_TAGS[val]
        if tag in ("$d", "$c"):
            items = pairs(val, tag, depth)
            keys = [k for k, _ in items]
            if len(set(keys)) != len(keys):
                raise bad(f"{tag!r} has a repeated key")
            return dict(items) if tag == "$d" else Counter(dict(items))
        if tag in ("$l", "$t"):
            if not isinstance(val, list):
                raise bad(f"{tag!r} holds {type_name(val)}, expected a list")
            out = [dec(v, depth + 1) for v in val]
            return out if tag == "$l" else tuple(out)
        raise bad(f"unknown tag {tag!r:.80}")

    out = dec(skeleton, 0)
    extra = set(arrays) - used
    if extra:
        raise bad(f"tensors {sorted(extra)[:5]} are not referenced by the structure")
    return out
