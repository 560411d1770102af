"""Update kernels of the logit histograms: bucketing, the class scatter, loss and sigmoid."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxheads.metrics._batch_sum import exact_segment_sum, exact_segment_sums
from jaxheads.metrics._exact_sum import ExactSum
from jaxheads.metrics._shapes import times_or_zero

__all__ = ["binary_loss_and_probability", "bucket_index", "histogram_counts"]


def binary_loss_and_probability(
    labels: jax.Array, logits: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Stable sigmoid cross-entropy and sigmoid from ONE ``exp``: ``(loss, p)``.

    ``loss = max(x, 0) − x·y + log1p(exp(−|x|))`` with the ``x·y`` terms
    written so that ``x = ±inf`` gives 0 when the label agrees and ``inf``
    otherwise (never ``inf − inf``).
    """
    e = jnp.exp(-jnp.abs(logits))
    coef = jnp.where(logits > 0, 1.0 - labels, -labels)
    linear = jnp.where(coef == 0, jnp.zeros_like(logits), coef * logits)
    loss = linear + jnp.log1p(e)
    inv = 1.0 / (1.0 + e)
    p = jnp.where(logits >= 0, inv, e * inv)
    return loss, p


def bucket_index(logits: jax.Array, num_buckets: int, grid: tuple[float, float]) -> jax.Array:
    """Monotone bucket of each float32 logit (NaN -> ``num_buckets``, dropped by the scatter)."""
    low, high = grid
    inv_width = np.float32((num_buckets - 2) / (high - low))
    u = (logits - np.float32(low)) * inv_width
    u = jnp.clip(u, -1.0, np.float32(num_buckets - 2))
    b = jnp.floor(u).astype(jnp.int32) + 1
    return jnp.where(jnp.isnan(logits), jnp.int32(num_buckets), b)


def histogram_counts(
    labels: jax.Array,
    logits: jax.Array,
    weights: jax.Array | None,
    num_buckets: int,
    grid: tuple[float, float],
    groups: jax.Array | None = None,
    num_groups: int = 1,
    *,
    shared: tuple[jax.Array, int] | None = None,
    soft: jax.Array | None = None,
) -> ExactSum | tuple[ExactSum, ExactSum]:
    """The ``[2, num_buckets]`` class histogram of flat float32 arrays (exact / compensated).

    Every element's whole weight first goes to its majority class (``y >= 0.5``)
    in one scatter over ``2 · num_buckets`` segments — an exact int32 count
    without weights. Soft labels then move the minority share ``w·min(y, 1 − y)``
    to the other class, in a correction that ``lax.cond`` skips when every label
    is 0 or 1. With ``groups`` (int32 per element, in ``[0, num_groups)``) one
    scatter fills ``num_groups`` histograms: ``[num_groups, 2, num_buckets]``.
    ``shared=(ids, size)``: another histogram of the same weights whose digit
    split is shared (the result is then ``(this, that)``). ``soft``: the caller's
    bool scalar "some label is neither 0 nor 1", when it has one (saves a pass).
    """
    b = bucket_index(logits, num_buckets, grid)
    if groups is not None:
        b = jnp.where(b == num_buckets, num_buckets, b + 2 * num_buckets * groups)
    two_b = 2 * num_buckets * num_groups
    nan = b == num_buckets  # NaN logits: kept out of both rows (the id two_b is dropped)
    major = (labels >= 0.5).astype(jnp.int32)
    if soft is None:
        soft = jnp.any((labels != 0) & (labels != 1))

    def ids(cls: jax.Array) -> jax.Array:
        return jnp.where(nan, jnp.int32(two_b), b + num_buckets * cls)

    other: ExactSum | None = None
    if weights is None:
        out = exact_segment_sum(None, ids(major), two_b)
        if shared is not None:
            other = exact_segment_sum(None, shared[0], shared[1])
    elif shared is None:
        out = exact_segment_sum(weights, ids(major), two_b)
    else:
        out, other = exact_segment_sums(weights, (ids(major), shared[0]), (two_b, shared[1]))

    def correction() -> tuple[jax.Array, jax.Array]:
        share = jnp.minimum(labels, 1.0 - labels)
        moved = share if weights is None else times_or_zero(weights, share)
        to_minor = exact_segment_sum(moved, ids(1 - major), two_b)
        from_major = exact_segment_sum(moved, ids(major), two_b)
        fix = to_minor.merge(from_major.negate())
        return fix.hi, fix.lo

    # zeros_like of the counts: the same (e.g. shard_map-varying) type in both branches.
    c_hi, c_lo = jax.lax.cond(
        soft, correction, lambda: (jnp.zeros_like(out.hi), jnp.zeros_like(out.lo))
    )
    shape = (2, num_buckets) if groups is None else (num_groups, 2, num_buckets)
    hist = out.merge(ExactSum(c_hi, c_lo)).reshape(shape)
    return hist if other is None else (hist, other)
