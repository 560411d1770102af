"""BinaryClassifierMetrics: its views equal the separate states, exactly."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
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
