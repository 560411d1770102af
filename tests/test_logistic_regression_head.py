"""LogisticRegressionHead: soft labels in [0, 1], sigmoid predictions, validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxheads as jh

LOGITS = np.array([[0.0], [-1.0], [1.0]], np.float32)
LABELS = np.array([[0.4], [0.6], [0.8]], np.float32)
# CE(0, .4) = ln 2; CE(-1, .6) = 1 + ln(1 + e^-1) - .4; CE(1, .8) = .2 + ln(1 + e^-1)
CE = np.array([np.log(2.0), 0.6 + np.log1p(np.exp(-1.0)), 0.2 + np.log1p(np.exp(-1.0))])


@pytest.mark.parametrize("jit", [False, True])
def test_loss(jit):
    head = jh.LogisticRegressionHead()
    loss = (jax.jit(head.loss) if jit else head.loss)(LABELS, LOGITS)
    np.testing.assert_allclose(loss, CE.mean(), rtol=1e-6)  # spec: 0.70655680


def test_weighted_reductions():
    w = np.array([1.0, 0.0, 2.0], np.float32)
    for reduction, expected in [
        ("sum", CE[0] + 2 * CE[2]),
        ("mean", (CE[0] + 2 * CE[2]) / 3),
        ("sum_by_nonzero_weights", (CE[0] + 2 * CE[2]) / 2),
    ]:
        head = jh.LogisticRegressionHead(weight_column="w", loss_reduction=reduction)
        np.testing.assert_allclose(head.loss(LABELS[:, 0], LOGITS, {"w": w}), expected, rtol=1e-6)


def test_predictions_and_export():
    head = jh.logistic_regression_head()
    preds = head.predictions(LOGITS)
    assert set(preds) == {"predictions", "logits"}
    np.testing.assert_allclose(preds["predictions"], [[0.5], [0.26894143], [0.7310586]], rtol=1e-6)
    out = head.export_outputs(LOGITS)
    assert list(out) == ["serving_default", "regression", "predict"]
    np.testing.assert_allclose(out["regression"]["value"], preds["predictions"])


@pytest.mark.parametrize("labels", [[[0.4], [1.2], [0.8]], [[0.4], [-0.2], [0.8]]])
def test_labels_out_of_range(labels):
    with pytest.raises(ValueError, match=r"Labels must be in range \[0, 1\]"):
        jh.LogisticRegressionHead().loss(np.array(labels, np.float32), LOGITS)


def test_logits_shape_and_no_loss_fn():
    with pytest.raises(ValueError, match="logits shape"):
        jh.LogisticRegressionHead().loss(LABELS, np.zeros((3, 2), np.float32))
    with pytest.raises(TypeError):
        jh.LogisticRegressionHead(loss_fn=lambda labels, logits: logits)  # no such argument, as TF


def test_grad_and_bf16():
    head = jh.LogisticRegressionHead(loss_reduction="sum")
    grad = jax.grad(lambda x: head.loss(LABELS, x))(jnp.asarray(LOGITS))
    np.testing.assert_allclose(grad, jax.nn.sigmoid(LOGITS) - LABELS, rtol=1e-6)
    assert head.loss(LABELS, LOGITS.astype(jnp.bfloat16)).dtype == jnp.float32
