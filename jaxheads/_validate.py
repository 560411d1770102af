"""Validators of head constructor arguments: one rule per argument, whatever the container.

Python, NumPy and JAX values follow the same rules: a scalar may be a Python
number, a NumPy scalar or a 0-d NumPy/JAX array; a sequence may be a list, a
tuple or a 1-d NumPy/JAX array. ``bool`` is never a number here. Each error
names the argument, shows what it got and says what was expected; where
TensorFlow's heads have a message for the same mistake, ours contains it.

Every validator returns the normalised value (Python ints, floats, strings
and tuples), so heads store hashable, comparable configuration.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from jaxheads.reduction import Reduction

__all__ = [
    "as_numeric_array",
    "class_ids_for_metrics",
    "head_weights",
    "label_vocabulary",
    "loss_reduction",
    "name",
    "positive_int",
    "thresholds",
    "weight_column",
]


def _plain(value: Any) -> Any:
    """A NumPy scalar as the Python value it holds (``3``, not ``np.int64(3)``)."""
    return value.item() if isinstance(value, np.generic) else value


def _describe(value: Any) -> str:
    """``value`` and its type, for an error message."""
    shown = repr(_plain(value))
    if len(shown) > 120:
        shown = shown[:117] + "..."
    return f"{shown} (type {type(value).__name__})"


def scalar(value: Any) -> Any:
    """A 0-d NumPy/JAX array as its NumPy scalar; anything else unchanged."""
    if isinstance(value, (np.ndarray, jax.Array)) and np.ndim(value) == 0:
        return np.asarray(value)[()]
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, (numbers.Integral, np.integer)) and not isinstance(
        value, (bool, np.bool_)
    )


def _is_real(value: Any) -> bool:
    return isinstance(value, (numbers.Real, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def _is_finite_real(value: Any) -> bool:
    return _is_real(value) and math.isfinite(float(value))


def _sequence(value: Any, name: str, expected: str) -> list[Any]:
    """The elements of a list, tuple or 1-d array, as scalars; ``ValueError`` otherwise."""
    if isinstance(value, (np.ndarray, jax.Array)):
        if np.ndim(value) != 1:
            raise ValueError(
                f"{name} must be a 1-d sequence of {expected}; got an array of shape "
                f"{tuple(np.shape(value))}: {_describe(value)}."
            )
        return [scalar(v) for v in np.asarray(value)]
    if isinstance(value, (list, tuple)):
        return [scalar(v) for v in value]
    raise ValueError(
        f"{name} must be a list, tuple or 1-d array of {expected}; got {_describe(value)}."
    )


def flag(value: Any, name: str) -> bool:
    """A Python or NumPy bool, as ``bool``.

    Raises:
      ValueError: naming ``name``, for anything else (``1``, ``"yes"``, ``None`` …).

    Examples:
      >>> flag(np.True_, "extended_metrics")
      True
    """
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be a bool; got {value!r}.")
    return bool(value)


def positive_int(value: Any, name: str, minimum: int = 1, tf_message: str = "") -> int:
    """``value`` as a Python int ``>= minimum``; Python/NumPy/0-d JAX integers, never bool.

    Args:
      value: the argument.
      name: its name, for the message (``"n_classes"``, ``"label_dimension"`` …).
      minimum: the smallest accepted value.
      tf_message: TF's message for the same mistake, put first (tests match it).

    Raises:
      ValueError: naming ``name``, with the value and its type.

    Examples:
      >>> positive_int(np.int64(3), "label_dimension")
      3
    """
    item = scalar(value)
    if not _is_int(item) or item < minimum:
        prefix = f"{tf_message}. " if tf_message else ""
        raise ValueError(
            f"{prefix}{name} must be an int >= {minimum} (Python or NumPy integer, not bool); "
            f"got {_describe(value)}."
        )
    return int(item)


def thresholds(value: Any, name: str = "thresholds") -> tuple[float, ...]:
    """Classification thresholds: a sequence of numbers, each strictly inside (0, 1).

    ``None`` or an empty sequence means no thresholds. NaN fails here, at
    construction, not later in ``init_metrics``.

    Raises:
      ValueError: naming ``name``; the message contains TF's ``"thresholds not
        in (0, 1)"`` and ``"thresholds must be in (0, 1) range. Given: t"``.

    Examples:
      >>> thresholds(np.array([0.25, 0.5]))
      (0.25, 0.5)
    """
    if value is None:
        return ()
    items = _sequence(value, name, "numbers in (0, 1)")
    for item in items:
        if not _is_real(item):
            raise ValueError(
                f"{name} must hold numbers in (0, 1); got the element {_describe(item)} in "
                f"{_describe(value)}."
            )
    result = tuple(float(t) for t in items)
    for t in result:
        if 0.0 < t < 1.0 and not 0.0 < np.float32(t) < 1.0:
            raise ValueError(
                f"{name} must be in (0, 1) range after rounding to float32 (the metrics compare "
                f"float32 probabilities): {t!r} rounds to {float(np.float32(t))}."
            )
        if not 0.0 < t < 1.0:  # False for NaN too
            raise ValueError(
                f"{name} not in (0, 1): {(result,)}. {name} must be in (0, 1) range. Given: "
                f"{t} (expected every threshold t to satisfy 0 < t < 1)."
            )
    return result


def finite_thresholds(value: Any, name: str = "thresholds") -> tuple[float, ...]:
    """A metric state's thresholds: one finite number or a non-empty 1-d sequence of them.

    Unlike a head's :func:`thresholds`, any finite value is allowed (a metric
    compares whatever scores it is given).

    Raises:
      ValueError: naming ``name``, on an empty, non-numeric or non-finite value.

    Examples:
      >>> finite_thresholds(0.5), finite_thresholds(np.array([-1.0, 2.0]))
      ((0.5,), (-1.0, 2.0))
    """
    value = scalar(value)
    items = [value] if _is_real(value) else _sequence(value, name, "finite numbers")
    if not items:
        raise ValueError(f"{name} must not be empty; got {_describe(value)}.")
    bad = [item for item in items if not _is_finite_real(item)]
    if bad:
        raise ValueError(
            f"{name} must be finite numbers; got {', '.join(_describe(b) for b in bad)} in "
            f"{_describe(value)}."
        )
    return tuple(float(t) for t in items)


def class_ids_for_metrics(
    value: Any,
    n_classes: int,
    vocabulary: Sequence[str] | None = None,
    name: str = "classes_for_class_based_metrics",
) -> tuple[int, ...]:
    """Class ids (ints in ``[0, n_classes)``) or class names (strings in ``vocabulary``).

    Raises:
      ValueError: naming ``name``; TF's ``"must be in range [0, n-1]. Given: c"``
        for an id out of range and ``"'c' is not in list"`` for an unknown name.

    Examples:
      >>> class_ids_for_metrics(np.array([2, 0]), 3)
      (2, 0)
      >>> class_ids_for_metrics(["c"], 3, ("a", "b", "c"))
      (2,)
    """
    if value is None:
        return ()
    items = _sequence(value, name, "class ids or class names")
    result = []
    for item in items:
        if isinstance(item, (str, bytes, np.str_, np.bytes_)):
            text = item.decode("utf-8") if isinstance(item, (bytes, np.bytes_)) else str(item)
            if vocabulary is None:
                raise ValueError(
                    f"label_vocabulary must be provided when {name} are strings. Got "
                    f"{_describe(value)}."
                )
            if text not in vocabulary:
                raise ValueError(
                    f"{name}: {text!r} is not in list {list(vocabulary)} (the label_vocabulary)."
                )
            result.append(list(vocabulary).index(text))
        elif _is_int(item) and 0 <= item < n_classes:
            result.append(int(item))
        else:
            raise ValueError(
                f"All {name} must be in range [0, {n_classes - 1}]. Given: {_plain(item)!r} (expected "
                f"integer class ids or class names; got {_describe(value)})."
            )
    return tuple(result)


def head_weights(value: Any, n_heads: int, name: str = "head_weights") -> tuple[float, ...] | None:
    """One finite number per head, or ``None`` (every head weighs 1).

    Raises:
      ValueError: naming ``name``; TF's ``"heads and head_weights must have the
        same size"`` for a wrong length.

    Examples:
      >>> head_weights(np.array([1.0, 2.0]), 2)
      (1.0, 2.0)
    """
    if value is None:
        return None
    items = _sequence(value, name, "finite numbers, one per head")
    if len(items) != n_heads:
        raise ValueError(
            f"heads and {name} must have the same size. Given len(heads): {n_heads}. Given "
            f"len({name}): {len(items)}. (got {_describe(value)})"
        )
    for item in items:
        if not _is_finite_real(item):
            raise ValueError(
                f"{name} must hold finite numbers, one per head; got the element "
                f"{_describe(item)} in {_describe(value)}."
            )
    return tuple(float(w) for w in items)


def label_vocabulary(
    value: Any,
    n_classes: int | None = None,
    name: str = "label_vocabulary",
    tf_message: str = "label_vocabulary should be a list or a tuple",
) -> tuple[str, ...] | None:
    """Distinct class-name strings; exactly ``n_classes`` of them when it is given.

    A binary head passes ``n_classes=2``. Accepts a list, a tuple or a 1-d
    NumPy array of ``str``/``bytes``; bytes are decoded as UTF-8.

    Raises:
      ValueError: naming ``name``, for another container, a non-string entry, a
        duplicate or a wrong length.

    Examples:
      >>> label_vocabulary(np.array(["no", "yes"]), 2)
      ('no', 'yes')
    """
    if value is None:
        return None
    if not isinstance(value, (list, tuple, np.ndarray)):
        raise ValueError(
            f"{tf_message}. Given type: {type(value)}. ({name} must be a list, tuple or 1-d "
            f"array of distinct strings; got {_describe(value)}.)"
        )
    items = _sequence(value, name, "distinct strings")
    classes = []
    for item in items:
        if not isinstance(item, (str, bytes, np.str_, np.bytes_)):
            raise ValueError(
                f"{name} must hold strings (class names); got the element {_describe(item)} in "
                f"{_describe(value)}."
            )
        classes.append(item.decode("utf-8") if isinstance(item, (bytes, np.bytes_)) else str(item))
    if len(set(classes)) != len(classes):
        raise ValueError(f"{name} has duplicate entries: {classes}; expected distinct strings.")
    if n_classes is not None and len(classes) != n_classes:
        raise ValueError(
            f"{name} must have exactly n_classes={n_classes} distinct strings; got "
            f"{len(classes)}: {classes}."
        )
    return tuple(classes)


def name(value: Any, argument: str = "name") -> str | None:
    """A head name: ``None`` or a non-empty string (NumPy strings accepted).

    Raises:
      TypeError: for a non-string; ValueError: for an empty string.

    Examples:
      >>> name(np.str_("head1"))
      'head1'
    """
    if value is None:
        return None
    if not isinstance(value, (str, np.str_)):
        raise TypeError(f"{argument} must be a string or None; got {_describe(value)}.")
    if not value:
        raise ValueError(
            f"{argument} must be a non-empty string or None; got ''. (An empty name would "
            "make keys such as 'loss/'.)"
        )
    return str(value)


def loss_reduction(value: Any) -> Reduction:
    """The canonical :class:`~jaxheads.Reduction` (``NONE`` refused, as in TF)."""
    return Reduction.validate(scalar(value))


def weight_column(value: Any) -> Any:
    """``None``, a feature key (``str``) or a :class:`~jaxheads.NumericColumn`, checked at construction.

    Raises:
      TypeError: TF's ``"Weight column must be either a string or NumericColumn"``.
    """
    from jaxheads.feature_column import NumericColumn

    if value is None or isinstance(value, NumericColumn):
        return value
    if isinstance(value, (str, np.str_)):
        return str(value)
    raise TypeError(
        "Weight column must be either a string or NumericColumn. Given type: "
        f"{type(value)}. (weight_column is the features key of the per-example weights; got "
        f"{_describe(value)}.)"
    )


def as_numeric_array(value: Any, argument: str) -> jax.Array:
    """``value`` as a JAX array of numbers or bools; ``TypeError`` naming ``argument`` otherwise.

    ``jnp.asarray`` of strings or objects fails with a message about staging
    that names neither the argument nor the fix.

    Examples:
      >>> as_numeric_array(np.array([["a"]]), "labels")
      Traceback (most recent call last):
      ...
      TypeError: labels must be numbers (or bool); got an array of dtype <U1 and shape (1, 1). ...
    """
    if not isinstance(value, jax.Array):
        kind = np.asarray(value).dtype
        if not (jax.numpy.issubdtype(kind, jax.numpy.number) or kind == np.bool_):
            hint = (
                " String labels need a label_vocabulary on a classification head "
                "(encode_labels maps them to ids on the host)."
                if argument == "labels"
                else ""
            )
            raise TypeError(
                f"{argument} must be numbers (or bool); got an array of dtype {kind} and shape "
                f"{np.shape(value)}.{hint}"
            )
    return jax.numpy.asarray(value)
