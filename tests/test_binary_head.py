"""BinaryClassHead: loss, predictions, export, validation, transforms, sharding.

Expected values are computed by hand as in TF's ``binary_class_head_test.py``
(CE of logits [45, -41, 44] against labels [1, 1, 0] is [0, 41, 44] up to
float32 rounding). Tolerances: rtol 1e-6 unless stated.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from jax.experimental import checkify
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from jax.test_util import check_grads

import jaxheads as jh

LOGITS = np.array([[45.0], [-41.0], [44.0]], np.float32)
LABELS = np.array([[1.0], [1.0], [0.0]], np.float32)
WEIGHTS = np.array([[1.0], [0.1], [1.5]], np.float32)
FEATURES = {"x": np.array([[42.0], [43.0], [44.0]], np.float32), "w": WEIGHTS}


def _ce(labels, logits):
    x = np.asarray(logits, np.float64)
    z = np.asarray(labels, np.float64)
    return np.maximum(x, 0) - x * z + np.log1p(np.exp(-np.abs(x)))


@pytest.mark.parametrize(
    "reduction, unweighted, weighted",
    [
        ("sum", 85.0, 70.1),
        ("sum_over_batch_size", 85.0 / 3, 70.1 / 3),
        ("mean", 85.0 / 3, 70.1 / 2.6),
        ("sum_by_nonzero_weights", 85.0 / 3, 70.1 / 3),
        ("auto", 85.0 / 3, 70.1 / 3),
    ],
)
@pytest.mark.parametrize("jit", [False, True])
def test_loss_each_reduction(reduction, unweighted, weighted, jit):
    plain = jh.BinaryClassHead(loss_reduction=reduction)
    with_w = jh.BinaryClassHead(weight_column="w", loss_reduction=reduction)
    call = (lambda h, *a: jax.jit(h.loss)(*a)) if jit else (lambda h, *a: h.loss(*a))
    np.testing.assert_allclose(call(plain, LABELS, LOGITS, FEATURES), unweighted, rtol=1e-6)
    np.testing.assert_allclose(call(with_w, LABELS, LOGITS, FEATURES), weighted, rtol=1e-6)


def test_loss_with_zero_weight_sum_by_nonzero():
    head = jh.BinaryClassHead(weight_column="w", loss_reduction="sum_by_nonzero_weights")
    features = {"w": np.array([1.0, 0.0, 1.5], np.float32)}
    np.testing.assert_allclose(head.loss(LABELS, LOGITS, features), 66.0 / 2, rtol=1e-6)


def test_regularization_losses_added_after_reduction():
    head = jh.BinaryClassHead(loss_reduction="sum")
    got = head.loss([[1], [1]], [[45.0], [-41.0]], regularization_losses=[1.5, 0.5])
    np.testing.assert_allclose(got, 43.0, rtol=1e-6)
    with pytest.raises(TypeError, match="regularization_losses must be a list"):
        head.loss([[1], [1]], [[45.0], [-41.0]], regularization_losses=jnp.array(1.0))
    with pytest.raises(ValueError, match=r"regularization_losses\[0\] must be a scalar"):
        head.loss([[1], [1]], [[45.0], [-41.0]], regularization_losses=[jnp.ones(2)])


def test_unreduced_loss_and_weights():
    head = jh.BinaryClassHead(weight_column="w")
    loss, weights = head.unreduced_loss(LABELS, LOGITS, FEATURES)
    np.testing.assert_allclose(loss, _ce(LABELS, LOGITS), rtol=1e-6)
    np.testing.assert_allclose(weights, WEIGHTS)
    loss, weights = jh.BinaryClassHead().unreduced_loss(LABELS, LOGITS)
    np.testing.assert_array_equal(weights, np.ones((3, 1)))
    assert loss.shape == (3, 1) and loss.dtype == jnp.float32


@pytest.mark.parametrize("shape", [(5,), (2, 3), (2, 3, 4)])
def test_arbitrary_leading_dims(shape):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=shape + (1,)).astype(np.float32) * 3
    labels = rng.uniform(size=shape).astype(np.float32)  # rank-1 lower than logits: expanded
    weights = rng.uniform(0.1, 2, size=shape).astype(np.float32)
    head = jh.BinaryClassHead(weight_column="w", loss_reduction="sum")
    got = jax.jit(head.loss)(labels, logits, {"w": weights})
    np.testing.assert_allclose(
        got, np.sum(_ce(labels[..., None], logits) * weights[..., None]), rtol=1e-5
    )
    preds = head.predictions(logits)
    assert preds["probabilities"].shape == shape + (2,)
    assert preds["all_class_ids"].shape == shape + (2,)
    assert preds["class_ids"].shape == shape + (1,)


def test_multi_dim_weighted_tf_vector():
    # binary_class_head_test.py::test_multi_dim_weighted_train: CE [[10, 0], [0, 12]], weights [[1, 1.5], [2, 2.5]].
    head = jh.BinaryClassHead(weight_column="weights")
    logits = np.array([[[10], [-10]], [[12], [-12]]], np.float32)
    labels = np.array([[[0], [0]], [[1], [1]]], np.float32)
    features = {"weights": np.array([[1.0, 1.5], [2.0, 2.5]], np.float32)}
    np.testing.assert_allclose(
        head.loss(labels, logits, features), 40.0 / 4, rtol=1e-4
    )  # CE(±10)≈10.0000454


def test_vmap_equals_batched_call():
    head = jh.BinaryClassHead(weight_column="w", loss_reduction="sum")
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(4, 6, 1)).astype(np.float32)
    labels = rng.integers(0, 2, size=(4, 6, 1)).astype(np.float32)
    weights = rng.uniform(size=(4, 6)).astype(np.float32)
    per_row = jax.vmap(lambda lab, lg, w: head.loss(lab, lg, {"w": w}))(labels, logits, weights)
    np.testing.assert_allclose(
        jnp.sum(per_row), head.loss(labels, logits, {"w": weights}), rtol=1e-5
    )
    preds = jax.vmap(head.predictions)(logits)
    np.testing.assert_allclose(preds["logistic"], jax.nn.sigmoid(logits), rtol=1e-6)


def test_grads_are_exact_and_finite_for_huge_logits():
    head = jh.BinaryClassHead(loss_reduction="sum")
    labels = jnp.array([[1.0], [0.0], [1.0], [0.0]])
    logits = jnp.array([[1e4], [1e4], [-1e4], [-1e4]])
    grad = jax.grad(lambda x: head.loss(labels, x))(logits)
    np.testing.assert_allclose(grad, [[0.0], [1.0], [-1.0], [0.0]], atol=1e-7)
    loss = head.loss(labels, logits)
    np.testing.assert_allclose(loss, 2e4, rtol=1e-6)
    check_grads(
        lambda x: head.loss(labels, x),
        (jnp.array([[0.3], [-1.2], [2.0], [0.0]]),),
        order=2,
        modes=("fwd", "rev"),
    )


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.int32])
def test_low_precision_and_int_logits_give_float32(dtype):
    head = jh.BinaryClassHead()
    logits = jnp.array([[2.0], [-3.0]]).astype(dtype)
    loss = head.loss(jnp.array([[1.0], [0.0]]), logits)
    assert loss.dtype == jnp.float32
    np.testing.assert_allclose(
        loss, np.mean(_ce([[1.0], [0.0]], np.asarray(logits, np.float32))), rtol=1e-6
    )
    assert head.predictions(logits)["logits"].dtype == jnp.float32


def test_predictions_and_tie_at_zero():
    head = jh.BinaryClassHead()
    preds = head.predictions(np.array([[0.3], [-0.4], [0.0]], np.float32))
    np.testing.assert_allclose(preds["logistic"], [[0.574443], [0.401312], [0.5]], rtol=1e-6)
    np.testing.assert_allclose(
        preds["probabilities"], [[0.425557, 0.574443], [0.598688, 0.401312], [0.5, 0.5]], rtol=1e-5
    )
    np.testing.assert_array_equal(preds["class_ids"], [[1], [0], [0]])  # logit 0 → class 0, as TF
    assert preds["class_ids"].dtype == jnp.int32
    np.testing.assert_array_equal(preds["all_class_ids"], [[0, 1]] * 3)
    assert head.class_names(preds["class_ids"]).tolist() == [["1"], ["0"], ["0"]]
    assert set(head.predictions(np.zeros((1, 1)), keys=["logits", "class_ids"])) == {
        "logits",
        "class_ids",
    }


def test_prediction_key_errors():
    head = jh.BinaryClassHead()
    with pytest.raises(ValueError, match=r"Prediction key must be in PredictionKeys, given: nope"):
        head.predictions(np.zeros((1, 1)), keys=["nope"])
    with pytest.raises(ValueError, match=r"class_names"):
        head.predictions(np.zeros((1, 1)), keys=["classes"])


def test_vocabulary():
    head = jh.BinaryClassHead(label_vocabulary=["aang", "iroh"])
    np.testing.assert_allclose(head.loss([[b"iroh"], ["iroh"]], [[45.0], [-41.0]]), 20.5, rtol=1e-6)
    encoded = head.encode_labels(np.array(["iroh", "aang"]))
    assert encoded.dtype == np.float32 and encoded.tolist() == [1.0, 0.0]
    # Inside jit the caller passes the encoded ids.
    np.testing.assert_allclose(
        jax.jit(head.loss)(encoded, jnp.array([[-41.0], [45.0]])), 43.0, rtol=1e-6
    )
    assert head.class_names([[1], [0]]).tolist() == [["iroh"], ["aang"]]
    with pytest.raises(
        ValueError, match=r"\['zuko'\] are not in label_vocabulary \['aang', 'iroh'\]"
    ):
        head.loss([["zuko"], ["iroh"]], [[1.0], [1.0]])
    with pytest.raises(TypeError, match="labels are strings but the head has no label_vocabulary"):
        jh.BinaryClassHead().loss([["a"], ["b"]], [[1.0], [1.0]])


def test_export_outputs():
    head = jh.BinaryClassHead()
    out = head.export_outputs(np.array([[0.3], [-0.4]], np.float32))
    assert list(out) == ["serving_default", "classification", "regression", "predict"]
    np.testing.assert_allclose(
        out["serving_default"]["scores"], [[0.425557, 0.574443], [0.598688, 0.401312]], rtol=1e-5
    )
    np.testing.assert_array_equal(out["classification"]["class_ids"], [[0, 1], [0, 1]])
    np.testing.assert_allclose(out["regression"]["value"], [[0.574443], [0.401312]], rtol=1e-5)
    assert set(out["predict"]) == {
        "logits",
        "logistic",
        "probabilities",
        "class_ids",
        "all_class_ids",
    }


def test_create_spec_modes():
    head = jh.BinaryClassHead()
    logits = np.array([[45.0], [-41.0]], np.float32)
    spec = head.create_spec("predict", logits)
    assert spec.loss is None and spec.metrics is None and "serving_default" in spec.export_outputs
    spec = jax.jit(
        lambda lg, lb: head.create_spec(jh.ModeKeys.TRAIN, lg, lb, regularization_losses=[2.0])
    )(logits, np.array([[1.0], [1.0]], np.float32))
    np.testing.assert_allclose(spec.loss, 22.5, rtol=1e-6)
    assert spec.export_outputs is None
    assert head.create_spec("infer", logits).mode == "predict"
    with pytest.raises(ValueError, match="You must provide a labels Tensor"):
        head.create_spec("train", logits)
    with pytest.raises(ValueError, match="Invalid mode: 'fit'"):
        head.create_spec("fit", logits)


def test_features_none_means_no_weights():
    np.testing.assert_allclose(jh.BinaryClassHead().loss(LABELS, LOGITS, None), 85.0 / 3, rtol=1e-6)


def test_numeric_column_weights():
    head = jh.BinaryClassHead(
        weight_column=jh.numeric_column("w", normalizer_fn=lambda x: x + 1.0), loss_reduction="sum"
    )
    features = {"w": np.array([[0.0], [-0.9], [0.5]], np.float32)}
    np.testing.assert_allclose(head.loss(LABELS, LOGITS, features), 70.1, rtol=1e-5)


def test_custom_loss_fn():
    seen = {}

    def loss_fn(labels, logits, features, loss_reduction):
        seen.update(labels=labels, reduction=loss_reduction, features=features)
        return jnp.array([[1.0], [2.0]])

    head = jh.BinaryClassHead(loss_fn=loss_fn)
    np.testing.assert_allclose(head.loss([[1], [0]], [[-10.0], [10.0]], {"x": 1}), 1.5, rtol=1e-6)
    np.testing.assert_array_equal(seen["labels"], [[1.0], [0.0]])
    assert seen["labels"].dtype == jnp.float32
    assert seen["reduction"] is jh.Reduction.SUM_OVER_BATCH_SIZE
    # **kwargs does not count as an argument, as in TF.
    jh.BinaryClassHead(loss_fn=lambda labels, logits, **kw: jnp.zeros_like(logits))


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(thresholds=(0.0, 0.5)), ValueError, r"thresholds not in \(0, 1\): \(\(0.0, 0.5\),\)"),
        (dict(thresholds=(0.5, 1.0)), ValueError, r"thresholds not in \(0, 1\)"),
        (
            dict(loss_reduction="invalid_loss_reduction"),
            ValueError,
            r"Invalid loss_reduction: invalid_loss_reduction",
        ),
        (dict(loss_reduction=jh.Reduction.NONE), ValueError, r"Invalid loss_reduction: none"),
        (
            dict(label_vocabulary={"a": 1}),
            ValueError,
            r"label_vocabulary should be a list or a tuple. Given type: <class 'dict'>",
        ),
        (
            dict(loss_fn=lambda logits: logits),
            ValueError,
            r"loss_fn must contain argument: labels\. Given arguments: \('logits',\)",
        ),
        (
            dict(loss_fn=lambda labels: labels),
            ValueError,
            r"loss_fn must contain argument: logits\. Given arguments: \('labels',\)",
        ),
        (
            dict(loss_fn=lambda labels, logits, name=None: logits),
            ValueError,
            r"loss_fn has unexpected args: \['name'\]",
        ),
        (dict(compat="v3"), ValueError, r"compat must be one of"),
        (dict(name=3), TypeError, r"name must be a string"),
    ],
)
def test_constructor_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        jh.BinaryClassHead(**kwargs)


@pytest.mark.parametrize(
    "labels, logits, features, head_kwargs, match",
    [
        (
            [[1.0], [1.0]],
            [[1.0, 2.0], [3.0, 4.0]],
            None,
            {},
            r"logits shape must be \[D0, D1, \.\.\. DN, logits_dimension\], got \[2, 2\]",
        ),
        ([1.0], [1.0], None, {}, r"logits must have rank at least 2\.  Received rank 1"),
        (
            [[1.0, 0.0], [1.0, 0.0]],
            [[1.0], [2.0]],
            None,
            {},
            r"Mismatched label shape\. Expected labels dimension=1\.  Received 2",
        ),
        (
            [[1.0], [1.0], [0.0]],
            [[1.0], [2.0]],
            None,
            {},
            r"labels shape must be \[D0, D1, \.\.\. DN, 1\].*expected_labels_shape: \[2, 1\]\. labels_shape: \[3, 1\]",
        ),
        ([[[1.0]]], [[1.0], [2.0]], None, {}, r"labels shape must be"),
        ([[0.5], [1.2]], [[0.5], [-0.3]], None, {}, r"Labels must be <= 2 - 1: got \[1.2\]"),
        ([[-0.5], [1.0]], [[0.5], [-0.3]], None, {}, r"Labels must be >= 0: got \[-0.5\]"),
        (
            [[1.0], [1.0]],
            [[1.0], [2.0]],
            {"x": 1},
            {"weight_column": "w"},
            r"weight_column 'w' is missing from features.*got keys \['x'\]",
        ),
        (
            [[1.0], [1.0]],
            [[1.0], [2.0]],
            None,
            {"weight_column": "w"},
            r"weight_column 'w' is missing",
        ),
        (
            [[[0]], [[0]]],
            [[[1.0]], [[2.0]]],
            {"w": np.ones((2, 2))},
            {"weight_column": "w"},
            r"weights shape must be \[D0, D1, \.\.\. DN\] or \[D0, D1, \.\.\. DN, 1\], logits_shape: \[2, 1, 1\]\. weights_shape: \[2, 2\]",
        ),
        (
            [[1.0], [1.0]],
            [[1.0], [2.0]],
            {"w": np.ones((2, 1, 1))},
            {"weight_column": "w"},
            r"weights shape",
        ),
    ],
)
def test_call_validation(labels, logits, features, head_kwargs, match):
    head = jh.BinaryClassHead(**head_kwargs)
    with pytest.raises(ValueError, match=match):
        head.loss(np.asarray(labels), np.asarray(logits, np.float32), features)


def test_weight_column_type_and_dtype_errors():
    with pytest.raises(TypeError, match="Weight column must be either a string or NumericColumn"):
        jh.BinaryClassHead(weight_column=3).loss([[1.0]], [[1.0]], {"w": [[1.0]]})
    with pytest.raises(ValueError, match="Weight column should be castable to float"):
        jh.BinaryClassHead(weight_column="w").loss([[1.0]], [[1.0]], {"w": np.array([["a"]])})


def test_loss_fn_wrong_shape():
    head = jh.BinaryClassHead(loss_fn=lambda labels, logits: jnp.array([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"loss_shape: \[2\].*expected loss_shape \[2, 1\]"):
        head.loss([[1], [0]], [[-10.0], [10.0]])


def test_label_range_under_jit_with_checkify():
    head = jh.BinaryClassHead()
    with jh.traced_value_checks():
        checked = jax.jit(checkify.checkify(head.loss))
        err, _ = checked(jnp.array([[1.2], [0.4]]), jnp.array([[0.5], [-0.3]]))
    with pytest.raises(checkify.JaxRuntimeError, match=r"Labels must be <= 2 - 1"):
        err.throw()
    err, loss = checked(jnp.array([[1.0], [0.4]]), jnp.array([[0.5], [-0.3]]))
    err.throw()  # valid labels: no error
    # Outside the context, jit compiles without checks (values unknown while tracing).
    jax.jit(head.loss)(jnp.array([[1.2], [0.4]]), jnp.array([[0.5], [-0.3]]))


def test_head_is_hashable_static_argument():
    head = jh.BinaryClassHead(
        weight_column="w", thresholds=[0.25, 0.5], label_vocabulary=["a", "b"]
    )
    assert hash(head) == hash(
        jh.BinaryClassHead(weight_column="w", thresholds=(0.25, 0.5), label_vocabulary=("a", "b"))
    )
    f = jax.jit(lambda h, lb, lg: h.loss(lb, lg, {"w": jnp.ones((2,))}), static_argnums=0)
    np.testing.assert_allclose(
        f(head, jnp.array([1.0, 0.0]), jnp.zeros((2, 1))), np.log(2), rtol=1e-6
    )
    assert jh.binary_classification_head(thresholds=[0.5]) == jh.BinaryClassHead(thresholds=(0.5,))


# ------------------------------------------------------------------ properties
@settings(max_examples=30, deadline=None)
@given(
    logits=hnp.arrays(np.float32, (5, 1), elements=st.floats(-50, 50, width=32)),
    labels=hnp.arrays(np.float32, (5, 1), elements=st.floats(0, 1, width=32)),
    # Zero or normal weights: XLA flushes float32 subnormals to zero.
    weights=hnp.arrays(
        np.float32, (5,), elements=st.one_of(st.just(0.0), st.floats(0.125, 3, width=32))
    ),
    reduction=st.sampled_from(["sum", "sum_over_batch_size", "mean", "sum_by_nonzero_weights"]),
)
def test_loss_nonnegative_and_matches_numpy(logits, labels, weights, reduction):
    head = jh.BinaryClassHead(weight_column="w", loss_reduction=reduction)
    got = float(head.loss(labels, logits, {"w": weights}))
    assert got >= 0
    weighted = _ce(labels, logits) * weights[:, None].astype(np.float64)
    denominator = {
        "sum": 1.0,
        "sum_over_batch_size": 5.0,
        "mean": weights.astype(np.float64).sum(),
        "sum_by_nonzero_weights": float(np.count_nonzero(weights)),
    }[reduction]
    expected = weighted.sum() / denominator if denominator else 0.0
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=1e-5)


# ------------------------------------------------------------------ sharding
def _mesh():
    return Mesh(np.array(jax.devices()[:8]), ("batch",))


def test_loss_on_sharded_arrays_equals_single_device():
    mesh = _mesh()
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(32, 1)).astype(np.float32)
    labels = rng.integers(0, 2, size=(32, 1)).astype(np.float32)
    weights = rng.uniform(size=(32,)).astype(np.float32)
    head = jh.BinaryClassHead(weight_column="w", loss_reduction="mean")
    expected = head.loss(labels, logits, {"w": weights})
    sharding = NamedSharding(mesh, P("batch"))
    args = jax.device_put((labels, logits, {"w": weights}), sharding)
    np.testing.assert_allclose(jax.jit(head.loss)(*args), expected, rtol=1e-6)

    @functools.partial(
        jax.shard_map, mesh=mesh, in_specs=(P("batch"), P("batch"), P("batch")), out_specs=P()
    )
    def per_shard(lb, lg, w):
        return head.loss(lb, lg, {"w": w}, axis_name="batch")

    np.testing.assert_allclose(jax.jit(per_shard)(labels, logits, weights), expected, rtol=1e-6)
