"""Hand-computed values, the TF spec's test vectors (§3), shapes, dtypes and errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxheads import metrics


def sigmoid(x):
    return jax.nn.sigmoid(jnp.asarray(x, jnp.float32))


def curve_of(logits, labels, weights=None, num_thresholds=200):
    return metrics.ConfusionCurve.empty(num_thresholds).update(labels, sigmoid(logits), weights)


# ----------------------------------------------------------------------------- Mean
def test_mean_hand_values():
    m = metrics.Mean.empty()
    assert float(m.compute()) == 0.0  # nothing counted: 0, not NaN
    m = m.update(jnp.array([1.0, 3.0, 5.0, 7.0]), jnp.array([1.0, 1.0, 0.0, 0.0]))
    assert float(m.compute()) == 2.0
    m = m.update(jnp.array([10.0]), 2.0)  # scalar weight
    assert float(m.compute()) == pytest.approx((1 + 3 + 20) / 4)


@pytest.mark.parametrize(
    "weights, broadcast",
    [
        (np.array([1.0, 2.0, 3.0, 4.0]), lambda w: np.repeat(w[:, None], 3, 1)),  # [B]: per example
        (np.array([[1.0], [2.0], [3.0], [4.0]]), lambda w: np.repeat(w, 3, 1)),  # [B, 1]
        (np.arange(12.0).reshape(4, 3), lambda w: w),  # [B, k]
        (np.arange(12.0).reshape(4, 3, 1), lambda w: w[..., 0]),  # [B, k, 1]: squeezed
        (np.array([[1.0, 0.0, 2.0]]), lambda w: np.repeat(w, 4, 0)),  # [1, k]
        (np.float32(2.5), lambda w: np.full((4, 3), w)),  # scalar
    ],
)
def test_mean_weight_broadcasting(weights, broadcast):
    values = np.arange(12.0, dtype=np.float32).reshape(4, 3) - 3.0
    wb = broadcast(np.asarray(weights, np.float32))
    m = metrics.Mean.empty().update(values, weights)
    assert m.count.to_numpy() == pytest.approx(wb.sum())
    assert float(m.compute()) == pytest.approx((values * wb).sum() / wb.sum(), rel=1e-6)


@pytest.mark.parametrize(
    "values_shape, weights_shape",
    [((4, 3), (3,)), ((4, 3), (4, 2)), ((4, 3, 2), (4,)), ((4,), (4, 2)), ((4, 3), (2, 4, 3))],
)
def test_mean_rejects_what_tf_rejects(values_shape, weights_shape):
    with pytest.raises(ValueError, match="sample_weight shape") as err:
        metrics.Mean.empty().update(jnp.ones(values_shape), jnp.ones(weights_shape))
    assert str(weights_shape) in str(err.value) and str(values_shape) in str(err.value)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.int32, jnp.bool_])
def test_mean_accepts_any_dtype_and_computes_in_float32(dtype):
    x = jnp.array([[1.0], [0.0], [1.0]]).astype(dtype)
    m = metrics.Mean.empty().update(x, jnp.array([1.0, 2.0, 3.0]).astype(dtype))
    assert m.total.hi.dtype == jnp.float32
    assert m.compute().dtype == jnp.float32
    assert float(m.compute()) == pytest.approx(4.0 / 6.0)


def test_mean_spec_average_loss():
    # bin_v2_weighted_3ex: CE = [0, 41, 44], weights [1, .1, 1.5] -> 70.1 / 2.6
    m = metrics.Mean.empty().update(
        jnp.array([[0.0], [41.0], [44.0]]), jnp.array([[1.0], [0.1], [1.5]])
    )
    assert float(m.compute()) == pytest.approx(26.9615384615, rel=1e-6)


# ------------------------------------------------------------------------- Accuracy
def test_accuracy_spec_values():
    acc = metrics.Accuracy.empty().update(
        jnp.array([[1], [1], [0]]),
        jnp.array([[1.0], [0.0], [1.0]]),
        jnp.array([[1.0], [0.1], [1.5]]),
    )
    assert float(acc.compute()) == pytest.approx(0.38461538461, rel=1e-6)
    # float labels never equal a class id (bin_v2_float_labels)
    soft = metrics.Accuracy.empty().update(jnp.array([[0.8], [0.4]]), jnp.array([[1.0], [0.0]]))
    assert float(soft.compute()) == 0.0
    # labels [B] vs predictions [B, 1]
    a = metrics.Accuracy.empty().update(jnp.array([1, 0, 1]), jnp.array([[1], [1], [1]]))
    assert float(a.compute()) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match=r"\(3, 2\).*\(3, 3\)"):
        metrics.Accuracy.empty().update(jnp.ones((3, 2)), jnp.ones((3, 3)))


# -------------------------------------------------------------- confusion at thresholds
def test_thresholds_spec_binary():
    # bin_v2_thresholds: logits [-1, 1], labels [1, 1]
    c = metrics.ConfusionAtThresholds.empty((0.25, 0.5, 0.75))
    c = c.update(jnp.array([[1], [1]]), sigmoid([[-1.0], [1.0]]))
    np.testing.assert_allclose(c.accuracy(), [1.0, 0.5, 0.0])
    np.testing.assert_allclose(c.precision(), [1.0, 1.0, 0.0])
    np.testing.assert_allclose(c.recall(), [1.0, 0.5, 0.0])
    out = c.compute()
    assert set(out) == {"tp", "fp", "tn", "fn", "precision", "recall", "accuracy"}
    np.testing.assert_allclose(out["fn"], [0.0, 1.0, 2.0])


def test_thresholds_spec_multilabel():
    # ml_thresholds: every (example, class) pair is one point
    c = metrics.ConfusionAtThresholds.empty((0.25, 0.5, 0.75))
    c = c.update(jnp.array([[1, 0], [1, 1]]), sigmoid([[-1.0, 1.0], [-1.5, 1.5]]))
    np.testing.assert_allclose(c.accuracy(), [2 / 4, 1 / 4, 2 / 4], atol=1e-6)
    np.testing.assert_allclose(c.precision(), [2 / 3, 1 / 2, 1.0], atol=1e-6)
    np.testing.assert_allclose(c.recall(), [2 / 3, 1 / 3, 1 / 3], atol=1e-6)


def test_class_id_precision_recall_spec():
    # bin_v2_weighted_3ex: class ids [1, 0, 1], labels [1, 1, 0], weights [1, .1, 1.5]
    c = metrics.ConfusionAtThresholds.empty((0.5,)).update(
        jnp.array([[1], [1], [0]]),
        jnp.array([[1.0], [0.0], [1.0]]),
        jnp.array([[1.0], [0.1], [1.5]]),
    )
    assert float(c.precision()[0]) == pytest.approx(1 / 2.5, rel=1e-6)
    assert float(c.recall()[0]) == pytest.approx(1 / 1.1, rel=1e-6)
    # bin_v2_float_labels: labels .8, .4 count as positive for precision / recall
    f = metrics.ConfusionAtThresholds.empty((0.5,)).update(
        jnp.array([[0.8], [0.4]]), jnp.array([[1.0], [0.0]])
    )
    assert (float(f.precision()[0]), float(f.recall()[0]), float(f.accuracy()[0])) == (
        1.0,
        0.5,
        0.0,
    )


def test_inclusive_and_v1_epsilon():
    labels = jnp.array([1.0, 0.0, 1.0, 0.0])
    preds = jnp.array([0.5, 0.5, 0.7, 0.2])
    strict = metrics.ConfusionAtThresholds.empty(0.5).update(labels, preds)
    incl = metrics.ConfusionAtThresholds.empty(0.5, inclusive=True).update(labels, preds)
    assert float(strict.confusion()["tp"][0]) == 1.0 and float(incl.confusion()["tp"][0]) == 2.0
    assert float(strict.accuracy()[0]) == 0.75  # 0.5 -> negative: [F, T, T, T]
    assert float(incl.accuracy()[0]) == 0.75  # 0.5 -> positive: [T, F, T, T]
    # v1: tp / (tp + fp + 1e-7), also with an empty denominator
    v1 = metrics.ConfusionAtThresholds.empty((0.5, 0.9), epsilon=1e-7).update(labels, preds)
    np.testing.assert_allclose(v1.precision(), [1 / (1 + 1e-7), 0.0], rtol=1e-7)
    np.testing.assert_allclose(v1.recall(epsilon=0.0), [0.5, 0.0])
    assert float(v1.precision(epsilon=0.0)[1]) == 0.0


def test_thresholds_any_order_and_duplicates():
    labels = jnp.array([1, 0, 1, 1, 0])
    preds = jnp.array([0.9, 0.6, 0.4, 0.1, 0.3])
    c = metrics.ConfusionAtThresholds.empty((0.75, 0.2, 0.5, 0.2)).update(labels, preds)
    assert c.counts.shape == (3, 4)  # three distinct thresholds
    ref = metrics.ConfusionAtThresholds.empty((0.2, 0.5, 0.75)).update(labels, preds)
    np.testing.assert_allclose(c.precision(), np.asarray(ref.precision())[[2, 0, 1, 0]])
    np.testing.assert_allclose(c.confusion()["fn"], np.asarray(ref.confusion()["fn"])[[2, 0, 1, 0]])


def test_wrappers():
    y = jnp.array([0, 1, 1, 1])
    p = jnp.array([1.0, 0.0, 1.0, 1.0])
    assert float(metrics.Precision.empty().update(y, p).compute()) == pytest.approx(2 / 3)
    assert float(metrics.Recall.empty().update(y, p).compute()) == pytest.approx(2 / 3)
    assert metrics.Precision.empty((0.1, 0.9)).update(y, p).compute().shape == (2,)
    ba = metrics.BinaryAccuracy.empty(threshold=0.5).update(
        jnp.array([[1], [1], [0], [0]]), jnp.array([[0.98], [1.0], [0.0], [0.6]])
    )
    assert float(ba.compute()) == 0.75


def test_binary_accuracy_is_keras_mean_over_last_axis_then_weight():
    rng = np.random.default_rng(0)
    y = (rng.random((6, 4)) < 0.5).astype(np.float32)
    p = rng.random((6, 4)).astype(np.float32)
    w = rng.random(6).astype(np.float32)
    per_example = ((p > 0.5).astype(np.float32) == y).mean(axis=-1)
    expected = (per_example * w).sum() / w.sum()
    got = metrics.BinaryAccuracy.empty(0.5).update(y, p, w).compute()
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_thresholds_do_not_clip():
    # Keras' explicit-threshold path compares raw scores: 1.5 > 1.0 is positive.
    c = metrics.ConfusionAtThresholds.empty((1.0,)).update(jnp.array([1.0]), jnp.array([1.5]))
    assert float(c.confusion()["tp"][0]) == 1.0


# ----------------------------------------------------------------------------- AUC
SPEC_AUC = [
    # id, logits, labels, weights, roc, pr_v2, pr_v1, tol
    ("bin_v2_eval_basic", [[45.0], [-41.0]], [[1], [1]], None, 0.0, 1.0, 1.0, 1e-6),
    (
        "bin_v2_weighted_3ex",
        [[45], [-41], [44]],
        [[1], [1], [0]],
        [[1.0], [0.1], [1.5]],
        0.45454565,
        0.4010627,
        0.6737757325172424,
        1e-6,
    ),
    (
        "bin_v2_multi_dim",
        [[[10], [-10]], [[12], [-12]]],
        [[[0], [0]], [[1], [1]]],
        [[1.0, 1.5], [2.0, 2.5]],
        0.5222,
        0.6582,
        0.7341,
        1e-2,
    ),
    ("ml_eval", [[-1.0, 1.0], [-1.5, 1.5]], [[1, 0], [1, 1]], None, 0.3333, 0.7689, 0.7639, 1e-3),
    (
        "ml_weighted",
        [[-10.0, 10.0], [-15.0, 10.0]],
        [[1, 0], [1, 1]],
        [[1.0], [2.0]],
        0.2,
        0.7280,
        0.7833,
        1e-3,
    ),
    (
        "ml_multi_dim",
        [[[-10.0, 10.0, -10.0], [10.0, -10.0, 10.0]], [[-12.0, 12.0, -12.0], [12.0, -12.0, 12.0]]],
        [[[1, 0, 0], [1, 0, 0]], [[0, 1, 1], [0, 1, 1]]],
        [[1.0, 1.5], [2.0, 2.5]],
        0.4977,
        0.5461,
        0.6645,
        1e-3,
    ),
    (
        "mh_head1",
        [[-10.0, 10.0], [-15.0, 10.0]],
        [[1, 0], [1, 1]],
        None,
        0.1667,
        0.60228,
        0.6667,
        1e-3,
    ),
    (
        "mh_head2",
        [[20.0, -20.0, 20.0], [-30.0, 20.0, -20.0]],
        [[0, 1, 0], [1, 1, 0]],
        None,
        0.3333,
        0.40152,
        0.5,
        1e-3,
    ),
]


@pytest.mark.parametrize("case", SPEC_AUC, ids=[c[0] for c in SPEC_AUC])
def test_spec_auc_vectors(case):
    _, logits, labels, weights, roc, pr_v2, pr_v1, tol = case
    c = curve_of(logits, jnp.asarray(labels), None if weights is None else jnp.asarray(weights))
    assert float(c.roc_auc()) == pytest.approx(roc, abs=tol, rel=tol)
    assert float(c.pr_auc()) == pytest.approx(pr_v2, abs=tol, rel=tol)
    assert float(c.pr_auc("trapezoidal")) == pytest.approx(pr_v1, abs=tol, rel=tol)
    # ROC agrees between the generations (up to the 1e-6 epsilon)
    assert float(c.roc_auc("trapezoidal")) == pytest.approx(roc, abs=max(tol, 2e-6))


def test_auc_wrapper_spec_values():
    _, logits, labels, weights, roc, pr_v2, pr_v1, tol = SPEC_AUC[1]
    for curve, method, value in (
        ("ROC", "interpolation", roc),
        ("PR", "interpolation", pr_v2),
        ("PR", "trapezoidal", pr_v1),
    ):
        a = metrics.AUC.empty(curve=curve, summation_method=method)
        a = a.update(jnp.asarray(labels), sigmoid(logits), jnp.asarray(weights))
        assert float(a.compute()) == pytest.approx(value, abs=tol, rel=tol)


def test_v1_pr_auc_observed_epsilon_smoothing():
    c = curve_of([[45.0], [-41.0]], jnp.array([[1], [1]]))
    assert float(c.pr_auc("trapezoidal")) == pytest.approx(0.9999995, abs=1e-7)


def test_keras_docstring_examples():
    y, p = jnp.array([0, 0, 1, 1]), jnp.array([0.0, 0.5, 0.3, 0.9])
    c = metrics.ConfusionCurve.empty(3).update(y, p)
    assert float(c.roc_auc()) == 0.75
    conf = c.confusion()
    np.testing.assert_array_equal(conf["tp"], [2, 1, 0])
    np.testing.assert_array_equal(conf["fp"], [2, 0, 0])
    np.testing.assert_array_equal(conf["fn"], [0, 1, 2])
    np.testing.assert_array_equal(conf["tn"], [0, 2, 2])
    w = metrics.ConfusionCurve.empty(3).update(y, p, jnp.array([1.0, 0.0, 0.0, 1.0]))
    assert float(w.roc_auc()) == 1.0


def test_curves_shapes_and_endpoints():
    rng = np.random.default_rng(1)
    y = (rng.random(500) < 0.3).astype(np.float32)
    p = np.clip(rng.normal(0.3 + 0.4 * y, 0.2), 0, 1).astype(np.float32)
    c = metrics.ConfusionCurve.empty(50).update(y, p)
    roc, pr = c.roc_curve(), c.pr_curve()
    assert set(roc) == {"thresholds", "fpr", "tpr"} and set(pr) == {
        "thresholds",
        "recall",
        "precision",
    }
    for v in (*roc.values(), *pr.values()):
        assert v.shape == (50,) and v.dtype == jnp.float32
    np.testing.assert_allclose(roc["thresholds"], metrics.curve_thresholds(50))
    assert (float(roc["fpr"][0]), float(roc["tpr"][0])) == (1.0, 1.0)
    assert (float(roc["fpr"][-1]), float(roc["tpr"][-1])) == (0.0, 0.0)
    assert np.all(np.diff(np.asarray(roc["fpr"])) <= 0) and np.all(
        np.diff(np.asarray(pr["recall"])) <= 0
    )
    assert 0.5 < float(c.roc_auc()) <= 1.0
    lo, mid, hi = (float(c.roc_auc(m)) for m in ("minoring", "interpolation", "majoring"))
    assert lo <= mid <= hi


def test_thresholds_values():
    t = metrics.curve_thresholds(200)
    assert t.dtype == np.float32 and t.shape == (200,)
    assert t[0] == np.float32(-1e-7) and t[-1] == np.float32(1 + 1e-7)
    assert t[1] == np.float32(1 / 199) and t[198] == np.float32(198 / 199)


def test_predictions_are_clipped_like_keras():
    y = jnp.array([1.0, 0.0, 1.0, 0.0])
    raw = jnp.array([1.7, -0.4, 0.3, 1.0])
    a = metrics.ConfusionCurve.empty(10).update(y, raw)
    b = metrics.ConfusionCurve.empty(10).update(y, jnp.clip(raw, 0.0, 1.0))
    np.testing.assert_array_equal(a.counts.hi, b.counts.hi)


def test_predictions_on_thresholds_bucket_like_keras():
    # p = i / (T-1) is NOT above t_i: Keras' ceil(p (T-1)) - 1 bucket.
    c = metrics.ConfusionCurve.empty(5).update(jnp.ones(5), jnp.array([0.0, 0.25, 0.5, 0.75, 1.0]))
    np.testing.assert_array_equal(c.confusion()["tp"], [5, 3, 2, 1, 0])


def test_keras_tie_rounding_at_t200():
    # float32(31/199) * 199 rounds above 31, so Keras' ceil(p (T-1)) - 1 bucket puts
    # p == t_31 above t_31; we bucket the same way (TF1's direct "p > t" would not).
    p = np.float32(31 / 199)
    assert np.ceil(p * np.float32(199)) - 1 == 31
    c = metrics.ConfusionCurve.empty(200).update(jnp.ones(1), jnp.array([p]))
    tp = np.asarray(c.confusion()["tp"])
    assert tp[31] == 1.0 and tp[32] == 0.0


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_predictions(dtype):
    rng = np.random.default_rng(2)
    y = (rng.random(64) < 0.5).astype(np.float32)
    p = jnp.asarray(rng.random(64), dtype)
    a = metrics.ConfusionCurve.empty().update(y, p)
    b = metrics.ConfusionCurve.empty().update(y, p.astype(jnp.float32))
    assert float(a.roc_auc()) == float(b.roc_auc())
    assert a.counts.hi.dtype == jnp.float32


def test_curve_weight_shapes_multilabel():
    rng = np.random.default_rng(3)
    y = (rng.random((8, 3)) < 0.5).astype(np.float32)
    p = rng.random((8, 3)).astype(np.float32)
    w = rng.random(8).astype(np.float32)
    per_example = metrics.ConfusionCurve.empty(20).update(y, p, w)
    col = metrics.ConfusionCurve.empty(20).update(y, p, w[:, None])
    full = metrics.ConfusionCurve.empty(20).update(y, p, np.repeat(w[:, None], 3, axis=1))
    flat = metrics.ConfusionCurve.empty(20).update(y.reshape(-1), p.reshape(-1), np.repeat(w, 3))
    for other in (col, full, flat):
        np.testing.assert_allclose(
            per_example.counts.to_numpy(), other.counts.to_numpy(), rtol=1e-6
        )
    with pytest.raises(ValueError, match="sample_weight shape"):
        metrics.ConfusionCurve.empty(20).update(y, p, w[:3])
    with pytest.raises(ValueError, match="labels shape"):
        metrics.ConfusionCurve.empty(20).update(y[:, :2], p)


def test_large_num_thresholds():
    rng = np.random.default_rng(4)
    y = (rng.random(1000) < 0.5).astype(np.float32)
    p = np.clip(rng.normal(0.4 + 0.2 * y, 0.2), 0, 1).astype(np.float32)
    big = metrics.ConfusionCurve.empty(20_000).update(y, p)
    # With 20,000 thresholds the AUC is the exact (rank) ROC-AUC up to ties.
    pos, neg = p[y == 1], p[y == 0]
    exact = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert float(big.roc_auc()) == pytest.approx(exact, abs=1e-3)


# ------------------------------------------------------------------- config / merge errors
@pytest.mark.parametrize(
    "make",
    [
        lambda: metrics.ConfusionCurve.empty(1),
        lambda: metrics.ConfusionCurve.empty(2.5),
        lambda: metrics.AUC.empty(curve="DET"),
        lambda: metrics.AUC.empty(summation_method="simpson"),
        lambda: metrics.ConfusionAtThresholds.empty(()),
        lambda: metrics.ConfusionAtThresholds.empty((0.5, float("nan"))),
        lambda: metrics.ConfusionAtThresholds.empty(0.5, epsilon=-1.0),
        lambda: metrics.ConfusionCurve.empty().roc_auc("simpson"),
    ],
)
def test_invalid_config(make):
    with pytest.raises(ValueError):
        make()


def test_merge_rejects_mismatched_states():
    with pytest.raises(ValueError, match="Cannot merge"):
        metrics.Mean.empty().merge(metrics.Accuracy.empty())
    with pytest.raises(ValueError, match="Cannot merge"):
        metrics.ConfusionCurve.empty(200).merge(metrics.ConfusionCurve.empty(100))
    with pytest.raises(ValueError, match="Cannot merge"):
        metrics.ConfusionAtThresholds.empty(0.5).merge(
            metrics.ConfusionAtThresholds.empty(0.5, inclusive=True)
        )
    with pytest.raises(ValueError):
        metrics.merge({"a": metrics.Mean.empty()}, {"b": metrics.Mean.empty()})


def test_states_are_pytrees_with_static_config():
    c = metrics.ConfusionAtThresholds.empty((0.25, 0.5), inclusive=True, epsilon=1e-7)
    leaves = jax.tree_util.tree_leaves(c)
    assert len(leaves) == 2 and all(x.dtype == jnp.float32 for x in leaves)
    rebuilt = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(c), leaves)
    assert (rebuilt.thresholds, rebuilt.inclusive, rebuilt.epsilon) == ((0.25, 0.5), True, 1e-7)
    a = metrics.AUC.empty(num_thresholds=7, curve="pr", summation_method="Majoring")
    assert (a.curve, a.summation_method, a.num_thresholds) == ("PR", "majoring", 7)
