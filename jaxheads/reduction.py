"""Loss reductions (TF's ``tf.losses.Reduction``) and the weighted reduce.

The reduce works on one device or inside ``shard_map`` / ``pmap`` with an
``axis_name``: the numerator and the denominator are summed over the named
axis *before* dividing, so the loss is normalised over the global batch and
never computed as a biased mean of per-shard means.
"""

from __future__ import annotations

import enum
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxheads.losses import times_or_zero

__all__ = [
    "Reduction",
    "align_weights",
    "divide_loss_terms",
    "reduce_weighted_loss",
    "safe_divide",
    "weighted_loss_terms",
]


class Reduction(str, enum.Enum):
    """How the weighted per-element loss becomes the scalar training loss.

    Let ``L`` be the per-element loss and ``W`` the weights broadcast to it.

    * ``SUM``: ``Σ W·L``.
    * ``SUM_OVER_BATCH_SIZE`` (default; also ``AUTO``): ``Σ W·L / size(L)``.
    * ``MEAN``: ``Σ W·L / Σ W`` (TF1 ``weighted_mean``).
    * ``SUM_BY_NONZERO_WEIGHTS``: ``Σ W·L / count(W ≠ 0)``.

    ``NONE`` exists so that ported code type-checks, but a head rejects it, as
    TF does: a head must return a scalar loss. Every reduction divides with
    "divide-no-NaN" semantics (an empty or all-zero-weight batch gives 0).

    Besides the members, :meth:`validate` accepts their lower-case values,
    TF2's ``"auto"`` and TF1's ``"weighted_*"`` strings.

    Examples:
        >>> Reduction.validate("sum_over_batch_size")
        <Reduction.SUM_OVER_BATCH_SIZE: 'sum_over_batch_size'>
        >>> Reduction.validate("weighted_sum")
        <Reduction.SUM: 'sum'>
    """

    SUM = "sum"
    SUM_OVER_BATCH_SIZE = "sum_over_batch_size"
    MEAN = "mean"
    SUM_BY_NONZERO_WEIGHTS = "sum_by_nonzero_weights"
    AUTO = "auto"
    NONE = "none"

    @classmethod
    def validate(cls, loss_reduction: Any) -> Reduction:
        """Returns the canonical member for ``loss_reduction`` or raises ``ValueError``."""
        if isinstance(loss_reduction, enum.Enum):
            loss_reduction = loss_reduction.value
        key = loss_reduction.lower() if isinstance(loss_reduction, str) else None
        member = _ALIASES.get(key) if key is not None else None
        if member is None:
            valid = sorted(_ALIASES)
            raise ValueError(
                f"Invalid loss_reduction: {loss_reduction}. See `jaxheads.Reduction` for valid "
                f"options: expected one of {valid} (NONE is not allowed: a head returns a "
                "scalar loss)."
            )
        return member

    def __str__(self) -> str:  # Keep f-strings and error messages readable.
        return self.value


_ALIASES: dict[str, Reduction] = {
    "sum": Reduction.SUM,
    "sum_over_batch_size": Reduction.SUM_OVER_BATCH_SIZE,
    "mean": Reduction.MEAN,
    "sum_by_nonzero_weights": Reduction.SUM_BY_NONZERO_WEIGHTS,
    "auto": Reduction.SUM_OVER_BATCH_SIZE,
    # TF1 (`tf.compat.v1.losses.Reduction`) spellings, for ported code.
    "weighted_sum": Reduction.SUM,
    "weighted_sum_over_batch_size": Reduction.SUM_OVER_BATCH_SIZE,
    "weighted_mean": Reduction.MEAN,
    "weighted_sum_by_nonzero_weights": Reduction.SUM_BY_NONZERO_WEIGHTS,
    "weighted_sum_over_nonzero_weights": Reduction.SUM_BY_NONZERO_WEIGHTS,
}


def safe_divide(numerator: ArrayLike, denominator: ArrayLike) -> jax.Array:
    """``numerator / denominator``, or 0 where the denominator is 0 (gradient-safe)."""
    numerator = jnp.asarray(numerator)
    denominator = jnp.asarray(denominator)
    is_zero = denominator == 0
    return jnp.where(
        is_zero, jnp.zeros_like(numerator), numerator / jnp.where(is_zero, 1, denominator)
    )


def _shape_str(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def align_weights(
    weights: ArrayLike, loss_shape: tuple[int, ...], name: str = "weights"
) -> jax.Array:
    """``weights`` as float32 of ``loss_shape``, aligned on the *leading* dimensions (TF's rule).

    Accepted shapes for a loss ``[D0, …, DN, k]``: a scalar; ``[D0, …, DN]``
    (one weight per example, applied to all ``k`` columns, as TF expands it to
    ``[D0, …, DN, 1]``); or the loss's rank with every dimension equal to the
    loss's or 1. NumPy's trailing-dimension broadcasting is never used: it
    would apply ``[B]`` weights per *column* of a ``[B, B]`` loss.

    Raises:
      ValueError: naming ``name``, the two shapes and the accepted ones, for any
        other shape; or when concrete weights hold NaN.

    Examples:
      >>> align_weights(jnp.array([1.0, 0.0]), (2, 2))
      Array([[1., 1.],
             [0., 0.]], dtype=float32)
    """
    weights = jnp.asarray(weights, jnp.float32)
    loss_shape = tuple(loss_shape)
    shape = weights.shape
    if weights.ndim == len(loss_shape) - 1 and loss_shape:
        shape = (*shape, 1)
    aligned = weights.ndim == 0 or (
        len(shape) == len(loss_shape)
        and all(w in (1, d) for w, d in zip(shape, loss_shape, strict=True))
    )
    if not aligned:
        lead = _shape_str(loss_shape[:-1])
        raise ValueError(
            f"{name} of shape {_shape_str(weights.shape)} do not align with the loss of shape "
            f"{_shape_str(loss_shape)}: expected a scalar, {lead} (one weight per example), "
            f"{_shape_str((*loss_shape[:-1], 1))} or {_shape_str(loss_shape)}; dimensions of "
            f"size 1 broadcast and {name} align with the loss's leading dimensions."
        )
    if not isinstance(weights, jax.core.Tracer) and np.isnan(np.asarray(weights)).any():
        raise ValueError(f"{name} must not be NaN; got {np.asarray(weights)}.")
    return jnp.broadcast_to(weights.reshape(shape), loss_shape)


def weighted_loss_terms(
    loss: ArrayLike,
    weights: ArrayLike,
    reduction: Reduction | str,
    num_elements: ArrayLike | None = None,
) -> tuple[jax.Array, jax.Array | None]:
    """The reduction as additive float32 terms ``(Σ W·L, denominator)``.

    The loss is ``total / denominator`` (``total`` alone for ``SUM``, whose
    denominator is ``None``). Both terms add up over shards and micro-batches:
    sum them, then divide once, and the result is the loss of the whole batch.

    Args:
      loss: per-element loss ``[D0, …, DN, k]``, any float dtype.
      weights: a scalar, ``[D0, …, DN]``, ``[D0, …, DN, 1]`` or the loss's
        shape (see :func:`align_weights`; a zero weight cancels an ``inf`` loss).
      reduction: a :class:`Reduction` (or one of its accepted strings).
      num_elements: the ``SUM_OVER_BATCH_SIZE`` denominator when it is not
        ``size(loss)`` (e.g. only the valid steps of padded sequences).

    Examples:
      >>> total, denominator = weighted_loss_terms(jnp.array([[2.0], [4.0]]), jnp.ones((2, 1)), "mean")
      >>> float(total), float(denominator)
      (6.0, 2.0)
    """
    reduction = Reduction.validate(reduction)
    loss = jnp.asarray(loss, jnp.float32)
    size = loss.size
    # Flat views: XLA:CPU reduces [N, 1] arrays far slower than [N] ones.
    weights = align_weights(weights, loss.shape).reshape(-1)
    loss = loss.reshape(-1)
    # A zero weight drops its example even where the loss is inf (TF: 0 * inf = NaN).
    total = jnp.sum(times_or_zero(weights, loss))
    if reduction is Reduction.SUM:
        return total, None
    if reduction is Reduction.SUM_OVER_BATCH_SIZE:
        count = size if num_elements is None else num_elements
        return total, jnp.asarray(count, jnp.float32)
    if reduction is Reduction.MEAN:
        return total, jnp.sum(weights)
    # Counted in int32: a float32 count stops at 2^24.
    return total, jnp.count_nonzero(weights).astype(jnp.float32)


def divide_loss_terms(
    total: jax.Array, denominator: jax.Array | None, axis_name: Any = None
) -> jax.Array:
    """``total / denominator`` (0 where it is 0), after summing both over ``axis_name`` if given."""
    if axis_name is not None:
        total = jax.lax.psum(total, axis_name)
        if denominator is not None:
            denominator = jax.lax.psum(denominator, axis_name)
    return total if denominator is None else safe_divide(total, denominator)


def reduce_weighted_loss(
    loss: ArrayLike,
    weights: ArrayLike,
    reduction: Reduction | str,
    axis_name: Any = None,
) -> jax.Array:
    """Reduces a per-element loss to a float32 scalar.

    Args:
      loss: per-element loss, shape ``[D0, …, DN, k]``, any float dtype.
      weights: a scalar, ``[D0, …, DN]`` (one weight per example),
        ``[D0, …, DN, 1]`` or the loss's shape; aligned on the leading
        dimensions as in TF (see :func:`align_weights`). Any other shape is a
        ``ValueError`` naming ``weights``.
      reduction: a :class:`Reduction` (or one of its accepted strings).
      axis_name: inside ``shard_map`` / ``pmap``, the mapped axis (or tuple of
        axes) the batch is split over; sums are then global.

    Returns:
      A float32 scalar.

    Examples:
      >>> loss = jnp.array([[0.0], [41.0], [44.0]])
      >>> w = jnp.array([[1.0], [0.0], [1.5]])
      >>> float(reduce_weighted_loss(loss, w, "sum_by_nonzero_weights"))
      33.0
    """
    total, denominator = weighted_loss_terms(loss, weights, reduction)
    return divide_loss_terms(total, denominator, axis_name)
