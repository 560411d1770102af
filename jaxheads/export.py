"""Serving export: a head's ``export_outputs`` as ``jax.export`` (StableHLO) functions.

:func:`export_head` turns ``inputs -> logits`` (a model with its parameters
closed over) plus a head into one serialized ``jax.export.Exported`` per
serving signature (``serving_default``, ``classification``, ``regression``,
``predict``, …), with a symbolic batch dimension. The result, an
:class:`ExportedHead`, serializes to bytes that hold the StableHLO modules and
a JSON header with the signature names and the class names of every class-id
output (from ``head.class_vocabularies()``: every sub-head of a ``MultiHead``,
the wrapped head of a ``SequentialHeadWrapper``), so that a deserialized
artifact — in a process that has neither the model code nor the head — still
turns class ids back into class names (TF's ``classes`` output, strings that a
JAX array cannot hold)::

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
from typing import Any, final

import jax
import numpy as np
from jax import export as jax_export

from jaxheads import _export_io
from jaxheads.heads.base import Head
from jaxheads.keys import PredictionKeys, SignatureKeys

__all__ = ["ExportedHead", "export_head", "serving_function"]

_MAGIC = b"JAXHEADS"
_FORMAT = "jaxheads.export"
_FORMAT_VERSION = 2
_ID_SUFFIX = PredictionKeys.CLASS_IDS
_NAME_SUFFIX = PredictionKeys.CLASSES

Vocabularies = dict[str, dict[str, tuple[str, ...]]]


def serving_function(
    head: Head[Any], logits_fn: Callable[[Any], Any], signature: str = SignatureKeys.SERVING_DEFAULT
) -> Callable[[Any], dict[str, jax.Array]]:
    """``inputs -> head.export_outputs(logits_fn(inputs))[signature]`` (pure, jittable).

    Args:
      head: any head.
      logits_fn: ``inputs -> logits [batch, …, logits_dimension]`` (close over
        the parameters).
      signature: one of the head's export signature names.

    Returns:
      A function of ``inputs`` returning a flat dict of arrays.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jaxheads as jh
      >>> fn = serving_function(jh.BinaryClassHead(), lambda x: x, "regression")
      >>> fn(jnp.zeros((2, 1)))["value"].tolist()
      [[0.5], [0.5]]
    """
    _export_io.check_head(head)

    def serve(inputs: Any) -> dict[str, jax.Array]:
        outputs = head.export_outputs(logits_fn(inputs))
        if signature not in outputs:
            raise ValueError(
                f"signature: unknown serving signature {signature!r}; the head exports "
                f"{list(outputs)}."
            )
        return dict(outputs[signature])

    return serve


def _signature_outputs(
    head: Head[Any], logits_fn: Callable[[Any], Any], specs: Any
) -> dict[str, list[str]]:
    """The head's signatures in its own order (pytree outputs would sort them) and their keys."""
    found: dict[str, list[str]] = {}

    def trace(inputs: Any) -> int:
        for name, outputs in head.export_outputs(logits_fn(inputs)).items():
            found[name] = list(outputs)
        return 0

    jax.eval_shape(trace, specs)
    return found


def _output_vocabulary(
    vocabularies: Mapping[str, tuple[str, ...]], signature: str, key: str
) -> tuple[str, ...] | None:
    """The class names of output ``key`` of ``signature`` (``None``: not a class-id output).

    ``vocabularies`` is ``head.class_vocabularies()``, keyed as the ``predict``
    signature keys its outputs: ``class_ids`` for a single head,
    ``<head>/class_ids`` for a ``MultiHead``, whose other signatures are
    ``<head>`` / ``<head>/<signature>`` and whose ``serving_default`` is its
    first head's.
    """
    if not key.endswith(_ID_SUFFIX):
        return None
    if key in vocabularies:
        return tuple(vocabularies[key])
    parts = signature.split("/")
    for end in range(len(parts), 0, -1):  # longest head name first: names may hold "/"
        prefix = "/".join(parts[:end])
        if f"{prefix}/{key}" in vocabularies:
            return tuple(vocabularies[f"{prefix}/{key}"])
    if signature == SignatureKeys.SERVING_DEFAULT:
        for name, classes in vocabularies.items():
            if name.endswith(f"/{key}"):
                return tuple(classes)
    if vocabularies:
        raise ValueError(
            f"export_head: cannot tell which class names belong to output {key!r} of signature "
            f"{signature!r}; head.class_vocabularies() has {sorted(vocabularies)}."
        )
    return None


def export_head(
    head: Head[Any],
    logits_fn: Callable[[Any], Any],
    example_inputs: Any,
    *,
    signatures: Sequence[str] | None = None,
    batch_dim: str | None = "batch",
    platforms: Sequence[str] | None = None,
) -> ExportedHead:
    """Exports the head's serving signatures with ``jax.export``.

    Args:
      head: any head.
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
      >>> import jax.numpy as jnp
      >>> import jaxheads as jh
      >>> head = jh.BinaryClassHead(label_vocabulary=["ham", "spam"])
      >>> artifact = export_head(head, lambda x: 2.0 * x, jnp.zeros((1, 1)))
      >>> served = ExportedHead.deserialize(artifact.serialize())
      >>> served.signatures
      ('serving_default', 'classification', 'regression', 'predict')
      >>> served(jnp.array([[-1.0], [3.0]]), "predict")["classes"].tolist()
      [['ham'], ['spam']]
    """
    _export_io.check_head(head)
    specs = _export_io.symbolic_specs(example_inputs, batch_dim)
    available = _signature_outputs(head, logits_fn, _export_io.symbolic_specs(example_inputs, None))
    if signatures is None:
        signatures = list(available)
    if isinstance(signatures, str) or not all(name in available for name in signatures):
        raise ValueError(
            f"signatures: expected a list of names from {list(available)}, got {signatures!r}."
        )
    head_vocabularies = {k: tuple(v) for k, v in head.class_vocabularies().items()}
    vocabularies: Vocabularies = {}
    exported = {}
    for name in signatures:
        fn = jax.jit(serving_function(head, logits_fn, name))
        exported[name] = jax_export.export(fn, platforms=platforms)(specs)
        for key in available[name]:
            classes = _output_vocabulary(head_vocabularies, name, key)
            if classes is not None:
                vocabularies.setdefault(name, {})[key] = classes
    header = {
        "format": _FORMAT,
        "version": _FORMAT_VERSION,
        "head": type(head).__name__,
        "head_name": head.name,
        "logits_dimension": int(head.logits_dimension),
        "class_vocabularies": head_vocabularies,
        "output_vocabularies": vocabularies,
        "jax_version": jax.__version__,
    }
    return ExportedHead(exported, header)


def _upgrade_v1_header(
    header: dict[str, Any], exported: Mapping[str, jax_export.Exported]
) -> dict[str, Any]:
    """A version-1 header (jaxheads 0.1: one ``vocabulary`` for every class-id output) as v2."""
    vocabulary = header.pop("vocabulary", None)
    header["version"] = _FORMAT_VERSION
    header["class_vocabularies"] = {}
    header["output_vocabularies"] = {}
    if vocabulary is None:
        return header
    classes = tuple(str(v) for v in vocabulary)
    for name, exp in exported.items():
        out_tree: Any = exp.out_tree  # jax's PyTreeDef is untyped
        keys = out_tree.unflatten(list(range(out_tree.num_leaves)))
        header["output_vocabularies"][name] = {
            str(k): classes for k in keys if str(k).endswith(_ID_SUFFIX)
        }
        if name == SignatureKeys.PREDICT:
            header["class_vocabularies"] = header["output_vocabularies"][name]
    return header


@final
class ExportedHead:
    """Serialized-ready serving signatures of a head (``jax.export`` + a JSON header).

    Calling it runs one signature and returns numpy arrays; every output whose
    key ends in ``class_ids`` gets a string companion ending in ``classes``
    (``class_ids`` → ``classes``, ``all_class_ids`` → ``all_classes``,
    ``head1/class_ids`` → ``head1/classes``; in the ``classification``
    signature ``classes`` is TF's ``ClassificationOutput`` classes), built from
    the class names the head declared for that output.

    Attributes:
      exported: signature name → ``jax.export.Exported``.
      header: JSON-serializable metadata: head type and name,
        ``logits_dimension``, ``class_vocabularies`` (the head's, keyed by
        prediction key), ``output_vocabularies`` (signature → output key →
        class names), jax version.
    """

    def __init__(self, exported: Mapping[str, jax_export.Exported], header: Mapping[str, Any]):
        if not exported:
            raise ValueError("exported: ExportedHead needs at least one signature, got none.")
        self.exported = dict(exported)
        self.header = dict(header)

    @property
    def signatures(self) -> tuple[str, ...]:
        """The signature names, in export order (``serving_default`` first)."""
        return tuple(self.exported)

    @property
    def class_vocabularies(self) -> dict[str, tuple[str, ...]]:
        """The head's ``class_vocabularies()``: prediction key → class names."""
        return {k: tuple(v) for k, v in self.header.get("class_vocabularies", {}).items()}

    def output_vocabulary(self, signature: str, key: str) -> tuple[str, ...] | None:
        """The class names of output ``key`` of ``signature`` (``None``: none declared)."""
        per_signature = self.header.get("output_vocabularies", {}).get(signature, {})
        classes = per_signature.get(key)
        return None if classes is None else tuple(classes)

    def class_names(self, class_ids: Any, key: str = PredictionKeys.CLASS_IDS) -> np.ndarray:
        """Class ids (any shape, ints) of prediction output ``key`` → class names (``str``)."""
        vocabularies = self.class_vocabularies
        if key not in vocabularies:
            raise ValueError(
                f"key: {key!r} is not a class-id output of the exported head; expected one of "
                f"{sorted(vocabularies)}."
            )
        return _export_io.decode(class_ids, vocabularies[key], key)

    def function(self, signature: str = SignatureKeys.SERVING_DEFAULT) -> Callable[..., Any]:
        """The ``inputs -> dict of arrays`` of ``signature`` (no string outputs, no input checks).

        Jittable and differentiable; not ``vmap``-able (``jax.export`` has no
        batching rule for an exported call): merge a mapped axis into the
        symbolic batch instead, ``fn(x.reshape(-1, *x.shape[2:]))``.
        """
        self._check_signature(signature)
        return self.exported[signature].call

    def _check_signature(self, signature: str) -> None:
        if signature not in self.exported:
            raise ValueError(f"signature: unknown signature {signature!r}; have {self.signatures}.")

    def __call__(
        self,
        inputs: Any,
        signature: str = SignatureKeys.SERVING_DEFAULT,
        *,
        with_class_names: bool = True,
    ) -> dict[str, np.ndarray]:
        """Runs ``signature`` on ``inputs`` (any batch size, zero included).

        Each new input shape compiles once (XLA specializes on shapes): pad
        serving batches to a few sizes for a steady latency.

        Args:
          inputs: arrays shaped like the ``example_inputs`` of the export
            (any leading size when exported with a symbolic batch).
          signature: a name from :attr:`signatures`.
          with_class_names: add the string ``…classes`` outputs.

        Returns:
          Output name → numpy array.

        Raises:
          ValueError / TypeError: naming ``inputs`` (and the offending leaf)
            when its structure, shape or dtype is not the export's.
        """
        self._check_signature(signature)
        result = _export_io.call(self.exported[signature], inputs)
        if with_class_names:
            for key in list(result):
                if key.endswith(_ID_SUFFIX):
                    name = key[: -len(_ID_SUFFIX)] + _NAME_SUFFIX
                    classes = self.output_vocabulary(signature, key)
                    result.setdefault(name, _export_io.decode(result[key], classes, key))
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
    def deserialize(cls, data: bytes | bytearray | memoryview) -> ExportedHead:
        """Inverse of :meth:`serialize`.

        Raises:
          ValueError: naming ``data`` when it is not a jaxheads export, is
            truncated or corrupt, or comes from an unsupported format version.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data: expected bytes, got {type(data).__name__}.")
        header, blobs = _export_io.split_blob(bytes(data), _MAGIC, _FORMAT, (1, _FORMAT_VERSION))
        exported = {}
        for name, blob in blobs.items():
            try:
                exported[name] = jax_export.deserialize(bytearray(blob))
            except Exception as error:  # flatbuffers raises assorted errors on corrupt bytes
                raise ValueError(
                    f"data: signature {name!r} of this jaxheads export is corrupt "
                    f"({type(error).__name__}: {error})."
                ) from error
        if header["version"] == 1:
            header = _upgrade_v1_header(header, exported)
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
            f"class_vocabularies={self.class_vocabularies})"
        )
