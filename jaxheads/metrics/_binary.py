"""Every streaming metric of a binary classifier from ONE bucketing per batch.

The separate states (:class:`Mean`, :class:`ConfusionCurve`,
:class:`ConfusionAtThresholds` …) each read the batch again and each run
their own scatter. :class:`BinaryClassifierMetrics` instead computes, per
element, one joint bucket index — (curve bucket, label class, number of
explicit thresholds below, tie with that threshold, class id) — and folds the
whole batch with a single ``segment_sum``, plus four weighted sums for the
means. The ordinary states are then *views* (exact marginals of the joint
histogram), with all of their methods: ``state.curve().pr_auc()``,
``state.at_thresholds().precision()`` … On CPU this is about twice as fast as
updating the separate states. Memory: ``T · 3 · (nt + 1) · 4`` buckets (9,600
for T = 200 and three thresholds).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.typing import ArrayLike

from jaxheads import _validate
from jaxheads._compat import check_compat, summation_method, threshold_epsilon
from jaxheads.keys import MetricKeys, threshold_metrics
from jaxheads.metrics._auc import ConfusionCurve
from jaxheads.metrics._base import MetricState
from jaxheads.metrics._binary_update import fold_logits, fold_probabilities, marginal
from jaxheads.metrics._confusion import (
    ConfusionAtThresholds,
)
from jaxheads.metrics._exact_sum import ExactSum, fold_axis0
from jaxheads.metrics._histogram import DEFAULT_GRID, LogitHistogram
from jaxheads.metrics._mean import Mean

__all__ = ["BinaryClassifierMetrics"]

_MEANS = ("loss", "prediction", "label")


class BinaryClassifierMetrics(MetricState):
    """All binary-classification metric counts, from one bucketing per batch.

    Semantics are those of the separate states it replaces (and its views
    return them): weights broadcast to the predictions (TF rules), labels
    positive when non-zero, predictions clipped for the curve only, ``p > t``
    (or ``p >= t``, ``inclusive=True`` in :meth:`at_thresholds`).

    Attributes:
      joint: :class:`ExactSum` ``[T, 3, nt + 1, 2, 2]``: weight per (curve bucket,
        label class — exactly 0 / exactly 1 / other non-zero —, number of sorted
        explicit thresholds below ``p``, whether ``p`` equals the next one, class id).
      sums: :class:`ExactSum` ``[3]``: ``Σ W·loss``, ``Σ W·prediction`` and ``Σ W·label``
        over the soft labels (neither 0 nor 1). ``Σ W`` and the rest of ``Σ W·label``
        are marginals of ``joint``, taken by the views (once per evaluation, not per batch).
      num_thresholds: static ``T`` of the ROC / PR curve (200 as TF).
      thresholds: static explicit thresholds (possibly empty), as
        :class:`ConfusionAtThresholds`.

    Examples:
      >>> m = BinaryClassifierMetrics.empty(thresholds=(0.25, 0.5, 0.75))
      >>> labels = jnp.array([[1.0], [1.0], [0.0]])
      >>> logits = jnp.array([[45.0], [-41.0], [44.0]])
      >>> m = m.update(labels, jax.nn.sigmoid(logits), jnp.array([[1.0], [0.1], [1.5]]),
      ...              class_ids=(logits > 0).astype(jnp.float32))
      >>> round(float(m.curve().roc_auc()), 6), round(float(m.curve().pr_auc()), 6)
      (0.454545, 0.401063)
      >>> round(float(m.class_ids().precision()[0]), 6), round(float(m.mean("label").compute()), 6)
      (0.4, 0.423077)
    """

    joint: ExactSum
    sums: ExactSum
    logit_counts: ExactSum | None = None
    num_thresholds: int = struct.field(pytree_node=False, default=200)
    thresholds: tuple[float, ...] = struct.field(pytree_node=False, default=())
    logit_buckets: int = struct.field(pytree_node=False, default=0)
    logit_grid: tuple[float, float] = struct.field(pytree_node=False, default=DEFAULT_GRID)

    @classmethod
    def empty(
        cls,
        num_thresholds: int = 200,
        thresholds: float | Sequence[float] = (),
        logit_buckets: int = 0,
        logit_grid: Sequence[float] = DEFAULT_GRID,
    ) -> BinaryClassifierMetrics:
        """A fresh state.

        Args:
          num_thresholds: thresholds of the ROC / PR curves (> 1).
          thresholds: explicit thresholds for :meth:`at_thresholds` (may be empty).
          logit_buckets: 0 (TF's metrics only), or the ``num_buckets`` of a
            :class:`~jaxheads.metrics.LogitHistogram` kept alongside (the
            extended metrics; ``update`` then needs ``logits``). Memory
            ``2 · logit_buckets`` double-floats (256 KiB at 16,384).
          logit_grid: the histogram's logit ``grid``.

        Raises:
          ValueError: on invalid ``num_thresholds``, thresholds or histogram configuration.
        """
        t = ConfusionCurve.empty(num_thresholds).num_thresholds
        ts = _validate.finite_thresholds(thresholds) if np.size(thresholds) else ()
        nt = len(np.unique(np.asarray(ts, np.float32)))
        hist = LogitHistogram.empty(logit_buckets, logit_grid) if logit_buckets else None
        return cls(
            joint=ExactSum.zeros((t, 3, nt + 1, 2, 2)),
            sums=ExactSum.zeros((3,)),
            logit_counts=None if hist is None else hist.counts,
            num_thresholds=t,
            thresholds=ts,
            logit_buckets=0 if hist is None else hist.num_buckets,
            logit_grid=DEFAULT_GRID if hist is None else hist.grid,
        )

    def update(
        self,
        labels: ArrayLike,
        predictions: ArrayLike,
        sample_weight: ArrayLike | None = None,
        *,
        class_ids: ArrayLike | None = None,
        loss: ArrayLike | None = None,
        logits: ArrayLike | None = None,
    ) -> BinaryClassifierMetrics:
        """Folds in a batch (pure; jittable): one scatter for every count.

        Args:
          labels: ``[D0, …, DN]`` or the predictions' shape (non-zero = positive).
          predictions: probabilities (any float dtype).
          sample_weight: ``None``, a scalar, or broadcastable to the predictions (TF rules).
          class_ids: predicted class ids (0/1) of the same shape, for
            :meth:`class_ids`; default ``predictions > 0.5``.
          loss: per-element loss of the same shape, for ``mean("loss")``; default 0.
          logits: the logits of the same shape; required (and only used) when the
            state keeps a logit histogram (``logit_buckets > 0``).

        Returns:
          The updated state.

        Raises:
          ValueError: on incompatible shapes (naming them), or missing ``logits``.
        """

        def arr(x: ArrayLike | None) -> jax.Array | None:
            return None if x is None else jnp.asarray(x)

        if self.logit_counts is not None and logits is None:
            raise ValueError(
                "This BinaryClassifierMetrics keeps a logit histogram (logit_buckets="
                f"{self.logit_buckets}): pass logits= to update()."
            )
        return fold_probabilities(
            self,
            jnp.asarray(labels),
            jnp.asarray(predictions),
            arr(sample_weight),
            arr(class_ids),
            arr(loss),
            None if self.logit_counts is None else arr(logits),
        )

    def update_logits(
        self,
        labels: ArrayLike,
        logits: ArrayLike,
        sample_weight: ArrayLike | None = None,
        *,
        loss: ArrayLike | None = None,
    ) -> BinaryClassifierMetrics:
        """Folds in a batch of logits (pure; jittable): the heads' fast path.

        The counts of ``update(labels, p, sample_weight, class_ids=logits > 0,
        loss=loss, logits=logits)`` with ``loss, p =
        jaxheads.losses.sigmoid_loss_and_probability(labels, logits)`` (the
        head's loss and TF's sigmoid), but all from ONE ``exp`` in one fused
        pass over flat views of the batch.

        Args:
          labels: ``[D0, …, DN]`` or the logits' shape (non-zero = positive).
          logits: any float dtype.
          sample_weight: ``None`` (every count is one int32 scatter), a scalar,
            or broadcastable to the logits (TF rules).
          loss: per-element loss of the logits' shape for ``mean("loss")`` (a
            head's custom ``loss_fn``); default the sigmoid cross-entropy.

        Returns:
          The updated state.

        Raises:
          ValueError: on incompatible shapes, naming them.

        Examples:
          >>> m = BinaryClassifierMetrics.empty(thresholds=(0.5,))
          >>> m = m.update_logits(jnp.array([1.0, 0.0, 1.0]), jnp.array([2.0, -1.0, -3.0]))
          >>> round(float(m.compute()["accuracy"]), 6), round(float(m.mean("loss").compute()), 6)
          (0.666667, 1.162926)
        """
        return fold_logits(
            self,
            jnp.asarray(labels),
            jnp.asarray(logits),
            None if sample_weight is None else jnp.asarray(sample_weight),
            None if loss is None else jnp.asarray(loss),
        )

    # ------------------------------------------------------------------ views
    def curve(self) -> ConfusionCurve:
        """The :class:`ConfusionCurve` (ROC / PR curves and AUCs) of the predictions."""
        return _curve_view(self)

    def at_thresholds(self, inclusive: bool = False, epsilon: float = 0.0) -> ConfusionAtThresholds:
        """The :class:`ConfusionAtThresholds` of the predictions at ``thresholds``.

        Args:
          inclusive: count ``p >= t`` as positive (TF1 accuracy at thresholds).
          epsilon: precision / recall denominator epsilon (TF1: 1e-7).

        Raises:
          ValueError: when the state has no explicit thresholds.
        """
        if not self.thresholds:
            raise ValueError("This BinaryClassifierMetrics has no explicit thresholds.")
        return _at_view(self, bool(inclusive), float(epsilon))

    def logit_histogram(self) -> LogitHistogram:
        """The :class:`~jaxheads.metrics.LogitHistogram` view (its sums are this state's).

        Its normalized entropy uses the ``loss`` given to :meth:`update` (the
        head's loss); calibration uses the predictions' weighted sum.

        Raises:
          ValueError: when the state keeps no logit histogram.
        """
        if self.logit_counts is None:
            raise ValueError("This BinaryClassifierMetrics keeps no logit histogram.")
        return LogitHistogram(
            counts=self.logit_counts,
            sums=_totals_view(self),
            num_buckets=self.logit_buckets,
            grid=self.logit_grid,
        )

    def class_ids(self, epsilon: float = 0.0) -> ConfusionAtThresholds:
        """Confusion of the class ids (threshold 0.5): precision, recall, and TF's
        ``Accuracy(labels, class_ids)`` as ``accuracy()[0]``."""
        return _class_view(self, float(epsilon))

    def mean(self, which: str) -> Mean:
        """A :class:`Mean` view: ``"loss"``, ``"prediction"`` or ``"label"`` (weighted)."""
        if which not in _MEANS:
            raise ValueError(f"mean() takes one of {_MEANS}; got {which!r}.")
        i = _MEANS.index(which)
        totals = _totals_view(self)
        return Mean(
            total=ExactSum(totals.hi[i], totals.lo[i]),
            count=ExactSum(totals.hi[3], totals.lo[3]),
        )

    def compute(self, compat: str = "v2") -> dict[str, jax.Array]:
        """The binary head's metric values (TF's keys, no ``/name`` suffix).

        The one place the binary metric family is computed (``BinaryClassHead``
        calls it). ``compat="v2"``: TF 2 / Keras (interpolated AUCs, ``p > t``);
        ``"v1"``: TF1 (trapezoidal AUCs, ``p >= t`` in threshold accuracy,
        ε = 1e-7 in threshold precision / recall).
        """
        compat = check_compat(compat)
        summation = summation_method(compat)
        cid, curve = self.class_ids(), self.curve()
        label_mean = self.mean("label").compute()
        # Nothing counted (empty or all-zero-weight evaluation): 0, as TF, not max(0, 1 - 0) = 1.
        counted = self.mean("label").count.value() != 0
        out = {
            MetricKeys.LOSS_MEAN: self.mean("loss").compute(),
            # TF's Accuracy(labels, class_ids): exact matches, so soft labels never count.
            MetricKeys.ACCURACY: cid.accuracy()[0],
            MetricKeys.PRECISION: cid.precision()[0],
            MetricKeys.RECALL: cid.recall()[0],
            MetricKeys.PREDICTION_MEAN: self.mean("prediction").compute(),
            MetricKeys.LABEL_MEAN: label_mean,
            MetricKeys.ACCURACY_BASELINE: jnp.where(
                counted, jnp.maximum(label_mean, 1.0 - label_mean), 0.0
            ),
            MetricKeys.AUC: curve.roc_auc(summation_method=summation),
            MetricKeys.AUC_PR: curve.pr_auc(summation_method=summation),
        }
        if self.thresholds:
            at = self.at_thresholds(epsilon=threshold_epsilon(compat))
            # TF1's accuracy_at_threshold counts p >= t as positive; TF2's BinaryAccuracy p > t.
            accuracy = self.at_thresholds(inclusive=compat == "v1").accuracy()
            out.update(threshold_metrics(self.thresholds, accuracy, at.precision(), at.recall()))
        if self.logit_counts is not None:
            out.update(self.logit_histogram().compute())
        return out


# ---------------------------------------------------------------------- views (jitted)
@jax.jit
def _totals_view(state: BinaryClassifierMetrics) -> ExactSum:
    """``[4]``: Σ W·loss, Σ W·prediction, Σ W·label, Σ W — the last two from the joint table."""
    by_class = marginal(state.joint, (1,))  # [3]: label exactly 0 / exactly 1 / soft
    hard_ones = ExactSum(by_class.hi[1], by_class.lo[1])
    soft = ExactSum(state.sums.hi[2], state.sums.lo[2])
    parts = [ExactSum(state.sums.hi[i], state.sums.lo[i]) for i in range(2)]
    parts += [hard_ones.merge(soft), fold_axis0(by_class)]
    return ExactSum(jnp.stack([p.hi for p in parts]), jnp.stack([p.lo for p in parts]))


@jax.jit
def _curve_view(state: BinaryClassifierMetrics) -> ConfusionCurve:
    by_class = marginal(state.joint, (1, 0))  # [3, T]
    neg = ExactSum(by_class.hi[0], by_class.lo[0])
    pos = ExactSum(by_class.hi[1], by_class.lo[1]).merge(ExactSum(by_class.hi[2], by_class.lo[2]))
    counts = ExactSum(jnp.stack([neg.hi, pos.hi]), jnp.stack([neg.lo, pos.lo]))
    return ConfusionCurve(counts=counts, num_thresholds=state.num_thresholds)


@functools.partial(jax.jit, static_argnames=("inclusive", "epsilon"))
def _at_view(
    state: BinaryClassifierMetrics, inclusive: bool, epsilon: float
) -> ConfusionAtThresholds:
    m = marginal(state.joint, (1, 2, 3))  # [3, K, 2 (tie)]
    strict = ExactSum(m.hi[:, :, 0], m.lo[:, :, 0]).merge(ExactSum(m.hi[:, :, 1], m.lo[:, :, 1]))
    if inclusive:  # a tie with the next threshold moves the element one bucket up
        pad = [(0, 0), (1, 0)]
        shifted = ExactSum(jnp.pad(m.hi[:, :-1, 1], pad), jnp.pad(m.lo[:, :-1, 1], pad))
        counts = ExactSum(m.hi[:, :, 0], m.lo[:, :, 0]).merge(shifted)
    else:
        counts = strict
    return ConfusionAtThresholds(
        counts=counts, thresholds=state.thresholds, inclusive=inclusive, epsilon=epsilon
    )


@functools.partial(jax.jit, static_argnames=("epsilon",))
def _class_view(state: BinaryClassifierMetrics, epsilon: float) -> ConfusionAtThresholds:
    counts = marginal(state.joint, (1, 4))  # [3, 2]: label class x class id
    return ConfusionAtThresholds(counts=counts, thresholds=(0.5,), epsilon=epsilon)
