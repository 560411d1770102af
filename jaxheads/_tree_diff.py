"""Says where two pytrees of metric states differ in structure or static configuration.

Used to turn JAX's generic tree-structure mismatch into an error that names
the field and both values (``state.counts.thresholds: (0.5,) vs (0.25,)``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax

__all__ = ["config_difference", "describe_mismatch"]


def config_difference(a: Any, b: Any, path: str = "config") -> str | None:
    """The first differing field of two static configurations (dataclasses or values)."""
    if a == b:
        return None
    if type(a) is type(b) and dataclasses.is_dataclass(a) and not isinstance(a, type):
        diffs = [
            f"{path}.{f.name}: {a.__dict__[f.name]!r} vs {b.__dict__[f.name]!r}"
            for f in dataclasses.fields(a)
            if a.__dict__[f.name] != b.__dict__[f.name]
        ]
        return "; ".join(diffs)
    return f"{path}: {a!r} vs {b!r}"


def _dataclass_mismatch(a: Any, b: Any, path: str) -> str | None:
    for f in dataclasses.fields(a):
        va, vb = a.__dict__[f.name], b.__dict__[f.name]
        sub = f"{path}.{f.name}"
        if f.metadata.get("pytree_node", True):
            found = describe_mismatch(va, vb, sub)
        else:
            found = config_difference(va, vb, sub)
        if found:
            return found
    return None


def describe_mismatch(a: Any, b: Any, path: str = "state") -> str | None:
    """Where pytrees ``a`` and ``b`` differ in type, keys or static fields (``None``: nowhere).

    Examples:
      >>> describe_mismatch({"x": 1, "y": None}, {"x": 1, "y": 2})
      "state['y']: NoneType vs int"
    """
    if type(a) is not type(b):
        return f"{path}: {type(a).__name__} vs {type(b).__name__}"
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        return _dataclass_mismatch(a, b, path)
    if isinstance(a, Mapping):
        if set(a) != set(b):
            return f"{path}: keys {sorted(map(str, a))} vs {sorted(map(str, b))}"
        for key in a:
            found = describe_mismatch(a[key], b[key], f"{path}[{key!r}]")
            if found:
                return found
        return None
    if isinstance(a, (list, tuple)):
        if len(a) != len(b):
            return f"{path}: length {len(a)} vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = describe_mismatch(x, y, f"{path}[{i}]")
            if found:
                return found
        return None
    sa: Any = jax.tree_util.tree_structure(a)
    sb: Any = jax.tree_util.tree_structure(b)
    return None if sa == sb else f"{path}: {sa} vs {sb}"
