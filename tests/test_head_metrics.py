"""Head metrics: TF's keys and values, streaming, merging, and sharded evaluation.

The metric *primitives* are tested in test_metrics*.py; here we test how the
seed heads wire them: keys, suffixes, and that folding batches, merging shard
states, sharded ``jit`` and ``shard_map`` + ``all_reduce`` all give the
one-big-batch result.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import jaxheads as jh

BINARY_KEYS = {
    "average_loss",
    "accuracy",
    "precision",
    "recall",
    "prediction/mean",
    "label/mean",
    "accuracy_baseline",
    "auc",
    "auc_precision_recall",
}


def _random_batch(n, seed=0, soft=False):
    rng = np.random.default_rng(seed)
    logits = (rng.normal(size=(n, 1)) * 2).astype(np.float32)
    labels = (rng.uniform(size=(n, 1)) if soft else rng.integers(0, 2, size=(n, 1))).astype(
        np.float32
    )
    weights = rng.uniform(0.1, 2.0, size=(n,)).astype(np.float32)
    return logits, labels, {"w": weights}


def _values(metrics):
    return {k: float(v) for k, v in metrics.items()}


def test_binary_keys_with_name_thresholds_and_regularization():
    head = jh.BinaryClassHead(thresholds=[0.25, 0.5], name="some_binary_head")
    state = head.init_metrics(regularization_losses=True)
    state = head.update_metrics(
        state, None, [[45.0], [-41.0]], [[1], [1]], regularization_losses=[1.5, 0.5]
    )
    got = _values(head.compute_metrics(state))
    expected_keys = (
        BINARY_KEYS
        | {"regularization_loss"}
        | {
            f"{m}/positive_threshold_{t}"
            for m in ("accuracy", "precision", "recall")
            for t in ("0.25", "0.5")
        }
    )
    assert set(got) == {f"{k}/some_binary_head" for k in expected_keys}
    # spec §3 bin_v2_regularization (tol 1e-6)
    expected = {
        "average_loss": 20.5,
        "regularization_loss": 2.0,
        "accuracy": 0.5,
        "precision": 1.0,
        "recall": 0.5,
        "prediction/mean": 0.5,
        "label/mean": 1.0,
        "accuracy_baseline": 1.0,
        "auc": 0.0,
        "auc_precision_recall": 1.0,
    }
    for k, v in expected.items():
        assert got[f"{k}/some_binary_head"] == pytest.approx(v, rel=1e-6, abs=1e-6), k


def test_regularization_needs_a_tracking_state():
    head = jh.BinaryClassHead()
    with pytest.raises(ValueError, match=r"init_metrics\(regularization_losses=True\)"):
        head.update_metrics(
            head.init_metrics(), None, [[1.0]], [[1.0]], regularization_losses=[1.0]
        )


def test_logistic_regression_metrics():
    head = jh.LogisticRegressionHead(name="lr")
    state = head.update_metrics(head.init_metrics(), None, [[0], [-1], [1]], [[0.4], [0.6], [0.8]])
    got = _values(head.compute_metrics(state))
    # spec §3 logreg_train (observed TF values)
    assert got == pytest.approx(
        {"average_loss/lr": 0.7065568, "prediction/mean/lr": 0.5, "label/mean/lr": 0.6}, rel=1e-6
    )


@pytest.mark.parametrize(
    "make_head",
    [
        lambda: jh.BinaryClassHead(weight_column="w", thresholds=[0.3, 0.7]),
        lambda: jh.BinaryClassHead(weight_column="w", thresholds=[0.3, 0.7], compat="v1"),
        lambda: jh.LogisticRegressionHead(weight_column="w"),
    ],
)
def test_streaming_merging_and_one_batch_agree(make_head):
    head = make_head()
    soft = isinstance(head, jh.LogisticRegressionHead)
    logits, labels, features = _random_batch(64, soft=soft)
    one = head.compute_metrics(head.update_metrics(head.init_metrics(), features, logits, labels))

    update = jax.jit(head.update_metrics)
    folded = head.init_metrics()
    parts = []
    for i in range(0, 64, 16):
        batch = (features["w"][i : i + 16], logits[i : i + 16], labels[i : i + 16])
        folded = update(folded, {"w": batch[0]}, batch[1], batch[2])
        parts.append(update(head.init_metrics(), {"w": batch[0]}, batch[1], batch[2]))
    merged = jh.metrics.merge(
        jh.metrics.merge(parts[3], parts[1]), jh.metrics.merge(parts[0], parts[2])
    )

    def scan_body(state, batch):
        w, lg, lb = batch
        return head.update_metrics(state, {"w": w}, lg, lb), None

    scanned, _ = jax.lax.scan(
        scan_body,
        head.init_metrics(),
        (features["w"].reshape(4, 16), logits.reshape(4, 16, 1), labels.reshape(4, 16, 1)),
    )
    for other in (folded, merged, scanned):
        got = jax.jit(head.compute_metrics)(other)
        assert set(got) == set(one)
        for k in one:  # float32 summation order differs between the ways: rtol 1e-5
            np.testing.assert_allclose(got[k], one[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_sharded_eval_jit_and_shard_map_give_global_result():
    head = jh.BinaryClassHead(weight_column="w", thresholds=[0.5])
    logits, labels, features = _random_batch(128, seed=3)
    expected = head.compute_metrics(
        head.update_metrics(head.init_metrics(), features, logits, labels)
    )
    mesh = Mesh(np.array(jax.devices()[:8]), ("batch",))

    sharded = jax.device_put((features, logits, labels), NamedSharding(mesh, P("batch")))
    state = jax.jit(head.update_metrics)(head.init_metrics(), *sharded)
    got = jax.jit(head.compute_metrics)(state)
    for k in expected:
        np.testing.assert_allclose(got[k], expected[k], rtol=1e-5, atol=1e-6, err_msg=k)

    @functools.partial(
        jax.shard_map, mesh=mesh, in_specs=(P("batch"), P("batch"), P("batch")), out_specs=P()
    )
    def eval_step(w, lg, lb):
        local = head.update_metrics(head.init_metrics(), {"w": w}, lg, lb)
        return jh.metrics.all_reduce(local, "batch")

    got = head.compute_metrics(jax.jit(eval_step)(features["w"], logits, labels))
    for k in expected:
        np.testing.assert_allclose(got[k], expected[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_metrics_with_multi_dim_logits_and_bf16():
    head = jh.BinaryClassHead(weight_column="weights")
    logits = np.array([[[10], [-10]], [[12], [-12]]], np.float32)
    labels = np.array([[[0], [0]], [[1], [1]]], np.float32)
    features = {"weights": np.array([[1.0, 1.5], [2.0, 2.5]], np.float32)}
    expected = {
        "average_loss": 40.0 / 7,
        "accuracy": 3.5 / 7,
        "precision": 2 / 3,
        "recall": 2 / 4.5,
        "prediction/mean": 3 / 7,
        "label/mean": 4.5 / 7,
        "accuracy_baseline": 4.5 / 7,
        "auc": 0.5222,
        "auc_precision_recall": 0.6582,
    }  # spec bin_v2_multi_dim, tol 1e-2
    for dtype in (jnp.float32, jnp.bfloat16):
        state = head.update_metrics(
            head.init_metrics(), features, jnp.asarray(logits, dtype), labels
        )
        got = _values(head.compute_metrics(state))
        assert got == pytest.approx(expected, rel=1e-2, abs=1e-2)


def test_create_spec_eval_returns_updated_state():
    head = jh.BinaryClassHead()
    spec = jax.jit(
        lambda lg, lb: head.create_spec("eval", lg, lb, regularization_losses=[1.5, 0.5])
    )(jnp.array([[45.0], [-41.0]]), jnp.array([[1.0], [1.0]]))
    assert float(spec.loss) == pytest.approx(22.5)
    got = _values(head.compute_metrics(spec.metrics))
    assert got["regularization_loss"] == pytest.approx(2.0)
    assert got["average_loss"] == pytest.approx(20.5)


@pytest.mark.parametrize(
    "head, labels, logits",
    [
        (jh.BinaryClassHead(), [[1.0], [0.0], [1.0]], [[2.0], [-1.0], [-0.5]]),
        (jh.MultiLabelHead(2), [[1, 0], [0, 1], [1, 1]], [[2.0, -1.0], [-1.0, 0.5], [-0.5, 3.0]]),
    ],
)
def test_curve_points_match_the_reported_auc(head, labels, logits):
    state = head.update_metrics(
        head.init_metrics(), None, np.asarray(logits, np.float32), np.asarray(labels)
    )
    roc = head.curve(state).roc_curve()
    fpr, tpr = np.asarray(roc["fpr"]), np.asarray(roc["tpr"])
    # Interpolation summation of the ROC curve is the trapezoid rule over its points.
    area = np.sum((fpr[:-1] - fpr[1:]) * (tpr[:-1] + tpr[1:]) / 2)
    np.testing.assert_allclose(area, head.compute_metrics(state)["auc"], rtol=1e-5)
