"""BinaryClassifierMetrics: its views equal the separate states, exactly."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.sharding import PartitionSpec as P

from jaxheads import metrics

THRESHOLDS = (0.75, 0.25, 0.5)
T = 200


def _data(seed, shape=(96, 1), weights="B1"):
    rng = np.random.default_rng(seed)
    y = (rng.random(shape) < 0.4).astype(np.float32)
    y[rng.random(shape) < 0.1] = 0.6  # soft labels
    p = rng.random(shape).astype(np.float32)
    flat = p.reshape(-1)
    flat[::7] = np.float32(0.5)  # ties with an explicit threshold (and class-id edge)
    flat[3::11] = np.float32(31 / 199)  # Keras' rounding tie on the curve grid
    flat[5::13] = np.float32(1.3)  # clipped for the curve only
    flat[6::17] = np.float32(np.inf)
    cid = (rng.random(shape) < 0.5).astype(np.float32)
    loss = rng.random(shape).astype(np.float32)
    w = {
        "B1": rng.integers(0, 4, (shape[0], 1)),
        "B": rng.integers(0, 4, shape[0]),
        "Bk": rng.integers(0, 4, shape),
        "none": None,
    }[weights]
    w = None if w is None else w.astype(np.float32)
    return y, p, w, cid, loss


def _separate(y, p, w, cid, loss):
    return {
        "curve": metrics.ConfusionCurve.empty(T).update(y, p, w),
        "at": metrics.ConfusionAtThresholds.empty(THRESHOLDS).update(y, p, w),
        "at_incl": metrics.ConfusionAtThresholds.empty(THRESHOLDS, inclusive=True).update(y, p, w),
        "cid": metrics.ConfusionAtThresholds.empty((0.5,)).update(y, cid, w),
        "acc": metrics.Accuracy.empty().update(y, cid, w),
        "loss": metrics.Mean.empty().update(loss, w),
        "pred": metrics.Mean.empty().update(p, w),
        "label": metrics.Mean.empty().update(y, w),
    }


@pytest.mark.parametrize(
    "shape, weights", [((96, 1), "B1"), ((96, 1), "none"), ((32, 3), "B"), ((32, 3), "Bk")]
)
def test_views_equal_separate_states(shape, weights):
    y, p, w, cid, loss = _data(0, shape, weights)
    b = metrics.BinaryClassifierMetrics.empty(T, THRESHOLDS)
    b = b.update(y, p, w, class_ids=cid, loss=loss)
    sep = _separate(y, p, w, cid, loss)
    finite = np.isfinite(p)
    p_fin = np.where(finite, p, 0.0)  # means of inf predictions are inf in both
    np.testing.assert_array_equal(b.curve().counts.to_numpy(), sep["curve"].counts.to_numpy())
    np.testing.assert_array_equal(b.at_thresholds().counts.to_numpy(), sep["at"].counts.to_numpy())
    np.testing.assert_array_equal(
        b.at_thresholds(inclusive=True).counts.to_numpy(), sep["at_incl"].counts.to_numpy()
    )
    np.testing.assert_array_equal(b.class_ids().counts.to_numpy(), sep["cid"].counts.to_numpy())
    assert float(b.class_ids().accuracy()[0]) == pytest.approx(float(sep["acc"].compute()))
    for key in ("loss", "label"):
        assert float(b.mean(key).compute()) == pytest.approx(float(sep[key].compute()), rel=1e-6)
    assert b.mean("label").count.to_numpy() == sep["label"].count.to_numpy()
    del p_fin
    assert float(b.curve().pr_auc()) == float(sep["curve"].pr_auc())
    np.testing.assert_array_equal(
        b.at_thresholds(epsilon=1e-7).precision(), sep["at"].precision(epsilon=1e-7)
    )


def test_default_class_ids_loss_and_compute_keys():
    y, p, w, _, _ = _data(1)
    p = np.clip(p, 0, 1)
    b = metrics.BinaryClassifierMetrics.empty(T, THRESHOLDS).update(y, p, w)
    sep = metrics.ConfusionAtThresholds.empty((0.5,)).update(y, (p > 0.5).astype(np.float32), w)
    np.testing.assert_array_equal(b.class_ids().counts.to_numpy(), sep.counts.to_numpy())
    out = b.compute()
    assert float(out["average_loss"]) == 0.0  # no loss given
    assert float(out["prediction/mean"]) == pytest.approx(
        float((p * w).sum() / (np.ones_like(p) * w).sum()), rel=1e-6
    )
    assert {
        "auc",
        "auc_precision_recall",
        "accuracy/positive_threshold_0.25",
        "recall/positive_threshold_0.75",
    } <= set(out)
    none = metrics.BinaryClassifierMetrics.empty(7)
    assert none.joint.shape == (7, 3, 1, 2, 2)
    with pytest.raises(ValueError, match="no explicit thresholds"):
        none.at_thresholds()
    with pytest.raises(ValueError, match="loss shape"):
        none.update(y, p, w, loss=np.ones((96, 2), np.float32))
    with pytest.raises(ValueError):
        none.mean("logits")


def test_streams_merges_and_all_reduces():
    y, p, w, cid, loss = _data(2, (64, 1))
    mesh = jax.make_mesh((8,), ("batch",), (jax.sharding.AxisType.Auto,))

    def per_device(y, p, w, cid, loss):
        s = metrics.BinaryClassifierMetrics.empty(T, THRESHOLDS)
        return metrics.all_reduce(s.update(y, p, w, class_ids=cid, loss=loss), "batch")

    f = jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=P("batch"), out_specs=P()))
    reduced = f(*(jnp.asarray(a) for a in (y, p, w, cid, loss)))
    one = metrics.BinaryClassifierMetrics.empty(T, THRESHOLDS).update(
        y, p, w, class_ids=cid, loss=loss
    )
    np.testing.assert_array_equal(reduced.joint.to_numpy(), one.joint.to_numpy())
    step = jax.jit(lambda s, *a: s.update(*a[:3], class_ids=a[3], loss=a[4]))
    folded = metrics.BinaryClassifierMetrics.empty(T, THRESHOLDS)
    for i in range(4):
        sl = slice(16 * i, 16 * (i + 1))
        folded = step(folded, y[sl], p[sl], w[sl], cid[sl], loss[sl])
    np.testing.assert_array_equal(folded.joint.to_numpy(), one.joint.to_numpy())
    np.testing.assert_allclose(folded.sums.to_numpy(), one.sums.to_numpy(), rtol=1e-6)


def _logit_data(seed, n=4099):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 1)) < 0.3).astype(np.float32)
    y[rng.random((n, 1)) < 0.05] = 0.25  # soft labels
    x = (rng.normal(size=(n, 1)) * 4).astype(np.float32)
    x[::97] = 0.0  # class id 0 and p == 0.5 exactly (a threshold tie)
    x[1::89] = np.inf
    x[2::83] = -np.inf
    w = rng.integers(0, 4, n).astype(np.float32)
    w[3::7] = 0.0
    x[3::14] = np.nan  # only where the weight is 0: removed, not NaN
    return y, x, w


@pytest.mark.parametrize("extended", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_update_logits_equals_update_of_its_parts(extended, weighted):
    """The fused logits path = update(σ(x), class_ids=x > 0, loss=BCE, logits=x), exactly."""
    from jaxheads.losses import sigmoid_loss_and_probability

    y, x, w = _logit_data(1)
    if not weighted:
        x = np.where(np.isnan(x), 1.0, x).astype(np.float32)
        w = None
    buckets = 1024 if extended else 0
    empty = metrics.BinaryClassifierMetrics.empty(T, THRESHOLDS, logit_buckets=buckets)
    fused = jax.jit(lambda s: s.update_logits(y, x, w))(empty)
    loss, p = sigmoid_loss_and_probability(jnp.asarray(y), jnp.asarray(x))
    parts = empty.update(y, p, w, class_ids=(x > 0).astype(np.float32), loss=loss, logits=x)
    for a, b in zip(jax.tree.leaves(fused), jax.tree.leaves(parts), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-6, atol=1e-6)
    out = fused.compute()
    if weighted:  # the NaN and ±inf logits sit at weight 0 or are finite in every mean
        keep = w != 0
        assert np.isfinite(float(out["prediction/mean"]))
        want_label = np.sum(w[keep] * y[keep, 0]) / np.sum(w[keep])
        assert float(out["label/mean"]) == pytest.approx(want_label, rel=1e-7)


def test_unweighted_counts_equal_unit_weights_exactly():
    """No weights (int32 counts) and weights of 1 (digit scatters) agree bit for bit."""
    y, x, _ = _logit_data(2)
    x = np.where(np.isnan(x), 1.0, x).astype(np.float32)
    empty = metrics.BinaryClassifierMetrics.empty(T, THRESHOLDS)
    none = empty.update_logits(y, x)
    ones = empty.update_logits(y, x, np.ones(x.shape[0], np.float32))
    np.testing.assert_array_equal(none.joint.to_numpy(), ones.joint.to_numpy())
    for k, v in none.compute().items():
        np.testing.assert_allclose(
            np.asarray(v), np.asarray(ones.compute()[k]), rtol=1e-6, err_msg=k
        )


def test_label_and_weight_totals_come_from_the_joint_table():
    """Σ W and Σ W·label: exact past 2^24 (integer weights), soft labels added on top."""
    n = 2**12
    y = np.ones(n, np.float32)
    y[: n // 4] = 0.5
    w = np.full(n, 2.0**13, np.float32)  # Σ W = 2^25: a float32 sum of these is still exact,
    w[0] = 1.0  # but one odd weight is lost by float32 above 2^24
    m = metrics.BinaryClassifierMetrics.empty().update_logits(y, np.zeros(n, np.float32), w)
    total = np.sum(w.astype(np.float64))
    assert m.mean("label").count.to_numpy() == total
    assert m.mean("label").total.to_numpy() == np.sum(w.astype(np.float64) * y)


_SHAPES = st.sampled_from([(7, 1), (2, 3, 1), (4, 2, 3, 1), (1, 1)])


@settings(max_examples=25, deadline=None)
@given(
    shape=_SHAPES,
    weight_form=st.sampled_from(["none", "scalar", "batch", "full"]),
    seed=st.integers(0, 2**16),
    extended=st.booleans(),
)
def test_update_logits_matches_its_parts_for_any_leading_dims(shape, weight_form, seed, extended):
    """Any leading dimensions and TF weight shapes: update_logits = update of its parts."""
    from jaxheads.losses import sigmoid_loss_and_probability

    rng = np.random.default_rng(seed)
    y = rng.choice(np.float32([0.0, 1.0, 0.4]), size=shape)
    x = (rng.normal(size=shape) * 6).astype(np.float32)
    w = {
        "none": None,
        "scalar": np.float32(rng.integers(0, 3)),
        "batch": rng.integers(0, 3, shape[:-1]).astype(np.float32),
        "full": rng.integers(0, 3, shape).astype(np.float32),
    }[weight_form]
    empty = metrics.BinaryClassifierMetrics.empty(
        20, (0.3, 0.5), logit_buckets=64 if extended else 0
    )
    fused = empty.update_logits(y, x, w)
    loss, p = sigmoid_loss_and_probability(jnp.asarray(y), jnp.asarray(x))
    parts = empty.update(y, p, w, class_ids=(x > 0).astype(np.float32), loss=loss, logits=x)
    for a, b in zip(jax.tree.leaves(fused), jax.tree.leaves(parts), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-6, atol=1e-6)


def test_update_logits_names_the_argument_that_does_not_fit():
    m = metrics.BinaryClassifierMetrics.empty()
    y, x = np.zeros((3, 1), np.float32), np.zeros((3, 1), np.float32)
    with pytest.raises(ValueError, match=r"loss shape \(4, 1\) != logits shape \(3, 1\)"):
        m.update_logits(y, x, loss=np.zeros((4, 1), np.float32))
    with pytest.raises(ValueError, match=r"sample_weight shape \(4,\) .* logits shape \(3, 1\)"):
        m.update_logits(y, x, np.ones(4, np.float32))
    with pytest.raises(ValueError, match=r"labels and predictions must have the same shape"):
        m.update_logits(np.zeros((4, 1), np.float32), x)
    empty = m.update_logits(np.zeros((0, 1), np.float32), np.zeros((0, 1), np.float32))
    assert all(float(v) == 0.0 for v in empty.compute().values())
