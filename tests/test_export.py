"""Tests of jaxheads.export: jax.export serving signatures and their round trip."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

import jaxheads as jh
from jaxheads.export import ExportedHead, export_head, serving_function
from jaxheads.flax import LinenHead


class Model(nn.Module):
    head: object

    @nn.compact
    def __call__(self, x):
        return LinenHead(self.head)(nn.tanh(nn.Dense(4)(x)))


def _model(head, in_features=3):
    model = Model(head)
    params = model.init(jax.random.key(0), jnp.ones((1, in_features)))
    return lambda x: model.apply(params, x)


@pytest.fixture(scope="module")
def binary_artifact():
    head = jh.BinaryClassHead(label_vocabulary=["benign", "malignant"])
    logits_fn = _model(head)
    return head, logits_fn, export_head(head, logits_fn, jnp.zeros((2, 3)))


def test_round_trip_with_symbolic_batch_and_vocabulary(binary_artifact, tmp_path):
    head, logits_fn, artifact = binary_artifact
    blob = artifact.serialize()
    assert isinstance(blob, bytes) and blob.startswith(b"JAXHEADS")
    served = ExportedHead.deserialize(blob)
    assert served.signatures == ("serving_default", "classification", "regression", "predict")
    assert served.vocabulary == ("benign", "malignant")
    assert "BinaryClassHead" in repr(served)
    x = jax.random.normal(jax.random.key(1), (7, 3))  # another batch size than exported
    expected = head.export_outputs(logits_fn(x))
    for signature in served.signatures:
        out = served(x, signature)
        for key, value in expected[signature].items():
            np.testing.assert_allclose(out[key], value, rtol=1e-6, atol=1e-7)
            assert out[key].dtype == value.dtype
    out = served(x)
    assert out["classes"].shape == (7, 2)
    assert out["classes"][0].tolist() == ["benign", "malignant"]
    predict = served(x, "predict")
    ids = np.asarray(head.predictions(logits_fn(x))["class_ids"])
    np.testing.assert_array_equal(predict["classes"], head.class_names(ids))
    np.testing.assert_array_equal(
        predict["all_classes"], head.class_names(predict["all_class_ids"])
    )
    assert "classes" not in served(x, "predict", with_class_names=False)
    # Files too.
    path = tmp_path / "model.jaxheads"
    served.save(path)
    again = ExportedHead.load(path)
    np.testing.assert_array_equal(again(x[:1])["scores"], out["scores"][:1])


def test_logistic_regression_has_no_classes():
    head = jh.LogisticRegressionHead()
    logits_fn = _model(head)
    artifact = ExportedHead.deserialize(export_head(head, logits_fn, jnp.zeros((1, 3))).serialize())
    assert artifact.signatures == ("serving_default", "regression", "predict")
    assert artifact.vocabulary is None
    x = jnp.ones((5, 3))
    out = artifact(x, "regression")
    assert list(out) == ["value"]
    np.testing.assert_allclose(out["value"], jax.nn.sigmoid(logits_fn(x)), rtol=1e-6)


def test_dict_inputs_selected_signatures_fixed_shapes():
    head = jh.BinaryClassHead()

    def logits_fn(features):
        return features["a"] - features["b"][:, :1]

    example = {"a": jnp.zeros((1, 1)), "b": jax.ShapeDtypeStruct((1, 2), jnp.float32)}
    artifact = export_head(head, logits_fn, example, signatures=["predict"])
    served = ExportedHead.deserialize(artifact.serialize())
    out = served({"a": jnp.array([[1.0], [0.0]]), "b": jnp.zeros((2, 2))}, "predict")
    assert out["classes"].tolist() == [["1"], ["0"]]  # no vocabulary: the ids as strings
    fixed = export_head(head, logits_fn, example, batch_dim=None, signatures=["regression"])
    with pytest.raises(ValueError):
        fixed({"a": jnp.zeros((3, 1)), "b": jnp.zeros((3, 2))}, "regression")
    assert fixed({"a": jnp.zeros((1, 1)), "b": jnp.zeros((1, 2))}, "regression")["value"].shape == (
        1,
        1,
    )


def test_serving_function_jit_vmap():
    head = jh.BinaryClassHead()
    fn = serving_function(head, lambda x: x, "classification")
    x = jnp.array([[0.0], [2.0]])
    eager = fn(x)
    jax.tree.map(np.testing.assert_array_equal, jax.jit(fn)(x), eager)
    batched = jax.vmap(fn)(jnp.stack([x, -x]))
    np.testing.assert_array_equal(batched["scores"][0], eager["scores"])
    with pytest.raises(ValueError, match="Unknown serving signature"):
        serving_function(head, lambda x: x, "nope")(x)


def test_errors(binary_artifact):
    _, _, artifact = binary_artifact
    with pytest.raises(ValueError, match="Unknown signature"):
        artifact(jnp.ones((1, 3)), "nope")
    with pytest.raises(ValueError, match="magic"):
        ExportedHead.deserialize(b"not an artifact")
    with pytest.raises(ValueError, match="out of range"):
        artifact.class_names(np.array([2]))
    with pytest.raises(ValueError, match="scalar"):
        export_head(jh.BinaryClassHead(), lambda x: x, jnp.zeros(()))
    with pytest.raises(ValueError, match="at least one"):
        ExportedHead({}, {})
