"""ClassLogitHistograms: one :class:`LogitHistogram` per class, filled by one scatter.

For multi-label heads (a sigmoid per class) and, one-vs-rest, for multi-class
heads (class ``k`` against the rest, scored by its log-odds
``logit_k − logsumexp_{j≠k} logit_j``). Memory: ``C · 2 · num_buckets``
double-floats plus ``C · 4`` sums — 256 KiB per class at the default 16,384
buckets (25 MiB for 100 classes); choose ``num_buckets`` accordingly.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.typing import ArrayLike

from jaxheads.losses import sigmoid_loss_and_probability
from jaxheads.metrics._base import MetricState
from jaxheads.metrics._batch_sum import exact_total
from jaxheads.metrics._exact_sum import ExactSum
from jaxheads.metrics._histogram import DEFAULT_BUCKETS, DEFAULT_GRID, LogitHistogram
from jaxheads.metrics._histogram_kernels import histogram_counts
from jaxheads.metrics._shapes import as_f32, broadcast_weights, times_or_zero

__all__ = ["ClassLogitHistograms", "one_vs_rest_logits"]


def one_vs_rest_logits(logits: ArrayLike) -> jax.Array:
    """Log-odds of each class against the rest under a softmax: ``[…, C]`` → ``[…, C]``.

    ``log p_k − log(1 − p_k) = logit_k − logsumexp_{j≠k} logit_j``, computed
    stably (the other classes' logsumexp masks class ``k`` with ``-inf``).

    Examples:
      >>> x = jnp.log(jnp.array([[0.5, 0.25, 0.25]]))
      >>> [round(float(v), 4) for v in one_vs_rest_logits(x)[0]]  # log(p / (1 - p))
      [0.0, -1.0986, -1.0986]
    """
    x = as_f32(logits)
    c = x.shape[-1]
    mask = jnp.eye(c, dtype=bool)
    others = jnp.where(mask, -jnp.inf, x[..., None, :])  # [..., C (k), C (j)]
    return x - jax.nn.logsumexp(others, axis=-1)


class ClassLogitHistograms(MetricState):
    """Per-class logit histograms and exact per-class sums (see :class:`LogitHistogram`).

    Attributes:
      counts: :class:`ExactSum` ``[C, 2, num_buckets]`` (negatives, positives per class).
      sums: :class:`ExactSum` ``[C, 4]``: per class ``Σw·loss`` (the class's own
        sigmoid cross-entropy of its logit), ``Σw·p``, ``Σw·y``, ``Σw``.
      num_buckets: static, as :class:`LogitHistogram`.
      grid: static, as :class:`LogitHistogram`.

    Examples:
      >>> h = ClassLogitHistograms.empty(2, num_buckets=64)
      >>> h = h.update(jnp.array([[1, 0], [0, 1]]), jnp.array([[2.0, -1.0], [-3.0, 0.5]]))
      >>> [float(h.histogram(c).roc_auc()) for c in range(2)]
      [1.0, 1.0]
    """

    counts: ExactSum
    sums: ExactSum
    num_buckets: int = struct.field(pytree_node=False, default=DEFAULT_BUCKETS)
    grid: tuple[float, float] = struct.field(pytree_node=False, default=DEFAULT_GRID)

    @classmethod
    def empty(
        cls,
        num_classes: int,
        num_buckets: int = DEFAULT_BUCKETS,
        grid: Sequence[float] = DEFAULT_GRID,
    ) -> ClassLogitHistograms:
        """``num_classes`` fresh histograms (arguments validated as :meth:`LogitHistogram.empty`).

        Raises:
          ValueError: on ``num_classes`` < 1 or an invalid histogram configuration.
        """
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
            raise ValueError(f"num_classes must be a positive integer; got {num_classes!r}.")
        if num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer; got {num_classes!r}.")
        one = LogitHistogram.empty(num_buckets, grid)
        c = int(num_classes)
        return cls(
            counts=ExactSum.zeros((c, 2, one.num_buckets)),
            sums=ExactSum.zeros((c, 4)),
            num_buckets=one.num_buckets,
            grid=one.grid,
        )

    @property
    def num_classes(self) -> int:
        """Number of classes ``C``."""
        return int(self.counts.hi.shape[0])

    def update(
        self, labels: ArrayLike, logits: ArrayLike, sample_weight: ArrayLike | None = None
    ) -> ClassLogitHistograms:
        """Folds in a batch (pure; jittable): one scatter for every class.

        Args:
          labels: ``[D0, …, DN, C]`` in [0, 1] (multi-hot, one-hot or soft).
          logits: ``[D0, …, DN, C]`` (for one-vs-rest of a softmax, pass
            :func:`one_vs_rest_logits`).
          sample_weight: ``None``, a scalar, or broadcastable to the logits (TF
            rules: ``[D0, …, DN]`` is one weight per example).

        Raises:
          ValueError: on shapes that do not match (naming them) or a wrong ``C``.
        """
        lab, x = as_f32(labels), as_f32(logits)
        if lab.shape != x.shape or x.ndim < 1 or x.shape[-1] != self.num_classes:
            raise ValueError(
                f"labels and logits must both be [..., {self.num_classes}]; got labels "
                f"{tuple(lab.shape)} and logits {tuple(x.shape)}."
            )
        w = None if sample_weight is None else jnp.asarray(sample_weight)
        return _update(self, lab, x, w)

    def histogram(self, class_index: int) -> LogitHistogram:
        """The :class:`LogitHistogram` of one class (a view: every result method applies)."""
        c = int(class_index)
        if not 0 <= c < self.num_classes:
            raise ValueError(f"class_index must be in [0, {self.num_classes}); got {class_index}.")
        return LogitHistogram(
            counts=ExactSum(self.counts.hi[c], self.counts.lo[c]),
            sums=ExactSum(self.sums.hi[c], self.sums.lo[c]),
            num_buckets=self.num_buckets,
            grid=self.grid,
        )

    def compute(self) -> list[dict[str, jax.Array]]:
        """Each class's :meth:`LogitHistogram.compute` table, in class order."""
        return [self.histogram(c).compute() for c in range(self.num_classes)]


@jax.jit
def _update(
    state: ClassLogitHistograms, labels: jax.Array, logits: jax.Array, weights: jax.Array | None
) -> ClassLogitHistograms:
    c = state.num_classes
    w = broadcast_weights(weights, tuple(logits.shape), "logits")
    lab, x = labels.reshape(-1), logits.reshape(-1)
    w = None if w is None else w.reshape(-1)
    groups = jnp.broadcast_to(jnp.arange(c, dtype=jnp.int32), logits.shape).reshape(-1)
    counts = histogram_counts(lab, x, w, state.num_buckets, state.grid, groups, c)
    assert isinstance(counts, ExactSum)
    loss, p = sigmoid_loss_and_probability(lab, x)

    def per_class(v: jax.Array) -> ExactSum:
        return exact_total(v.reshape(-1, c), axis=0)  # [N·C] -> [N, C] -> per class

    ones = jnp.ones_like(x)
    rows = [
        per_class(loss if w is None else times_or_zero(w, loss)),
        per_class(p if w is None else times_or_zero(w, p)),
        per_class(lab if w is None else w * lab),
        per_class(ones if w is None else w),
    ]
    sums = ExactSum(jnp.stack([r.hi for r in rows], 1), jnp.stack([r.lo for r in rows], 1))
    return state.replace(counts=state.counts.merge(counts), sums=state.sums.merge(sums))
