"""Host-side plumbing of :mod:`jaxheads.export`: input specs and checks, the blob format.

Kept apart from the export API so that every error a user can meet when
serving (wrong inputs, an empty batch, a corrupt blob) is handled in one place
and names the argument at fault.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import export as jax_export

from jaxheads.heads.base import Head

__all__ = ["call", "check_head", "decode", "split_blob", "symbolic_specs"]


# jax.ShapeDtypeStruct's constructor is unannotated; a typed alias keeps strict checkers quiet.
_struct: Callable[..., jax.ShapeDtypeStruct] = jax.ShapeDtypeStruct


def check_head(argument: object) -> None:
    """``TypeError`` (naming ``head``) unless the ``head`` argument is a :class:`~jaxheads.Head`."""
    if not isinstance(argument, Head):
        raise TypeError(f"head: expected a jaxheads Head, got {type(argument).__name__}.")


def _dtype(x: Any) -> np.dtype[Any]:
    if isinstance(x, (jax.ShapeDtypeStruct, jax.Array, np.ndarray, np.generic)):
        return np.dtype(jax.dtypes.canonicalize_dtype(x.dtype))
    return np.dtype(jnp.asarray(x).dtype)


def symbolic_specs(example_inputs: Any, batch_dim: str | None) -> Any:
    """Shape/dtype structs of ``example_inputs``, sharing a symbolic leading ``batch_dim``."""
    leaves = jax.tree.leaves(example_inputs)
    if not leaves:
        raise ValueError("example_inputs: must hold at least one array, got none.")
    if batch_dim is None:
        return jax.tree.map(lambda x: _struct(np.shape(x), _dtype(x)), example_inputs)
    (batch,) = jax_export.symbolic_shape(batch_dim)

    def spec(x: Any) -> jax.ShapeDtypeStruct:
        shape = np.shape(x)
        if not shape:
            raise ValueError(
                "example_inputs: every input needs a leading batch dimension; got a scalar "
                "(pass batch_dim=None to export exact shapes)."
            )
        return _struct((batch,) + tuple(shape[1:]), _dtype(x))

    return jax.tree.map(spec, example_inputs)


def _shape_str(shape: Sequence[Any]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _path_str(path: tuple[Any, ...]) -> str:
    return "inputs" + jax.tree_util.keystr(path)


def _example_tree(exported: jax_export.Exported) -> Any:
    """The export's ``example_inputs`` structure, with leaf indices as leaves."""
    in_tree: Any = exported.in_tree  # jax's PyTreeDef is untyped
    args, _ = in_tree.unflatten(list(range(in_tree.num_leaves)))
    return args[0]


def _leaves(exported: jax_export.Exported, inputs: Any) -> list[tuple[str, np.ndarray]]:
    """``inputs`` as (name, numpy array) leaves in the export's order; structure checked."""
    example = _example_tree(exported)
    expected: Any = jax.tree.structure(example)
    detail = ""
    if isinstance(example, Mapping) and isinstance(inputs, Mapping):
        missing = sorted(map(str, set(example) - set(inputs)))
        extra = sorted(map(str, set(inputs) - set(example)))
        detail = f" (missing keys {missing}, unexpected keys {extra})"
    mismatch = TypeError(
        f"inputs: expected the structure of the export's example_inputs {expected}, got "
        f"{jax.tree.structure(inputs)}{detail}."
    )
    try:
        flat = expected.flatten_up_to(inputs)
    except (ValueError, TypeError) as error:
        raise mismatch from error
    if any(isinstance(x, Mapping) for x in flat):
        raise mismatch
    paths = [path for path, _ in jax.tree_util.tree_flatten_with_path(example)[0]]
    return [(_path_str(p), _as_array(_path_str(p), x)) for p, x in zip(paths, flat, strict=True)]


def _as_array(name: str, x: Any) -> np.ndarray:
    try:
        return np.asarray(x)
    except ValueError as error:  # ragged nested lists
        raise ValueError(f"{name}: expected an array, got {type(x).__name__} ({error}).") from error


def _check_leaf(name: str, x: np.ndarray, aval: Any) -> int | None:
    """Checks one input against its abstract value; returns the size of its symbolic dims."""
    want = tuple(aval.shape)
    if x.dtype.kind in "USO":
        raise TypeError(f"{name}: expected {aval.dtype} values, got strings ({x.dtype}).")
    if np.dtype(jax.dtypes.canonicalize_dtype(x.dtype)) != aval.dtype:
        raise TypeError(
            f"{name}: expected dtype {aval.dtype} (shape {_shape_str(want)}), got {x.dtype}."
        )
    if x.ndim != len(want) or any(
        isinstance(d, int) and d != n for d, n in zip(want, x.shape, strict=True)
    ):
        raise ValueError(
            f"{name}: expected shape {_shape_str(want)} ({aval.dtype}), got {_shape_str(x.shape)}."
        )
    sizes = {n for d, n in zip(want, x.shape, strict=True) if not isinstance(d, int)}
    return sizes.pop() if len(sizes) == 1 else None


def _empty_outputs(
    exported: jax_export.Exported, outputs: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The outputs of a batch of one example cut to a batch of zero (symbolic leading dims)."""
    out_tree: Any = exported.out_tree
    index = out_tree.unflatten(list(range(out_tree.num_leaves)))
    batch = {str(d) for aval in exported.in_avals for d in aval.shape if not isinstance(d, int)}
    result = {}
    for key, value in outputs.items():
        shape = exported.out_avals[index[key]].shape
        if all(isinstance(d, int) for d in shape):
            result[key] = value
            continue
        if sum(not isinstance(d, int) for d in shape) != 1 or str(shape[0]) not in batch:
            raise ValueError(
                f"inputs: an empty batch is not supported by this export: output {key!r} has "
                f"shape {_shape_str(shape)}, not (batch, …)."
            )
        result[key] = value[:0]
    return result


def call(exported: jax_export.Exported, inputs: Any) -> dict[str, np.ndarray]:
    """Runs ``exported`` on checked ``inputs`` and returns numpy outputs.

    A symbolic batch of size 0 (which ``jax.export`` refuses: its dimension
    variables are >= 1) runs one zero example and returns none of it.
    """
    leaves = _leaves(exported, inputs)
    sizes = [
        _check_leaf(n, x, aval) for (n, x), aval in zip(leaves, exported.in_avals, strict=True)
    ]
    batch_sizes = {n for n in sizes if n is not None}
    if len(batch_sizes) > 1:
        found = {name: x.shape for name, x in leaves}
        raise ValueError(f"inputs: the batch dimension differs between inputs: {found}.")
    empty = batch_sizes == {0}
    arrays = [
        np.zeros((1,) + x.shape[1:], x.dtype) if empty and n == 0 else x
        for (_, x), n in zip(leaves, sizes, strict=True)
    ]
    in_tree: Any = exported.in_tree
    args, kwargs = in_tree.unflatten(arrays)
    run: Callable[..., Mapping[str, Any]] = exported.call  # untyped in jax
    outputs = {str(k): np.asarray(v) for k, v in run(*args, **kwargs).items()}
    return _empty_outputs(exported, outputs) if empty else outputs


def decode(class_ids: Any, classes: Sequence[str] | None, key: str) -> np.ndarray:
    """Class ids → ``str`` class names (``"0"``, ``"1"``, … when ``classes`` is ``None``)."""
    ids = np.asarray(class_ids)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"class_ids: expected integer ids for {key!r}, got {ids.dtype}.")
    if classes is None:
        return ids.astype(np.int64).astype(str)
    table = np.asarray(list(classes), dtype=str)
    if ids.size and (ids.min() < 0 or ids.max() >= len(table)):
        raise ValueError(
            f"class_ids: ids of {key!r} must lie in [0, {len(table)}) for the class names "
            f"{tuple(classes)}, got ids in [{ids.min()}, {ids.max()}] (out of range)."
        )
    return table[ids.astype(np.int64)]


def _not_an_export(reason: str) -> ValueError:
    return ValueError(f"data: not a jaxheads export ({reason}).")


def split_blob(
    data: bytes, magic: bytes, fmt: str, versions: Sequence[int]
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Parses ``magic | uint32 LE header size | JSON header | modules`` into (header, blobs)."""
    if not data.startswith(magic):
        raise _not_an_export(f"bad magic bytes: starts with {data[: len(magic)]!r}")
    offset = len(magic)
    if len(data) < offset + 4:
        raise ValueError(f"data: truncated jaxheads export ({len(data)} bytes, no header size).")
    (size,) = struct.unpack_from("<I", data, offset)
    offset += 4
    if len(data) < offset + size:
        raise ValueError(
            f"data: truncated jaxheads export (header of {size} bytes, {len(data) - offset} left)."
        )
    try:
        header = json.loads(data[offset : offset + size].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _not_an_export(f"corrupt header: {error}") from error
    offset += size
    if not isinstance(header, dict) or header.get("format") != fmt:
        raise _not_an_export("the header names no jaxheads.export format")
    if header.get("version") not in versions:
        raise ValueError(
            f"data: unsupported jaxheads export version {header.get('version')!r} "
            f"(this jaxheads reads versions {tuple(versions)}); re-export the model."
        )
    entries = header.pop("signatures", None)
    if not isinstance(entries, list) or not entries:
        raise _not_an_export("the header lists no signatures")
    blobs: dict[str, bytes] = {}
    for entry in entries:
        end = offset + int(entry["size"])
        if len(data) < end:
            raise ValueError(
                f"data: truncated jaxheads export (signature {entry['name']!r} needs "
                f"{entry['size']} bytes, {len(data) - offset} left)."
            )
        blobs[str(entry["name"])] = data[offset:end]
        offset = end
    if offset != len(data):
        raise ValueError(f"data: {len(data) - offset} unexpected bytes after the jaxheads export.")
    return header, blobs
