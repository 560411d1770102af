"""LogitHistogram: a streaming evaluation suite keyed by the logit, not the probability.

Every streaming AUC in the field (TF's heads, Keras, metrax, our
:class:`ConfusionCurve`) counts *probabilities* at 200 evenly spaced
thresholds. On rare-event data (base rates of 0.1–1 %) nearly every
prediction lands in the first bucket and ties, so the ROC-AUC is off by up to
0.15. :class:`LogitHistogram` keeps two weighted histograms (negatives,
positives) on an even grid of the **logit**, plus exact running sums of the
raw per-example loss, probability and label, and derives from them:

* :meth:`~LogitHistogram.roc_auc`, certified :meth:`~LogitHistogram.roc_auc_bounds`
  and the DeLong :meth:`~LogitHistogram.roc_auc_stderr`;
* :meth:`~LogitHistogram.average_precision`, ROC / PR curves and operating points;
* calibration: ECE, the reliability table, the calibration ratio, and the
  normalized entropy (CTR's NE).

**Grid.** ``num_buckets`` buckets: bucket 0 holds every logit below ``grid[0]``,
bucket ``num_buckets - 1`` every logit at or above ``grid[1]`` (clamped
logits), and the ``num_buckets - 2`` buckets between split ``grid`` evenly.
Elements in one bucket count as tied; elements in different buckets are
ordered exactly. So the ROC-AUC (ties counted half, as scikit-learn) is off
from the exact value of the data by at most half the weighted share of
positive–negative pairs that share a bucket — which is exactly what
:meth:`~LogitHistogram.roc_auc_bounds` reports. With the default 16,384
buckets on [−16, 16] (width 0.00195 in logit) that share is ~1e-5 on realistic
scores. A fixed grid cannot reach 1e-4 when a large share of the logits lies
beyond the grid (they all tie in the edge buckets: widen ``grid``), or when the
scores concentrate in a band much narrower than a bucket (e.g. a model whose
logits all lie within ±0.01 of one value: narrow ``grid`` around them or add
buckets). Choose the grid to cover the logits you expect (``[-16, 16]`` covers
probabilities from 1e-7 to 1 − 1e-7) and check ``roc_auc_bounds()``: its width
is the price of the grid on your data.

**Labels and weights.** A label ``y`` in [0, 1] with weight ``w`` counts as a
positive of weight ``w·y`` and a negative of weight ``w·(1 − y)`` (soft labels).
Unweighted hard-label counts are exact integers; weighted sums are compensated
(see ``_batch_sum``). NaN logits are left out of the histogram (their loss makes
the loss sum, and so :meth:`~LogitHistogram.normalized_entropy`, NaN).

Memory: ``2 · num_buckets`` double-float buckets (256 KiB at 16,384).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.typing import ArrayLike

from jaxheads.keys import MetricKeys
from jaxheads.losses import sigmoid_loss_and_probability
from jaxheads.metrics import _histogram_stats as stats
from jaxheads.metrics._base import MetricState
from jaxheads.metrics._batch_sum import exact_total
from jaxheads.metrics._exact_sum import ExactSum
from jaxheads.metrics._histogram_kernels import histogram_counts
from jaxheads.metrics._shapes import flat_batch, times_or_zero

__all__ = ["LogitHistogram"]

#: Order of the running sums in :attr:`LogitHistogram.sums`.
SUMS = ("loss", "probability", "label", "weight")
#: Default histogram: 16,384 buckets (256 KiB of state) on the logit grid [-16, 16].
DEFAULT_BUCKETS = 16384
DEFAULT_GRID = (-16.0, 16.0)


class LogitHistogram(MetricState):
    """Weighted negative / positive histograms on a logit grid, plus exact running sums.

    Pure, jittable, mergeable (:meth:`merge`, :func:`jaxheads.metrics.merge`,
    :func:`jaxheads.metrics.all_reduce`). See the module docstring for the grid,
    the label and weight semantics and the accuracy.

    Attributes:
      counts: :class:`ExactSum` ``[2, num_buckets]``: weight of negatives (row 0)
        and positives (row 1) per logit bucket.
      sums: :class:`ExactSum` ``[4]``: ``Σw·loss`` (raw sigmoid cross-entropy),
        ``Σw·p``, ``Σw·y``, ``Σw``.
      num_buckets: static number of buckets (>= 3; two are the clamp buckets).
      grid: static ``(low, high)`` logit range of the even buckets.

    Examples:
      >>> h = LogitHistogram.empty(num_buckets=1024)
      >>> h = h.update(jnp.array([0, 0, 1, 1]), jnp.array([-2.0, 0.5, -0.1, 3.0]))
      >>> float(h.roc_auc())
      0.75
      >>> [round(float(b), 6) for b in h.roc_auc_bounds()]
      [0.749999, 0.750001]
      >>> round(float(h.calibration_ratio()), 4)  # Σp / Σy
      1.0846
    """

    counts: ExactSum
    sums: ExactSum
    num_buckets: int = struct.field(pytree_node=False, default=DEFAULT_BUCKETS)
    grid: tuple[float, float] = struct.field(pytree_node=False, default=DEFAULT_GRID)

    @classmethod
    def empty(
        cls, num_buckets: int = DEFAULT_BUCKETS, grid: Sequence[float] = DEFAULT_GRID
    ) -> LogitHistogram:
        """A fresh histogram.

        Args:
          num_buckets: integer >= 3: ``num_buckets - 2`` even buckets on ``grid``
            plus one clamp bucket at each end.
          grid: ``(low, high)``, finite, ``low < high``: the logit range.

        Raises:
          ValueError: naming the argument, on an invalid ``num_buckets`` or ``grid``.
        """
        if isinstance(num_buckets, bool) or not isinstance(num_buckets, (int, np.integer)):
            raise ValueError(f"num_buckets must be an integer >= 3; got {num_buckets!r}.")
        if int(num_buckets) < 3:
            raise ValueError(f"num_buckets must be an integer >= 3; got {num_buckets!r}.")
        try:
            low, high = (float(g) for g in grid)
        except (TypeError, ValueError):
            raise ValueError(f"grid must be a pair (low, high) of floats; got {grid!r}.") from None
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"grid must be finite with low < high; got {grid!r}.")
        b = int(num_buckets)
        return cls(
            counts=ExactSum.zeros((2, b)),
            sums=ExactSum.zeros((len(SUMS),)),
            num_buckets=b,
            grid=(low, high),
        )

    # ------------------------------------------------------------------ update / merge
    def update(
        self, labels: ArrayLike, logits: ArrayLike, sample_weight: ArrayLike | None = None
    ) -> LogitHistogram:
        """Folds in a batch (pure; jittable). O(N + num_buckets).

        Args:
          labels: ``[D0, …, DN]`` or the logits' shape; values in [0, 1]
            (soft labels allowed).
          logits: ``[D0, …, DN]`` or ``[D0, …, DN, 1]`` (any leading dims; any
            float dtype, computed in float32).
          sample_weight: ``None``, a scalar, or broadcastable to the logits (TF rules).

        Returns:
          The updated histogram.

        Raises:
          ValueError: on incompatible shapes (naming them).
        """
        w = None if sample_weight is None else jnp.asarray(sample_weight)
        return _update(self, jnp.asarray(labels), jnp.asarray(logits), w)

    def merge(self, other: LogitHistogram) -> LogitHistogram:
        """Adds two histograms of the same configuration (associative, commutative).

        Raises:
          ValueError: when ``other`` is not a :class:`LogitHistogram` with the
            same ``num_buckets`` and ``grid``.
        """
        if not isinstance(other, LogitHistogram):
            raise ValueError(f"Cannot merge LogitHistogram with {type(other).__name__}.")
        if (other.num_buckets, other.grid) != (self.num_buckets, self.grid):
            raise ValueError(
                "Cannot merge LogitHistograms of different configurations: "
                f"num_buckets={self.num_buckets}, grid={self.grid} vs "
                f"num_buckets={other.num_buckets}, grid={other.grid}."
            )
        return super().merge(other)

    # ------------------------------------------------------------------ grid
    def edges(self) -> np.ndarray:
        """Lower logit edge of every bucket, float64 ``[num_buckets]`` (``-inf`` for bucket 0)."""
        low, high = self.grid
        inner = np.linspace(low, high, self.num_buckets - 1)
        return np.concatenate([[-np.inf], inner])

    def clamped_weight(self) -> jax.Array:
        """Weight (both classes) of logits outside ``grid``, float32 scalar."""
        c = self.counts.value()
        return jnp.sum(c[:, 0]) + jnp.sum(c[:, -1])

    # ------------------------------------------------------------------ ranking
    def roc_auc(self) -> jax.Array:
        """ROC-AUC with ties (same bucket) counted half, float32 (0 when a class is empty)."""
        return stats.roc_auc(self.counts)[0]

    def roc_auc_bounds(self) -> tuple[jax.Array, jax.Array]:
        """``(lower, upper)``: certified to contain the exact ROC-AUC of the data.

        Pairs in different buckets are ordered exactly; a positive–negative pair
        in one bucket (clamped logits included) may be ordered either way, so
        ``lower`` counts those pairs 0 and ``upper`` counts them 1 (the exact
        AUC counts tied scores half, as scikit-learn). The bounds are widened by
        a few float32 ulps for the rounding of their own computation. ``(0, 1)``
        when a class is empty. Not a confidence interval: see
        :meth:`roc_auc_stderr` for sampling error.
        """
        _, lower, upper = stats.roc_auc(self.counts)
        return lower, upper

    def roc_auc_stderr(self) -> jax.Array:
        """DeLong's standard error of the ROC-AUC, from the histogram (weights as frequencies)."""
        return stats.delong_stderr(self.counts)

    def average_precision(self) -> jax.Array:
        """Average precision, scikit-learn's step definition ``Σ (R_k − R_{k−1}) P_k``."""
        return stats.average_precision(self.counts)

    def roc_curve(self) -> dict[str, jax.Array]:
        """ROC points at each bucket's lower edge, descending: ``thresholds``, ``fpr``, ``tpr``.

        A point at threshold ``t`` classifies logits in buckets ``>= t``'s bucket
        as positive. The first point is (0, 0) (``threshold = +inf``).
        """
        return stats.curve_points(self.counts, self.edges(), "roc")

    def pr_curve(self) -> dict[str, jax.Array]:
        """PR points, descending thresholds: ``thresholds``, ``precision``, ``recall``."""
        return stats.curve_points(self.counts, self.edges(), "pr")

    def precision_at_recall(self, recall: float) -> jax.Array:
        """Best precision over the bucket thresholds with recall >= ``recall`` (0 if none)."""
        return stats.operating_point(self.counts, jnp.float32(recall), "precision_at_recall")

    def recall_at_precision(self, precision: float) -> jax.Array:
        """Best recall over the bucket thresholds with precision >= ``precision`` (0 if none)."""
        return stats.operating_point(self.counts, jnp.float32(precision), "recall_at_precision")

    def sensitivity_at_specificity(self, specificity: float) -> jax.Array:
        """Best true-positive rate with specificity (TNR) >= ``specificity`` (0 if none)."""
        return stats.operating_point(
            self.counts, jnp.float32(specificity), "sensitivity_at_specificity"
        )

    # ------------------------------------------------------------------ calibration
    def calibration(self, num_bins: int = 15) -> dict[str, jax.Array]:
        """Reliability table on ``num_bins`` equal-width probability bins.

        Each logit bucket goes to the bin of its centre's probability (the
        clamp buckets to ``sigmoid(grid)``); the bin's mean probability uses
        the bucket centres, so it is within ``bucket width / 8`` of the exact
        mean (``|σ'| <= 1/4`` over half a bucket).

        Returns:
          ``{"bin_edges" [num_bins + 1], "weight", "mean_probability",
          "positive_rate" [num_bins]}`` (0 in empty bins).
        """
        return stats.calibration(self.counts, self.centres(), _check_bins(num_bins))

    def expected_calibration_error(self, num_bins: int = 15) -> jax.Array:
        """ECE: ``Σ_bins (W_bin / W) · |positive_rate − mean_probability|`` (weighted)."""
        return stats.ece(self.counts, self.centres(), _check_bins(num_bins))

    def centres(self) -> np.ndarray:
        """Logit of each bucket's centre (clamp buckets: the grid end), float64."""
        low, high = self.grid
        inner = np.linspace(low, high, self.num_buckets - 1)
        return np.concatenate([[low], 0.5 * (inner[:-1] + inner[1:]), [high]])

    def normalized_entropy(self) -> jax.Array:
        """Normalized entropy: mean log-loss / entropy of the base rate (CTR's NE).

        From the exact running sums of the raw per-example loss (confident
        mistakes at ``|logit|`` of 20–100 count fully, never clamped). ``inf``
        when there is loss but the base rate is 0 or 1; 0 with no loss (an
        empty evaluation, or every loss exactly 0).
        """
        return stats.normalized_entropy(self.sums)

    def calibration_ratio(self) -> jax.Array:
        """``Σw·p / Σw·y`` from the exact running sums.

        ``inf`` with predicted probability but no positives; 1 when both sums
        are 0; 0 for an empty evaluation (nothing counted), as the other metrics.
        """
        return stats.calibration_ratio(self.sums)

    def mean(self, which: str) -> jax.Array:
        """Weighted mean of ``"loss"``, ``"probability"`` or ``"label"`` (0 when empty)."""
        if which not in SUMS[:3]:
            raise ValueError(f"mean() takes one of {SUMS[:3]}; got {which!r}.")
        s = self.sums.value()
        w = s[3]
        return jnp.where(w == 0, 0.0, s[SUMS.index(which)] / jnp.where(w == 0, 1.0, w))

    def compute(self) -> dict[str, jax.Array]:
        """The extended metric table (:data:`jaxheads.keys.MetricKeys.EXTENDED`, unsuffixed)."""
        lower, upper = self.roc_auc_bounds()
        return {
            MetricKeys.ROC_AUC: self.roc_auc(),
            MetricKeys.ROC_AUC_LOWER: lower,
            MetricKeys.ROC_AUC_UPPER: upper,
            MetricKeys.ROC_AUC_STDERR: self.roc_auc_stderr(),
            MetricKeys.AVERAGE_PRECISION: self.average_precision(),
            MetricKeys.EXPECTED_CALIBRATION_ERROR: self.expected_calibration_error(),
            MetricKeys.NORMALIZED_ENTROPY: self.normalized_entropy(),
            MetricKeys.CALIBRATION_RATIO: self.calibration_ratio(),
        }


def _check_bins(num_bins: int) -> int:
    if isinstance(num_bins, bool) or not isinstance(num_bins, (int, np.integer)) or num_bins < 1:
        raise ValueError(f"num_bins must be a positive integer; got {num_bins!r}.")
    return int(num_bins)


@jax.jit
def _update(
    state: LogitHistogram, labels: jax.Array, logits: jax.Array, sample_weight: jax.Array | None
) -> LogitHistogram:
    lab, x, w, _ = flat_batch(labels, logits, sample_weight, "logits")
    counts = histogram_counts(lab, x, w, state.num_buckets, state.grid)
    assert isinstance(counts, ExactSum)
    loss, p = sigmoid_loss_and_probability(lab, x)
    parts = [
        exact_total(loss if w is None else times_or_zero(w, loss)),
        exact_total(p if w is None else w * p),
        exact_total(lab if w is None else w * lab),
        ExactSum.from_value(int(x.size)) if w is None else exact_total(w),
    ]
    sums = ExactSum(jnp.stack([s.hi for s in parts]), jnp.stack([s.lo for s in parts]))
    return state.replace(counts=state.counts.merge(counts), sums=state.sums.merge(sums))
