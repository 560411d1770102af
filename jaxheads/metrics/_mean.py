"""Weighted means: :class:`Mean` (of values) and :class:`Accuracy` (of label == prediction)."""

from __future__ import annotations

from typing import TypeVar

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxheads.metrics._base import MetricState
from jaxheads.metrics._batch_sum import exact_total
from jaxheads.metrics._exact_sum import ExactSum
from jaxheads.metrics._shapes import (
    as_f32,
    broadcast_weights,
    flat_batch,
    flatten,
    present,
    times_or_zero,
)
from jaxheads.reduction import safe_divide

__all__ = ["Accuracy", "Mean"]

_M = TypeVar("_M", bound="_WeightedMean")


def _arr(x: ArrayLike | None) -> jax.Array | None:
    """Python scalars / lists / NumPy -> arrays (so they can cross a ``jit`` boundary)."""
    return None if x is None else jnp.asarray(x)


def _weighted_sums(values: jax.Array, weights: jax.Array | None) -> tuple[ExactSum, ExactSum]:
    """Batch ``(Σ v·w, Σ w)`` of flat float32 arrays, compensated (see ``_batch_sum``).

    Without weights the count is the static element count, split exactly.
    """
    if weights is None:
        return exact_total(values), ExactSum.from_value(int(values.size))
    return exact_total(times_or_zero(weights, values)), exact_total(weights)


class _WeightedMean(MetricState):
    """Shared fields and result of the weighted means."""

    total: ExactSum
    count: ExactSum

    @classmethod
    def empty(cls: type[_M]) -> _M:
        """A fresh (zero) state."""
        return cls(total=ExactSum.zeros(()), count=ExactSum.zeros(()))

    def _fold(self: _M, total: ExactSum, count: ExactSum) -> _M:
        return self.replace(total=self.total.merge(total), count=self.count.merge(count))

    def compute(self) -> jax.Array:
        """``total / count`` as a float32 scalar (0 when nothing was counted)."""
        return _mean_compute(self)


@jax.jit
def _mean_compute(state: _WeightedMean) -> jax.Array:
    return safe_divide(state.total.value(), state.count.value())


@jax.jit
def _mean_update(state: _M, values: jax.Array, sample_weight: jax.Array | None) -> _M:
    v = as_f32(values)
    flat_v, w = flatten(v, broadcast_weights(sample_weight, tuple(v.shape), "values"))
    v = present(flat_v)
    return state._fold(*_weighted_sums(v, w))


@jax.jit
def _accuracy_update(
    state: _M, labels: jax.Array, predictions: jax.Array, sample_weight: jax.Array | None
) -> _M:
    lab, pred, w, _ = flat_batch(labels, predictions, sample_weight)
    matches = (lab == pred).astype(jnp.float32)
    return state._fold(*_weighted_sums(matches, w))


class Mean(_WeightedMean):
    """Streaming weighted mean: ``Σ values·W / Σ W`` over everything folded in.

    TF's ``tf_keras.metrics.Mean`` / ``tf.compat.v1.metrics.mean``: the weights
    ``W`` are broadcast to ``values`` (so with values ``[B, k]`` and weights
    ``[B, 1]``, ``Σ W`` counts each of the k elements). Both sums are
    :class:`ExactSum` accumulators (exact counts past 2^24).

    Attributes:
      total: ``Σ values·W`` (scalar :class:`ExactSum`).
      count: ``Σ W`` (scalar :class:`ExactSum`).

    Examples:
      >>> m = Mean.empty().update(jnp.array([1.0, 3.0, 5.0, 7.0]))
      >>> float(m.compute())
      4.0
      >>> m = Mean.empty().update(jnp.array([1.0, 3.0, 5.0, 7.0]), jnp.array([1, 1, 0, 0]))
      >>> float(m.compute())
      2.0
    """

    def update(self, values: ArrayLike, sample_weight: ArrayLike | None = None) -> Mean:
        """Folds in a batch of values (pure: returns a new state).

        Args:
          values: numeric array of any shape (any float dtype, int or bool;
            computed in float32).
          sample_weight: ``None`` (weight 1), a scalar, or an array broadcastable
            to ``values`` by TF's rules: same shape, one rank less (``[B]`` vs
            ``[B, k]``: per example), or dimensions of 1 (``[B, 1]``).

        Returns:
          The updated :class:`Mean`.

        Raises:
          ValueError: when ``sample_weight`` does not broadcast (names both shapes).
        """
        return _mean_update(self, jnp.asarray(values), _arr(sample_weight))


class Accuracy(_WeightedMean):
    """Streaming weighted accuracy: the weighted mean of ``labels == predictions``.

    TF's ``tf_keras.metrics.Accuracy``: both are cast to float32 and compared
    exactly, so soft labels such as 0.8 never match a class id.

    Attributes:
      total: ``Σ W·[label == prediction]``.
      count: ``Σ W``.

    Examples:
      >>> acc = Accuracy.empty().update(
      ...     jnp.array([[1], [1], [0]]), jnp.array([[1], [0], [0]]), jnp.array([1.0, 0.1, 1.5]))
      >>> round(float(acc.compute()), 6)  # 2.5 / 2.6
      0.961538
    """

    def update(
        self,
        labels: ArrayLike,
        predictions: ArrayLike,
        sample_weight: ArrayLike | None = None,
    ) -> Accuracy:
        """Folds in a batch (pure).

        Args:
          labels: array ``[D0, …, DN]`` or ``[D0, …, DN, 1]`` (any numeric dtype).
          predictions: array of the same shape (up to a trailing dimension of 1).
          sample_weight: ``None``, a scalar, or broadcastable to the matched shape
            (TF's rules, see :meth:`Mean.update`).

        Returns:
          The updated :class:`Accuracy`.

        Raises:
          ValueError: on incompatible shapes (naming them).
        """
        return _accuracy_update(
            self, jnp.asarray(labels), jnp.asarray(predictions), _arr(sample_weight)
        )
