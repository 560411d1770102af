"""BinaryClassHead(extended_metrics=True): TF's keys unchanged, plus the LogitHistogram suite."""

import jax
import numpy as np
import pytest
from sklearn import metrics as skm

import jaxheads as jh
from jaxheads.keys import MetricKeys

EXTENDED = (
    "roc_auc",
    "roc_auc/lower",
    "roc_auc/upper",
    "roc_auc/stderr",
    "average_precision",
    "expected_calibration_error",
    "normalized_entropy",
    "calibration_ratio",
)


def _data(n=4000, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 1)) < 0.05).astype(np.float32)
    x = (rng.normal(size=(n, 1)) + 2.0 * y - 3.0).astype(np.float32)
    w = rng.uniform(0.5, 2.0, size=(n,)).astype(np.float32)
    return y, x, w


def _run(head, y, x, w):
    state = head.update_metrics(head.init_metrics(), {"w": w}, x, y)
    return head.compute_metrics(state)


@pytest.mark.parametrize("name", [None, "ctr"])
def test_tf_keys_unchanged_plus_extended_keys(name):
    y, x, w = _data()
    kw = dict(weight_column="w", thresholds=(0.25, 0.5), name=name)
    tf = _run(jh.BinaryClassHead(**kw), y, x, w)
    ext = _run(jh.BinaryClassHead(**kw, extended_metrics=True), y, x, w)
    suffix = f"/{name}" if name else ""
    assert set(ext) == set(tf) | {k + suffix for k in EXTENDED}
    for k, v in tf.items():
        assert float(ext[k]) == float(v), k  # TF's numbers, bit for bit
    assert MetricKeys.EXTENDED == EXTENDED


def test_extended_values_match_sklearn_and_numpy():
    y, x, w = _data(seed=1)
    out = _run(jh.BinaryClassHead(weight_column="w", extended_metrics=True), y, x, w)
    yf, xf, wf = y.ravel(), x.ravel().astype(np.float64), w.astype(np.float64)
    exact = skm.roc_auc_score(yf, xf, sample_weight=wf)
    assert float(out["roc_auc/lower"]) <= exact <= float(out["roc_auc/upper"])
    assert float(out["roc_auc"]) == pytest.approx(exact, abs=1e-4)
    ap = skm.average_precision_score(yf, xf, sample_weight=wf)
    assert float(out["average_precision"]) == pytest.approx(ap, abs=1e-3)  # bucket ties
    loss = np.maximum(xf, 0) - xf * yf + np.log1p(np.exp(-np.abs(xf)))
    rate = np.sum(wf * yf) / wf.sum()
    ne = np.sum(wf * loss) / wf.sum() / -(rate * np.log(rate) + (1 - rate) * np.log(1 - rate))
    assert float(out["normalized_entropy"]) == pytest.approx(ne, rel=1e-5)
    p = 1 / (1 + np.exp(-xf))
    assert float(out["calibration_ratio"]) == pytest.approx(
        np.sum(wf * p) / np.sum(wf * yf), rel=1e-5
    )
    assert 0.0 < float(out["roc_auc/stderr"]) < 0.05


def test_extended_beats_200_thresholds_on_rare_events():
    rng = np.random.default_rng(3)
    n = 200_000
    x = rng.normal(-6.5, 1.0, (n, 1)).astype(np.float32)
    y = (rng.random((n, 1)) < 1 / (1 + np.exp(-x))).astype(np.float32)
    head = jh.BinaryClassHead(extended_metrics=True)
    out = head.compute_metrics(head.update_metrics(head.init_metrics(), None, x, y))
    exact = skm.roc_auc_score(y.ravel(), x.ravel())
    assert abs(float(out["auc"]) - exact) > 0.01  # TF's 200 thresholds
    assert abs(float(out["roc_auc"]) - exact) < 1e-4


def test_extended_under_jit_and_state_configuration():
    y, x, w = _data(500, seed=2)
    head = jh.BinaryClassHead(weight_column="w", extended_metrics=True)
    step = jax.jit(lambda s, x, y, w: head.update_metrics(s, {"w": w}, x, y))
    state = step(head.init_metrics(), x, y, w)
    state = step(state, x, y, w)
    twice = head.compute_metrics(state)
    once = _run(head, y, x, w)
    for k in EXTENDED:
        if k not in ("roc_auc/stderr",):
            assert float(twice[k]) == pytest.approx(float(once[k]), abs=2e-6), k
    plain = jh.BinaryClassHead(weight_column="w")
    with pytest.raises(ValueError, match="extended"):
        plain.update_metrics(state, {"w": w}, x, y)
    with pytest.raises(ValueError, match="extended"):
        head.compute_metrics(plain.init_metrics())


def test_extended_metrics_must_be_bool():
    with pytest.raises(ValueError, match="extended_metrics"):
        jh.BinaryClassHead(extended_metrics="yes")  # type: ignore[arg-type]
    assert jh.BinaryClassHead(extended_metrics=np.bool_(True)).extended_metrics is True


def test_state_is_mergeable():
    y, x, w = _data(8 * 64, seed=4)
    w = np.round(w * 2).astype(np.float32)
    head = jh.BinaryClassHead(weight_column="w", extended_metrics=True)
    one = head.update_metrics(head.init_metrics(), {"w": w}, x, y)
    halves = [
        head.update_metrics(head.init_metrics(), {"w": w[i::2]}, x[i::2], y[i::2]) for i in (0, 1)
    ]
    merged = jh.metrics.merge(halves[0], halves[1])
    np.testing.assert_array_equal(
        merged.counts.logit_counts.to_numpy(), one.counts.logit_counts.to_numpy()
    )
    assert float(head.compute_metrics(merged)["roc_auc"]) == float(
        head.compute_metrics(one)["roc_auc"]
    )


def _per_class_keys(n, suffix=""):
    return {f"{k}/class{c}{suffix}" for k in EXTENDED for c in range(n)}


@pytest.mark.parametrize("one_hot", [False, True])
def test_multi_class_one_vs_rest(one_hot):
    rng = np.random.default_rng(5)
    n, c = 3000, 3
    ids = rng.integers(0, c, (n, 1))
    x = (rng.normal(size=(n, c)) + 1.5 * np.eye(c)[ids[:, 0]]).astype(np.float32)
    w = rng.uniform(0.5, 2.0, n).astype(np.float32)
    labels = np.eye(c, dtype=np.float32)[ids[:, 0]] if one_hot else ids
    kw = dict(n_classes=c, weight_column="w", one_hot_labels=one_hot, name="mc")
    tf = _run(jh.MultiClassHead(**kw), labels, x, w)
    ext = _run(jh.MultiClassHead(**kw, extended_metrics=True), labels, x, w)
    assert set(ext) == set(tf) | _per_class_keys(c, "/mc")
    for k, v in tf.items():
        assert float(ext[k]) == float(v), k
    probs = np.asarray(jax.nn.softmax(x, axis=-1))
    for k in range(c):
        exact = skm.roc_auc_score(ids[:, 0] == k, probs[:, k], sample_weight=w)
        assert float(ext[f"roc_auc/class{k}/mc"]) == pytest.approx(exact, abs=1e-4)
        assert float(ext[f"roc_auc/lower/class{k}/mc"]) <= exact
        assert exact <= float(ext[f"roc_auc/upper/class{k}/mc"])


def test_multi_label_per_class():
    rng = np.random.default_rng(6)
    n, c = 3000, 3
    y = (rng.random((n, c)) < 0.2).astype(np.float32)
    x = (rng.normal(size=(n, c)) + 2 * y - 1).astype(np.float32)
    w = rng.uniform(0.5, 2.0, n).astype(np.float32)
    kw = dict(n_classes=c, weight_column="w", classes_for_class_based_metrics=(1,))
    tf = _run(jh.MultiLabelHead(**kw), y, x, w)
    ext = _run(jh.MultiLabelHead(**kw, extended_metrics=True), y, x, w)
    assert set(ext) == set(tf) | _per_class_keys(c)
    for k, v in tf.items():
        assert float(ext[k]) == float(v), k
    for k in range(c):
        exact = skm.roc_auc_score(y[:, k], x[:, k], sample_weight=w)
        assert float(ext[f"roc_auc/class{k}"]) == pytest.approx(exact, abs=1e-4)
        loss = np.logaddexp(0, x[:, k]) - x[:, k] * y[:, k]
        rate = np.sum(w * y[:, k]) / w.sum()
        ne = np.sum(w * loss) / w.sum() / -(rate * np.log(rate) + (1 - rate) * np.log(1 - rate))
        assert float(ext[f"normalized_entropy/class{k}"]) == pytest.approx(ne, rel=1e-5)
    with pytest.raises(ValueError, match="extended_metrics"):
        jh.MultiLabelHead(n_classes=2, extended_metrics=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="extended_metrics"):
        jh.MultiClassHead(n_classes=3, extended_metrics=None)  # type: ignore[arg-type]


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("soft", [False, True])
def test_extended_counts_equal_a_standalone_logit_histogram(weighted, soft):
    """The head's shared histogram = jh.metrics.LogitHistogram of the same batch, soft
    labels included (w·y positive, w·(1 − y) negative), with and without a weight column."""
    y, x, w = _data(seed=4)
    if soft:
        y = y.copy()
        y[::5] = 0.3
        y[1::7] = 0.8
    head = jh.BinaryClassHead(weight_column="w" if weighted else None, extended_metrics=True)
    state = jax.jit(lambda s: head.update_metrics(s, {"w": w}, x, y))(head.init_metrics())
    alone = jh.metrics.LogitHistogram.empty(jh.heads.binary.EXTENDED_LOGIT_BUCKETS)
    alone = alone.update(y, x, w if weighted else None)
    got, want = state.counts.logit_histogram(), alone
    np.testing.assert_allclose(got.counts.to_numpy(), want.counts.to_numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got.sums.to_numpy(), want.sums.to_numpy(), rtol=1e-6)
    mine, theirs = head.compute_metrics(state), alone.compute()
    for k in ("roc_auc", "average_precision", "normalized_entropy", "calibration_ratio"):
        assert float(mine[k]) == pytest.approx(float(theirs[k]), rel=1e-6, abs=1e-7), k
