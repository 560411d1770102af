"""MultiClassHead: spec §3 ``mc_*`` vectors, validation, one-hot handling, transforms.

Expected values are computed by hand as in TF's ``multi_class_head_test.py``:
softmax CE of logits ``[10, 0, 0]`` against label 1 is ``10 + log(1 + 2e-10)``
≈ 10.0000908, against label 0 it is ≈ 9.08e-5 (TF's tests use tol 1e-2 there).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from jax.experimental import checkify
from jax.test_util import check_grads

from jaxheads import traced_value_checks
from jaxheads.heads.multi_class import MultiClassHead, multi_class_head
from jaxheads.heads.multi_label import SparseLabels
from jaxheads.reduction import Reduction

LOGITS_2 = np.array([[10, 0, 0], [0, 10, 0]], np.int32)  # int logits are accepted, as TF
LABELS_2 = np.array([[1], [1]], np.int64)
FEATURES = {"x": np.array([[42]], np.int32)}


def _np_ce(labels, logits):
    x = np.asarray(logits, np.float64)
    ids = np.asarray(labels).reshape(x.shape[:-1])
    lse = np.log(np.sum(np.exp(x - x.max(-1, keepdims=True)), -1)) + x.max(-1)
    return (lse - np.take_along_axis(x, ids[..., None], -1)[..., 0])[..., None]


def _metrics(head, logits, labels, features=None, reg=None):
    state = head.init_metrics(reg)
    state = head.update_metrics(state, features, logits, labels, reg)
    return {k: float(v) for k, v in head.compute_metrics(state).items()}


# --------------------------------------------------------------------------- spec §3 vectors
@pytest.mark.parametrize("jit", [False, True])
def test_mc_eval_basic(jit):
    head = MultiClassHead(n_classes=3)
    loss = (jax.jit(head.loss) if jit else head.loss)(LABELS_2, LOGITS_2, FEATURES)
    np.testing.assert_allclose(loss, 5.0, atol=1e-2)
    np.testing.assert_allclose(loss, _np_ce(LABELS_2, LOGITS_2).mean(), rtol=1e-6)
    metrics = _metrics(head, LOGITS_2, LABELS_2, FEATURES)
    assert set(metrics) == {"average_loss", "accuracy"}
    np.testing.assert_allclose(metrics["average_loss"], 5.0, atol=1e-2)
    assert metrics["accuracy"] == 0.5


def test_mc_sum():
    head = MultiClassHead(n_classes=3, loss_reduction="sum")
    np.testing.assert_allclose(head.loss(LABELS_2, LOGITS_2, FEATURES), 10.0, atol=1e-2)
    loss, weights = head.unreduced_loss(LABELS_2, LOGITS_2, FEATURES)
    np.testing.assert_allclose(loss, [[10.0], [0.0]], atol=1e-2)
    np.testing.assert_array_equal(weights, np.ones((2, 1)))
    assert loss.dtype == weights.dtype == jnp.float32


def test_mc_regularization():
    head = MultiClassHead(n_classes=3)
    reg = [1.5, 0.5]
    np.testing.assert_allclose(
        head.loss(LABELS_2, LOGITS_2, FEATURES, regularization_losses=reg), 7.0, atol=1e-2
    )
    metrics = _metrics(head, LOGITS_2, LABELS_2, FEATURES, reg)
    assert set(metrics) == {"average_loss", "accuracy", "regularization_loss"}
    np.testing.assert_allclose(
        metrics["average_loss"], 5.0, atol=1e-2
    )  # never includes regularization
    assert metrics["regularization_loss"] == 2.0 and metrics["accuracy"] == 0.5


def test_mc_weighted():
    head = MultiClassHead(n_classes=3, weight_column="label_weights")
    logits = np.array([[10, 0, 0], [0, 10, 0], [0, 0, 10]], np.float32)
    labels = np.array([[1], [2], [2]])
    features = {"x": np.array([[42]]), "label_weights": np.array([[1.0], [2.0], [3.0]], np.float32)}
    # CE = [10, 10, 0]; weighted = [10, 20, 0] -> 30 / 3
    np.testing.assert_allclose(head.loss(labels, logits, features), 10.0, atol=1e-2)
    metrics = _metrics(head, logits, labels, features)
    np.testing.assert_allclose(metrics["average_loss"], 30.0 / 6.0, atol=1e-2)
    np.testing.assert_allclose(metrics["accuracy"], 0.5, rtol=1e-6)  # weight 3 of 6 correct


def test_mc_rank1_labels_weights():
    head = MultiClassHead(n_classes=3, weight_column="label_weights")
    logits = np.array([[10, 0, 0], [0, 10, 0], [0, 0, 10]], np.float32)
    features = {"x": np.array([[42]]), "label_weights": np.array([1.0, 2.0, 3.0], np.float32)}
    np.testing.assert_allclose(head.loss(np.array([1, 2, 2]), logits, features), 10.0, atol=1e-2)
    _, weights = head.unreduced_loss(np.array([1, 2, 2]), logits, features)
    assert weights.shape == (3, 1)


def test_mc_multi_dim():
    head = MultiClassHead(n_classes=3, weight_column="weights")
    logits = np.array([[[10, 0, 0], [12, 0, 0]], [[0, 10, 0], [0, 15, 0]]], np.float32)
    labels = np.array([[[0], [1]], [[1], [2]]])
    features = {"weights": np.array([[1.0, 1.5], [2.0, 2.5]], np.float32)}
    # CE = [[0, 12], [0, 15]]; weighted sum 55.5 over 4 elements
    np.testing.assert_allclose(head.loss(labels, logits, features), 13.875, atol=1e-2)
    metrics = _metrics(head, logits, labels, features)
    np.testing.assert_allclose(metrics["average_loss"], 55.5 / 7.0, atol=1e-2)
    np.testing.assert_allclose(metrics["accuracy"], 3.0 / 7.0, rtol=1e-6)
    predictions = head.predictions(logits)
    assert predictions["class_ids"].shape == (2, 2, 1)
    assert predictions["all_class_ids"].shape == (2, 2, 3)  # fixed: TF gives [D0, n] = [2, 3]


def test_mc_vocab():
    head = MultiClassHead(n_classes=3, label_vocabulary=["aang", "iroh", "zuko"])
    labels = np.array([[b"iroh"], [b"iroh"]])
    np.testing.assert_allclose(head.loss(labels, LOGITS_2, FEATURES), 5.0, atol=1e-2)
    metrics = _metrics(head, LOGITS_2, [["iroh"], ["iroh"]], FEATURES)
    np.testing.assert_allclose(metrics["average_loss"], 5.0, atol=1e-2)
    assert metrics["accuracy"] == 0.5
    encoded = head.encode_labels(labels)
    assert encoded.dtype == np.int32 and encoded.tolist() == [[1], [1]]
    # Inside jit the labels are the encoded ids.
    np.testing.assert_allclose(jax.jit(head.loss)(encoded, LOGITS_2), 5.0, atol=1e-2)
    with pytest.raises(ValueError, match=r"\['toph'\] are not in label_vocabulary"):
        head.loss([["toph"], ["iroh"]], LOGITS_2)


def test_mc_custom_loss_fn():
    seen = {}

    def loss_fn(labels, logits):
        seen["labels"], seen["logits"] = labels, logits
        return jnp.array([[1.0], [2.0]])

    head = MultiClassHead(n_classes=3, loss_fn=loss_fn)
    logits = np.array([[-10.0, 10.0, 0.0], [-15.0, 10.0, 0]], np.float32)
    np.testing.assert_allclose(head.loss(np.array([[1], [2]]), logits, FEATURES), 1.5, rtol=1e-6)
    assert seen["labels"].dtype == jnp.int32 and seen["labels"].tolist() == [[1], [2]]
    np.testing.assert_array_equal(seen["logits"], logits)
    bad = MultiClassHead(n_classes=3, loss_fn=lambda labels, logits: jnp.ones(2))
    with pytest.raises(ValueError, match="loss_shape"):
        bad.loss(np.array([[1], [2]]), logits)


def test_mc_predict():
    head = MultiClassHead(n_classes=3)
    logits = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], np.float32)
    predictions = head.predictions(logits)
    assert list(predictions) == ["logits", "probabilities", "class_ids", "all_class_ids"]
    np.testing.assert_allclose(predictions["logits"], logits)
    np.testing.assert_allclose(
        predictions["probabilities"],
        [[0.576117, 0.2119416, 0.2119416], [0.2119416, 0.2119416, 0.576117]],
        rtol=1e-6,
    )
    assert predictions["class_ids"].dtype == jnp.int32
    assert predictions["class_ids"].tolist() == [[0], [2]]
    assert predictions["all_class_ids"].dtype == jnp.int32
    assert predictions["all_class_ids"].tolist() == [[0, 1, 2]] * 2
    assert head.class_names(predictions["class_ids"]).tolist() == [["0"], ["2"]]
    assert head.class_names(predictions["all_class_ids"]).tolist() == [["0", "1", "2"]] * 2
    export = head.export_outputs(logits)
    assert list(export) == ["serving_default", "classification", "predict"]
    np.testing.assert_allclose(export["serving_default"]["scores"], predictions["probabilities"])
    assert (
        head.class_names(export["serving_default"]["class_ids"]).tolist() == [["0", "1", "2"]] * 2
    )
    assert export["predict"].keys() == predictions.keys()


def test_mc_predict_vocab():
    head = MultiClassHead(n_classes=3, label_vocabulary=["aang", "iroh", "zuko"])
    logits = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], np.float32)
    predictions = head.predictions(logits)
    assert head.class_names(predictions["class_ids"]).tolist() == [["aang"], ["zuko"]]
    export = head.export_outputs(logits)
    assert (
        head.class_names(export["serving_default"]["class_ids"]).tolist()
        == [["aang", "iroh", "zuko"]] * 2
    )


@pytest.mark.parametrize(
    "logits, labels, pattern",
    [
        (
            [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]],
            np.array([[1.0], [1.0]]),
            "Labels dtype should be integer",
        ),
        ([[1.0, 2.0, 4.0], [1.0, 2.0, 3.0]], np.array([[45], [1]]), r"Labels must be <= 3 - 1"),
        ([[1.0, 2.0, 4.0], [1.0, 2.0, 3.0]], np.array([[-5], [1]]), r"Labels must be >= 0"),
        (
            [[1.0, 2.0, 4.0], [1.0, 2.0, 3.0]],
            SparseLabels(np.array([[0], [1]])),
            r"SparseTensor labels are not supported\.",
        ),
    ],
    ids=["float_labels", "too_large", "negative", "sparse"],
)
def test_mc_invalid_labels(logits, labels, pattern):
    head = MultiClassHead(n_classes=3)
    with pytest.raises(ValueError, match=pattern):
        head.loss(labels, np.asarray(logits, np.float32))


def test_mc_v1_eval_sum():
    """v1 canned head = the same head with TF1's default SUM reduction."""
    head = multi_class_head(3, loss_reduction="weighted_sum")
    np.testing.assert_allclose(head.loss(LABELS_2, LOGITS_2, FEATURES), 10.0, atol=1e-2)
    metrics = _metrics(head, LOGITS_2, LABELS_2, FEATURES)
    np.testing.assert_allclose(metrics["average_loss"], 5.0, atol=1e-2)
    assert metrics["accuracy"] == 0.5
    weighted = multi_class_head(3, weight_column="label_weights", loss_reduction="weighted_sum")
    logits = np.array([[10, 0, 0], [0, 10, 0], [0, 0, 10]], np.float32)
    labels = np.array([[1], [2], [2]])
    features = {"label_weights": np.array([[1.0], [2.0], [3.0]], np.float32)}
    np.testing.assert_allclose(weighted.loss(labels, logits, features), 30.0, atol=1e-2)
    metrics = _metrics(weighted, logits, labels, features)
    np.testing.assert_allclose(metrics["average_loss"], 5.0, atol=1e-2)
    assert metrics["accuracy"] == 0.5


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(n_classes=None), r"n_classes cannot be None"),
        (dict(n_classes=2), r"n_classes must be > 2: 2\."),
        (dict(n_classes=1), r"n_classes must be > 2: 1\."),
        (
            dict(n_classes=3, label_vocabulary=["a", "b", "c", "d"]),
            r'"label_vocabulary" does not have "n_classes" items\. '
            r"len\(label_vocabulary\)=4, n_classes=3",
        ),
        (
            dict(n_classes=3, label_vocabulary={"a": 1}),
            r"label_vocabulary should be a list or a tuple\. Given type: <class 'dict'>",
        ),
        (
            dict(n_classes=3, loss_reduction="invalid_loss_reduction"),
            r"Invalid loss_reduction: invalid_loss_reduction",
        ),
        (dict(n_classes=3, loss_reduction=Reduction.NONE), r"Invalid loss_reduction: none"),
        (
            dict(n_classes=3, loss_fn=lambda logits: logits),
            r"loss_fn must contain argument: labels\. Given arguments: \('logits',\)",
        ),
        (
            dict(n_classes=3, loss_fn=lambda labels: labels),
            r"loss_fn must contain argument: logits\. Given arguments: \('labels',\)",
        ),
        (
            dict(n_classes=3, loss_fn=lambda labels, logits, name=None: labels),
            r"loss_fn has unexpected args: \['name'\]",
        ),
        (dict(n_classes=3.0), r"n_classes must be an int > 2"),
        (
            dict(n_classes=3, label_vocabulary=["a", "b", "c"], one_hot_labels=True),
            "one_hot_labels",
        ),
    ],
)
def test_validation(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        MultiClassHead(**kwargs)


def test_validation_order_matches_tf():
    # The vocabulary length is checked before n_classes > 2 (TF's order).
    with pytest.raises(ValueError, match="does not have"):
        MultiClassHead(n_classes=2, label_vocabulary=["a", "b", "c"])
    # loss_reduction before loss_fn.
    with pytest.raises(ValueError, match="Invalid loss_reduction"):
        MultiClassHead(n_classes=3, loss_reduction="bad", loss_fn=lambda logits: logits)


def test_head_is_hashable_and_static():
    head = MultiClassHead(n_classes=3, label_vocabulary=["a", "b", "c"], name="mc")
    assert head == MultiClassHead(n_classes=3, label_vocabulary=("a", "b", "c"), name="mc")
    assert hash(head) == hash(
        MultiClassHead(n_classes=3, label_vocabulary=("a", "b", "c"), name="mc")
    )
    assert head.logits_dimension == 3 and head.loss_reduction is Reduction.SUM_OVER_BATCH_SIZE
    loss = jax.jit(lambda h, lb, lg: h.loss(lb, lg), static_argnums=0)(head, LABELS_2, LOGITS_2)
    np.testing.assert_allclose(loss, 5.0, atol=1e-2)


# --------------------------------------------------------------------------- labels
def test_one_hot_labels_by_mistake_say_so():
    head = MultiClassHead(n_classes=3)
    one_hot = np.array([[0, 1, 0], [0, 1, 0]], np.int32)
    with pytest.raises(
        ValueError, match=r"Expected labels dimension=1.*n_classes=3.*one-hot"
    ) as info:
        head.loss(one_hot, LOGITS_2)
    assert "[2, 3]" in str(info.value) and "one_hot_labels=True" in str(info.value)


@pytest.mark.parametrize(
    "labels, pattern",
    [
        (
            np.array([[1, 1], [0, 0]]),
            r"Mismatched label shape\. Expected labels dimension=1\.  Received 2",
        ),
        (
            np.array([[1], [1], [0]]),
            r"labels shape must be \[D0, D1, \.\.\. DN, 1\].*expected_labels_shape: \[2, 1\]",
        ),
        (None, r"You must provide a labels Tensor\. Given: None"),
        (np.array([["a"], ["b"]]), r"Labels dtype should be integer\. Instead got string"),
        (np.array([[True], [False]]), r"Labels dtype should be integer\. Instead got bool"),
    ],
)
def test_label_errors(labels, pattern):
    with pytest.raises(ValueError, match=pattern):
        MultiClassHead(n_classes=3).loss(labels, LOGITS_2)


def test_logits_errors():
    head = MultiClassHead(n_classes=3)
    with pytest.raises(ValueError, match=r"logits shape must be .*\[2, 4\].*logits_dimension=3"):
        head.loss(LABELS_2, np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="logits must have rank at least 2"):
        head.predictions(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="weights shape must be"):
        MultiClassHead(3, weight_column="w").loss(
            LABELS_2, LOGITS_2, {"w": np.ones((2, 3), np.float32)}
        )


def test_one_hot_mode_equals_ids():
    ids_head = MultiClassHead(n_classes=3, weight_column="w")
    hot_head = MultiClassHead(n_classes=3, weight_column="w", one_hot_labels=True)
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 3)).astype(np.float32) * 3
    ids = rng.integers(0, 3, size=(5, 1))
    one_hot = np.eye(3, dtype=np.float32)[ids[:, 0]]
    features = {"w": rng.uniform(0.5, 2, size=(5,)).astype(np.float32)}
    np.testing.assert_allclose(
        hot_head.loss(one_hot, logits, features), ids_head.loss(ids, logits, features), rtol=1e-6
    )
    got = _metrics(hot_head, logits, one_hot, features)
    want = _metrics(ids_head, logits, ids, features)
    np.testing.assert_allclose(got["average_loss"], want["average_loss"], rtol=1e-6)
    assert got["accuracy"] == pytest.approx(want["accuracy"])
    # Soft labels: -sum(y * log_softmax(x)).
    soft = np.array([[0.8, 0.1, 0.1]], np.float32)
    x = np.array([[2.0, 0.0, -1.0]], np.float32)
    log_p = x - np.log(np.exp(x).sum())
    np.testing.assert_allclose(
        hot_head.unreduced_loss(soft, x, {"w": np.ones(1, np.float32)})[0],
        -(soft * log_p).sum(-1, keepdims=True),
        rtol=1e-6,
    )
    with pytest.raises(ValueError, match=r"one-hot labels must have values in \[0, 1\]"):
        hot_head.loss(np.array([[2.0, 0.0, 0.0]], np.float32), x, {"w": np.ones(1, np.float32)})
    with pytest.raises(ValueError, match="Expected labels dimension=3"):
        hot_head.loss(np.array([[1]]), x, {"w": np.ones(1, np.float32)})
    # -inf logits with a zero target give a finite loss (no 0 * -inf NaN).
    inf_logits = np.array([[0.0, -np.inf, 1.0]], np.float32)
    loss = MultiClassHead(3, one_hot_labels=True).loss(
        np.array([[1.0, 0.0, 0.0]], np.float32), inf_logits
    )
    assert np.isfinite(loss)


# --------------------------------------------------------------------------- predictions
def test_argmax_ties_go_to_lowest_index():
    head = MultiClassHead(n_classes=4)
    logits = np.array([[1.0, 3.0, 3.0, 0.0], [0.0, 0.0, 0.0, 0.0]], np.float32)
    assert head.predictions(logits)["class_ids"].tolist() == [[1], [0]]


def test_prediction_keys():
    head = MultiClassHead(n_classes=3)
    got = head.predictions(LOGITS_2, keys=["class_ids", "probabilities"])
    assert list(got) == ["class_ids", "probabilities"]
    with pytest.raises(ValueError, match=r"Prediction key must be in PredictionKeys, given: bogus"):
        head.predictions(LOGITS_2, keys=["bogus"])
    with pytest.raises(ValueError, match=r"holds strings.*class_names"):
        head.predictions(LOGITS_2, keys=["classes"])


def test_create_spec_modes():
    head = MultiClassHead(n_classes=3, name="mc")
    spec = head.create_spec("predict", LOGITS_2)
    assert (
        spec.loss is None
        and spec.metrics is None
        and set(spec.export_outputs) == {"serving_default", "classification", "predict"}
    )
    spec = head.create_spec("train", LOGITS_2, LABELS_2, regularization_losses=[1.0])
    np.testing.assert_allclose(spec.loss, 6.0, atol=1e-2)
    spec = jax.jit(lambda lg, lb: head.create_spec("eval", lg, lb))(LOGITS_2, LABELS_2)
    metrics = head.compute_metrics(spec.metrics)
    assert set(metrics) == {"average_loss/mc", "accuracy/mc"}
    with pytest.raises(ValueError, match="You must provide a labels Tensor"):
        head.create_spec("eval", LOGITS_2)


# --------------------------------------------------------------------------- transforms & numerics
def test_streaming_equals_one_batch():
    head = MultiClassHead(n_classes=4, weight_column="w")
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(9, 4)).astype(np.float32)
    labels = rng.integers(0, 4, size=(9, 1))
    w = rng.uniform(0, 2, size=(9, 1)).astype(np.float32)
    whole = _metrics(head, logits, labels, {"w": w})
    update = jax.jit(head.update_metrics)
    state = head.init_metrics()
    for sl in (slice(0, 4), slice(4, 9)):
        state = update(state, {"w": w[sl]}, logits[sl], labels[sl])
    streamed = {k: float(v) for k, v in head.compute_metrics(state).items()}
    for key in whole:
        np.testing.assert_allclose(streamed[key], whole[key], rtol=1e-6)


def test_grad_finite_for_huge_logits_and_bf16():
    head = MultiClassHead(n_classes=3)
    logits = jnp.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]], jnp.float32)
    labels = jnp.array([[1], [0]])
    loss, grad = jax.jit(jax.value_and_grad(lambda x: head.loss(labels, x)))(logits)
    np.testing.assert_allclose(loss, (2e4 + 2e4 + np.log(2)) / 2, rtol=1e-6)
    assert np.all(np.isfinite(grad))
    # d/dx = (softmax - onehot) / batch
    np.testing.assert_allclose(grad, [[0.5, -0.5, 0.0], [-0.5, 0.25, 0.25]], atol=1e-6)
    bf16 = head.loss(LABELS_2, LOGITS_2.astype(jnp.bfloat16))
    assert bf16.dtype == jnp.float32
    predictions = head.predictions(jnp.asarray(LOGITS_2, jnp.bfloat16))
    assert predictions["probabilities"].dtype == jnp.float32


def test_check_grads():
    head = MultiClassHead(n_classes=3, weight_column="w")
    logits = jnp.array([[0.5, -1.0, 2.0], [0.1, 0.2, -0.3]])
    features = {"w": jnp.array([1.0, 0.5])}
    check_grads(
        jax.jit(lambda x: head.loss(LABELS_2, x, features)), (logits,), order=2, modes=("rev",)
    )


def test_vmap_over_leading_axis_equals_batched_call():
    head = MultiClassHead(n_classes=3)
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(4, 5, 3)).astype(np.float32)
    labels = rng.integers(0, 3, size=(4, 5, 1))
    vmapped = jax.jit(jax.vmap(head.loss))(labels, logits)
    one = jax.jit(head.loss)
    np.testing.assert_allclose(vmapped, [one(labels[i], logits[i]) for i in range(4)], rtol=1e-6)
    per_example = jax.vmap(lambda x: head.predictions(x[None])["probabilities"][0])(logits[0])
    np.testing.assert_allclose(per_example, head.predictions(logits[0])["probabilities"], rtol=1e-6)


def test_label_range_under_jit_with_checkify():
    head = MultiClassHead(n_classes=3)
    with traced_value_checks():
        checked = jax.jit(checkify.checkify(head.loss))
        err, _ = checked(np.array([[3], [1]]), LOGITS_2)
    with pytest.raises(checkify.JaxRuntimeError, match=r"Labels must be <= 3 - 1"):
        err.throw()


@settings(max_examples=25, deadline=None)
@given(
    logits=hnp.arrays(
        np.float32, (4, 3), elements=st.floats(-50, 50, width=32, allow_subnormal=False)
    ),
    labels=hnp.arrays(np.int32, (4, 1), elements=st.integers(0, 2)),
    weights=hnp.arrays(
        np.float32, (4, 1), elements=st.floats(0, 3, width=32, allow_subnormal=False)
    ),
    reduction=st.sampled_from(["sum", "sum_over_batch_size", "mean", "sum_by_nonzero_weights"]),
)
def test_property_loss_nonnegative_and_reductions_match_numpy(logits, labels, weights, reduction):
    head = MultiClassHead(n_classes=3, weight_column="w", loss_reduction=reduction)
    loss = float(head.loss(labels, logits, {"w": weights}))
    assert loss >= 0.0
    per_example = _np_ce(labels, logits) * weights
    total = per_example.sum()
    denominator = {
        "sum": 1.0,
        "sum_over_batch_size": 4.0,
        "mean": weights.sum(dtype=np.float64),
        "sum_by_nonzero_weights": float(np.count_nonzero(weights)),
    }[reduction]
    expected = total / denominator if denominator else 0.0
    np.testing.assert_allclose(loss, expected, rtol=2e-5, atol=1e-5)
