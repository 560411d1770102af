"""Streaming metric states: pure, jittable, mergeable, exact past 2^24.

Every state is a ``flax.struct`` pytree whose leaves are :class:`ExactSum`
accumulators (double-float32 ``(hi, lo)`` pairs) and whose configuration is
static. The API is uniform:

* ``State.empty(**config)`` — a fresh state;
* ``state.update(...)`` — a new state with one batch folded in (pure, jittable,
  works under ``jit``, ``lax.scan``, ``vmap``, on sharded arrays);
* ``state.merge(other)`` — associative and commutative addition;
* ``state.compute()`` — the result (``jax.Array``, or a dict of them);
* :func:`merge` of two pytrees of states, and :func:`all_reduce` of a pytree
  of states across a named axis inside ``shard_map`` / ``pmap`` (exact).

Semantics follow TF 2 / Keras (and TF1 where asked): see each class.

Examples:
  >>> import jax.numpy as jnp
  >>> from jaxheads import metrics
  >>> labels = jnp.array([[1.0], [1.0], [0.0]])
  >>> probs = jnp.array([[1.0], [0.0], [1.0]])
  >>> weights = jnp.array([[1.0], [0.1], [1.5]])
  >>> curve = metrics.ConfusionCurve.empty().update(labels, probs, weights)
  >>> round(float(curve.roc_auc()), 6), round(float(curve.pr_auc()), 6)
  (0.454545, 0.401063)
  >>> round(float(curve.pr_auc(summation_method="trapezoidal")), 6)  # TF1
  0.673776
"""

from jaxheads.metrics._auc import (
    AUC,
    CURVES,
    SUMMATION_METHODS,
    TF1_AUC_EPSILON,
    ConfusionCurve,
    curve_thresholds,
)
from jaxheads.metrics._base import MetricState, all_reduce, merge
from jaxheads.metrics._binary import BinaryClassifierMetrics
from jaxheads.metrics._confusion import (
    BinaryAccuracy,
    ConfusionAtThresholds,
    Precision,
    Recall,
)
from jaxheads.metrics._exact_sum import ExactSum, fast_two_sum, two_sum
from jaxheads.metrics._histogram import LogitHistogram
from jaxheads.metrics._histogram_classes import ClassLogitHistograms, one_vs_rest_logits
from jaxheads.metrics._mean import Accuracy, Mean

__all__ = [
    "AUC",
    "CURVES",
    "SUMMATION_METHODS",
    "TF1_AUC_EPSILON",
    "Accuracy",
    "BinaryAccuracy",
    "BinaryClassifierMetrics",
    "ClassLogitHistograms",
    "ConfusionAtThresholds",
    "ConfusionCurve",
    "ExactSum",
    "LogitHistogram",
    "Mean",
    "MetricState",
    "Precision",
    "Recall",
    "all_reduce",
    "curve_thresholds",
    "fast_two_sum",
    "merge",
    "one_vs_rest_logits",
    "two_sum",
]
