"""RegressionHead, PoissonRegressionHead: spec §3 ``reg_*`` / ``poisson_*`` vectors, properties.

Expected values are computed by hand as in TF's ``regression_head_test.py``:
squared errors of logits ``[45, 41, 44]`` against labels ``[35, 42, 45]`` are
``[100, 1, 1]``; with weights ``[1, .1, 1.5]`` the weighted sum is 101.6.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from jax.test_util import check_grads

from jaxheads.feature_column import numeric_column
from jaxheads.heads.regression import (
    PoissonRegressionHead,
    RegressionHead,
    poisson_regression_head,
    regression_head,
)
from jaxheads.reduction import Reduction

LOGITS_2 = np.array([[45.0], [41.0]], np.float32)
LABELS_2 = np.array([[43], [44]], np.int32)  # int labels are cast to float32
LOGITS_3 = np.array([[45], [41], [44]], np.int32)
LABELS_3 = np.array([[35], [42], [45]], np.int32)
WEIGHTS_3 = np.array([[1.0], [0.1], [1.5]], np.float32)
FEATURES = {"x": np.array([[42.0]], np.float32)}


def _metrics(head, logits, labels, features=None, reg=None):
    state = head.init_metrics(reg)
    state = head.update_metrics(state, features, logits, labels, reg)
    return {k: float(v) for k, v in head.compute_metrics(state).items()}


def _assert_metrics(got, expected, rtol=1e-6, atol=1e-6):
    assert set(got) == set(expected), (sorted(got), sorted(expected))
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, rtol=rtol, atol=atol, err_msg=key)


# ------------------------------------------------------------------ spec §3: RegressionHead
@pytest.mark.parametrize("jit", [False, True])
def test_reg_eval_basic(jit):
    head = RegressionHead()
    loss = (jax.jit(head.loss) if jit else head.loss)(LABELS_2, LOGITS_2, FEATURES)
    np.testing.assert_allclose(loss, 6.5, rtol=1e-6)  # ((43-45)^2 + (44-41)^2) / 2
    assert loss.dtype == jnp.float32
    _assert_metrics(
        _metrics(head, LOGITS_2, LABELS_2, FEATURES),
        {"average_loss": 6.5, "prediction/mean": 43.0, "label/mean": 43.5},
    )


def test_reg_sum():
    head = RegressionHead(loss_reduction="sum")
    np.testing.assert_allclose(head.loss(LABELS_2, LOGITS_2, FEATURES), 13.0, rtol=1e-6)
    loss, weights = head.unreduced_loss(LABELS_2, LOGITS_2, FEATURES)
    np.testing.assert_allclose(loss, [[4.0], [9.0]])
    np.testing.assert_array_equal(weights, np.ones((2, 1)))


def test_reg_regularization():
    head = RegressionHead()
    reg = [1.5, 0.5]
    np.testing.assert_allclose(
        head.loss(LABELS_2, LOGITS_2, FEATURES, regularization_losses=reg), 8.5, rtol=1e-6
    )
    _assert_metrics(
        _metrics(head, LOGITS_2, LABELS_2, FEATURES, reg),
        {
            "average_loss": 6.5,
            "regularization_loss": 2.0,
            "prediction/mean": 43.0,
            "label/mean": 43.5,
        },
    )
    spec = head.create_spec("train", LOGITS_2, LABELS_2, FEATURES, regularization_losses=reg)
    np.testing.assert_allclose(spec.loss, 8.5, rtol=1e-6)


def test_reg_weighted_3ex():
    head = RegressionHead(weight_column="label_weights")
    features = {"x": np.array([[42], [43], [44]]), "label_weights": WEIGHTS_3}
    np.testing.assert_allclose(head.loss(LABELS_3, LOGITS_3, features), 101.6 / 3, rtol=1e-6)
    _assert_metrics(
        _metrics(head, LOGITS_3, LABELS_3, features),
        {
            "average_loss": 39.0769231,
            "prediction/mean": (45 + 41 * 0.1 + 44 * 1.5) / 2.6,  # 44.2692337
            "label/mean": (35 + 42 * 0.1 + 45 * 1.5) / 2.6,  # 41.0384636
        },
    )


def test_reg_weight_numeric_column():
    head = RegressionHead(
        weight_column=numeric_column("label_weights", normalizer_fn=lambda x: x + 1.0)
    )
    features = {
        "x": np.array([[42], [43], [44]]),
        "label_weights": np.array([[0.0], [-0.9], [0.5]], np.float32),
    }  # -> [1, .1, 1.5]
    np.testing.assert_allclose(head.loss(LABELS_3, LOGITS_3, features), 33.8666667, rtol=1e-6)


def test_reg_rank1_labels_weights():
    head = RegressionHead(weight_column="label_weights")
    features = {
        "x": np.array([42.0, 43.0, 44.0]),
        "label_weights": np.array([1.0, 0.1, 1.5], np.float32),
    }
    labels = np.array([35.0, 42.0, 45.0], np.float32)
    np.testing.assert_allclose(head.loss(labels, LOGITS_3, features), 33.8666667, rtol=1e-6)
    _, weights = head.unreduced_loss(labels, LOGITS_3, features)
    assert weights.shape == (3, 1)


def test_reg_multi_value_per_logit_weights():
    head = RegressionHead(weight_column="label_weights", label_dimension=3)
    logits = np.array([[45.0, 41.0, 44.0]], np.float32)
    labels = np.array([[35.0, 42.0, 45.0]], np.float32)
    features = {
        "x": np.array([[42.0, 43.0, 44.0]]),
        "label_weights": np.array([[1.0, 0.1, 1.5]], np.float32),
    }
    np.testing.assert_allclose(head.loss(labels, logits, features), 101.6 / 3, rtol=1e-6)
    got = _metrics(head, logits, labels, features)
    np.testing.assert_allclose(got["average_loss"], 39.0769231, rtol=1e-6)


def test_reg_multi_dim():
    head = RegressionHead(weight_column="label_weights", label_dimension=3)
    logits = np.array(
        [[[0.0, 1.0, 2.0], [10.0, 11.0, 12.0]], [[20.0, 21.0, 22.0], [30.0, 31.0, 32.0]]],
        np.float32,
    )
    labels = np.array(
        [[[1.0, 2.0, 3.0], [12.0, 13.0, 14.0]], [[23.0, 24.0, 25.0], [34.0, 35.0, 36.0]]],
        np.float32,
    )
    features = {"label_weights": np.array([[1.0, 1.5], [2.0, 2.5]], np.float32)}
    # weighted sum = 1*3*1 + 1.5*3*4 + 2*3*9 + 2.5*3*16 = 195 over 2*2*3 elements
    np.testing.assert_allclose(head.loss(labels, logits, features), 16.25, rtol=1e-6)
    got = _metrics(head, logits, labels, features)
    np.testing.assert_allclose(got["average_loss"], 195.0 / 21.0, rtol=1e-6)  # W broadcast: 7 * 3


@pytest.mark.parametrize(
    "weights",
    [
        np.array([[1.0], [2.0]], np.float32),
        np.array([[[1.0, 1.1], [1.5, 1.6]], [[2.0, 2.1], [2.5, 2.6]]], np.float32),
    ],
    ids=["inner", "outer"],
)
def test_reg_multi_dim_wrong_weights(weights):
    head = RegressionHead(weight_column="label_weights", label_dimension=3)
    logits = np.zeros((2, 2, 3), np.float32)
    with pytest.raises(ValueError, match=r"weights shape must be .*logits_shape: \[2, 2, 3\]"):
        head.loss(np.zeros((2, 2, 3), np.float32), logits, {"label_weights": weights})


def test_reg_multi_batch_streaming():
    head = RegressionHead(weight_column="label_weights")
    batches = [
        (
            np.array([[45.0]], np.float32),
            np.array([[35.0]], np.float32),
            np.array([[1.0]], np.float32),
        ),
        (
            np.array([[41.0]], np.float32),
            np.array([[42.0]], np.float32),
            np.array([[0.1]], np.float32),
        ),
        (
            np.array([[44.0]], np.float32),
            np.array([[45.0]], np.float32),
            np.array([[1.5]], np.float32),
        ),
    ]
    update = jax.jit(head.update_metrics)
    loss = jax.jit(head.loss)
    state = head.init_metrics()
    per_batch = []
    for logits, labels, w in batches:
        per_batch.append(float(loss(labels, logits, {"label_weights": w})))
        state = update(state, {"label_weights": w}, logits, labels)
    np.testing.assert_allclose(per_batch, [100.0, 0.1, 1.5], rtol=1e-6)
    _assert_metrics(
        {k: float(v) for k, v in head.compute_metrics(state).items()},
        {
            "average_loss": 39.076923,
            "prediction/mean": (45 + 41 * 0.1 + 44 * 1.5) / 2.6,
            "label/mean": (35 + 42 * 0.1 + 45 * 1.5) / 2.6,
        },
    )
    # Estimator's `loss` metric: the unweighted mean over batches of the training loss.
    np.testing.assert_allclose(np.mean(per_batch), (100.0 + 0.1 + 1.5) / 3, rtol=1e-6)


def test_reg_inverse_link():
    head = RegressionHead(inverse_link_fn=lambda logits: logits - 10.0)
    logits = np.array([[45], [41]], np.int32)
    predictions = head.predictions(logits)
    assert list(predictions) == ["predictions", "logits"]
    np.testing.assert_allclose(predictions["predictions"], [[35.0], [31.0]])
    np.testing.assert_allclose(predictions["logits"], [[45.0], [41.0]])
    export = head.export_outputs(logits)
    np.testing.assert_allclose(export["serving_default"]["value"], [[35.0], [31.0]])
    np.testing.assert_allclose(export["regression"]["value"], [[35.0], [31.0]])
    assert export["predict"].keys() == {"predictions", "logits"}
    # The loss is on the logits, not on inverse_link_fn(logits).
    np.testing.assert_allclose(head.loss(np.array([[45.0], [41.0]]), logits), 0.0)


def test_reg_predict_plain():
    head = RegressionHead()
    predictions = head.predictions(np.array([[45], [41]], np.int32))
    assert set(predictions) == {"predictions"} and predictions["predictions"].dtype == jnp.float32
    np.testing.assert_allclose(predictions["predictions"], [[45.0], [41.0]])
    export = head.export_outputs(np.array([[45.0], [41.0]], np.float32))
    assert set(export) == {"serving_default", "predict", "regression"}
    assert list(export)[0] == "serving_default"


def test_reg_custom_loss_fn_dim2():
    seen = {}

    def loss_fn(labels, logits):
        seen["labels"] = labels
        return jnp.array([[0.0, 1.0], [2.0, 3.0]])

    head = RegressionHead(label_dimension=2, loss_fn=loss_fn)
    logits = np.array([[-1.0, 1.0], [-2.0, 2.0]], np.float32)
    labels = np.array([[1.0, 0.0], [2.0, -1.0]], np.float32)
    np.testing.assert_allclose(
        head.loss(labels, logits, {"x": np.array([[42]])}), 6.0 / 4.0, rtol=1e-6
    )
    assert seen["labels"].dtype == jnp.float32
    bad = RegressionHead(label_dimension=2, loss_fn=lambda labels, logits: jnp.zeros((2, 1)))
    with pytest.raises(ValueError, match="loss_shape"):
        bad.loss(labels, logits)


def test_reg_v1_eval_sum():
    """TF1's canned regression head = this head with the SUM default (contrib argument order)."""
    head = regression_head(loss_reduction="weighted_sum")
    np.testing.assert_allclose(head.loss(LABELS_2, LOGITS_2, FEATURES), 13.0, rtol=1e-6)
    np.testing.assert_allclose(
        _metrics(head, LOGITS_2, LABELS_2, FEATURES)["average_loss"], 6.5, rtol=1e-6
    )
    assert (
        regression_head("w", 2).weight_column == "w"
        and regression_head("w", 2).label_dimension == 2
    )


# ------------------------------------------------------------------ spec §3: PoissonRegressionHead
def test_poisson_train():
    head = PoissonRegressionHead()
    logits = np.array([[0], [-1], [1]], np.int32)
    labels = np.array([[1], [2], [3]], np.int32)
    # exp(x) - z*x + Stirling(z) for z > 1 = [1.0, 3.020, 1.482]
    loss = head.loss(labels, logits, FEATURES)
    assert abs(float(loss) - 1.834) < 0.001
    np.testing.assert_allclose(loss, 1.8340163, rtol=1e-6)
    _assert_metrics(
        _metrics(head, logits, labels, FEATURES),
        {"average_loss": 1.8340163, "label/mean": 2.0, "prediction/mean": 1.3620538},
    )
    partial = PoissonRegressionHead(compute_full_loss=False)
    np.testing.assert_allclose(partial.loss(labels, logits), 1.0287204, rtol=1e-6)
    np.testing.assert_allclose(jax.jit(head.loss)(labels, logits), 1.8340163, rtol=1e-6)


def test_poisson_predict():
    head = PoissonRegressionHead()
    logits = np.array([[0], [-1], [1]], np.int32)
    predictions = head.predictions(logits)
    assert set(predictions) == {"predictions", "logits"}
    np.testing.assert_allclose(
        predictions["predictions"], [[1.0], [0.36787945], [2.7182817]], rtol=1e-6
    )
    np.testing.assert_allclose(predictions["logits"], [[0.0], [-1.0], [1.0]])
    export = head.export_outputs(logits)
    np.testing.assert_allclose(export["serving_default"]["value"], predictions["predictions"])


def test_poisson_factory_and_label_dimension():
    head = poisson_regression_head("w", 2, loss_reduction="sum", compute_full_loss=False)
    assert head.weight_column == "w" and head.label_dimension == 2 and not head.compute_full_loss
    logits = np.zeros((2, 2), np.float32)
    labels = np.array([[0.0, 2.0], [1.0, 3.0]], np.float32)
    np.testing.assert_allclose(
        head.loss(labels, logits, {"w": np.array([1.0, 2.0], np.float32)}),
        1.0 * 2 + 2.0 * 2,
        rtol=1e-6,
    )  # exp(0) per element


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize("cls", [RegressionHead, PoissonRegressionHead])
@pytest.mark.parametrize("label_dimension", [0, -1])
def test_invalid_label_dimension(cls, label_dimension):
    with pytest.raises(ValueError, match="Invalid label_dimension"):
        cls(label_dimension=label_dimension)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (
            dict(loss_reduction="invalid_loss_reduction"),
            r"Invalid loss_reduction: invalid_loss_reduction",
        ),
        (dict(loss_reduction=Reduction.NONE), r"Invalid loss_reduction: none"),
        (dict(loss_fn=lambda logits: logits), r"loss_fn must contain argument: labels"),
        (
            dict(loss_fn=lambda labels, logits, name=None: labels),
            r"loss_fn has unexpected args: \['name'\]",
        ),
    ],
)
def test_regression_validation(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        RegressionHead(**kwargs)


def test_label_shape_errors():
    head = RegressionHead(label_dimension=2)
    with pytest.raises(ValueError, match=r"Mismatched label shape\. Expected labels dimension=2"):
        head.loss(np.ones((2,), np.float32), np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="logits shape"):
        head.loss(np.ones((2, 2), np.float32), np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="You must provide a labels Tensor"):
        head.loss(None, np.zeros((2, 2), np.float32))


# --------------------------------------------------------------------------- transforms & numerics
def test_grad_bf16_and_vmap():
    head = RegressionHead(label_dimension=2, weight_column="w")
    logits = jnp.array([[1.0, 2.0], [3.0, -1.0]])
    labels = jnp.array([[0.0, 1.0], [2.0, 2.0]])
    features = {"w": jnp.array([[1.0, 0.5], [2.0, 0.0]])}
    grad = jax.grad(lambda x: head.loss(labels, x, features))(logits)
    np.testing.assert_allclose(grad, 2 * (logits - labels) * features["w"] / 4, rtol=1e-6)
    check_grads(
        jax.jit(lambda x: head.loss(labels, x, features)), (logits,), order=2, modes=("rev",)
    )
    assert head.loss(labels, logits.astype(jnp.bfloat16), features).dtype == jnp.float32
    poisson = PoissonRegressionHead()
    big = jnp.array([[80.0], [-1e4]])
    g = jax.grad(lambda x: poisson.loss(jnp.array([[3.0], [0.0]]), x))(big)
    assert np.all(np.isfinite(g))
    stacked = np.stack([np.asarray(logits), -np.asarray(logits)])
    vmapped = jax.jit(jax.vmap(lambda lg: head.loss(labels, lg, features)))(stacked)
    one = jax.jit(lambda lg: head.loss(labels, lg, features))
    np.testing.assert_allclose(vmapped, [one(stacked[0]), one(stacked[1])], rtol=1e-6)


@settings(max_examples=25, deadline=None)
@given(
    logits=hnp.arrays(
        np.float32, (4, 2), elements=st.floats(-20, 20, width=32, allow_subnormal=False)
    ),
    labels=hnp.arrays(
        np.float32, (4, 2), elements=st.floats(-20, 20, width=32, allow_subnormal=False)
    ),
    weights=hnp.arrays(
        np.float32, (4, 2), elements=st.floats(0, 3, width=32, allow_subnormal=False)
    ),
    reduction=st.sampled_from(["sum", "sum_over_batch_size", "mean", "sum_by_nonzero_weights"]),
)
def test_property_regression_reductions_match_numpy(logits, labels, weights, reduction):
    head = RegressionHead(label_dimension=2, weight_column="w", loss_reduction=reduction)
    loss = float(head.loss(labels, logits, {"w": weights}))
    assert loss >= 0.0
    se = (labels.astype(np.float64) - logits) ** 2
    total = (se * weights).sum()
    denominator = {
        "sum": 1.0,
        "sum_over_batch_size": 8.0,
        "mean": weights.sum(dtype=np.float64),
        "sum_by_nonzero_weights": float(np.count_nonzero(weights)),
    }[reduction]
    expected = total / denominator if denominator else 0.0
    np.testing.assert_allclose(loss, expected, rtol=2e-5, atol=1e-4)


@settings(max_examples=20, deadline=None)
@given(
    logits=hnp.arrays(np.float32, (5, 1), elements=st.floats(-5, 5, width=32)),
    counts=hnp.arrays(np.int32, (5, 1), elements=st.integers(0, 30)),
)
def test_property_poisson_full_loss_nonnegative(logits, counts):
    # The full Poisson NLL (Stirling term included) is >= 0 up to the approximation error.
    loss = PoissonRegressionHead().unreduced_loss(counts, logits)[0]
    assert np.all(np.asarray(loss) >= -0.1)
    x, z = logits.astype(np.float64), counts.astype(np.float64)
    stirling = np.where(
        z > 1, z * np.log(np.maximum(z, 1)) - z + 0.5 * np.log(2 * np.pi * np.maximum(z, 1)), 0
    )
    np.testing.assert_allclose(loss, np.exp(x) - z * x + stirling, rtol=1e-5, atol=1e-4)
