"""SequentialHeadWrapper: padded steps out of loss and metrics, TF's reduction denominators.

The reference numbers were produced with TF 2.15's
``tensorflow_estimator.python.estimator.head.sequential_head.SequentialHeadWrapper``
(which flattens ``[B, T, …]`` with ``tf.boolean_mask``) on the inputs below;
the property test checks the same identity on random masks: the wrapper on
``[B, T, …]`` equals the wrapped head on the boolean-masked, flattened steps.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jaxheads.heads.binary import BinaryClassHead
from jaxheads.heads.multi_class import MultiClassHead
from jaxheads.heads.multi_head import MultiHead
from jaxheads.heads.multi_label import MultiLabelHead, SparseLabels
from jaxheads.heads.regression import PoissonRegressionHead, RegressionHead
from jaxheads.heads.sequence import SequentialHeadWrapper

MASK = np.array([[True, True, False], [True, False, False]])
BIN_LOGITS = np.array([[[1.5], [-0.5], [2.0]], [[0.3], [9.0], [-1.0]]], np.float32)
BIN_LABELS = np.array([[[1], [0], [1]], [[0], [1], [0]]], np.int32)
WEIGHTS = np.array([[1.0, 2.0, 3.0], [0.5, 4.0, 5.0]], np.float32)


def _metrics(head, logits, labels, features):
    state = head.update_metrics(head.init_metrics(), features, logits, labels)
    return {k: float(v) for k, v in head.compute_metrics(state).items()}


# --------------------------------------------------------------------------- TF 2.15 numbers
@pytest.mark.parametrize(
    "reduction, weighted, loss, metrics",
    [
        (
            "sum_over_batch_size",
            False,
            0.5099484920501709,
            {
                "average_loss": 0.5099485,
                "accuracy": 0.6666667,
                "prediction/mean": 0.5898526,
                "label/mean": 0.3333333,
                "auc": 1.0,
            },
        ),
        (
            "sum_over_batch_size",
            True,
            0.5255816578865051,
            {
                "average_loss": 0.4504986,
                "accuracy": 0.8571429,
                "prediction/mean": 0.5313935,
                "label/mean": 0.2857143,
                "auc": 1.0,
            },
        ),
        (
            "sum",
            False,
            1.5298454761505127,
            {
                "average_loss": 0.5099485,
                "accuracy": 0.6666667,
                "prediction/mean": 0.5898526,
                "label/mean": 0.3333333,
                "auc": 1.0,
            },
        ),
        (
            "sum",
            True,
            1.5767449140548706,
            {
                "average_loss": 0.4504986,
                "accuracy": 0.8571429,
                "prediction/mean": 0.5313935,
                "label/mean": 0.2857143,
                "auc": 1.0,
            },
        ),
    ],
)
@pytest.mark.parametrize("jit", [False, True])
def test_binary_matches_tf(reduction, weighted, loss, metrics, jit):
    kwargs = {"loss_reduction": reduction}
    if weighted:
        kwargs["weight_column"] = "w"
    head = SequentialHeadWrapper(
        BinaryClassHead(**kwargs), "mask", feature_columns="w" if weighted else None
    )
    features = {"mask": MASK, "w": WEIGHTS}
    got = (jax.jit(head.loss) if jit else head.loss)(BIN_LABELS, BIN_LOGITS, features)
    np.testing.assert_allclose(got, loss, rtol=1e-6)
    if jit:
        return
    got = _metrics(head, BIN_LOGITS, BIN_LABELS, features)
    for key, value in metrics.items():
        np.testing.assert_allclose(got[key], value, rtol=1e-5, atol=1e-6, err_msg=key)


def test_multi_class_matches_tf():
    head = SequentialHeadWrapper(MultiClassHead(3), "mask")
    logits = np.array(
        [[[1.0, 2.0, 0.0], [0.5, -1.0, 3.0], [0, 0, 0]], [[2.0, 1.0, 1.0], [0, 0, 0], [0, 0, 0]]],
        np.float32,
    )
    labels = np.array([[1, 2, 0], [0, 0, 0]])  # [B, T] ids
    features = {"mask": MASK}
    np.testing.assert_allclose(head.loss(labels, logits, features), 0.35157498717308044, rtol=1e-6)
    got = _metrics(head, logits, labels, features)
    np.testing.assert_allclose(got["average_loss"], 0.35157498717308044, rtol=1e-6)
    assert got["accuracy"] == 1.0


def test_regression_per_logit_weights_matches_tf():
    head = SequentialHeadWrapper(
        RegressionHead(label_dimension=2, weight_column="w"), "mask", feature_columns=["w"]
    )
    logits = np.arange(12, dtype=np.float32).reshape(2, 3, 2) / 4
    labels = np.ones((2, 3, 2), np.float32)
    w = np.array(
        [[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], [[0.5, 1.5], [7.0, 8.0], [9.0, 1.0]]], np.float32
    )
    features = {"mask": MASK, "w": w}
    np.testing.assert_allclose(head.loss(labels, logits, features), 0.6822916865348816, rtol=1e-6)
    got = _metrics(head, logits, labels, features)
    np.testing.assert_allclose(got["average_loss"], 0.3411458432674408, rtol=1e-6)
    np.testing.assert_allclose(got["prediction/mean"], 0.6979166865348816, rtol=1e-6)
    np.testing.assert_allclose(got["label/mean"], 1.0, rtol=1e-6)


# --------------------------------------------------------------------------- masking semantics
def test_padded_steps_may_hold_garbage():
    head = SequentialHeadWrapper(MultiClassHead(3, weight_column="w"), "mask")
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 3)).astype(np.float32)
    labels = rng.integers(0, 3, size=(2, 3))
    w = rng.uniform(0.5, 2, size=(2, 3)).astype(np.float32)
    clean = head.loss(labels, logits, {"mask": MASK, "w": w})
    dirty_logits = np.where(MASK[..., None], logits, np.nan).astype(np.float32)
    dirty_labels = np.where(MASK, labels, -1)  # out of range: would fail the range check
    dirty_w = np.where(MASK, w, np.nan).astype(np.float32)
    features = {"mask": MASK, "w": dirty_w}
    np.testing.assert_allclose(head.loss(dirty_labels, dirty_logits, features), clean, rtol=1e-6)
    grad = jax.grad(lambda x: head.loss(dirty_labels, x, features))(dirty_logits)
    assert np.all(np.isfinite(grad))
    np.testing.assert_array_equal(grad[~MASK], 0.0)  # padded steps get no gradient
    got = _metrics(head, dirty_logits, dirty_labels, features)
    want = _metrics(head, logits, labels, {"mask": MASK, "w": w})
    for key, value in want.items():
        np.testing.assert_allclose(got[key], value, rtol=1e-6, err_msg=key)
    loss, weights = head.unreduced_loss(dirty_labels, dirty_logits, features)
    assert loss.shape == (2, 3, 1) and np.all(np.isfinite(loss))
    np.testing.assert_array_equal(weights[~MASK], 0.0)


_JITTED = {}


def _jitted_loss(head):
    if head not in _JITTED:
        _JITTED[head] = jax.jit(head.loss)
    return _JITTED[head]


def _flat_reference(static_head, labels, logits, features, mask_key="mask", loss=None):
    """TF's algorithm: boolean-mask the [B, T, ...] inputs, then the static head."""
    mask = np.asarray(features[mask_key], bool)
    flat_features = {k: np.asarray(v)[mask] for k, v in features.items() if k != mask_key}
    flat_labels = np.asarray(labels)[mask]
    if flat_labels.ndim == 1:
        flat_labels = flat_labels[:, None]
    return (loss or static_head.loss)(flat_labels, np.asarray(logits)[mask], flat_features)


@settings(max_examples=20, deadline=None)
@given(
    mask=hnp.arrays(np.bool_, (2, 4)).filter(lambda m: m.any()),
    seed=st.integers(0, 2**16),
    reduction=st.sampled_from(["sum", "sum_over_batch_size", "mean", "sum_by_nonzero_weights"]),
)
def test_property_equals_static_head_on_flattened_valid_steps(mask, seed, reduction):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(2, 4, 3)).astype(np.float32) * 3
    labels = rng.integers(0, 3, size=(2, 4, 1))
    w = rng.choice([0.0, 0.5, 1.0, 2.0], size=(2, 4)).astype(np.float32)
    static = MultiClassHead(3, weight_column="w", loss_reduction=reduction)
    head = SequentialHeadWrapper(static, "mask", feature_columns="w")
    features = {"mask": mask, "w": w}
    got = float(_jitted_loss(head)(labels, logits, features))
    assert got >= 0.0
    flat = _jitted_loss(static)  # one compilation per number of valid steps
    np.testing.assert_allclose(
        got, _flat_reference(static, labels, logits, features, loss=flat), rtol=2e-5, atol=1e-6
    )


def test_multi_label_sparse_labels_and_sum_over_batch_size_denominator():
    static = MultiLabelHead(3)
    head = SequentialHeadWrapper(static, "mask")
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 3, 3)).astype(np.float32)
    multi_hot = rng.integers(0, 2, size=(2, 3, 3))
    ids = SparseLabels(np.where(multi_hot == 1, np.arange(3), -1))
    features = {"mask": MASK}
    expected = _flat_reference(static, multi_hot, logits, features)
    np.testing.assert_allclose(head.loss(multi_hot, logits, features), expected, rtol=1e-6)
    np.testing.assert_allclose(jax.jit(head.loss)(ids, logits, features), expected, rtol=1e-6)
    # SUM_OVER_BATCH_SIZE divides by the 3 valid steps, not by B * T = 6.
    unmasked = static.loss(multi_hot, logits)
    assert not np.isclose(float(expected), float(unmasked))


def test_string_labels_with_vocabulary_and_padding():
    head = SequentialHeadWrapper(MultiClassHead(3, label_vocabulary=["a", "b", "c"]), "mask")
    labels = np.array([["b", "c", ""], ["a", "<pad>", ""]])
    logits = np.zeros((2, 3, 3), np.float32)
    features = {"mask": MASK}
    np.testing.assert_allclose(head.loss(labels, logits, features), np.log(3.0), rtol=1e-6)
    encoded = head.encode_labels(labels, features)
    assert encoded.tolist() == [[1, 2, 0], [0, 0, 0]]
    np.testing.assert_allclose(
        jax.jit(head.loss)(encoded, logits, features), np.log(3.0), rtol=1e-6
    )


def test_rank2_logits_for_one_dimensional_heads():
    head = SequentialHeadWrapper(PoissonRegressionHead(), "mask")
    logits = np.zeros((2, 3), np.float32)
    labels = np.ones((2, 3), np.float32)
    np.testing.assert_allclose(head.loss(labels, logits, {"mask": MASK}), 1.0, rtol=1e-6)
    assert head.predictions(logits)["predictions"].shape == (2, 3, 1)
    with pytest.raises(ValueError, match=r"expects logits of shape \[B, T, logits_dimension=3\]"):
        SequentialHeadWrapper(MultiClassHead(3), "mask").loss(labels, logits, {"mask": MASK})


# --------------------------------------------------------------------------- predictions & specs
def test_predictions_and_specs():
    static = BinaryClassHead(name="bin")
    head = SequentialHeadWrapper(static, "mask")
    assert head.name == "bin_sequential" and SequentialHeadWrapper(BinaryClassHead()).name is None
    assert head.input_sequence_mask_key == "mask" and head.logits_dimension == 1
    assert head.loss_reduction == static.loss_reduction
    predictions = head.predictions(BIN_LOGITS)
    assert predictions["probabilities"].shape == (2, 3, 2)
    np.testing.assert_allclose(predictions["logistic"], static.predictions(BIN_LOGITS)["logistic"])
    spec = head.create_spec("predict", BIN_LOGITS, features={"mask": MASK})
    assert "mask" in spec.predictions and spec.loss is None
    np.testing.assert_array_equal(spec.predictions["mask"], MASK)
    assert set(spec.export_outputs) == {
        "serving_default",
        "classification",
        "regression",
        "predict",
    }
    spec = jax.jit(lambda lg, lb, ft: head.create_spec("eval", lg, lb, ft))(
        BIN_LOGITS, BIN_LABELS, {"mask": MASK}
    )
    metrics = head.compute_metrics(spec.metrics)
    assert "average_loss/bin" in metrics  # the wrapped head's keys
    np.testing.assert_allclose(metrics["average_loss/bin"], 0.5099485, rtol=1e-5)
    np.testing.assert_allclose(spec.loss, 0.5099484920501709, rtol=1e-6)
    spec = head.create_spec(
        "train", BIN_LOGITS, BIN_LABELS, {"mask": MASK}, regularization_losses=[1.0]
    )
    np.testing.assert_allclose(spec.loss, 1.5099484920501709, rtol=1e-6)


def test_streaming_and_vmap():
    head = SequentialHeadWrapper(BinaryClassHead(), "mask")
    update = jax.jit(head.update_metrics)
    state = head.init_metrics()
    for b in range(2):
        state = update(
            state, {"mask": MASK[b : b + 1]}, BIN_LOGITS[b : b + 1], BIN_LABELS[b : b + 1]
        )
    streamed = {k: float(v) for k, v in head.compute_metrics(state).items()}
    whole = _metrics(head, BIN_LOGITS, BIN_LABELS, {"mask": MASK})
    for key, value in whole.items():
        np.testing.assert_allclose(streamed[key], value, rtol=1e-6, err_msg=key)
    # vmap over a leading axis of independent [B, T] batches.
    logits = np.stack([BIN_LOGITS, -BIN_LOGITS])
    labels = np.stack([BIN_LABELS, BIN_LABELS])
    masks = np.stack([MASK, np.ones_like(MASK)])
    vmapped = jax.jit(jax.vmap(lambda lb, lg, m: head.loss(lb, lg, {"mask": m})))(
        labels, logits, masks
    )
    one = jax.jit(lambda lb, lg, m: head.loss(lb, lg, {"mask": m}))
    np.testing.assert_allclose(
        vmapped, [one(labels[i], logits[i], masks[i]) for i in range(2)], rtol=1e-6
    )


def test_bf16_logits_and_huge_logits():
    head = SequentialHeadWrapper(BinaryClassHead(), "mask")
    loss = head.loss(BIN_LABELS, jnp.asarray(BIN_LOGITS, jnp.bfloat16), {"mask": MASK})
    assert loss.dtype == jnp.float32
    huge = np.where(BIN_LOGITS > 0, 1e4, -1e4).astype(np.float32)
    grad = jax.jit(jax.grad(lambda x: head.loss(BIN_LABELS, x, {"mask": MASK})))(huge)
    assert np.all(np.isfinite(grad))


# --------------------------------------------------------------------------- validation
def test_validation_errors():
    with pytest.raises(TypeError, match=r"`sequence_mask` column must be a string"):
        SequentialHeadWrapper(BinaryClassHead(), sequence_length_mask=3)
    with pytest.raises(
        TypeError, match=r"`feature_columns` must be either a string or an iterable"
    ):
        SequentialHeadWrapper(BinaryClassHead(), feature_columns=3)
    with pytest.raises(TypeError, match=r"Column must a string"):
        SequentialHeadWrapper(BinaryClassHead(), feature_columns=["w", 3])
    with pytest.raises(
        ValueError, match=r"`MultiHead` is not supported with `SequentialHeadWrapper`\."
    ):
        SequentialHeadWrapper(MultiHead([BinaryClassHead(name="a")]))
    head = SequentialHeadWrapper(BinaryClassHead(), "mask", feature_columns="w")
    with pytest.raises(
        ValueError, match=r"The provided sequence_length_mask key `mask` should be included"
    ):
        head.loss(BIN_LABELS, BIN_LOGITS, {"w": WEIGHTS})
    with pytest.raises(ValueError, match=r"Mask is expected to have two dimensions, got 3 instead"):
        head.loss(BIN_LABELS, BIN_LOGITS, {"mask": MASK[..., None], "w": WEIGHTS})
    with pytest.raises(ValueError, match=r"Tensor shape is incompatible with provided mask"):
        head.loss(BIN_LABELS, BIN_LOGITS, {"mask": MASK[:, :2], "w": WEIGHTS})
    with pytest.raises(ValueError, match=r"`w` column expected in features dictionary"):
        head.loss(BIN_LABELS, BIN_LOGITS, {"mask": MASK})
    with pytest.raises(ValueError, match=r"labels must have shape \[B, T, \.\.\.\]"):
        head.loss(np.ones(2), BIN_LOGITS, {"mask": MASK, "w": WEIGHTS})
    assert SequentialHeadWrapper(BinaryClassHead()).sequence_length_mask == "sequence_length_mask"
    assert hash(head) == hash(
        SequentialHeadWrapper(BinaryClassHead(), "mask", feature_columns=("w",))
    )


@pytest.mark.parametrize(
    "reduction", ["sum", "sum_over_batch_size", "mean", "sum_by_nonzero_weights"]
)
def test_loss_terms_add_up_across_shards(reduction):
    from jax.sharding import PartitionSpec as P

    head = SequentialHeadWrapper(
        BinaryClassHead(weight_column="w", loss_reduction=reduction), "mask"
    )
    features = {"mask": MASK, "w": WEIGHTS}
    full = head.loss(BIN_LABELS, BIN_LOGITS, features)
    parts = [
        head.loss_terms(
            BIN_LABELS[b : b + 1],
            BIN_LOGITS[b : b + 1],
            {"mask": MASK[b : b + 1], "w": WEIGHTS[b : b + 1]},
        )
        for b in range(2)
    ]
    np.testing.assert_allclose((parts[0] + parts[1]).value(), full, rtol=1e-6)
    # The same inside shard_map with axis_name: global sums before dividing.
    mesh = jax.make_mesh((2,), ("batch",), devices=jax.devices()[:2])
    sharded = jax.jit(
        jax.shard_map(
            lambda lb, lg, ft: head.loss(lb, lg, ft, axis_name="batch"),
            mesh=mesh,
            in_specs=P("batch"),
            out_specs=P(),
        )
    )
    put = lambda x: jax.device_put(x, jax.sharding.NamedSharding(mesh, P("batch")))  # noqa: E731
    args = jax.tree.map(put, (BIN_LABELS, BIN_LOGITS, features))
    np.testing.assert_allclose(sharded(*args), full, rtol=1e-6)
