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

from jaxheads._compat import check_compat, summation_method, threshold_epsilon
from jaxheads._shapes import match_trailing_one
from jaxheads.keys import MetricKeys, threshold_key
from jaxheads.metrics._auc import ConfusionCurve
from jaxheads.metrics._base import MetricState
from jaxheads.metrics._batch_sum import exact_segment_sum, exact_total
from jaxheads.metrics._confusion import (
    ConfusionAtThresholds,
    _normalize_thresholds,
    count_thresholds_below,
)
from jaxheads.metrics._exact_sum import ExactSum, fold_axis0
from jaxheads.metrics._histogram import LogitHistogram
from jaxheads.metrics._histogram_kernels import histogram_counts
from jaxheads.metrics._mean import Mean
from jaxheads.metrics._shapes import (
    as_f32,
    broadcast_weights,
    flatten,
    match_label_rank,
    present,
    times_or_zero,
)

__all__ = ["BinaryClassifierMetrics"]

_MEANS = ("loss", "prediction", "label")


def _marginal(x: ExactSum, keep: tuple[int, ...]) -> ExactSum:
    """Exact sum of ``x`` over every axis not in ``keep`` (kept axes stay in order)."""
    drop = [a for a in range(x.hi.ndim) if a not in keep]
    if not drop:
        return x
    order = drop + list(keep)
    kept_shape = tuple(x.hi.shape[a] for a in keep)
    hi = jnp.transpose(x.hi, order).reshape((-1, *kept_shape))
    lo = jnp.transpose(x.lo, order).reshape((-1, *kept_shape))
    return fold_axis0(ExactSum(hi, lo))


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
      sums: :class:`ExactSum` ``[4]``: ``Σ W·loss``, ``Σ W·prediction``, ``Σ W·label``, ``Σ W``.
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
    logit_grid: tuple[float, float] = struct.field(pytree_node=False, default=(-16.0, 16.0))

    @classmethod
    def empty(
        cls,
        num_thresholds: int = 200,
        thresholds: float | Sequence[float] = (),
        logit_buckets: int = 0,
        logit_grid: Sequence[float] = (-16.0, 16.0),
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
        ts = _normalize_thresholds(thresholds) if np.size(thresholds) else ()
        nt = len(np.unique(np.asarray(ts, np.float32)))
        hist = LogitHistogram.empty(logit_buckets, logit_grid) if logit_buckets else None
        return cls(
            joint=ExactSum.zeros((t, 3, nt + 1, 2, 2)),
            sums=ExactSum.zeros((4,)),
            logit_counts=None if hist is None else hist.counts,
            num_thresholds=t,
            thresholds=ts,
            logit_buckets=0 if hist is None else hist.num_buckets,
            logit_grid=(-16.0, 16.0) if hist is None else hist.grid,
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
        return _update(
            self,
            jnp.asarray(labels),
            jnp.asarray(predictions),
            arr(sample_weight),
            arr(class_ids),
            arr(loss),
            None if self.logit_counts is None else arr(logits),
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
            sums=self.sums,
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
        return Mean(
            total=ExactSum(self.sums.hi[i], self.sums.lo[i]),
            count=ExactSum(self.sums.hi[3], self.sums.lo[3]),
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
            precision, recall = at.precision(), at.recall()
            for i, t in enumerate(self.thresholds):
                out[threshold_key(MetricKeys.ACCURACY, t)] = accuracy[i]
                out[threshold_key(MetricKeys.PRECISION, t)] = precision[i]
                out[threshold_key(MetricKeys.RECALL, t)] = recall[i]
        if self.logit_counts is not None:
            out.update(self.logit_histogram().compute())
        return out


# ---------------------------------------------------------------------- kernels (jitted)
@jax.jit
def _update(
    state: BinaryClassifierMetrics,
    labels: jax.Array,
    predictions: jax.Array,
    sample_weight: jax.Array | None,
    class_ids: jax.Array | None,
    loss: jax.Array | None,
    logits: jax.Array | None,
) -> BinaryClassifierMetrics:
    lab, pred = match_label_rank(as_f32(labels), as_f32(predictions))
    shape = tuple(pred.shape)
    extra = {}
    for name, x in (("class_ids", class_ids), ("loss", loss), ("logits", logits)):
        if x is not None:
            x = match_trailing_one(as_f32(x), len(shape))
            if tuple(x.shape) != shape:
                raise ValueError(f"{name} shape {tuple(x.shape)} != predictions shape {shape}.")
            extra[name] = x
    w = broadcast_weights(sample_weight, shape, "predictions")
    flat_lab, flat_pred, w, cid, ls, x = flatten(
        lab, pred, w, extra.get("class_ids"), extra.get("loss"), extra.get("logits")
    )
    lab, pred = present(flat_lab), present(flat_pred)

    t = state.num_thresholds
    b = jnp.maximum(jnp.ceil(jnp.clip(pred, 0.0, 1.0) * np.float32(t - 1)).astype(jnp.int32) - 1, 0)
    c = jnp.where(lab == 0, 0, jnp.where(lab == 1, 1, 2)).astype(jnp.int32)
    kk = state.joint.hi.shape[2]
    if kk > 1:
        uniq = np.unique(np.asarray(state.thresholds, np.float32))
        k = count_thresholds_below(pred, uniq)
        if uniq.shape[0] <= 8:  # p equals the first threshold >= p iff it equals any
            tie = jnp.zeros(pred.shape, jnp.bool_)
            for threshold in uniq:
                tie = tie | (pred == threshold)
            tie = tie.astype(jnp.int32)
        else:
            table = jnp.asarray(np.concatenate([uniq, np.array([np.inf], np.float32)]))
            nxt = table.at[k].get(mode="promise_in_bounds")  # the first threshold >= p
            tie = ((k < uniq.shape[0]) & (nxt == pred)).astype(jnp.int32)
    else:
        k = tie = jnp.zeros(pred.shape, jnp.int32)
    cid_bit = (pred > 0.5) if cid is None else (cid > 0.5)
    idx = (((b * 3 + c) * kk + k) * 2 + tie) * 2 + cid_bit.astype(jnp.int32)
    # One "some label is soft" flag (NaN labels too) for every lax.cond below.
    any_soft = jnp.any(c == 2)
    logit_counts = state.logit_counts
    if logit_counts is None:
        hist = exact_segment_sum(w, idx, t * 3 * kk * 4)
    else:  # the logit histogram shares the joint scatter's digit split of the weights
        assert x is not None
        both = histogram_counts(
            lab,
            x,
            w,
            state.logit_buckets,
            state.logit_grid,
            shared=(idx, t * 3 * kk * 4),
            soft=any_soft,
        )
        assert isinstance(both, tuple)
        by_logit, hist = both
        logit_counts = logit_counts.merge(by_logit)
    # Loss and prediction sums are not counts: XLA's blocked float32 reduction is
    # as accurate as TF's (~1e-7 relative at 2^24); labels and weights are exact.
    loss_total = ExactSum.zeros(())
    if w is None:
        if ls is not None:
            loss_total = _float_total(ls)
        parts = [loss_total, _float_total(pred), exact_total(lab)]
        parts.append(ExactSum.from_value(int(pred.size)))
    else:
        if ls is not None:
            loss_total = _float_total(times_or_zero(w, ls))
        # Σ W and Σ W·label are marginals of the compensated joint table (no pass of their
        # own); only soft labels (class 2) add a sum, skipped by lax.cond when there are none.
        by_class = _marginal(hist.reshape((t, 3, -1)), (1,))
        weight_total = fold_axis0(by_class)
        one = ExactSum(by_class.hi[1], by_class.lo[1])
        parts = [loss_total, _float_total(times_or_zero(w, pred))]
        parts += [one.merge(_soft_label_total(c, lab, w, any_soft, one)), weight_total]
    sums = ExactSum(jnp.stack([p.hi for p in parts]), jnp.stack([p.lo for p in parts]))
    return state.replace(
        joint=state.joint.merge(hist.reshape(state.joint.shape)),
        sums=state.sums.merge(sums),
        logit_counts=logit_counts,
    )


def _soft_label_total(
    c: jax.Array, lab: jax.Array, w: jax.Array, any_soft: jax.Array, like: ExactSum
) -> ExactSum:
    """Exact ``Σ W·label`` over the elements of label class 2 (neither 0 nor 1)."""
    soft = c == 2

    def total() -> tuple[jax.Array, jax.Array]:
        s = exact_total(jnp.where(soft, times_or_zero(w, lab), 0.0))
        return s.hi, s.lo

    # zeros_like(like): the same (e.g. shard_map-varying) type in both branches.
    hi, lo = jax.lax.cond(
        any_soft, total, lambda: (jnp.zeros_like(like.hi), jnp.zeros_like(like.lo))
    )
    return ExactSum(hi, lo)


def _float_total(x: jax.Array) -> ExactSum:
    return ExactSum(jnp.sum(x), jnp.zeros((), jnp.float32))


@jax.jit
def _curve_view(state: BinaryClassifierMetrics) -> ConfusionCurve:
    by_class = _marginal(state.joint, (1, 0))  # [3, T]
    neg = ExactSum(by_class.hi[0], by_class.lo[0])
    pos = ExactSum(by_class.hi[1], by_class.lo[1]).merge(ExactSum(by_class.hi[2], by_class.lo[2]))
    counts = ExactSum(jnp.stack([neg.hi, pos.hi]), jnp.stack([neg.lo, pos.lo]))
    return ConfusionCurve(counts=counts, num_thresholds=state.num_thresholds)


@functools.partial(jax.jit, static_argnames=("inclusive", "epsilon"))
def _at_view(
    state: BinaryClassifierMetrics, inclusive: bool, epsilon: float
) -> ConfusionAtThresholds:
    m = _marginal(state.joint, (1, 2, 3))  # [3, K, 2 (tie)]
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
    counts = _marginal(state.joint, (1, 4))  # [3, 2]: label class x class id
    return ConfusionAtThresholds(counts=counts, thresholds=(0.5,), epsilon=epsilon)
