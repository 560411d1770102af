"""The update kernels of :class:`~jaxheads.metrics.BinaryClassifierMetrics`.

Two entries share one fold:

* :func:`fold_probabilities` — the general API (probabilities, optional
  class ids, loss and logits, each materialised by the caller);
* :func:`fold_logits` — the heads' path: logits in, and the probability, the
  class id (``x > 0``) and the sigmoid cross-entropy computed here, in one
  fused pass with ONE ``exp`` (:func:`jaxheads.losses.sigmoid_loss_and_probability`).
  On CPU this halves the update: the head used to hand over a sigmoid, a
  loss and class ids as separate ``[N, 1]`` arrays, each its own pass.

Both flatten their inputs first (``[N, 1]`` loops are slow on XLA:CPU, see
:func:`jaxheads._shapes.flat_views`). Without weights every count is one
int32 scatter; with weights the compensated scatter of
:func:`~jaxheads.metrics._batch_sum.exact_segment_sum`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

from jaxheads._shapes import match_trailing_one
from jaxheads.losses import sigmoid_loss_and_probability
from jaxheads.metrics._batch_sum import exact_segment_sum, exact_total
from jaxheads.metrics._confusion import count_thresholds_below
from jaxheads.metrics._exact_sum import ExactSum
from jaxheads.metrics._histogram_kernels import histogram_counts
from jaxheads.metrics._shapes import as_f32, flat_batch, match_label_rank, present

if TYPE_CHECKING:
    from jaxheads.metrics._binary import BinaryClassifierMetrics

__all__ = ["fold_logits", "fold_probabilities", "marginal"]


def marginal(x: ExactSum, keep: tuple[int, ...]) -> ExactSum:
    """Exact sum of ``x`` over every axis not in ``keep`` (kept axes stay in order)."""
    drop = [a for a in range(x.hi.ndim) if a not in keep]
    if not drop:
        return x
    order = drop + list(keep)
    kept_shape = tuple(x.hi.shape[a] for a in keep)
    hi = jnp.transpose(x.hi, order).reshape((-1, *kept_shape))
    lo = jnp.transpose(x.lo, order).reshape((-1, *kept_shape))
    # Compensated column sums (a few fused passes) rather than a pairwise tree of
    # merges: the tree is log2(rows) rounds of tiny ops, ~0.5 ms of dispatch on CPU.
    return exact_total(hi, axis=0).merge(exact_total(lo, axis=0))


def _same_shape(name: str, x: jax.Array, shape: tuple[int, ...], of: str) -> jax.Array:
    x = match_trailing_one(as_f32(x), len(shape))
    if tuple(x.shape) != shape:
        raise ValueError(f"{name} shape {tuple(x.shape)} != {of} shape {shape}.")
    return x


@jax.jit
def fold_probabilities(
    state: BinaryClassifierMetrics,
    labels: jax.Array,
    predictions: jax.Array,
    sample_weight: jax.Array | None,
    class_ids: jax.Array | None,
    loss: jax.Array | None,
    logits: jax.Array | None,
) -> BinaryClassifierMetrics:
    """``state`` with a batch of probabilities folded in (see ``BinaryClassifierMetrics.update``)."""
    shape = tuple(match_label_rank(as_f32(labels), as_f32(predictions))[1].shape)
    cid, ls, x = (
        None if a is None else _same_shape(name, a, shape, "predictions")
        for name, a in (("class_ids", class_ids), ("loss", loss), ("logits", logits))
    )
    flat_lab, flat_pred, w, (cid, ls, x) = flat_batch(
        labels, predictions, sample_weight, "predictions", cid, ls, x
    )
    kept_lab, kept_pred, ls, x = _drop_unweighted(w, flat_lab, flat_pred, ls, x)
    pred = present(kept_pred)
    cid_bit = pred > 0.5 if cid is None else cid > 0.5
    return _fold(state, present(kept_lab), pred, w, cid_bit, ls, x)


@jax.jit
def fold_logits(
    state: BinaryClassifierMetrics,
    labels: jax.Array,
    logits: jax.Array,
    sample_weight: jax.Array | None,
    loss: jax.Array | None,
) -> BinaryClassifierMetrics:
    """``state`` with a batch of logits folded in (see ``BinaryClassifierMetrics.update_logits``)."""
    shape = tuple(match_label_rank(as_f32(labels), as_f32(logits))[1].shape)
    ls = None if loss is None else _same_shape("loss", loss, shape, "logits")
    flat_lab, flat_x, w, (ls,) = flat_batch(labels, logits, sample_weight, "logits", ls)
    kept_lab, kept_x, ls = _drop_unweighted(w, flat_lab, flat_x, ls)
    lab, x = present(kept_lab), present(kept_x)
    own_loss, pred = sigmoid_loss_and_probability(lab, x)
    return _fold(state, lab, pred, w, x > 0, own_loss if ls is None else ls, x)


def _joint_index(
    state: BinaryClassifierMetrics, lab: jax.Array, pred: jax.Array, cid_bit: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Per element: the joint bucket of ``state.joint`` and the label class (0 / 1 / soft)."""
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
    idx = (((b * 3 + c) * kk + k) * 2 + tie) * 2 + cid_bit.astype(jnp.int32)
    return idx, c


def _fold(
    state: BinaryClassifierMetrics,
    lab: jax.Array,
    pred: jax.Array,
    w: jax.Array | None,
    cid_bit: jax.Array,
    ls: jax.Array | None,
    x: jax.Array | None,
) -> BinaryClassifierMetrics:
    """The fold of flat float32 arrays: one scatter (plus the logit histogram's) and the sums."""
    idx, c = _joint_index(state, lab, pred, cid_bit)
    hist, by_logit = _histograms(state, lab, x, w, idx, c)
    logit_counts = state.logit_counts
    if logit_counts is not None and by_logit is not None:
        logit_counts = logit_counts.merge(by_logit)
    # Loss, prediction and soft-label sums are not counts: XLA's blocked float32
    # reduction is as accurate as TF's (~1e-7 relative at 2^24). Σ W and the hard
    # labels' Σ W·label are marginals of the exact joint table, taken by the views.
    # Plain products: _drop_unweighted made every zero-weight term finite, and a
    # select here would keep XLA:CPU from fusing the products into the reductions.
    soft = ((lab != 0) & (lab != 1)).astype(jnp.float32)  # NaN labels count as soft
    parts = [ExactSum.zeros(()) if ls is None else _float_total(_weighted(w, ls))]
    parts += [_float_total(_weighted(w, pred)), _float_total(_weighted(w, lab * soft))]
    sums = ExactSum(jnp.stack([p.hi for p in parts]), jnp.stack([p.lo for p in parts]))
    return state.replace(
        joint=state.joint.merge(hist.reshape(state.joint.shape)),
        sums=state.sums.merge(sums),
        logit_counts=logit_counts,
    )


def _float_total(x: jax.Array) -> ExactSum:
    return ExactSum(jnp.sum(x), jnp.zeros((), jnp.float32))


def _histograms(
    state: BinaryClassifierMetrics,
    lab: jax.Array,
    x: jax.Array | None,
    w: jax.Array | None,
    idx: jax.Array,
    c: jax.Array,
) -> tuple[ExactSum, ExactSum | None]:
    """The batch's joint table and, when the state keeps one, its logit histogram."""
    size = state.joint.hi.size
    if state.logit_counts is None:
        return exact_segment_sum(w, idx, size), None
    if x is None:
        raise ValueError("This BinaryClassifierMetrics keeps a logit histogram: pass logits.")
    grid = (state.logit_buckets, state.logit_grid)
    if w is None:
        hist = exact_segment_sum(None, idx, size)
        # Counts: "some label is soft" is read off the joint table (no pass over the batch).
        some_soft = jnp.sum(hist.hi.reshape((state.num_thresholds, 3, -1))[:, 2]) > 0
        by_logit = histogram_counts(lab, x, None, *grid, soft=some_soft)
        assert isinstance(by_logit, ExactSum)
        return hist, by_logit
    # Weights: both histograms share one digit split; the flag is not read off the
    # table, where signed weights could cancel.
    both = histogram_counts(lab, x, w, *grid, shared=(idx, size), soft=jnp.any(c == 2))
    assert isinstance(both, tuple)
    return both[1], both[0]


def _weighted(w: jax.Array | None, x: jax.Array) -> jax.Array:
    """``w · x`` (``x`` without weights); see :func:`_drop_unweighted` for ``0 · inf``."""
    return x if w is None else w * x


def _drop_unweighted(
    w: jax.Array | None, *arrays: jax.Array | None
) -> tuple[jax.Array | None, ...]:
    """``arrays`` with 0 where the weight is 0 (``None`` passes through).

    A zero weight removes the element, even a non-finite one (TF would sum
    ``0 · inf = NaN``), and no ``0 · inf`` is ever computed: the weighted sums
    downstream are plain products, which XLA fuses into its reductions (a
    ``where`` inside the products measured ~1 ms slower at 10^6 on CPU).
    """
    if w is None:
        return arrays
    return tuple(None if a is None else jnp.where(w == 0, jnp.zeros_like(a), a) for a in arrays)
