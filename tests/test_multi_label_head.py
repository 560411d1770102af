"""MultiLabelHead: spec §3 ``ml_*`` vectors, validation, label forms, transforms.

Expected values are computed by hand as in TF's ``multi_label_head_test.py``:
the loss of an example is the sigmoid CE averaged over classes, e.g. logits
``[-1, 1]`` against ``[1, 0]`` give ``(1.31326 + 1.31326) / 2``. Values with
|logit| ≥ 10 are only near-integers (8.75 is 8.7500343), hence TF's 1e-3 tol.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from jax.test_util import check_grads

from jaxheads.heads.multi_label import MultiLabelHead, SparseLabels, multi_label_head
from jaxheads.reduction import Reduction

LOGITS = np.array([[-1.0, 1.0], [-1.5, 1.5]], np.float32)
LABELS = np.array([[1, 0], [1, 1]], np.int64)
LARGE_LOGITS = np.array([[-10.0, 10.0], [-15.0, 10.0]], np.float32)
EXPECTED_LOSS = 0.5 * (1.31326169 + 0.9514133)  # = 1.1323375
TOL = dict(rtol=1e-3, atol=1e-3)


def _np_loss(labels, logits):
    x = np.asarray(logits, np.float64)
    z = np.asarray(labels, np.float64)
    ce = np.maximum(x, 0) - x * z + np.log1p(np.exp(-np.abs(x)))
    return ce.mean(-1, keepdims=True)


def _metrics(head, logits, labels, features=None, reg=None):
    state = head.init_metrics(reg)
    state = head.update_metrics(state, features, logits, labels, reg)
    return {k: float(v) for k, v in head.compute_metrics(state).items()}


def _assert_metrics(got, expected, **tol):
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, err_msg=key, **(tol or TOL))


# --------------------------------------------------------------------------- spec §3 vectors
@pytest.mark.parametrize("jit", [False, True])
def test_ml_eval(jit):
    head = MultiLabelHead(n_classes=2)
    loss = (jax.jit(head.loss) if jit else head.loss)(LABELS, LOGITS, {})
    np.testing.assert_allclose(loss, EXPECTED_LOSS, rtol=1e-6)
    got = _metrics(head, LOGITS, LABELS, {})
    assert set(got) == {"average_loss", "auc", "auc_precision_recall"}
    _assert_metrics(got, {"average_loss": 1.1323375, "auc": 0.3333, "auc_precision_recall": 0.7689})


@pytest.mark.parametrize(
    "labels",
    [
        SparseLabels(np.array([[0, -1], [0, 1]])),
        SparseLabels.from_lists([[0], [0, 1]]),
        SparseLabels(np.array([["class0", ""], ["class0", "class1"]])),
        [["class0"], ["class0", "class1"]],
        LABELS,
    ],
    ids=["sparse_ids", "from_lists", "sparse_names", "name_lists", "multi_hot"],
)
def test_ml_eval_sparse_and_vocab(labels):
    head = MultiLabelHead(n_classes=2, label_vocabulary=["class0", "class1"])
    np.testing.assert_allclose(head.loss(labels, LOGITS), EXPECTED_LOSS, rtol=1e-6)
    got = _metrics(head, LOGITS, labels)
    _assert_metrics(got, {"average_loss": 1.1323375, "auc": 0.3333, "auc_precision_recall": 0.7689})
    np.testing.assert_array_equal(head.encode_labels(labels), LABELS.astype(np.float32))


def test_ml_sparse_ids_without_vocabulary_under_jit():
    head = MultiLabelHead(n_classes=2)
    labels = SparseLabels(jnp.array([[0, -1], [1, 0]]))  # order and padding do not matter
    np.testing.assert_allclose(
        jax.jit(head.loss)(labels, LOGITS), head.loss(np.array([[1, 0], [1, 1]]), LOGITS), rtol=1e-6
    )
    state = jax.jit(head.update_metrics)(head.init_metrics(), None, LOGITS, labels)
    np.testing.assert_allclose(head.compute_metrics(state)["auc"], 0.3333, **TOL)
    empty = SparseLabels(np.zeros((2, 0), np.int32))  # no labels at all
    np.testing.assert_allclose(
        head.loss(empty, LOGITS), _np_loss(np.zeros((2, 2)), LOGITS).mean(), rtol=1e-6
    )


def test_ml_thresholds():
    head = MultiLabelHead(n_classes=2, thresholds=[0.25, 0.5, 0.75])
    np.testing.assert_allclose(head.loss(LABELS, LOGITS), 1.1323375, rtol=1e-6)
    got = _metrics(head, LOGITS, LABELS, {})
    expected = {
        "average_loss": 1.1323375,
        "auc": 0.3333,
        "auc_precision_recall": 0.7689,
        "accuracy/positive_threshold_0.25": 2.0 / 4.0,
        "precision/positive_threshold_0.25": 2.0 / 3.0,
        "recall/positive_threshold_0.25": 2.0 / 3.0,
        "accuracy/positive_threshold_0.5": 1.0 / 4.0,
        "precision/positive_threshold_0.5": 1.0 / 2.0,
        "recall/positive_threshold_0.5": 1.0 / 3.0,
        "accuracy/positive_threshold_0.75": 2.0 / 4.0,
        "precision/positive_threshold_0.75": 1.0 / 1.0,
        "recall/positive_threshold_0.75": 1.0 / 3.0,
    }
    assert set(got) == set(expected)
    _assert_metrics(got, expected)


def test_ml_class_based_metrics():
    head = MultiLabelHead(n_classes=2, classes_for_class_based_metrics=[0, 1])
    expected = {
        "average_loss": 1.1323375,
        "auc": 0.3333,
        "auc_precision_recall": 0.7689,
        "probability_mean/class0": (0.26894142 + 0.18242552) / 2.0,
        "auc/class0": 0.0,
        "auc_precision_recall/class0": 1.0,
        "probability_mean/class1": (0.7310586 + 0.8175745) / 2.0,
        "auc/class1": 1.0,
        "auc_precision_recall/class1": 1.0,
    }
    got = _metrics(head, LOGITS, LABELS, {})
    assert set(got) == set(expected)
    _assert_metrics(got, expected)
    # string variant: keys use the vocabulary names
    named = MultiLabelHead(
        n_classes=2,
        label_vocabulary=["a", "b"],
        classes_for_class_based_metrics=["a", "b"],
        name="h",
    )
    assert named.classes_for_class_based_metrics == (0, 1)
    got = _metrics(named, LOGITS, LABELS, {})
    renamed = {
        k.replace("class0", "a").replace("class1", "b") + "/h": v for k, v in expected.items()
    }
    assert set(got) == set(renamed)
    _assert_metrics(got, renamed)


def test_ml_weighted():
    head = MultiLabelHead(n_classes=2, weight_column="example_weights")
    features = {
        "x": np.array([[41], [42]]),
        "example_weights": np.array([[1.0], [2.0]], np.float32),
    }
    # per-example mean CE ~ [10, 7.5] -> (1 * 10 + 2 * 7.5) / 2
    np.testing.assert_allclose(head.loss(LABELS, LARGE_LOGITS, features), 12.5, **TOL)
    got = _metrics(head, LARGE_LOGITS, LABELS, features)
    _assert_metrics(
        got, {"average_loss": 12.5 * (2.0 / 3.0), "auc": 0.2000, "auc_precision_recall": 0.7280}
    )


def test_ml_sum():
    head = MultiLabelHead(n_classes=2, weight_column="example_weights", loss_reduction="sum")
    features = {"x": np.array([[42]]), "example_weights": np.array([[1.0], [2.0]], np.float32)}
    np.testing.assert_allclose(
        head.loss(LABELS, LARGE_LOGITS, features),
        (1.0 * (10.0 + 10.0) + 2.0 * (15.0 + 0.0)) / 2.0,
        atol=1e-4,
    )


def test_ml_train_large_logits():
    head = MultiLabelHead(n_classes=2)
    np.testing.assert_allclose(
        head.loss(LABELS, LARGE_LOGITS, {"x": np.array([[42]])}), 8.75, **TOL
    )
    spec = head.create_spec("train", LARGE_LOGITS, LABELS)
    np.testing.assert_allclose(spec.loss, 8.75, **TOL)


def test_ml_multi_dim():
    head = MultiLabelHead(n_classes=3, weight_column="weights")
    logits = np.array(
        [[[-10.0, 10.0, -10.0], [10.0, -10.0, 10.0]], [[-12.0, 12.0, -12.0], [12.0, -12.0, 12.0]]],
        np.float32,
    )
    labels = np.array([[[1, 0, 0], [1, 0, 0]], [[0, 1, 1], [0, 1, 1]]])
    features = {"weights": np.array([[1.0, 1.5], [2.0, 2.5]], np.float32)}
    np.testing.assert_allclose(head.loss(labels, logits, features), 9.9167, **TOL)
    got = _metrics(head, logits, labels, features)
    _assert_metrics(
        got, {"average_loss": 9.9167 * (4.0 / 7.0), "auc": 0.4977, "auc_precision_recall": 0.5461}
    )
    assert head.predictions(logits)["all_class_ids"].shape == (2, 2, 3)


@pytest.mark.parametrize(
    "logits, labels, pattern",
    [
        (
            LARGE_LOGITS,
            np.array([[2, 0], [1, 1]]),
            r"labels must be an integer indicator Tensor with values in \[0, 1\]",
        ),
        (
            LARGE_LOGITS,
            SparseLabels(np.array([[2, -1], [0, 1]])),
            r"labels must be an integer SparseTensor with values in \[0, 2\)",
        ),
        (
            np.array([[-1.0, 1.0], [-1.5, 1.0]], np.float32),
            np.array([[1], [1]]),
            "Expected labels dimension=2",
        ),
        (
            np.array([[-1.0, 1.0], [-1.5, 1.0]], np.float32),
            np.array([1, 1]),
            "Expected labels dimension=2",
        ),
    ],
    ids=["indicator", "sparse", "labels_2x1", "labels_rank1"],
)
def test_ml_invalid_labels(logits, labels, pattern):
    head = MultiLabelHead(n_classes=2)
    with pytest.raises(ValueError, match=pattern):
        head.loss(labels, logits)


@pytest.mark.parametrize(
    "vocabulary, names",
    [
        (None, ["0", "1", "2", "3"]),
        (["foo", "bar", "foobar", "barfoo"], ["foo", "bar", "foobar", "barfoo"]),
    ],
)
def test_ml_predict(vocabulary, names):
    head = MultiLabelHead(n_classes=4, label_vocabulary=vocabulary)
    logits = np.array([[0.0, 1.0, 2.0, -1.0], [-1.0, -2.0, -3.0, 1.0]], np.float32)
    predictions = head.predictions(logits)
    assert list(predictions) == ["logits", "probabilities", "all_class_ids"]
    np.testing.assert_allclose(predictions["logits"], logits)
    np.testing.assert_allclose(predictions["probabilities"], 1 / (1 + np.exp(-logits)), rtol=1e-6)
    # TF's `classes`: the full class list (not thresholded), as strings on the host.
    assert head.class_names(predictions["all_class_ids"]).tolist() == [names] * 2
    export = head.export_outputs(logits)
    assert list(export) == ["serving_default", "classification", "predict"]
    np.testing.assert_allclose(export["serving_default"]["scores"], predictions["probabilities"])
    assert head.class_names(export["serving_default"]["class_ids"]).tolist() == [names] * 2
    with pytest.raises(ValueError, match=r"all_class_ids"):
        head.predictions(logits, keys=["classes"])
    assert list(head.predictions(logits, keys=["probabilities"])) == ["probabilities"]


@pytest.mark.parametrize(
    "case, auc_pr",
    [("ml_eval", 0.7639), ("ml_weighted", 0.7833), ("ml_multi_dim", 0.6645)],
)
def test_contrib_v1_auc_pr(case, auc_pr):
    """compat='v1' (tf.contrib.estimator.multi_label_head) uses the trapezoidal PR-AUC."""
    if case == "ml_eval":
        head, logits, labels, features = multi_label_head(2, compat="v1"), LOGITS, LABELS, None
        roc = 0.3333
    elif case == "ml_weighted":
        head = multi_label_head(2, weight_column="w", compat="v1")
        logits, labels, features = LARGE_LOGITS, LABELS, {"w": np.array([[1.0], [2.0]], np.float32)}
        roc = 0.2
    else:
        head = multi_label_head(3, weight_column="w", compat="v1")
        logits = np.array(
            [
                [[-10.0, 10.0, -10.0], [10.0, -10.0, 10.0]],
                [[-12.0, 12.0, -12.0], [12.0, -12.0, 12.0]],
            ],
            np.float32,
        )
        labels = np.array([[[1, 0, 0], [1, 0, 0]], [[0, 1, 1], [0, 1, 1]]])
        features = {"w": np.array([[1.0, 1.5], [2.0, 2.5]], np.float32)}
        roc = 0.4977
    got = _metrics(head, logits, labels, features)
    _assert_metrics(got, {"auc_precision_recall": auc_pr, "auc": roc})


def test_v1_threshold_metrics_use_inclusive_accuracy_and_epsilon():
    logits = np.array([[0.0, 2.0]], np.float32)  # sigmoid(0) = 0.5 sits on the threshold
    labels = np.array([[1, 1]])
    v2 = _metrics(MultiLabelHead(2, thresholds=[0.5]), logits, labels)
    v1 = _metrics(MultiLabelHead(2, thresholds=[0.5], compat="v1"), logits, labels)
    assert v2["accuracy/positive_threshold_0.5"] == 0.5  # p > t
    assert v1["accuracy/positive_threshold_0.5"] == 1.0  # p >= t
    np.testing.assert_allclose(
        v1["precision/positive_threshold_0.5"], 1.0 / (1.0 + 1e-7), rtol=1e-7
    )


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (
            dict(n_classes=None),
            r"n_classes must be > 1 for multi-label classification\. Given: None",
        ),
        (dict(n_classes=1), r"n_classes must be > 1 for multi-label classification\. Given: 1"),
        (
            dict(n_classes=2, thresholds=[0.0, 0.5]),
            r"thresholds must be in \(0, 1\) range\. Given: 0\.0",
        ),
        (
            dict(n_classes=2, thresholds=[0.5, 1.0]),
            r"thresholds must be in \(0, 1\) range\. Given: 1\.0",
        ),
        (
            dict(n_classes=2, label_vocabulary={"foo": "bar"}),
            r"label_vocabulary must be a list or tuple\. Given type: <(type|class) 'dict'>",
        ),
        (
            dict(n_classes=3, label_vocabulary=["foo", "bar"]),
            r"Length of label_vocabulary must be n_classes \(3\)\. Given: 2",
        ),
        (
            dict(n_classes=3, classes_for_class_based_metrics=[2, -1]),
            r"All classes_for_class_based_metrics must be in range \[0, 2\]\. Given: -1",
        ),
        (
            dict(n_classes=3, classes_for_class_based_metrics=[3]),
            r"All classes_for_class_based_metrics must be in range \[0, 2\]\. Given: 3",
        ),
        (
            dict(
                n_classes=3,
                label_vocabulary=["a", "b", "c"],
                classes_for_class_based_metrics=["c", "z"],
            ),
            r"'z' is not in list",
        ),
        (
            dict(n_classes=3, classes_for_class_based_metrics=["a"]),
            r"label_vocabulary must be provided when classes_for_class_based_metrics are strings\.",
        ),
        (
            dict(n_classes=2, loss_reduction="invalid_loss_reduction"),
            r"Invalid loss_reduction: invalid_loss_reduction",
        ),
        (dict(n_classes=2, loss_reduction=Reduction.NONE), r"Invalid loss_reduction: none"),
        (
            dict(n_classes=2, loss_fn=lambda logits: logits),
            r"loss_fn must contain argument: labels",
        ),
        (
            dict(n_classes=2, loss_fn=lambda labels, logits, name=None: labels),
            r"loss_fn has unexpected args: \['name'\]",
        ),
        (dict(n_classes=2, compat="v3"), r"compat must be one of"),
    ],
)
def test_validation(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        MultiLabelHead(**kwargs)


def test_validation_order_loss_fn_before_reduction():
    with pytest.raises(ValueError, match="loss_fn must contain argument"):
        MultiLabelHead(2, loss_reduction="bad", loss_fn=lambda logits: logits)


def test_replace_is_idempotent_and_hashable():
    import dataclasses

    head = MultiLabelHead(
        3, label_vocabulary=["a", "b", "c"], classes_for_class_based_metrics=["c"], thresholds=[0.5]
    )
    again = dataclasses.replace(head, name="x")
    assert again.classes_for_class_based_metrics == (2,) and again.thresholds == (0.5,)
    assert hash(head) == hash(dataclasses.replace(head))


# --------------------------------------------------------------------------- labels & weights
def test_per_class_weights_are_rejected():
    head = MultiLabelHead(n_classes=2, weight_column="w")
    with pytest.raises(
        ValueError, match=r"weights shape must be \[D0, D1, \.\.\. DN\] or \[D0, D1, \.\.\. DN, 1\]"
    ):
        head.loss(LABELS, LOGITS, {"w": np.ones((2, 2), np.float32)})
    # [B] and [B, 1] weights are fine.
    for w in (np.array([1.0, 2.0], np.float32), np.array([[1.0], [2.0]], np.float32)):
        np.testing.assert_allclose(
            head.loss(LABELS, LOGITS, {"w": w}),
            (_np_loss(LABELS, LOGITS)[:, 0] * [1, 2]).sum() / 2,
            rtol=1e-6,
        )


def test_soft_labels_accepted_and_loss_fn_gets_float_multi_hot():
    seen = {}

    def loss_fn(labels, logits):
        seen["labels"] = labels
        return jnp.mean(jnp.abs(labels - jax.nn.sigmoid(logits)), axis=-1, keepdims=True)

    head = MultiLabelHead(n_classes=2, loss_fn=loss_fn)
    soft = np.array([[0.5, 0.2], [1.0, 0.0]], np.float32)
    expected = np.abs(soft - 1 / (1 + np.exp(-LOGITS))).mean(-1).mean()
    np.testing.assert_allclose(head.loss(soft, LOGITS), expected, rtol=1e-6)
    head.loss(SparseLabels(np.array([[1], [0]])), LOGITS)
    assert seen["labels"].dtype == jnp.float32 and seen["labels"].tolist() == [
        [0.0, 1.0],
        [1.0, 0.0],
    ]
    np.testing.assert_allclose(
        MultiLabelHead(2).loss(soft, LOGITS), _np_loss(soft, LOGITS).mean(), rtol=1e-6
    )


def test_label_form_errors():
    head = MultiLabelHead(n_classes=2)
    with pytest.raises(ValueError, match="You must provide a labels Tensor"):
        head.loss(None, LOGITS)
    with pytest.raises(ValueError, match="Labels dtype should be integer.*label_vocabulary"):
        head.loss([["a"], ["b"]], LOGITS)
    with pytest.raises(ValueError, match=r"Labels dtype should be integer\. Instead got float32"):
        head.loss(SparseLabels(np.array([[0.0], [1.0]], np.float32)), LOGITS)
    vocab = MultiLabelHead(n_classes=2, label_vocabulary=["a", "b"])
    with pytest.raises(ValueError, match=r"\['z'\] are not in label_vocabulary"):
        vocab.loss([["a"], ["z"]], LOGITS)
    with pytest.raises(ValueError, match="ragged above the innermost level"):
        SparseLabels.from_lists([[[0]], [0]])
    with pytest.raises(ValueError, match="labels shape must be"):
        head.loss(SparseLabels(np.array([[0], [1], [0]])), LOGITS)  # 3 examples for 2 logits


def test_sparse_labels_from_lists():
    labels = SparseLabels.from_lists([[[0, 2], []], [[1], [2, 1, 0]]])
    assert labels.ids.shape == (2, 2, 3) and labels.ids.dtype == np.int32
    assert labels.ids.tolist() == [[[0, 2, -1], [-1, -1, -1]], [[1, -1, -1], [2, 1, 0]]]
    assert SparseLabels.from_lists([["a"], []], max_labels=2).ids.tolist() == [["a", ""], ["", ""]]
    with pytest.raises(ValueError, match="more than max_labels=1"):
        SparseLabels.from_lists([[0, 1]], max_labels=1)
    multi_hot = MultiLabelHead(3).encode_labels(labels)
    assert multi_hot.tolist() == [[[1, 0, 1], [0, 0, 0]], [[0, 1, 0], [1, 1, 1]]]
    leaves = jax.tree_util.tree_leaves(SparseLabels(jnp.zeros((2, 1), jnp.int32)))
    assert len(leaves) == 1


def test_regularization_and_create_spec():
    head = MultiLabelHead(n_classes=2, name="ml")
    spec = jax.jit(
        lambda lg, lb: head.create_spec("eval", lg, lb, regularization_losses=[1.5, 0.5])
    )(LOGITS, LABELS)
    np.testing.assert_allclose(spec.loss, EXPECTED_LOSS + 2.0, rtol=1e-6)
    got = {k: float(v) for k, v in head.compute_metrics(spec.metrics).items()}
    assert got["regularization_loss/ml"] == 2.0
    np.testing.assert_allclose(got["average_loss/ml"], EXPECTED_LOSS, rtol=1e-6)
    spec = head.create_spec("predict", LOGITS)
    assert set(spec.export_outputs) == {"serving_default", "classification", "predict"}


# --------------------------------------------------------------------------- transforms & numerics
def test_grad_finite_for_huge_logits_and_bf16():
    head = MultiLabelHead(n_classes=3)
    logits = jnp.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]], jnp.float32)
    labels = jnp.array([[1, 1, 0], [0, 0, 1]])
    loss, grad = jax.jit(jax.value_and_grad(lambda x: head.loss(labels, x)))(logits)
    np.testing.assert_allclose(loss, (1e4 + np.log(2) + 1e4) / 3 / 2, rtol=1e-6)
    assert np.all(np.isfinite(grad))
    bf16 = MultiLabelHead(n_classes=2).loss(LABELS, jnp.asarray(LOGITS, jnp.bfloat16))
    assert bf16.dtype == jnp.float32
    np.testing.assert_allclose(bf16, EXPECTED_LOSS, rtol=1e-2)
    check_grads(
        jax.jit(lambda x: head.loss(labels, x)),
        (jnp.array([[0.3, -1.0, 2.0], [1.0, 0.1, -0.2]]),),
        order=2,
        modes=("rev",),
    )


def test_vmap_over_leading_axis_equals_batched_call():
    head = MultiLabelHead(n_classes=3, weight_column="w")
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(4, 5, 3)).astype(np.float32)
    labels = rng.integers(0, 2, size=(4, 5, 3))
    w = rng.uniform(0, 2, size=(4, 5)).astype(np.float32)
    vmapped = jax.jit(jax.vmap(lambda lb, lg, ww: head.loss(lb, lg, {"w": ww})))(labels, logits, w)
    one = jax.jit(lambda lb, lg, ww: head.loss(lb, lg, {"w": ww}))
    np.testing.assert_allclose(
        vmapped, [one(labels[i], logits[i], w[i]) for i in range(4)], rtol=1e-6
    )
    sparse = SparseLabels(np.where(labels == 1, np.arange(3), -1))
    vm_sparse = jax.jit(jax.vmap(lambda lb, lg, ww: head.loss(lb, lg, {"w": ww})))(
        sparse, logits, w
    )
    np.testing.assert_allclose(vm_sparse, vmapped, rtol=1e-6)


def test_streaming_equals_one_batch():
    head = MultiLabelHead(
        n_classes=3, weight_column="w", thresholds=[0.3, 0.6], classes_for_class_based_metrics=[1]
    )
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(8, 3)).astype(np.float32)
    labels = rng.integers(0, 2, size=(8, 3))
    w = rng.uniform(0, 2, size=(8, 1)).astype(np.float32)
    whole = _metrics(head, logits, labels, {"w": w})
    update = jax.jit(head.update_metrics)
    state = head.init_metrics()
    for sl in (slice(0, 3), slice(3, 8)):
        state = update(state, {"w": w[sl]}, logits[sl], labels[sl])
    streamed = head.compute_metrics(state)
    for key, value in whole.items():
        np.testing.assert_allclose(float(streamed[key]), value, rtol=1e-5, atol=1e-6, err_msg=key)


@settings(max_examples=25, deadline=None)
@given(
    logits=hnp.arrays(
        np.float32, (3, 4), elements=st.floats(-30, 30, width=32, allow_subnormal=False)
    ),
    labels=hnp.arrays(np.int32, (3, 4), elements=st.integers(0, 1)),
    weights=hnp.arrays(np.float32, (3,), elements=st.floats(0, 3, width=32, allow_subnormal=False)),
    reduction=st.sampled_from(["sum", "sum_over_batch_size", "mean", "sum_by_nonzero_weights"]),
)
def test_property_loss_nonnegative_and_reductions_match_numpy(logits, labels, weights, reduction):
    head = MultiLabelHead(n_classes=4, weight_column="w", loss_reduction=reduction)
    loss = float(head.loss(labels, logits, {"w": weights}))
    assert loss >= 0.0
    total = (_np_loss(labels, logits)[:, 0] * weights).sum()
    denominator = {
        "sum": 1.0,
        "sum_over_batch_size": 3.0,
        "mean": weights.sum(dtype=np.float64),
        "sum_by_nonzero_weights": float(np.count_nonzero(weights)),
    }[reduction]
    expected = total / denominator if denominator else 0.0
    np.testing.assert_allclose(loss, expected, rtol=2e-5, atol=1e-5)


_VMAP_HEAD = MultiLabelHead(n_classes=4, weight_column="w", thresholds=[0.5])
_PER_EXAMPLE = jax.jit(
    jax.vmap(lambda lb, lg, w: _VMAP_HEAD.unreduced_loss(lb[None], lg[None], {"w": w[None]})[0][0])
)
_BATCHED = jax.jit(lambda lb, lg, w: _VMAP_HEAD.unreduced_loss(lb, lg, {"w": w})[0])
_PER_EXAMPLE_PREDICTIONS = jax.jit(jax.vmap(lambda lg: _VMAP_HEAD.predictions(lg[None])))


@settings(max_examples=25, deadline=None)
@given(
    logits=hnp.arrays(np.float32, (5, 4), elements=st.floats(-1e4, 1e4, width=32)),
    labels=hnp.arrays(np.float32, (5, 4), elements=st.sampled_from([0.0, 0.25, 1.0])),
    weights=hnp.arrays(np.float32, (5,), elements=st.floats(0, 3, width=32, allow_subnormal=False)),
)
def test_property_vmap_over_examples_equals_batched_call(logits, labels, weights):
    np.testing.assert_allclose(
        _PER_EXAMPLE(labels, logits, weights), _BATCHED(labels, logits, weights), rtol=1e-6
    )
    batched = _VMAP_HEAD.predictions(logits)
    for key, value in _PER_EXAMPLE_PREDICTIONS(logits).items():
        np.testing.assert_allclose(value[:, 0], batched[key], rtol=1e-6, err_msg=key)
    assert np.all(np.asarray(_BATCHED(labels, logits, weights)) >= 0.0)
