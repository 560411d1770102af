"""Results of a :class:`~jaxheads.metrics.LogitHistogram` (pure, jitted functions of its fields).

``counts`` is an :class:`ExactSum` ``[2, B]`` (row 0 negatives, row 1
positives, buckets in ascending logit order). Tail sums ``Σ_{b' >= b}`` are
exact double-float reverse cumulative sums; products and their totals are
float32 with compensated totals, so every result is within a few float32
ulps of the same formula evaluated exactly on the histogram.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import xlogy

from jaxheads.metrics._batch_sum import exact_segment_sum, exact_total
from jaxheads.metrics._exact_sum import ExactSum, reverse_cumsum
from jaxheads.reduction import safe_divide

__all__ = [
    "average_precision",
    "calibration",
    "curve_points",
    "delong_stderr",
    "ece",
    "normalized_entropy",
    "operating_point",
    "roc_auc",
]

# Outward widening of the certified AUC bounds, for the float32 rounding of
# their own evaluation (each term within ~4 ulps, the totals compensated).
_BOUND_SLACK = np.float32(1e-6)


def _row(x: ExactSum, i: int) -> ExactSum:
    return ExactSum(x.hi[i], x.lo[i])


def _tails(counts: ExactSum) -> dict[str, jax.Array]:
    """Per bucket: neg, pos, tail sums (>= b) of both, totals, negatives strictly below."""
    cum = reverse_cumsum(counts)
    neg_tail, pos_tail = _row(cum, 0), _row(cum, 1)
    n_tot = ExactSum(cum.hi[0, 0], cum.lo[0, 0])
    p_tot = ExactSum(cum.hi[1, 0], cum.lo[1, 0])
    b = counts.shape[1]
    n_b = ExactSum(jnp.broadcast_to(n_tot.hi, (b,)), jnp.broadcast_to(n_tot.lo, (b,)))
    return {
        "neg": _row(counts, 0).value(),
        "pos": _row(counts, 1).value(),
        "fp": neg_tail.value(),  # negatives at or above bucket b
        "tp": pos_tail.value(),
        "neg_below": n_b.merge(neg_tail.negate()).value(),
        "pos_above": pos_tail.merge(_row(counts, 1).negate()).value(),  # strictly above
        "N": n_tot.value(),
        "P": p_tot.value(),
    }


@jax.jit
def roc_auc(counts: ExactSum) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(auc, lower, upper)``: ties half / 0 / 1; ``(0, 0, 1)`` when a class is empty."""
    t = _tails(counts)
    strict = exact_total(t["pos"] * t["neg_below"]).value()
    tie = exact_total(t["pos"] * t["neg"]).value()
    pn = t["P"] * t["N"]
    ok = pn > 0
    auc = safe_divide(strict + 0.5 * tie, pn)
    lower = jnp.where(ok, jnp.maximum(safe_divide(strict, pn) - _BOUND_SLACK, 0.0), 0.0)
    upper = jnp.where(ok, jnp.minimum(safe_divide(strict + tie, pn) + _BOUND_SLACK, 1.0), 1.0)
    return auc, lower, upper


@jax.jit
def delong_stderr(counts: ExactSum) -> jax.Array:
    """DeLong et al. (1988) standard error with bucket ties (structural components).

    ``V10`` of a positive in bucket b = (negatives below + half the bucket's) / N,
    ``V01`` of a negative = (positives above + half the bucket's) / P;
    ``var = S10 / P + S01 / N`` with ``S10 = Σ pos_b (V10_b − A)² / (P − 1)``.
    ``inf`` when either class has total weight <= 1.
    """
    t = _tails(counts)
    big_p, big_n = t["P"], t["N"]
    auc = safe_divide(
        exact_total(t["pos"] * (t["neg_below"] + 0.5 * t["neg"])).value(), big_p * big_n
    )
    v10 = safe_divide(t["neg_below"] + 0.5 * t["neg"], big_n)
    v01 = safe_divide(t["pos_above"] + 0.5 * t["pos"], big_p)
    s10 = safe_divide(exact_total(t["pos"] * (v10 - auc) ** 2).value(), big_p - 1.0)
    s01 = safe_divide(exact_total(t["neg"] * (v01 - auc) ** 2).value(), big_n - 1.0)
    var = safe_divide(s10, big_p) + safe_divide(s01, big_n)
    ok = (big_p > 1) & (big_n > 1)
    return jnp.where(ok, jnp.sqrt(var), jnp.inf)


@jax.jit
def average_precision(counts: ExactSum) -> jax.Array:
    """``Σ_k (R_k − R_{k+1}) · P_k`` over buckets descending (scikit-learn's step sum)."""
    t = _tails(counts)
    precision = safe_divide(t["tp"], t["tp"] + t["fp"])
    return safe_divide(exact_total(t["pos"] * precision).value(), t["P"])


def curve_points(counts: ExactSum, edges: np.ndarray, kind: str) -> dict[str, jax.Array]:
    """ROC (with the (0, 0) start) or PR points at the bucket edges, descending threshold."""
    t = _curve_arrays(counts)
    thresholds = jnp.asarray(edges[::-1], jnp.float32)
    if kind == "roc":
        zero = jnp.zeros((1,), jnp.float32)
        return {
            "thresholds": jnp.concatenate([jnp.full((1,), jnp.inf, jnp.float32), thresholds]),
            "fpr": jnp.concatenate([zero, t["fpr"][::-1]]),
            "tpr": jnp.concatenate([zero, t["recall"][::-1]]),
        }
    return {
        "thresholds": thresholds,
        "precision": t["precision"][::-1],
        "recall": t["recall"][::-1],
    }


@jax.jit
def _curve_arrays(counts: ExactSum) -> dict[str, jax.Array]:
    """Per bucket threshold k (positive iff bucket >= k): recall, precision, fpr, specificity."""
    t = _tails(counts)
    return {
        "recall": safe_divide(t["tp"], t["P"]),
        "precision": safe_divide(t["tp"], t["tp"] + t["fp"]),
        "fpr": safe_divide(t["fp"], t["N"]),
        "specificity": safe_divide(t["neg_below"], t["N"]),
        "predicted": t["tp"] + t["fp"],
    }


@functools.partial(jax.jit, static_argnames=("which",))
def operating_point(counts: ExactSum, value: jax.Array, which: str) -> jax.Array:
    """Best precision / recall / sensitivity under a constraint over the bucket thresholds."""
    t = _curve_arrays(counts)
    some = t["predicted"] > 0
    if which == "precision_at_recall":
        ok = some & (t["recall"] >= value)
        return jnp.max(jnp.where(ok, t["precision"], 0.0))
    if which == "recall_at_precision":
        ok = some & (t["precision"] >= value)
        return jnp.max(jnp.where(ok, t["recall"], 0.0))
    if which == "sensitivity_at_specificity":
        # The threshold above every bucket (nothing positive) has specificity 1, TPR 0.
        ok = t["specificity"] >= value
        return jnp.max(jnp.where(ok, t["recall"], 0.0))
    raise ValueError(f"unknown operating point {which!r}")


def _bins(centres: np.ndarray, num_bins: int) -> tuple[np.ndarray, np.ndarray]:
    p = 1.0 / (1.0 + np.exp(-centres))
    return np.minimum(np.floor(p * num_bins), num_bins - 1).astype(np.int32), p.astype(np.float32)


@functools.partial(jax.jit, static_argnames=("num_bins",))
def _bin_sums(
    counts: ExactSum, bins: jax.Array, p: jax.Array, num_bins: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    neg, pos = _row(counts, 0).value(), _row(counts, 1).value()
    weight = neg + pos
    w = exact_segment_sum(weight, bins, num_bins).value()
    y = exact_segment_sum(pos, bins, num_bins).value()
    pw = exact_segment_sum(weight * p, bins, num_bins).value()
    return w, y, pw


def calibration(counts: ExactSum, centres: np.ndarray, num_bins: int) -> dict[str, jax.Array]:
    """Reliability table: weight, mean probability and positive rate per probability bin."""
    bins, p = _bins(centres, num_bins)
    w, y, pw = _bin_sums(counts, jnp.asarray(bins), jnp.asarray(p), num_bins)
    return {
        "bin_edges": jnp.linspace(0.0, 1.0, num_bins + 1, dtype=jnp.float32),
        "weight": w,
        "mean_probability": safe_divide(pw, w),
        "positive_rate": safe_divide(y, w),
    }


def ece(counts: ExactSum, centres: np.ndarray, num_bins: int) -> jax.Array:
    """Expected calibration error ``Σ_bins |Σw·y − Σw·p| / Σw``."""
    bins, p = _bins(centres, num_bins)
    w, y, pw = _bin_sums(counts, jnp.asarray(bins), jnp.asarray(p), num_bins)
    return safe_divide(jnp.sum(jnp.abs(y - pw)), jnp.sum(w))


@jax.jit
def normalized_entropy(sums: ExactSum) -> jax.Array:
    """``(Σw·loss / Σw) / H(Σw·y / Σw)`` with ``H`` the binary entropy (nats).

    0 when there is no loss to normalise (an empty evaluation, or every loss
    exactly 0); ``inf`` when there is loss but the base rate is 0 or 1.
    """
    s = sums.value()
    mean_loss = safe_divide(s[0], s[3])
    rate = safe_divide(s[2], s[3])
    # `0 - …`, not `-…`: a base rate of 0 or 1 has entropy +0 (so NE is +inf, not -inf).
    h = 0.0 - (xlogy(rate, rate) + xlogy(1.0 - rate, 1.0 - rate))
    return jnp.where(mean_loss == 0, 0.0, mean_loss / jnp.where(mean_loss == 0, 1.0, h))


def calibration_ratio(sums: ExactSum) -> jax.Array:
    """``Σw·p / Σw·y``: 0 for an empty evaluation, 1 when both sums are 0 (no
    positives predicted or observed), ``inf`` for predictions without positives."""
    s = sums.value()
    predicted, observed = s[1], s[2]
    both_zero = (predicted == 0) & (observed == 0)
    ratio = predicted / jnp.where(both_zero, 1.0, observed)
    return jnp.where(s[3] == 0, 0.0, jnp.where(both_zero, 1.0, ratio))
