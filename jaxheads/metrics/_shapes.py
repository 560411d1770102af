"""Shape and dtype helpers shared by the metric states (TF/Keras broadcasting rules)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxheads._shapes import flat_views

__all__ = [
    "as_f32",
    "broadcast_weights",
    "flat_batch",
    "flatten",
    "match_label_rank",
    "present",
    "times_or_zero",
]


def as_f32(x: ArrayLike) -> jax.Array:
    """Casts any numeric / bool array (bf16, f16, int, bool …) to float32."""
    return jnp.asarray(x).astype(jnp.float32)


def match_label_rank(labels: jax.Array, predictions: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Keras' ``squeeze_or_expand_to_same_rank`` for labels vs predictions.

    When the ranks differ by one and the longer array's last dimension is 1
    (``[B]`` vs ``[B, 1]``), the shorter one gets a trailing axis. The shapes
    must then be equal.

    Raises:
      ValueError: naming both shapes, when they cannot be matched.
    """
    lr, pr = labels.ndim, predictions.ndim
    if lr == pr + 1 and labels.shape[-1] == 1:
        predictions = jnp.expand_dims(predictions, -1)
    elif pr == lr + 1 and predictions.shape[-1] == 1:
        labels = jnp.expand_dims(labels, -1)
    if labels.shape != predictions.shape:
        raise ValueError(
            "labels and predictions must have the same shape (up to a trailing "
            f"dimension of 1); got labels shape {tuple(labels.shape)} and predictions "
            f"shape {tuple(predictions.shape)}."
        )
    return labels, predictions


def broadcast_weights(
    sample_weight: ArrayLike | None, shape: tuple[int, ...], what: str = "values"
) -> jax.Array | None:
    """Broadcasts ``sample_weight`` to ``shape`` with TF/Keras' rules; float32.

    TF's ``squeeze_or_expand_dimensions`` + ``broadcast_weights``: a scalar
    broadcasts; weights of rank ``r - 1`` get a trailing axis (``[B]`` against
    ``[B, k]`` is one weight per example); weights of rank ``r + 1`` with a
    trailing 1 are squeezed; then every weight dimension must be 1 or equal to
    the target's (``[B, 1]`` against ``[B, k]``). No NumPy-style rank
    promotion: ``[k]`` against ``[B, k, m]`` is an error, as in TF.

    Args:
      sample_weight: ``None`` or a numeric array.
      shape: target shape (of the values / predictions).
      what: name of the target in error messages.

    Returns:
      ``None`` when ``sample_weight`` is ``None``, else a float32 array of ``shape``.

    Raises:
      ValueError: naming both shapes, when TF would reject the pair.
    """
    if sample_weight is None:
        return None
    w = as_f32(sample_weight)
    orig = tuple(w.shape)
    rank = len(shape)
    if w.ndim == 0:
        return jnp.broadcast_to(w, shape)
    if w.ndim == rank - 1:
        w = jnp.expand_dims(w, -1)
    elif w.ndim == rank + 1 and w.shape[-1] == 1:
        w = jnp.squeeze(w, -1)
    if w.ndim != rank or any(d not in (1, s) for d, s in zip(w.shape, shape, strict=True)):
        raise ValueError(
            f"sample_weight shape {orig} cannot be broadcast to {what} shape "
            f"{tuple(shape)} (TF/Keras rules: a scalar, the same shape, one rank less, "
            "or dimensions of 1)."
        )
    return jnp.broadcast_to(w, shape)


def flatten(*arrays: jax.Array | None) -> tuple[jax.Array | None, ...]:
    """1-D views behind one ``optimization_barrier``: :func:`jaxheads._shapes.flat_views`."""
    return flat_views(*arrays)


def flat_batch(
    labels: ArrayLike,
    values: ArrayLike,
    sample_weight: ArrayLike | None,
    what: str = "predictions",
    *extra: jax.Array | None,
) -> tuple[jax.Array, jax.Array, jax.Array | None, tuple[jax.Array | None, ...]]:
    """Every metric update's first step: one batch as flat float32 views.

    Labels and ``values`` are matched in rank (:func:`match_label_rank`), the
    weights broadcast to ``values`` (:func:`broadcast_weights`, TF's rules),
    and all of them — with ``extra`` arrays of ``values``' shape — flattened
    behind one barrier (:func:`flatten`).

    Args:
      labels: ``[D0, …, DN]`` or ``values``' shape.
      values: predictions, logits or probabilities, any shape.
      sample_weight: ``None``, a scalar, or broadcastable to ``values``.
      what: the name of ``values`` in error messages.
      *extra: arrays already of ``values``' shape (or ``None``).

    Returns:
      ``(labels, values, weights or None, extra)``, each 1-D float32.

    Raises:
      ValueError: naming both shapes, when labels or weights do not fit ``values``.

    Examples:
      >>> lab, val, w, _ = flat_batch(jnp.ones((2,)), jnp.zeros((2, 1)), 3.0)
      >>> lab.shape, val.shape, w.tolist()
      ((2,), (2,), [3.0, 3.0])
    """
    lab, val = match_label_rank(as_f32(labels), as_f32(values))
    w = broadcast_weights(sample_weight, tuple(val.shape), what)
    flat_lab, flat_val, flat_w, *flat_extra = flatten(lab, val, w, *extra)
    return present(flat_lab), present(flat_val), flat_w, tuple(flat_extra)


def present(x: jax.Array | None) -> jax.Array:
    """The array :func:`flatten` returned for a non-``None`` input (narrows the type)."""
    assert x is not None
    return x


def times_or_zero(weights: jax.Array, values: jax.Array) -> jax.Array:
    """``weights * values`` with ``0 · ±inf = 0``: a zero weight removes an example.

    TF computes ``0 · inf = NaN`` here; an example with weight 0 is not part of
    the evaluation, so its (possibly infinite) loss or prediction must not turn
    the metric into NaN. No ``0 · inf`` is ever evaluated (``jax_debug_nans``).
    """
    zero = weights == 0
    return jnp.where(zero, 0.0, weights) * jnp.where(zero, 0.0, values)
