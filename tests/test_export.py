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
    assert served.serialize() == blob  # a stable round trip
    assert served.signatures == ("serving_default", "classification", "regression", "predict")
    assert served.class_vocabularies == {
        "class_ids": ("benign", "malignant"),
        "all_class_ids": ("benign", "malignant"),
    }
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
        predict["all_classes"], head.class_names(predict["all_class_ids"], "all_class_ids")
    )
    np.testing.assert_array_equal(served.class_names(ids), head.class_names(ids))
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
    assert artifact.class_vocabularies == {}
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
    with pytest.raises(ValueError, match="unknown serving signature"):
        serving_function(head, lambda x: x, "nope")(x)


def test_errors(binary_artifact):
    _, _, artifact = binary_artifact
    with pytest.raises(ValueError, match="unknown signature"):
        artifact(jnp.ones((1, 3)), "nope")
    with pytest.raises(ValueError, match="magic"):
        ExportedHead.deserialize(b"not an artifact")
    with pytest.raises(ValueError, match="out of range"):
        artifact.class_names(np.array([2]))
    with pytest.raises(ValueError, match="not a class-id output"):
        artifact.class_names(np.array([1]), "logits")
    with pytest.raises(ValueError, match="scalar"):
        export_head(jh.BinaryClassHead(), lambda x: x, jnp.zeros(()))
    with pytest.raises(ValueError, match="at least one"):
        ExportedHead({}, {})
    with pytest.raises(ValueError, match="signatures: expected a list of names from"):
        export_head(jh.BinaryClassHead(), lambda x: x, jnp.zeros((1, 1)), signatures=["nope"])
    with pytest.raises(TypeError, match="head: expected a jaxheads Head, got str"):
        export_head("binary", lambda x: x, jnp.zeros((1, 1)))


# ---------------------------------------------------------------- every sub-head's vocabulary


def test_multi_head_serves_the_vocabulary_of_each_head():
    spam = jh.BinaryClassHead(name="spam", label_vocabulary=["ham", "spam"])
    topic = jh.MultiClassHead(3, name="topic", label_vocabulary=["news", "sport", "art"])
    head = jh.MultiHead([spam, topic])
    logits_fn = _model(head)
    served = ExportedHead.deserialize(export_head(head, logits_fn, jnp.zeros((1, 3))).serialize())
    x = jax.random.normal(jax.random.key(2), (9, 3))
    logits = logits_fn(x)
    spam_ids = np.asarray(spam.predictions(logits[:, :1])["class_ids"])
    topic_ids = np.asarray(topic.predictions(logits[:, 1:])["class_ids"])
    predict = served(x, "predict")
    np.testing.assert_array_equal(predict["spam/classes"], np.array(["ham", "spam"])[spam_ids])
    np.testing.assert_array_equal(
        predict["topic/classes"], np.array(["news", "sport", "art"])[topic_ids]
    )
    assert set(predict["topic/classes"].ravel()) <= {"news", "sport", "art"}
    np.testing.assert_array_equal(
        predict["topic/all_classes"], np.broadcast_to(["news", "sport", "art"], (9, 3))
    )
    # serving_default is the first head's classification output, the other signatures each
    # head's own.
    assert served(x)["classes"][0].tolist() == ["ham", "spam"]
    assert served(x, "topic")["classes"][0].tolist() == ["news", "sport", "art"]
    assert served(x, "topic/classification")["classes"][0].tolist() == ["news", "sport", "art"]
    assert served(x, "spam/predict")["classes"].tolist() == predict["spam/classes"].tolist()
    np.testing.assert_array_equal(
        served.class_names(topic_ids, "topic/class_ids"),
        head.class_names(topic_ids, "topic/class_ids"),
    )


@pytest.mark.parametrize("vocabulary", [["a", "b", "c"], None])
def test_sequential_wrapper_serves_the_wrapped_vocabulary(vocabulary):
    head = jh.SequentialHeadWrapper(jh.MultiClassHead(3, label_vocabulary=vocabulary))
    w = jax.random.normal(jax.random.key(3), (4, 3))

    def logits_fn(x):
        return x @ w

    served = ExportedHead.deserialize(
        export_head(head, logits_fn, jnp.zeros((1, 5, 4))).serialize()
    )
    x = jax.random.normal(jax.random.key(4), (2, 5, 4))
    out = served(x, "predict")
    ids = np.asarray(jnp.argmax(logits_fn(x), -1))[..., None]
    names = np.array(vocabulary or ["0", "1", "2"])
    assert out["classes"].shape == (2, 5, 1)
    np.testing.assert_array_equal(out["classes"], names[ids])
    assert served(x)["classes"][0, 0].tolist() == names.tolist()


def test_regression_in_a_multi_head_has_no_classes():
    head = jh.MultiHead([jh.RegressionHead(2, name="size"), jh.MultiClassHead(3, name="kind")])
    served = export_head(head, _model(head), jnp.zeros((1, 3)))
    x = jnp.ones((2, 3))
    assert "classes" not in served(x)
    assert served(x, "kind")["classes"][0].tolist() == ["0", "1", "2"]
    assert served.output_vocabulary("size", "value") is None


def test_reads_a_version_1_export(binary_artifact):
    # jaxheads 0.1 wrote one `vocabulary` for every class-id output.
    import json
    import struct

    _, _, artifact = binary_artifact
    blobs = [bytes(exp.serialize()) for exp in artifact.exported.values()]
    header = {
        "format": "jaxheads.export",
        "version": 1,
        "head": "BinaryClassHead",
        "vocabulary": ["benign", "malignant"],
        "signatures": [
            {"name": n, "size": len(b)} for n, b in zip(artifact.exported, blobs, strict=True)
        ],
    }
    raw = json.dumps(header).encode()
    old = ExportedHead.deserialize(
        b"JAXHEADS" + struct.pack("<I", len(raw)) + raw + b"".join(blobs)
    )
    x = jnp.ones((2, 3))
    np.testing.assert_array_equal(old(x, "predict")["classes"], artifact(x, "predict")["classes"])
    assert old.class_vocabularies["class_ids"] == ("benign", "malignant")


# ---------------------------------------------------------------- explicit jax.export import


def test_imports_jax_export_explicitly():
    # Before jax 0.8 a bare `import jax` did not import the `jax.export` submodule: simulate it.
    import subprocess
    import sys

    code = (
        "import sys, jax\n"
        "del jax.export\n"
        "for m in [m for m in sys.modules if m == 'jax.export' or m.startswith('jax.export.')]:\n"
        "    del sys.modules[m]\n"
        "import jax.numpy as jnp, jaxheads as jh\n"
        "from jaxheads.export import export_head\n"
        "art = export_head(jh.BinaryClassHead(), lambda x: x, jnp.zeros((1, 1)))\n"
        "print(art(jnp.ones((2, 1)))['scores'].shape)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "(2, 2)"


# ---------------------------------------------------------------- edge cases (issue 9)


def test_empty_batch(binary_artifact):
    head, logits_fn, artifact = binary_artifact
    x = np.zeros((0, 3), np.float32)
    full = artifact(np.ones((2, 3), np.float32), "predict")
    out = artifact(x, "predict")
    assert set(out) == set(full)
    for key, value in out.items():
        assert value.shape == (0,) + full[key].shape[1:], key
        assert value.dtype == full[key].dtype, key
    assert artifact(x)["classes"].shape == (0, 2)
    # The traced serving function handles it too.
    direct = serving_function(head, logits_fn, "predict")(jnp.zeros((0, 3)))
    assert direct["probabilities"].shape == (0, 2)


def test_empty_batch_of_dict_inputs():
    head = jh.MultiClassHead(3, label_vocabulary=["x", "y", "z"])

    def logits_fn(features):
        return features["a"] * features["b"]

    artifact = export_head(head, logits_fn, {"a": jnp.zeros((1, 3)), "b": jnp.zeros((1, 3))})
    out = artifact({"a": np.zeros((0, 3), np.float32), "b": np.zeros((0, 3), np.float32)})
    assert out["scores"].shape == (0, 3) and out["classes"].shape == (0, 3)


def _blob(artifact):
    return artifact.serialize()


@pytest.mark.parametrize("cut", [0, 5, 8, 10, 12, 40, -1000, -1])
def test_truncated_blob(binary_artifact, cut):
    blob = _blob(binary_artifact[2])
    with pytest.raises(
        ValueError, match=r"^data: (truncated jaxheads export|not a jaxheads export)"
    ):
        ExportedHead.deserialize(blob[:cut])


def test_corrupt_blob(binary_artifact):
    blob = _blob(binary_artifact[2])
    with pytest.raises(ValueError, match="data: 2 unexpected bytes after the jaxheads export"):
        ExportedHead.deserialize(blob + b"xx")
    size = int.from_bytes(blob[8:12], "little")
    garbled = blob[:12] + b"\xff" * 20 + blob[32:]
    with pytest.raises(ValueError, match="data: not a jaxheads export .corrupt header"):
        ExportedHead.deserialize(garbled)
    # A module whose bytes were zeroed.
    zeroed = blob[: 12 + size] + bytes(len(blob) - 12 - size)
    with pytest.raises(
        ValueError, match="data: signature 'serving_default' of this jaxheads export"
    ):
        ExportedHead.deserialize(zeroed)
    with pytest.raises(TypeError, match="data: expected bytes, got str"):
        ExportedHead.deserialize("JAXHEADS")
    wrong_format = b'{"format": "other", "version": 2, "signatures": []}'
    with pytest.raises(ValueError, match="not a jaxheads export .the header names no"):
        ExportedHead.deserialize(
            b"JAXHEADS" + len(wrong_format).to_bytes(4, "little") + wrong_format
        )
    future = b'{"format": "jaxheads.export", "version": 99, "signatures": []}'
    with pytest.raises(ValueError, match="unsupported jaxheads export version 99"):
        ExportedHead.deserialize(b"JAXHEADS" + len(future).to_bytes(4, "little") + future)


def test_wrong_inputs_name_the_argument(binary_artifact):
    _, _, artifact = binary_artifact
    with pytest.raises(
        TypeError, match=r"inputs: expected dtype float32 \(shape \(batch, 3\)\), got int32"
    ):
        artifact(np.ones((2, 3), np.int32))
    with pytest.raises(
        ValueError, match=r"inputs: expected shape \(batch, 3\) \(float32\), got \(2, 4\)"
    ):
        artifact(np.ones((2, 4), np.float32))
    with pytest.raises(
        ValueError, match=r"inputs: expected shape \(batch, 3\) \(float32\), got \(3,\)"
    ):
        artifact(np.ones(3, np.float32))
    with pytest.raises(TypeError, match="inputs: expected the structure of the export's example"):
        artifact({"x": np.ones((2, 3), np.float32)})
    with pytest.raises(TypeError, match="inputs: expected float32 values, got strings"):
        artifact(np.array([["a", "b", "c"]]))
    # float64 numpy arrays and nested lists are fine: JAX canonicalizes them to float32.
    out = artifact(np.ones((2, 3)))
    np.testing.assert_array_equal(out["scores"], artifact([[1.0, 1.0, 1.0]] * 2)["scores"])


def test_wrong_dict_inputs_name_the_leaf():
    head = jh.BinaryClassHead()

    def logits_fn(features):
        return features["a"] - features["b"][:, :1]

    example = {"a": jnp.zeros((1, 1)), "b": jnp.zeros((1, 2))}
    artifact = export_head(head, logits_fn, example)
    with pytest.raises(ValueError, match=r"inputs\['b'\]: expected shape \(batch, 2\)"):
        artifact({"a": np.zeros((3, 1), np.float32), "b": np.zeros((3, 5), np.float32)})
    with pytest.raises(TypeError, match=r"missing keys \['b'\], unexpected keys \[\]"):
        artifact({"a": np.zeros((3, 1), np.float32)})
    with pytest.raises(TypeError, match=r"missing keys \[\], unexpected keys \['w'\]"):
        artifact({"a": np.zeros((3, 1)), "b": np.zeros((3, 2)), "w": np.ones(3)})
    with pytest.raises(ValueError, match="inputs: the batch dimension differs between inputs"):
        artifact({"a": np.zeros((3, 1), np.float32), "b": np.zeros((2, 2), np.float32)})


def test_function_is_jittable(binary_artifact):
    _, logits_fn, artifact = binary_artifact
    fn = artifact.function("predict")
    x = jax.random.normal(jax.random.key(5), (4, 3))
    jitted = jax.jit(fn)(x)
    eager = artifact(x, "predict", with_class_names=False)
    assert set(jitted) == set(eager)
    for key in eager:
        np.testing.assert_allclose(jitted[key], eager[key], rtol=1e-6, err_msg=key)
    with pytest.raises(ValueError, match="signature: unknown signature 'nope'"):
        artifact.function("nope")


# ---------------------------------------------------------------- adversarial pass


def test_head_names_with_a_slash():
    first = jh.BinaryClassHead(name="a/b", label_vocabulary=["x", "y"])
    second = jh.MultiClassHead(3, name="c", label_vocabulary=["p", "q", "r"])
    head = jh.MultiHead([first, second])
    served = export_head(head, lambda logits: logits, jnp.zeros((1, 4)))
    logits = np.array([[2.0, 0.0, 0.0, 5.0]], np.float32)
    assert served(logits, "a/b/classification")["classes"].tolist() == [["x", "y"]]
    assert served(logits, "a/b")["classes"].tolist() == [["x", "y"]]
    assert served(logits, "c/predict")["classes"].tolist() == [["r"]]
    assert served(logits, "predict")["a/b/classes"].tolist() == [["y"]]


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.int32])
def test_low_precision_and_integer_logits(dtype):
    head = jh.MultiClassHead(3, label_vocabulary=["é", "日本", "c"])
    w = jnp.array([[1, -2, 3], [0, 2, -1]], dtype)
    served = ExportedHead.deserialize(
        export_head(head, lambda x: x @ w, jnp.zeros((1, 2), dtype)).serialize()
    )
    x = np.array([[1, 0], [0, 1], [1, 1]], dtype)
    out = served(x, "predict")
    assert out["probabilities"].dtype == np.float32
    ids = np.asarray(jnp.argmax((x @ w).astype(jnp.float32), -1))
    assert out["classes"].ravel().tolist() == [["é", "日本", "c"][i] for i in ids]
    with pytest.raises(TypeError, match="inputs: expected dtype"):
        served(np.ones((2, 2), np.float64 if dtype == jnp.int32 else np.int32))


def test_leading_dimensions_and_their_empty_batch():
    head = jh.BinaryClassHead(label_vocabulary=["n", "y"])
    served = export_head(head, lambda x: x.sum(-1, keepdims=True), jnp.zeros((1, 4, 3)))
    out = served(np.ones((2, 4, 3), np.float32), "predict")
    assert out["classes"].shape == (2, 4, 1) and out["all_classes"].shape == (2, 4, 2)
    assert set(out["classes"].ravel()) == {"y"}
    empty = served(np.ones((0, 4, 3), np.float32), "predict")
    assert empty["classes"].shape == (0, 4, 1) and empty["probabilities"].shape == (0, 4, 2)
    with pytest.raises(ValueError, match=r"inputs: expected shape \(batch, 4, 3\)"):
        served(np.ones((2, 5, 3), np.float32))


def test_function_differentiates(binary_artifact):
    _, logits_fn, artifact = binary_artifact
    x = jax.random.normal(jax.random.key(6), (3, 3))

    def total(f):
        return lambda x: f(x)["value"].sum()

    got = jax.grad(total(artifact.function("regression")))(x)
    want = jax.grad(lambda x: jax.nn.sigmoid(logits_fn(x)).sum())(x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # vmap: merge the mapped axis into the symbolic batch, as the docstring says.
    xs = jnp.stack([x, -x])
    merged = artifact.function("regression")(xs.reshape(-1, 3))["value"].reshape(2, 3, 1)
    np.testing.assert_allclose(merged[1], artifact(-x, "regression")["value"], rtol=1e-6)


def test_multi_head_of_sequence_heads_serves_both_vocabularies():
    tag = jh.SequentialHeadWrapper(
        jh.MultiClassHead(3, name="tag", label_vocabulary=["a", "b", "c"])
    )
    ok = jh.SequentialHeadWrapper(jh.BinaryClassHead(name="ok", label_vocabulary=["no", "yes"]))
    head = jh.MultiHead([tag, ok])
    served = export_head(head, lambda logits: logits, jnp.zeros((1, 2, 4)))
    logits = np.array([[[0, 5, 0, 1], [9, 0, 0, -1]]], np.float32)  # [B=1, T=2, 3 + 1]
    out = served(logits, "predict")
    assert out[f"{tag.name}/classes"].tolist() == [[["b"], ["a"]]]
    assert out[f"{ok.name}/classes"].tolist() == [[["yes"], ["no"]]]
    assert served(logits)["classes"].tolist() == [[["a", "b", "c"]] * 2]
    assert served(logits[:0], "predict")[f"{ok.name}/classes"].shape == (0, 2, 1)


def test_logits_fn_of_the_wrong_dimension():
    with pytest.raises(ValueError, match="logits_dimension=3"):
        export_head(jh.MultiClassHead(3), lambda x: x, jnp.zeros((1, 2)))


def test_export_for_several_platforms_serves_here():
    # Export once on a CPU machine for CPU, GPU and TPU serving.
    head = jh.BinaryClassHead(label_vocabulary=["n", "y"])
    artifact = export_head(head, lambda x: x, jnp.zeros((1, 1)), platforms=("cpu", "cuda", "tpu"))
    served = ExportedHead.deserialize(artifact.serialize())
    assert served.exported["predict"].platforms == ("cpu", "cuda", "tpu")
    assert served(np.array([[1.0], [-1.0]], np.float32), "predict")["classes"].tolist() == [
        ["y"],
        ["n"],
    ]


def test_flax_and_export_use_only_the_head_contract():
    """No probes of a head in jaxheads/flax.py, export.py, _export_io.py; every head is typed."""
    import pathlib

    import jaxheads.flax

    root = pathlib.Path(jaxheads.flax.__file__).parent
    for name in ("flax.py", "export.py", "_export_io.py"):
        text = (root / name).read_text()
        for probe in ("hasattr(", "getattr(", "inspect.", "head: Any", "head: object"):
            assert probe not in text, (name, probe)
        assert "import jax.export" in text or "from jax import export" in text or name == "flax.py"
        assert len(text.splitlines()) < 400, name
