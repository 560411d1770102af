"""The confusion curve at evenly spaced thresholds, ROC / PR curves and their AUCs.

Thresholds (as TF / Keras): ``t_0 = -1e-7``, ``t_i = i / (T - 1)``,
``t_{T-1} = 1 + 1e-7``. A prediction is positive at ``t_i`` when ``p > t_i``.

Each prediction is bucketed ONCE with Keras' evenly-spaced rule
``b = max(ceil(p·(T-1)) - 1, 0)`` (after clipping ``p`` to [0, 1]) — it is
positive exactly at thresholds ``0..b`` — so predictions that sit on a
threshold count the way Keras counts them. Its weight goes to bucket ``b`` of
its label class in one ``segment_sum`` over ``2T`` segments; the per-threshold
counts are exact reverse cumulative sums of the buckets, taken at compute
time. Update cost: O(N + T), no ``[N, T]`` intermediate; one bucketing serves
both the ROC and the PR curve.
"""

from __future__ import annotations

import functools
from typing import TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.typing import ArrayLike

from jaxheads.metrics._base import MetricState
from jaxheads.metrics._exact_sum import ExactSum, reverse_cumsum
from jaxheads.metrics._mean import div_no_nan
from jaxheads.metrics._shapes import as_f32, broadcast_weights, flatten, match_label_rank

__all__ = [
    "AUC",
    "CURVES",
    "SUMMATION_METHODS",
    "TF1_AUC_EPSILON",
    "ConfusionCurve",
    "curve_thresholds",
]

#: ``'interpolation'``, ``'minoring'``, ``'majoring'`` (Keras) and
#: ``'trapezoidal'`` (TF1 ``tf.compat.v1.metrics.auc``, with ε = 1e-6).
SUMMATION_METHODS = ("interpolation", "minoring", "majoring", "trapezoidal")
CURVES = ("ROC", "PR")
#: The epsilon of TF1's ``tf.compat.v1.metrics.auc`` (``'trapezoidal'``).
TF1_AUC_EPSILON = 1e-6
_THRESHOLD_EPSILON = 1e-7  # Keras' backend.epsilon(): the end thresholds

_NEG, _POS = 0, 1
_CC = TypeVar("_CC", bound="ConfusionCurve")


def curve_thresholds(num_thresholds: int) -> np.ndarray:
    """The ``num_thresholds`` evenly spaced thresholds (float32), as TF / Keras.

    Examples:
      >>> curve_thresholds(3).tolist()
      [-1.0000000116860974e-07, 0.5, 1.0000001192092896]
    """
    t = [0.0 - _THRESHOLD_EPSILON]
    t += [(i + 1) * 1.0 / (num_thresholds - 1) for i in range(num_thresholds - 2)]
    t += [1.0 + _THRESHOLD_EPSILON]
    return np.asarray(t, np.float32)


def _check_summation(summation_method: str) -> str:
    s = str(summation_method).lower()
    if s not in SUMMATION_METHODS:
        raise ValueError(
            f"Invalid summation_method {summation_method!r}; expected one of {SUMMATION_METHODS}."
        )
    return s


def _check_curve(curve: str) -> str:
    c = str(curve).upper()
    if c not in CURVES:
        raise ValueError(f"Invalid curve {curve!r}; expected 'ROC' or 'PR'.")
    return c


def _riemann(x: jax.Array, y: jax.Array, method: str) -> jax.Array:
    """Σ (x_i − x_{i+1}) · height_i with Keras' (or TF1's trapezoid) heights."""
    if method in ("interpolation", "trapezoidal"):
        heights = (y[:-1] + y[1:]) / 2.0
    elif method == "minoring":
        heights = jnp.minimum(y[:-1], y[1:])
    else:  # majoring
        heights = jnp.maximum(y[:-1], y[1:])
    return jnp.sum((x[:-1] - x[1:]) * heights)


class ConfusionCurve(MetricState):
    """Weighted confusion counts at ``num_thresholds`` evenly spaced thresholds.

    Bucket once, get everything: :meth:`roc_auc`, :meth:`pr_auc` (any
    summation method, including TF1's ``'trapezoidal'``), :meth:`roc_curve`,
    :meth:`pr_curve`, :meth:`confusion`. Labels are positive when non-zero;
    predictions are clipped to [0, 1] (Keras); weights are broadcast to the
    predictions (TF rules) and every (example, class) element is one point
    (Keras' ``multi_label=False``).

    Attributes:
      counts: :class:`ExactSum` ``[2, T]``: weight of negatives (row 0) and
        positives (row 1) per bucket ``b`` (positive at thresholds ``0..b``).
      num_thresholds: static int ``T`` (default 200, as TF).

    Examples:
      >>> c = ConfusionCurve.empty(num_thresholds=3)
      >>> c = c.update(jnp.array([0, 0, 1, 1]), jnp.array([0.0, 0.5, 0.3, 0.9]))
      >>> float(c.roc_auc())  # Keras' AUC docstring example
      0.75
      >>> counts = c.confusion()
      >>> [counts[k].tolist() for k in ("tp", "fp", "tn", "fn")]
      [[2.0, 1.0, 0.0], [2.0, 0.0, 0.0], [0.0, 2.0, 2.0], [0.0, 1.0, 2.0]]
    """

    counts: ExactSum
    num_thresholds: int = struct.field(pytree_node=False, default=200)

    @classmethod
    def empty(cls: type[_CC], num_thresholds: int = 200) -> _CC:
        """A fresh state with ``num_thresholds`` (> 1) evenly spaced thresholds.

        Raises:
          ValueError: when ``num_thresholds`` is not an integer > 1.
        """
        if isinstance(num_thresholds, bool) or int(num_thresholds) != num_thresholds:
            raise ValueError(f"num_thresholds must be an integer > 1; got {num_thresholds!r}.")
        if num_thresholds <= 1:
            raise ValueError(f"num_thresholds must be an integer > 1; got {num_thresholds!r}.")
        t = int(num_thresholds)
        return cls(counts=ExactSum.zeros((2, t)), num_thresholds=t)

    def update(
        self: _CC,
        labels: ArrayLike,
        predictions: ArrayLike,
        sample_weight: ArrayLike | None = None,
    ) -> _CC:
        """Folds in a batch (pure; jittable). O(N + T).

        Args:
          labels: array ``[D0, …, DN]`` or ``[D0, …, DN, k]`` (non-zero = positive).
          predictions: probabilities of the same shape (up to a trailing 1); any
            float dtype; clipped to [0, 1].
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

    # ------------------------------------------------------------------ counts
    def thresholds(self) -> jax.Array:
        """The thresholds, float32 ``[T]``."""
        return jnp.asarray(curve_thresholds(self.num_thresholds))

    def confusion(self) -> dict[str, jax.Array]:
        """Weighted ``tp``, ``fp``, ``tn``, ``fn`` per threshold, float32 ``[T]`` each."""
        return _confusion(self)

    # ------------------------------------------------------------------ curves
    def roc_curve(self) -> dict[str, jax.Array]:
        """ROC points: ``{"thresholds", "fpr", "tpr"}``, float32 ``[T]`` each.

        ``fpr = fp / (fp + tn)``, ``tpr = tp / (tp + fn)`` (0 where undefined),
        from threshold ``t_0`` (point (1, 1)) to ``t_{T-1}`` (point (0, 0)).
        """
        return _roc_curve(self)

    def pr_curve(self) -> dict[str, jax.Array]:
        """PR points: ``{"thresholds", "recall", "precision"}``, float32 ``[T]`` each.

        ``precision = tp / (tp + fp)``, ``recall = tp / (tp + fn)`` (0 where
        undefined, as Keras — so precision is 0 at the top threshold).
        """
        return _pr_curve(self)

    # ------------------------------------------------------------------ AUCs
    def auc(self, curve: str = "ROC", summation_method: str = "interpolation") -> jax.Array:
        """Area under the ROC or PR curve, float32 scalar.

        Args:
          curve: ``'ROC'`` or ``'PR'``.
          summation_method: ``'interpolation'`` (Keras/TF2 default: midpoint for
            ROC, Davis–Goadrich for PR), ``'minoring'``, ``'majoring'`` (Keras),
            or ``'trapezoidal'`` (TF1 ``tf.compat.v1.metrics.auc``: the trapezoid
            on ``rec = (tp+ε)/(tp+fn+ε)``, ``fpr = fp/(fp+tn+ε)``,
            ``prec = (tp+ε)/(tp+fp+ε)`` with ε = 1e-6).

        Raises:
          ValueError: on an unknown curve or summation method.
        """
        return _auc(self, _check_curve(curve), _check_summation(summation_method))

    def roc_auc(self, summation_method: str = "interpolation") -> jax.Array:
        """ROC-AUC (float32 scalar); see :meth:`auc`."""
        return self.auc("ROC", summation_method)

    def pr_auc(self, summation_method: str = "interpolation") -> jax.Array:
        """PR-AUC (float32 scalar); see :meth:`auc`."""
        return self.auc("PR", summation_method)

    def compute(self) -> dict[str, jax.Array]:
        """``{"roc_auc", "pr_auc"}`` with Keras' default (interpolation) summation."""
        return {"roc_auc": self.roc_auc(), "pr_auc": self.pr_auc()}


class AUC(ConfusionCurve):
    """Keras' ``AUC``: a :class:`ConfusionCurve` whose ``compute()`` is one AUC.

    Attributes:
      curve: static, ``'ROC'`` or ``'PR'``.
      summation_method: static, one of :data:`SUMMATION_METHODS`.

    Examples:
      >>> m = AUC.empty(num_thresholds=3)
      >>> m = m.update(jnp.array([0, 0, 1, 1]), jnp.array([0.0, 0.5, 0.3, 0.9]),
      ...              sample_weight=jnp.array([1.0, 0.0, 0.0, 1.0]))
      >>> float(m.compute())
      1.0
    """

    curve: str = struct.field(pytree_node=False, default="ROC")
    summation_method: str = struct.field(pytree_node=False, default="interpolation")

    @classmethod
    def empty(  # type: ignore[override]
        cls,
        num_thresholds: int = 200,
        curve: str = "ROC",
        summation_method: str = "interpolation",
    ) -> AUC:
        """A fresh state; see :meth:`ConfusionCurve.auc` for the options.

        Raises:
          ValueError: on invalid options.
        """
        base = ConfusionCurve.empty(num_thresholds)
        return cls(
            counts=base.counts,
            num_thresholds=base.num_thresholds,
            curve=_check_curve(curve),
            summation_method=_check_summation(summation_method),
        )

    def compute(self) -> jax.Array:  # type: ignore[override]
        """The configured AUC, float32 scalar."""
        return self.auc(self.curve, self.summation_method)


# ---------------------------------------------------------------------- kernels (jitted)
@jax.jit
def _update(
    state: _CC, labels: jax.Array, predictions: jax.Array, sample_weight: jax.Array | None
) -> _CC:
    lab, pred = match_label_rank(as_f32(labels), as_f32(predictions))
    w = broadcast_weights(sample_weight, tuple(pred.shape), "predictions")
    lab, pred, w = flatten(lab, pred, w)
    assert lab is not None and pred is not None
    t = state.num_thresholds
    p = jnp.clip(pred, 0.0, 1.0)
    bucket = jnp.maximum(jnp.ceil(p * np.float32(t - 1)).astype(jnp.int32) - 1, 0)
    idx = bucket + t * (lab != 0).astype(jnp.int32)
    data = jnp.ones(idx.shape, jnp.float32) if w is None else w
    batch = jax.ops.segment_sum(data, idx, num_segments=2 * t)
    return state.replace(counts=state.counts.add(batch.reshape(2, t)))


def _exact(state: ConfusionCurve) -> tuple[ExactSum, ExactSum, ExactSum, ExactSum]:
    """Exact (tp, fp, tn, fn) per threshold: reverse cumsums of the buckets."""
    c = state.counts
    tp = reverse_cumsum(ExactSum(c.hi[_POS], c.lo[_POS]))
    fp = reverse_cumsum(ExactSum(c.hi[_NEG], c.lo[_NEG]))

    def total_minus(cum: ExactSum) -> ExactSum:
        tot = ExactSum(
            jnp.broadcast_to(cum.hi[0], cum.shape), jnp.broadcast_to(cum.lo[0], cum.shape)
        )
        return tot.merge(cum.negate())

    # Every clipped prediction is > t_0 = -1e-7, so the totals are tp[0] and fp[0].
    return tp, fp, total_minus(fp), total_minus(tp)


@jax.jit
def _confusion(state: ConfusionCurve) -> dict[str, jax.Array]:
    tp, fp, tn, fn = _exact(state)
    return {"tp": tp.value(), "fp": fp.value(), "tn": tn.value(), "fn": fn.value()}


def _roc_points(state: ConfusionCurve) -> tuple[jax.Array, jax.Array]:
    tp, fp, tn, fn = _exact(state)
    fpr = div_no_nan(fp.value(), fp.merge(tn).value())
    tpr = div_no_nan(tp.value(), tp.merge(fn).value())
    return fpr, tpr


def _pr_points(state: ConfusionCurve) -> tuple[jax.Array, jax.Array]:
    tp, fp, _, fn = _exact(state)
    recall = div_no_nan(tp.value(), tp.merge(fn).value())
    precision = div_no_nan(tp.value(), tp.merge(fp).value())
    return recall, precision


@jax.jit
def _roc_curve(state: ConfusionCurve) -> dict[str, jax.Array]:
    fpr, tpr = _roc_points(state)
    return {"thresholds": state.thresholds(), "fpr": fpr, "tpr": tpr}


@jax.jit
def _pr_curve(state: ConfusionCurve) -> dict[str, jax.Array]:
    recall, precision = _pr_points(state)
    return {"thresholds": state.thresholds(), "recall": recall, "precision": precision}


def _interpolated_pr_auc(state: ConfusionCurve) -> jax.Array:
    """Keras' PR-AUC: Davis & Goadrich (2006) interpolation between thresholds."""
    tp_e, fp_e, _, fn_e = _exact(state)
    tp, fn = tp_e.value(), fn_e.value()
    p = tp_e.merge(fp_e).value()
    dtp = tp[:-1] - tp[1:]
    dp = p[:-1] - p[1:]
    slope = div_no_nan(dtp, jnp.maximum(dp, 0.0))
    intercept = tp[1:] - slope * p[1:]
    both = (p[:-1] > 0) & (p[1:] > 0)
    ratio = jnp.where(both, div_no_nan(p[:-1], jnp.maximum(p[1:], 0.0)), jnp.ones_like(dp))
    inc = div_no_nan(slope * (dtp + intercept * jnp.log(ratio)), jnp.maximum(tp[1:] + fn[1:], 0.0))
    return jnp.sum(inc)


@functools.partial(jax.jit, static_argnames=("curve", "method"))
def _auc(state: ConfusionCurve, curve: str, method: str) -> jax.Array:
    if method == "trapezoidal":
        eps = np.float32(TF1_AUC_EPSILON)
        tp_e, fp_e, tn_e, fn_e = _exact(state)
        tp = tp_e.value()
        rec = (tp + eps) / (tp_e.merge(fn_e).value() + eps)
        if curve == "ROC":
            x, y = fp_e.value() / (fp_e.merge(tn_e).value() + eps), rec
        else:
            x, y = rec, (tp + eps) / (tp_e.merge(fp_e).value() + eps)
        return _riemann(x, y, method)
    if curve == "PR" and method == "interpolation":
        return _interpolated_pr_auc(state)
    x, y = _roc_points(state) if curve == "ROC" else _pr_points(state)
    return _riemann(x, y, method)
