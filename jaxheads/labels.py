"""Labels: the one module that checks, encodes and reshapes them.

* :class:`SparseLabels` — padded class-id lists, the JAX stand-in for TF's
  ``SparseTensor`` labels, and their conversion to multi-hot.
* Host-side encoding of class names through a
  :class:`~jaxheads.LabelVocabulary` (strings never enter ``jit``).
* Dense label checks: presence, dtype, ``[D0, …, DN]`` vs
  ``[D0, …, DN, k]`` against the logits, and value ranges (raised whenever the
  values are concrete; staged as ``checkify`` checks under
  :func:`jaxheads.traced_value_checks`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxheads import _checks, _validate
from jaxheads._shapes import shape_str
from jaxheads.vocabulary import LabelVocabulary, is_string_array

__all__ = [
    "PAD_ID",
    "PAD_NAME",
    "SparseLabels",
    "check_numeric",
    "check_range",
    "check_sparse_ids",
    "dense_labels",
    "encode_strings",
    "encoded",
    "host_array",
    "ids_to_multi_hot",
    "names_to_ids",
    "pad_label_sets",
    "preview",
    "require",
]

# Padding of SparseLabels: -1 for ids, "" for class names (host only).
PAD_ID = -1
PAD_NAME = ""

_NO_LABELS = (
    "You must provide a labels Tensor. Given: None. Suggested troubleshooting steps: "
    "Check that your data contains your label feature. Check that your input_fn "
    "properly parses and returns labels."
)


@dataclasses.dataclass(frozen=True)
class SparseLabels:
    """Label sets as padded class-id lists: the JAX stand-in for TF's ``SparseTensor`` labels.

    ``ids`` has shape ``[D0, …, DN, max_labels]``: row ``[d0, …, dN, :]``
    lists the classes of one example, padded with ``-1`` (order and
    duplicates do not matter). It is a pytree, so it passes through ``jit``
    and ``vmap``; :class:`MultiLabelHead` turns it into a multi-hot
    ``[D0, …, DN, n_classes]`` array. On the host, ``ids`` may instead hold
    class names (a NumPy ``str`` array, ``""`` as padding) for a head with a
    ``label_vocabulary``.

    Build one from ragged lists with :meth:`from_lists`.

    Attributes:
      ids: int array ``[D0, …, DN, max_labels]``, values in ``[0, n_classes)``
        or ``-1`` (padding); or, host only, class names.

    Examples:
      >>> SparseLabels.from_lists([[0], [0, 1], []]).ids.tolist()
      [[0, -1], [0, 1], [-1, -1]]
    """

    ids: Any

    @classmethod
    def from_lists(cls, lists: Any, max_labels: int | None = None) -> SparseLabels:
        """Host side: (nested) ragged lists of class ids or names → padded :class:`SparseLabels`.

        The innermost lists are the label sets (possibly empty); the nesting
        above them is the batch shape ``[D0, …, DN]``. Ids are padded with
        ``-1`` (int32), names with ``""``.

        Args:
          lists: e.g. ``[[0, 2], [1], []]`` or ``[["cat"], ["cat", "dog"]]``.
          max_labels: pad to this many labels (default: the longest set).

        Raises:
          ValueError: on ragged batch dimensions, or a set longer than ``max_labels``.
        """
        return cls(pad_label_sets(lists, max_labels))


jax.tree_util.register_dataclass(SparseLabels, data_fields=["ids"], meta_fields=[])


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, bytes, int, np.integer, np.str_, np.bytes_)) or (
        isinstance(value, np.ndarray) and value.ndim == 0
    )


def _label_sets(x: Any) -> tuple[tuple[int, ...], list[list[Any]]]:
    """(batch shape, flat list of label sets) of nested ragged lists."""
    if isinstance(x, (np.ndarray, jax.Array)):
        x = np.asarray(x).tolist()
    if not isinstance(x, (list, tuple)):
        raise ValueError(
            f"label sets must be (nested) lists of class ids or names, got {type(x).__name__}."
        )
    if all(_is_scalar(v) for v in x):
        return (), [list(x)]
    shape: tuple[int, ...] | None = None
    flat: list[list[Any]] = []
    for v in x:
        s, f = _label_sets(v)
        if shape is not None and s != shape:
            raise ValueError(
                "label sets are ragged above the innermost level: batch shapes "
                f"{shape_str(shape)} and {shape_str(s)}; only the innermost "
                "lists (the label sets) may differ in length."
            )
        shape = s
        flat.extend(f)
    return (len(x),) + (shape or ()), flat


def pad_label_sets(lists: Any, max_labels: int | None = None) -> np.ndarray:
    batch_shape, sets = _label_sets(lists)
    longest = max((len(s) for s in sets), default=0)
    width = longest if max_labels is None else max_labels
    if longest > width:
        raise ValueError(f"a label set has {longest} labels, more than max_labels={max_labels}.")
    is_str = any(isinstance(v, (str, bytes, np.str_, np.bytes_)) for s in sets for v in s)
    if is_str:
        out = np.full((len(sets), width), PAD_NAME, dtype=object)
        for i, s in enumerate(sets):
            out[i, : len(s)] = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in s]
        out = out.astype(str)
    else:
        out = np.full((len(sets), width), PAD_ID, dtype=np.int32)
        for i, s in enumerate(sets):
            out[i, : len(s)] = s
    return out.reshape(batch_shape + (width,))


def ids_to_multi_hot(ids: Any, n_classes: int) -> Any:
    """Padded ids ``[…, m]`` → float32 multi-hot ``[…, n_classes]`` (jittable; NumPy in, NumPy out)."""
    xp: Any = np if isinstance(ids, np.ndarray) else jnp
    ids = xp.asarray(ids)
    classes = xp.arange(n_classes, dtype=ids.dtype).reshape((1,) * ids.ndim + (n_classes,))
    hits = xp.expand_dims(ids, -1) == classes  # [..., m, n]
    return xp.any(hits, axis=-2).astype(np.float32)


def _canonical(values: np.ndarray) -> np.ndarray:
    """``values`` in JAX's default dtypes (float64 → float32, int64 → int32), as
    ``jnp.asarray`` gives them — except integers that do not fit, which stay
    wide so the range checks see them rather than a wrapped-around value."""
    dtype = jax.dtypes.canonicalize_dtype(values.dtype)
    if dtype == values.dtype:
        return values
    if values.dtype.kind in "iu" and values.size:
        info = np.iinfo(dtype)
        if values.min() < info.min or values.max() > info.max:
            return values
    return values.astype(dtype)


def host_array(value: Any) -> Any:
    """Host side: ``value`` as an array to check and encode, with no device round trip.

    * NumPy arrays, lists and scalars of numbers or bools: a NumPy array in
      JAX's default dtypes (see ``_canonical``); no device work at all.
    * A ``jax.Array`` on the CPU: a zero-copy NumPy view of it.
    * A ``jax.Array`` on an accelerator: itself; the range checks then reduce
      it on the device (:func:`_checks.device_bounds`: one fused min/max, two
      scalars copied back) and only a failing check copies the values, to
      name them.
    * Tracers pass through; anything else goes through ``jnp.asarray`` (its
      errors included), as before.

    Examples:
      >>> host_array([[1], [0]]).dtype, type(host_array(np.zeros(2))).__name__
      (dtype('int32'), 'ndarray')
    """
    if isinstance(value, jax.core.Tracer):
        return value
    if isinstance(value, jax.Array):
        return value if _checks.on_accelerator(value) else np.asarray(value)
    try:
        values = np.asarray(value)
    except (ValueError, TypeError):
        return jnp.asarray(value)
    if values.dtype.kind not in "biuf":
        return jnp.asarray(value)
    return _canonical(values)


def encoded(given: Any, labels: Any, dtype: Any) -> Any:
    """The checked ``labels`` as ``dtype``, ready for ``jit``, moved as little as possible.

    When ``given`` was a ``jax.Array`` and encoding changed neither its dtype
    nor its shape, ``given`` itself comes back (no host→device copy at the
    step); labels still on an accelerator stay there; else a NumPy array.
    """
    if (
        isinstance(given, jax.Array)
        and not isinstance(given, jax.core.Tracer)
        and given.dtype == dtype
        and given.shape == np.shape(labels)
    ):
        return given
    if isinstance(labels, jax.Array) and _checks.on_accelerator(labels):
        return labels.astype(dtype)
    return np.asarray(labels, dtype)


def preview(bad: Any) -> str:
    """The first few offending values, for error messages."""
    flat = np.asarray(bad).reshape(-1)
    shown = ", ".join(str(v) for v in flat[:5])
    return f"[{shown}{', ...' if flat.size > 5 else ''}]"


def require(labels: Any) -> Any:
    """``labels``, or TF's "You must provide a labels Tensor" ``ValueError`` when ``None``."""
    if labels is None:
        raise ValueError(_NO_LABELS)
    return labels


def encode_strings(
    labels: Any, vocabulary: LabelVocabulary | None, no_vocabulary: Exception
) -> Any:
    """Host side: string labels → int32 ids through ``vocabulary``; other labels pass through.

    Raises:
      no_vocabulary: when the labels are strings and there is no vocabulary.
      ValueError: naming a string that is not in the vocabulary.
    """
    if not is_string_array(labels):
        return labels
    if vocabulary is None:
        raise no_vocabulary
    return vocabulary.encode(labels)


def names_to_ids(names: Any, vocabulary: LabelVocabulary | None) -> np.ndarray:
    """Host side: padded class names (``""`` pads) → padded int32 ids (``-1`` pads)."""
    if vocabulary is None:
        raise ValueError(
            "Labels dtype should be integer. Instead got string labels: class names need "
            "a label_vocabulary (or pass multi-hot arrays / SparseLabels of ids)."
        )
    names = np.asarray(names, dtype=object)
    pad = names == PAD_NAME
    ids = vocabulary.encode(np.where(pad, vocabulary.classes[0], names))
    return np.where(pad, PAD_ID, ids).astype(np.int32)


def check_numeric(labels: jax.Array, what: str = "labels") -> None:
    """``TypeError`` unless ``labels`` are bool, int or float."""
    dtype = labels.dtype
    if not (
        jnp.issubdtype(dtype, jnp.floating)
        or jnp.issubdtype(dtype, jnp.integer)
        or dtype == jnp.bool_
    ):
        raise TypeError(f"{what} must be numeric (bool, int or float), got dtype {dtype}.")


def check_range(labels: jax.Array, n_classes: int, message: str | None = None) -> None:
    """TF's ``check_label_range``: ``0 <= labels <= n_classes - 1`` (values checked when known)."""
    upper = n_classes - 1
    bounds = _checks.device_bounds(labels)
    if bounds is not None and bounds[0] >= 0 and bounds[1] <= upper:
        return  # checked on the device; a failure falls through to name the values
    _checks.check_values(
        labels,
        lambda x: x <= upper,
        lambda bad: (
            (message or f"Labels must be <= {n_classes} - 1")
            + f": got {preview(bad)}, expected values in [0, {upper}]."
        ),
    )
    _checks.check_values(
        labels,
        lambda x: x >= 0,
        lambda bad: (
            (message or "Labels must be >= 0")
            + f": got {preview(bad)}, expected values in [0, {upper}]."
        ),
    )


def check_sparse_ids(ids: jax.Array, n_classes: int) -> None:
    """SparseLabels ids must be integers in ``[0, n_classes)`` or ``-1`` (padding)."""
    if not jnp.issubdtype(ids.dtype, jnp.integer):
        raise ValueError(
            f"Labels dtype should be integer. Instead got {ids.dtype}. (SparseLabels hold "
            "class ids padded with -1.)"
        )
    n = n_classes
    bounds = _checks.device_bounds(ids)
    if bounds is not None and bounds[0] >= PAD_ID and bounds[1] < n:
        return  # integers in [-1, n): checked on the device
    _checks.check_values(
        ids,
        lambda x: ((x >= 0) & (x < n)) | (x == PAD_ID),
        lambda bad: (
            f"labels must be an integer SparseTensor with values in [0, {n}): got "
            f"{preview(bad)} (SparseLabels ids must be in [0, {n}), or -1 for padding)."
        ),
    )


def dense_labels(labels: Any, logits_shape: tuple[int, ...], expected_dim: int) -> jax.Array:
    """Checks dense labels against the logits, returning them shaped ``[D0, …, DN, expected_dim]``.

    ``[D0, …, DN]`` labels are accepted and expanded when ``expected_dim == 1``
    (and for any ``expected_dim`` the expansion happens first, so a wrong last
    dimension is reported as such, as TF does).
    """
    dense: jax.Array = _validate.as_numeric_array(require(labels), "labels")
    if dense.ndim == len(logits_shape) - 1:
        dense = dense[..., None]
    if dense.ndim < 2:
        raise ValueError(
            f"labels must have rank at least 2.  Received rank {dense.ndim}, shape "
            f"{shape_str(dense.shape)}."
        )
    if dense.shape[-1] != expected_dim:
        raise ValueError(
            f"Mismatched label shape. Expected labels dimension={expected_dim}.  Received "
            f"{dense.shape[-1]} (labels shape {shape_str(dense.shape)}). Suggested Fix: If "
            "your classifier expects one-hot encoding label, check your n_classes argument to "
            "the estimator and/or the shape of your label. Otherwise, check the shape of your "
            "label."
        )
    expected = tuple(logits_shape[:-1]) + (expected_dim,)
    if dense.shape != expected:
        raise ValueError(
            f"labels shape must be [D0, D1, ... DN, {expected_dim}]. Suggested Fix: check your "
            "n_classes argument to the head and/or the shape of your label., "
            f"expected_labels_shape: {shape_str(expected)}. labels_shape: "
            f"{shape_str(dense.shape)}."
        )
    return dense
