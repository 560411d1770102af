"""The confusion curve at evenly spaced thresholds, ROC / PR curves and their AUCs.

Thresholds (as TF / Keras): ``t_0 = -1e-7``, ``t_i = i / (T - 1)``,
``t_{T-1} = 1 + 1e-7``. A prediction is positive at ``t_i`` when ``p > t_i``.

Each prediction is bucketed ONCE with Keras' evenly-spaced rule
``b = max(ceil(p·(T-1)) - 1, 0)`` (after clipping ``p`` to [0, 1]) — it is
positive exactly at thresholds ``0..b`` — so predictions that sit on a
threshold count the way Keras counts them. (That is "``p > t_i``" up to float32
rounding of ``p·(T-1)``: for T = 200 a score equal to ``float32(31/199)``, say,
counts as above ``t_31`` in Keras, and here. TF1's ``tf.compat.v1.metrics.auc``
compares directly; the two differ only for such scores.) Its weight goes to bucket ``b`` of
its label class in one ``segment_sum`` over ``2T`` segments; the per-threshold
counts are exact reverse cumulative sums of the buckets, taken at compute
time. Update cost: O(N + T), no ``[N, T]`` intermediate; one bucketing serves
both the ROC and the PR curve.
"""

from __future__ import annotations

from typing import TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.typing import ArrayLike

from jaxheads.metrics._base import MetricState
from jaxheads.metrics._batch_sum import exact_segment_sum
from jaxheads.metrics._exact_sum import ExactSum, reverse_cumsum
from jaxheads.metrics._shapes import flat_batch
from jaxheads.reduction import safe_divide

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
        r = _results(self)
        return {k: r[k] for k in ("tp", "fp", "tn", "fn")}

    # ------------------------------------------------------------------ curves
    def roc_curve(self) -> dict[str, jax.Array]:
        """ROC points: ``{"thresholds", "fpr", "tpr"}``, float32 ``[T]`` each.

        ``fpr = fp / (fp + tn)``, ``tpr = tp / (tp + fn)`` (0 where undefined),
        from threshold ``t_0`` (point (1, 1)) to ``t_{T-1}`` (point (0, 0)).
        """
        r = _results(self)
        return {"thresholds": self.thresholds(), "fpr": r["fpr"], "tpr": r["tpr"]}

    def pr_curve(self) -> dict[str, jax.Array]:
        """PR points: ``{"thresholds", "recall", "precision"}``, float32 ``[T]`` each.

        ``precision = tp / (tp + fp)``, ``recall = tp / (tp + fn)`` (0 where
        undefined, as Keras — so precision is 0 at the top threshold).
        """
        r = _results(self)
        return {"thresholds": self.thresholds(), "recall": r["recall"], "precision": r["precision"]}

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
        key = f"{_check_curve(curve)}/{_check_summation(summation_method)}"
        return _results(self)[key]

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
    def empty(  # type: ignore[override,unused-ignore]
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
    lab, pred, w, _ = flat_batch(labels, predictions, sample_weight)
    t = state.num_thresholds
    p = jnp.clip(pred, 0.0, 1.0)
    bucket = jnp.maximum(jnp.ceil(p * np.float32(t - 1)).astype(jnp.int32) - 1, 0)
    idx = bucket + t * (lab != 0).astype(jnp.int32)
    batch = exact_segment_sum(w, idx, 2 * t)
    return state.replace(counts=state.counts.merge(batch.reshape((2, t))))


def _exact(state: ConfusionCurve) -> tuple[ExactSum, ExactSum, ExactSum, ExactSum]:
    """Exact (tp, fp, tn, fn) per threshold: reverse cumsums of the buckets."""
    cum = reverse_cumsum(state.counts)  # one scan for both rows
    tp = ExactSum(cum.hi[_POS], cum.lo[_POS])
    fp = ExactSum(cum.hi[_NEG], cum.lo[_NEG])

    def total_minus(cum: ExactSum) -> ExactSum:
        tot = ExactSum(
            jnp.broadcast_to(cum.hi[0], cum.shape), jnp.broadcast_to(cum.lo[0], cum.shape)
        )
        return tot.merge(cum.negate())

    # Every clipped prediction is > t_0 = -1e-7, so the totals are tp[0] and fp[0].
    return tp, fp, total_minus(fp), total_minus(tp)


def _interpolated_pr_auc(tp_e: ExactSum, fp_e: ExactSum, fn_e: ExactSum) -> jax.Array:
    """Keras' PR-AUC: Davis & Goadrich (2006) interpolation between thresholds.

    The formula is scale-free (degree 0 in the counts), but its products of
    counts underflow to subnormals — which XLA flushes to zero — when the
    weights are tiny (1e-38 gave 0.97 for 0.98). The counts are first scaled by
    a power of two that brings the largest to [0.5, 1): exact, so ordinary
    weights give bit-identical results.
    """
    tp, fn = tp_e.value(), fn_e.value()
    p = tp_e.merge(fp_e).value()
    _, exponent = jnp.frexp(jnp.maximum(jnp.max(p), jnp.max(tp + fn)))
    scale = jnp.ldexp(jnp.float32(1.0), -exponent)
    tp, fn, p = tp * scale, fn * scale, p * scale
    dtp = tp[:-1] - tp[1:]
    dp = p[:-1] - p[1:]
    slope = safe_divide(dtp, jnp.maximum(dp, 0.0))
    intercept = tp[1:] - slope * p[1:]
    both = (p[:-1] > 0) & (p[1:] > 0)
    ratio = jnp.where(both, safe_divide(p[:-1], jnp.maximum(p[1:], 0.0)), jnp.ones_like(dp))
    inc = safe_divide(slope * (dtp + intercept * jnp.log(ratio)), jnp.maximum(tp[1:] + fn[1:], 0.0))
    return jnp.sum(inc)


@jax.jit
def _results(state: ConfusionCurve) -> dict[str, jax.Array]:
    """Counts, curve points and every AUC at once (one compiled function per config).

    Inside an outer ``jit`` the unused outputs are dead code and cost nothing.
    """
    tp_e, fp_e, tn_e, fn_e = _exact(state)
    tp, fp, tn, fn = (x.value() for x in (tp_e, fp_e, tn_e, fn_e))
    recall = safe_divide(tp, tp_e.merge(fn_e).value())
    fpr = safe_divide(fp, fp_e.merge(tn_e).value())
    precision = safe_divide(tp, tp_e.merge(fp_e).value())
    out = {
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "fpr": fpr,
        "tpr": recall,
        "recall": recall,
        "precision": precision,
    }
    for method in ("interpolation", "minoring", "majoring"):
        out[f"ROC/{method}"] = _riemann(fpr, recall, method)
        if method != "interpolation":
            out[f"PR/{method}"] = _riemann(recall, precision, method)
    out["PR/interpolation"] = _interpolated_pr_auc(tp_e, fp_e, fn_e)
    # TF1 tf.compat.v1.metrics.auc: trapezoid with epsilon smoothing.
    eps = np.float32(TF1_AUC_EPSILON)
    rec1 = (tp + eps) / (tp_e.merge(fn_e).value() + eps)
    fpr1 = fp / (fp_e.merge(tn_e).value() + eps)
    prec1 = (tp + eps) / (tp_e.merge(fp_e).value() + eps)
    out["ROC/trapezoidal"] = _riemann(fpr1, rec1, "trapezoidal")
    out["PR/trapezoidal"] = _riemann(rec1, prec1, "trapezoidal")
    return out
