"""Serving export: a head's ``export_outputs`` as ``jax.export`` (StableHLO) functions.

:func:`export_head` turns ``inputs -> logits`` (a model with its parameters
closed over) plus a head into one serialized ``jax.export.Exported`` per
serving signature (``serving_default``, ``classification``, ``regression``,
``predict``, …), with a symbolic batch dimension. The result, an
:class:`ExportedHead`, serializes to bytes that hold the StableHLO modules and
a JSON header with the signature names and the head's label vocabulary, so
that a deserialized artifact — in a process that has neither the model code
nor the head — still turns class ids back into class names (TF's ``classes``
output, strings that a JAX array cannot hold)::

    artifact = export_head(head, lambda x: model.apply(params, x), x[:1])
    blob = artifact.serialize()            # bytes: header + StableHLO
    served = ExportedHead.deserialize(blob)
    served(x_new)["classes"]               # numpy array of str
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["ExportedHead", "export_head", "serving_function"]

_MAGIC = b"JAXHEADS"
_FORMAT_VERSION = 1
_ID_SUFFIX = "class_ids"
_NAME_SUFFIX = "classes"


def _key_str(key: Any) -> str:
    """Output keys as strings (MultiHead's ``(head, key)`` tuples become ``head/key``)."""
    return "/".join(str(k) for k in key) if isinstance(key, tuple) else str(key)


def serving_function(
    head: Any, logits_fn: Callable[[Any], Any], signature: str = "serving_default"
) -> Callable[[Any], dict[str, jax.Array]]:
    """``inputs -> head.export_outputs(logits_fn(inputs))[signature]`` (pure, jittable).

    Args:
      head: any jaxheads head.
      logits_fn: ``inputs -> logits [batch, …, logits_dimension]`` (close over
        the parameters).
      signature: one of the head's export signature names.

    Returns:
      A function of ``inputs`` returning a flat dict of arrays.

    Examples:
      >>> import jaxheads as jh
      >>> fn = serving_function(jh.BinaryClassHead(), lambda x: x, "regression")
      >>> fn(jnp.zeros((2, 1)))["value"].tolist()
      [[0.5], [0.5]]
    """

    def serve(inputs: Any) -> dict[str, jax.Array]:
        outputs = head.export_outputs(logits_fn(inputs))
        if signature not in outputs:
            raise ValueError(
                f"Unknown serving signature {signature!r}; the head exports {list(outputs)}."
            )
        return {_key_str(k): v for k, v in outputs[signature].items()}

    return serve


def _symbolic_specs(example_inputs: Any, batch_dim: str | None) -> Any:
    """Shape/dtype structs of ``example_inputs`` with a shared symbolic leading dim."""
    leaves = jax.tree.leaves(example_inputs)
    if not leaves:
        raise ValueError("example_inputs must hold at least one array.")
    if batch_dim is None:
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), _dtype(x)), example_inputs)
    (batch,) = jax.export.symbolic_shape(batch_dim)

    def spec(x: Any) -> jax.ShapeDtypeStruct:
        shape = np.shape(x)
        if not shape:
            raise ValueError("every input needs a leading batch dimension; got a scalar.")
        return jax.ShapeDtypeStruct((batch,) + tuple(shape[1:]), _dtype(x))

    return jax.tree.map(spec, example_inputs)


def _dtype(x: Any) -> Any:
    return x.dtype if hasattr(x, "dtype") else jnp.asarray(x).dtype


def _vocabulary(head: Any) -> list[str] | None:
    vocabulary = getattr(head, "label_vocabulary", None)
    return None if vocabulary is None else [str(v) for v in vocabulary]


def _signature_names(head: Any, logits_fn: Callable[[Any], Any], specs: Any) -> list[str]:
    """The head's signature names in its own order (pytree outputs would sort them)."""
    names: list[str] = []

    def trace(inputs: Any) -> int:
        names.extend(head.export_outputs(logits_fn(inputs)))
        return 0

    jax.eval_shape(trace, specs)
    return names


def export_head(
    head: Any,
    logits_fn: Callable[[Any], Any],
    example_inputs: Any,
    *,
    signatures: Sequence[str] | None = None,
    batch_dim: str | None = "batch",
    platforms: Sequence[str] | None = None,
) -> ExportedHead:
    """Exports the head's serving signatures with ``jax.export``.

    Args:
      head: any jaxheads head.
      logits_fn: ``inputs -> logits``; close over the model's parameters (they
        become constants of the exported module, as in a SavedModel).
      example_inputs: an array, a ``jax.ShapeDtypeStruct``, or a pytree of
        them (e.g. a features dict), with a leading batch dimension whose size
        does not matter (only shapes and dtypes are used).
      signatures: the signature names to export; default all of
        ``head.export_outputs``, ``serving_default`` first.
      batch_dim: name of the symbolic batch dimension shared by every input;
        ``None`` exports the exact shapes of ``example_inputs``.
      platforms: ``jax.export`` lowering platforms (e.g. ``("cpu", "cuda")``);
        default: the current backend.

    Returns:
      An :class:`ExportedHead`.

    Examples:
      >>> import jaxheads as jh
      >>> head = jh.BinaryClassHead(label_vocabulary=["ham", "spam"])
      >>> artifact = export_head(head, lambda x: 2.0 * x, jnp.zeros((1, 1)))
      >>> served = ExportedHead.deserialize(artifact.serialize())
      >>> served.signatures
      ('serving_default', 'classification', 'regression', 'predict')
      >>> served(jnp.array([[-1.0], [3.0]]), "predict")["classes"].tolist()
      [['ham'], ['spam']]
    """
    specs = _symbolic_specs(example_inputs, batch_dim)
    if signatures is None:
        signatures = _signature_names(head, logits_fn, _symbolic_specs(example_inputs, None))
    exported = {}
    for name in signatures:
        fn = jax.jit(serving_function(head, logits_fn, name))
        exported[name] = jax.export.export(fn, platforms=platforms)(specs)
    header = {
        "format": "jaxheads.export",
        "version": _FORMAT_VERSION,
        "head": type(head).__name__,
        "head_name": getattr(head, "name", None),
        "logits_dimension": int(head.logits_dimension),
        "vocabulary": _vocabulary(head),
        "jax_version": jax.__version__,
    }
    return ExportedHead(exported, header)


class ExportedHead:
    """Serialized-ready serving signatures of a head (``jax.export`` + a JSON header).

    Calling it runs one signature and returns numpy arrays; every output whose
    key ends in ``class_ids`` gets a string companion ending in ``classes``
    (``class_ids`` → ``classes``, ``all_class_ids`` → ``all_classes``; in the
    ``classification`` signature ``classes`` is TF's ``ClassificationOutput``
    classes), built from the vocabulary (or ``"0"``, ``"1"``, … without one).

    Attributes:
      exported: signature name → ``jax.export.Exported``.
      header: JSON-serializable metadata: head type and name,
        ``logits_dimension``, ``vocabulary`` (list of str or ``None``), jax
        version.
    """

    def __init__(self, exported: Mapping[str, jax.export.Exported], header: Mapping[str, Any]):
        if not exported:
            raise ValueError("ExportedHead needs at least one signature.")
        self.exported = dict(exported)
        self.header = dict(header)

    @property
    def signatures(self) -> tuple[str, ...]:
        """The signature names, in export order (``serving_default`` first)."""
        return tuple(self.exported)

    @property
    def vocabulary(self) -> tuple[str, ...] | None:
        """The head's label vocabulary, or ``None``."""
        vocabulary = self.header.get("vocabulary")
        return None if vocabulary is None else tuple(vocabulary)

    def class_names(self, class_ids: Any) -> np.ndarray:
        """Class ids (any shape, ints) → class names (``str``), on the host."""
        ids = np.asarray(class_ids).astype(np.int64)
        if self.vocabulary is None:
            return ids.astype(str)
        table = np.asarray(self.vocabulary, dtype=str)
        if ids.size and (ids.min() < 0 or ids.max() >= len(table)):
            raise ValueError(f"class ids out of range for vocabulary {self.vocabulary}.")
        return table[ids]

    def __call__(
        self, inputs: Any, signature: str = "serving_default", *, with_class_names: bool = True
    ) -> dict[str, np.ndarray]:
        """Runs ``signature`` on ``inputs`` (any batch size).

        Args:
          inputs: arrays shaped like the ``example_inputs`` of the export
            (any leading size when exported with a symbolic batch).
          signature: a name from :attr:`signatures`.
          with_class_names: add the string ``…classes`` outputs.

        Returns:
          Output name → numpy array.
        """
        if signature not in self.exported:
            raise ValueError(f"Unknown signature {signature!r}; have {list(self.exported)}.")
        outputs = self.exported[signature].call(inputs)
        result = {k: np.asarray(v) for k, v in outputs.items()}
        if with_class_names:
            for key in list(result):
                if key.endswith(_ID_SUFFIX):
                    name = key[: -len(_ID_SUFFIX)] + _NAME_SUFFIX
                    result.setdefault(name, self.class_names(result[key]))
        return result

    def serialize(self) -> bytes:
        """``b"JAXHEADS"``, the header length (uint32 LE), the JSON header, the modules."""
        blobs = [bytes(exp.serialize()) for exp in self.exported.values()]
        header = dict(self.header)
        header["signatures"] = [
            {"name": name, "size": len(blob)}
            for name, blob in zip(self.exported, blobs, strict=True)
        ]
        header_bytes = json.dumps(header, sort_keys=True).encode("utf-8")
        return b"".join([_MAGIC, struct.pack("<I", len(header_bytes)), header_bytes, *blobs])

    @classmethod
    def deserialize(cls, data: bytes) -> ExportedHead:
        """Inverse of :meth:`serialize`."""
        data = bytes(data)
        if not data.startswith(_MAGIC):
            raise ValueError("not a jaxheads export (bad magic bytes).")
        offset = len(_MAGIC)
        (size,) = struct.unpack_from("<I", data, offset)
        offset += 4
        header = json.loads(data[offset : offset + size].decode("utf-8"))
        offset += size
        if header.get("version") != _FORMAT_VERSION:
            raise ValueError(f"unsupported jaxheads export version {header.get('version')!r}.")
        exported = {}
        for entry in header.pop("signatures"):
            blob = data[offset : offset + entry["size"]]
            offset += entry["size"]
            exported[entry["name"]] = jax.export.deserialize(bytearray(blob))
        return cls(exported, header)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes :meth:`serialize`'s bytes to ``path``."""
        with open(path, "wb") as f:
            f.write(self.serialize())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ExportedHead:
        """Reads an artifact written by :meth:`save`."""
        with open(path, "rb") as f:
            return cls.deserialize(f.read())

    def __repr__(self) -> str:
        return (
            f"ExportedHead(head={self.header.get('head')!r}, signatures={list(self.signatures)}, "
            f"vocabulary={self.vocabulary})"
        )
