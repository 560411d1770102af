"""Confusion counts at a few explicit thresholds, and Precision / Recall / BinaryAccuracy.

Each prediction is bucketed ONCE by the number ``k`` of (sorted) thresholds it
is positive at — a branch-free binary search, O(log T) per prediction — and
its weight is added to bucket ``k`` of its label class with a single
``segment_sum``. The per-threshold counts are (exact) reverse cumulative sums
of those buckets, taken at compute time. Update work is O(N log T + T); there
is never an ``[N, T]`` intermediate.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.typing import ArrayLike

from jaxheads import _validate
from jaxheads.metrics._base import MetricState
from jaxheads.metrics._batch_sum import exact_segment_sum
from jaxheads.metrics._exact_sum import ExactSum, reverse_cumsum
from jaxheads.metrics._shapes import flat_batch
from jaxheads.reduction import safe_divide

__all__ = ["BinaryAccuracy", "ConfusionAtThresholds", "Precision", "Recall"]

_C = TypeVar("_C", bound="ConfusionAtThresholds")

# Label classes of the bucket table: exactly 0 (negative), exactly 1
# (positive, matches a positive prediction), any other non-zero value
# (positive for precision/recall, but never equal to a 0/1 prediction, so
# never "accurate" — TF's Binary/Accuracy compare the float label exactly).
_NEG, _ONE, _SOFT = 0, 1, 2
_NUM_CLASSES = 3
# Up to this many thresholds, count with unrolled compares instead of a binary search.
_UNROLL_MAX = 8


def count_thresholds_below(
    predictions: jax.Array, sorted_thresholds: np.ndarray, inclusive: bool = False
) -> jax.Array:
    """Per prediction, how many sorted thresholds ``t`` satisfy ``t < p`` (``t <= p``).

    A branch-free binary search unrolled over ``ceil(log2(T + 1))`` steps, each
    one gather from the tiny threshold table and one compare — vectorised and
    fused by XLA, no ``[N, T]`` array. NaN predictions count 0.

    Args:
      predictions: float32 array, any shape.
      sorted_thresholds: static float32 NumPy vector, ascending.
      inclusive: count ``t <= p`` instead of ``t < p``.

    Returns:
      int32 array shaped like ``predictions``, values in ``[0, T]``.
    """
    table = np.asarray(sorted_thresholds, np.float32)
    n = table.shape[0]
    if n <= _UNROLL_MAX:
        # A few thresholds: one compare-and-add each, fused into one loop (no gathers;
        # 1.1-1.3x faster than the search for TF's usual one to eight thresholds).
        count = jnp.zeros(predictions.shape, jnp.int32)
        for t in table:
            hit = jnp.asarray((t <= predictions) if inclusive else (t < predictions))
            count = count + hit.astype(jnp.int32)
        return count
    step = 1 << (n.bit_length() - 1)  # largest power of two <= n
    padded = np.concatenate([table, np.full(2 * step - 1 - n, np.inf, np.float32)])

    def below(t: jax.Array | np.float32) -> jax.Array:
        return jnp.asarray((t <= predictions) if inclusive else (t < predictions))

    # First step at a static index (a scalar compare, nothing to gather).
    k = jnp.where(below(padded[step - 1]), jnp.int32(step), jnp.int32(0))
    lookup = jnp.asarray(padded)
    step //= 2
    while step >= 1:
        cand = k + step
        t = lookup.at[cand - 1].get(mode="promise_in_bounds")
        k = jnp.where(below(t), cand, k)
        step //= 2
    # +inf padding can only be counted by an inclusive +inf prediction.
    return jnp.minimum(k, jnp.int32(n)) if inclusive else k


class ConfusionAtThresholds(MetricState):
    """Weighted TP / FP / TN / FN at explicit thresholds (streaming, mergeable).

    A prediction is positive at threshold ``t`` when ``p > t`` (TF2 / Keras
    ``Precision``, ``Recall``, ``BinaryAccuracy``, and TF1
    ``precision_at_thresholds``), or ``p >= t`` with ``inclusive=True`` (TF1
    ``accuracy`` at a threshold). A label is positive when it is non-zero
    (cast to bool). Predictions are not clipped (as Keras for explicit
    thresholds). Every (example, class) element is one point; the weights are
    broadcast to the predictions (TF rules).

    Attributes:
      counts: :class:`ExactSum` ``[3, T + 1]``: weight of the elements per label
        class (exactly 0, exactly 1, other non-zero) and per number of sorted
        thresholds they are positive at.
      thresholds: static tuple of floats (any order; results follow it).
      inclusive: static; ``>=`` instead of ``>``.
      epsilon: static; added to the precision / recall denominators (TF1 uses
        1e-7); 0 means "0 when the denominator is 0" (TF2).

    Examples:
      >>> c = ConfusionAtThresholds.empty(thresholds=(0.25, 0.5, 0.75))
      >>> c = c.update(jnp.array([[1], [1]]), jnp.array([[0.2689], [0.7311]]))
      >>> c.precision().tolist(), c.recall().tolist(), c.accuracy().tolist()
      ([1.0, 1.0, 0.0], [1.0, 0.5, 0.0], [1.0, 0.5, 0.0])
      >>> {k: v.tolist() for k, v in c.confusion().items()}["tp"]
      [2.0, 1.0, 0.0]
    """

    counts: ExactSum
    thresholds: tuple[float, ...] = struct.field(pytree_node=False, default=(0.5,))
    inclusive: bool = struct.field(pytree_node=False, default=False)
    epsilon: float = struct.field(pytree_node=False, default=0.0)

    @classmethod
    def empty(
        cls: type[_C],
        thresholds: float | Sequence[float] = (0.5,),
        inclusive: bool = False,
        epsilon: float = 0.0,
    ) -> _C:
        """A fresh state.

        Args:
          thresholds: a float or a sequence of finite floats (any order, duplicates allowed).
          inclusive: count ``p >= t`` as positive (TF1 ``accuracy`` at thresholds).
          epsilon: default denominator epsilon of :meth:`precision` / :meth:`recall`
            (TF1: 1e-7).

        Raises:
          ValueError: on empty or non-finite thresholds, or a negative epsilon.
        """
        ts = _validate.finite_thresholds(thresholds)
        if not epsilon >= 0.0:
            raise ValueError(f"epsilon must be >= 0; got {epsilon}.")
        n = len(set(np.asarray(ts, np.float32).tolist()))
        return cls(
            counts=ExactSum.zeros((_NUM_CLASSES, n + 1)),
            thresholds=ts,
            inclusive=bool(inclusive),
            epsilon=float(epsilon),
        )

    # ------------------------------------------------------------------ static helpers
    def _sorted(self) -> tuple[np.ndarray, np.ndarray]:
        """(sorted unique float32 thresholds, index of each user threshold in them)."""
        t32 = np.asarray(self.thresholds, np.float32)
        uniq = np.unique(t32)
        return uniq, np.searchsorted(uniq, t32).astype(np.int32)

    # ------------------------------------------------------------------ update
    def update(
        self: _C,
        labels: ArrayLike,
        predictions: ArrayLike,
        sample_weight: ArrayLike | None = None,
    ) -> _C:
        """Folds in a batch (pure; jittable).

        Args:
          labels: array ``[D0, …, DN]`` or ``[D0, …, DN, k]`` (non-zero = positive).
          predictions: scores of the same shape (up to a trailing 1); any float dtype.
          sample_weight: ``None``, a scalar, or broadcastable to the predictions by
            TF's rules (``[B]``, ``[B, 1]`` or ``[B, k]`` against ``[B, k]``).

        Returns:
          The updated state.

        Raises:
          ValueError: on incompatible shapes (naming them).
        """
        return _update(
            self,
            jnp.asarray(labels),
            jnp.asarray(predictions),
            None if sample_weight is None else jnp.asarray(sample_weight),
        )

    # ------------------------------------------------------------------ results
    def confusion(self) -> dict[str, jax.Array]:
        """Weighted counts per threshold (in the order of ``thresholds``).

        Returns:
          dict with ``"tp"``, ``"fp"``, ``"tn"``, ``"fn"``: float32 ``[T]``.
        """
        r = _results(self, self.epsilon)
        return {k: r[k] for k in ("tp", "fp", "tn", "fn")}

    def precision(self, epsilon: float | None = None) -> jax.Array:
        """``tp / (tp + fp)`` per threshold, float32 ``[T]``.

        Args:
          epsilon: added to the denominator (TF1: 1e-7); ``None`` uses the state's
            ``epsilon``; with 0 the result is 0 where ``tp + fp == 0``.
        """
        eps = self.epsilon if epsilon is None else float(epsilon)
        return _results(self, eps)["precision"]

    def recall(self, epsilon: float | None = None) -> jax.Array:
        """``tp / (tp + fn)`` per threshold, float32 ``[T]`` (``epsilon`` as :meth:`precision`)."""
        eps = self.epsilon if epsilon is None else float(epsilon)
        return _results(self, eps)["recall"]

    def accuracy(self) -> jax.Array:
        """Weighted fraction of elements whose 0/1 prediction equals the label, ``[T]``.

        TF's ``BinaryAccuracy(threshold=t)`` (v2) and ``tf.compat.v1.metrics.accuracy``
        on ``p >= t`` (v1, with ``inclusive=True``): the float label is compared
        exactly with the thresholded prediction, so soft labels (0.8) never count
        as correct. For 0/1 labels this is ``(tp + tn) / total``; averaging over
        the last axis before weighting (Keras) gives the same number, because the
        weights are broadcast to every element.
        """
        return _results(self, self.epsilon)["accuracy"]

    def compute(self) -> dict[str, jax.Array]:
        """All per-threshold results: tp, fp, tn, fn, precision, recall, accuracy (``[T]``)."""
        return dict(_results(self, self.epsilon))


# ---------------------------------------------------------------------- kernels (jitted)
@jax.jit
def _update(
    state: _C, labels: jax.Array, predictions: jax.Array, sample_weight: jax.Array | None
) -> _C:
    lab, pred, w, _ = flat_batch(labels, predictions, sample_weight)
    uniq, _ = state._sorted()
    nb = uniq.shape[0] + 1
    k = count_thresholds_below(pred, uniq, state.inclusive)
    cls = jnp.where(lab == 0, _NEG, jnp.where(lab == 1, _ONE, _SOFT)).astype(jnp.int32)
    idx = k + nb * cls
    batch = exact_segment_sum(w, idx, _NUM_CLASSES * nb)
    return state.replace(counts=state.counts.merge(batch.reshape((_NUM_CLASSES, nb))))


def _row(x: ExactSum, i: int) -> ExactSum:
    return ExactSum(x.hi[i], x.lo[i])


def _exact_counts(state: ConfusionAtThresholds) -> dict[str, ExactSum]:
    """Exact tp/fp/tn/fn/correct/total per sorted unique threshold."""
    c = state.counts
    neg, one = _row(c, _NEG), _row(c, _ONE)
    pos = one.merge(_row(c, _SOFT))
    rows = ExactSum(jnp.stack([pos.hi, neg.hi, one.hi]), jnp.stack([pos.lo, neg.lo, one.lo]))
    cum = reverse_cumsum(rows)  # one scan for the three rows
    cum_pos, cum_neg, cum_one = (_row(cum, i) for i in range(3))

    def tail(x: ExactSum) -> ExactSum:
        return ExactSum(x.hi[1:], x.lo[1:])

    def total_minus(cum: ExactSum) -> ExactSum:
        n = cum.shape[0] - 1
        tot = ExactSum(jnp.broadcast_to(cum.hi[0], (n,)), jnp.broadcast_to(cum.lo[0], (n,)))
        return tot.merge(tail(cum).negate())

    tp, fp = tail(cum_pos), tail(cum_neg)
    tn = total_minus(cum_neg)
    return {
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": total_minus(cum_pos),
        "correct": tail(cum_one).merge(tn),
        "total": _row(cum_pos, 0).merge(_row(cum_neg, 0)),
    }


@functools.partial(jax.jit, static_argnames=("epsilon",))
def _results(state: ConfusionAtThresholds, epsilon: float) -> dict[str, jax.Array]:
    """Every per-threshold result at once (one compiled function per configuration)."""
    _, pos = state._sorted()
    ex = _exact_counts(state)
    out = {k: ex[k].value() for k in ("tp", "fp", "tn", "fn")}

    def ratio(other: str) -> jax.Array:
        d = ex["tp"].merge(ex[other]).value()
        if epsilon == 0.0:
            return safe_divide(out["tp"], d)
        return out["tp"] / (d + np.float32(epsilon))

    out["precision"] = ratio("fp")
    out["recall"] = ratio("fn")
    out["accuracy"] = safe_divide(ex["correct"].value(), ex["total"].value())
    return {k: v[pos] for k, v in out.items()}


def _scalar_if_single(x: jax.Array) -> jax.Array:
    return x[0] if x.shape[0] == 1 else x


class Precision(ConfusionAtThresholds):
    """Keras-style ``Precision(thresholds=0.5)``: ``compute()`` is a scalar for one threshold.

    Examples:
      >>> p = Precision.empty().update(jnp.array([0, 1, 1, 1]), jnp.array([1.0, 0.0, 1.0, 1.0]))
      >>> round(float(p.compute()), 6)
      0.666667
    """

    def compute(self) -> jax.Array:  # type: ignore[override]
        """Precision: float32 scalar (one threshold) or ``[T]``."""
        return _scalar_if_single(self.precision())


class Recall(ConfusionAtThresholds):
    """Keras-style ``Recall(thresholds=0.5)``: ``compute()`` is a scalar for one threshold.

    Examples:
      >>> r = Recall.empty().update(jnp.array([0, 1, 1, 1]), jnp.array([1.0, 0.0, 1.0, 1.0]))
      >>> round(float(r.compute()), 6)
      0.666667
    """

    def compute(self) -> jax.Array:  # type: ignore[override]
        """Recall: float32 scalar (one threshold) or ``[T]``."""
        return _scalar_if_single(self.recall())


class BinaryAccuracy(ConfusionAtThresholds):
    """Keras' ``BinaryAccuracy(threshold=0.5)``: weighted mean of ``label == (p > t)``.

    Examples:
      >>> a = BinaryAccuracy.empty(threshold=0.5)
      >>> a = a.update(jnp.array([[1], [1], [0], [0]]), jnp.array([[0.98], [1.0], [0.0], [0.6]]))
      >>> float(a.compute())
      0.75
    """

    @classmethod
    def empty(  # type: ignore[override]
        cls, threshold: float | Sequence[float] = 0.5, inclusive: bool = False
    ) -> BinaryAccuracy:
        """A fresh state at ``threshold`` (a float, or several)."""
        return super().empty(thresholds=threshold, inclusive=inclusive)

    def compute(self) -> jax.Array:  # type: ignore[override]
        """Accuracy: float32 scalar (one threshold) or ``[T]``."""
        return _scalar_if_single(self.accuracy())
