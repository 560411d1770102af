"""MultiHead: spec §3 ``mh_*`` vectors, validation, streaming (the TF eager bug fixed), export.

Expected values are computed by hand as in TF's ``multi_head_test.py``. With
MultiLabelHead(2) on logits ``[[-10, 10], [-15, 10]]`` / labels
``[[1, 0], [1, 1]]`` the per-example loss is ``[10, 7.5]`` (8.75 mean), with
MultiLabelHead(3) on ``[[20, -20, 20], [-30, 20, -20]]`` /
``[[0, 1, 0], [1, 1, 0]]`` it is ``[20, 10]`` (15 mean), up to ~1e-4.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxheads.heads.binary import BinaryClassHead
from jaxheads.heads.multi_class import MultiClassHead
from jaxheads.heads.multi_head import MultiHead, multi_head
from jaxheads.heads.multi_label import MultiLabelHead, SparseLabels
from jaxheads.heads.regression import RegressionHead

LOGITS = {
    "head1": np.array([[-10.0, 10.0], [-15.0, 10.0]], np.float32),
    "head2": np.array([[20.0, -20.0, 20.0], [-30.0, 20.0, -20.0]], np.float32),
}
LOGITS_TENSOR = np.array(
    [[-10.0, 10.0, 20.0, -20.0, 20.0], [-15.0, 10.0, -30.0, 20.0, -20.0]], np.float32
)
LABELS = {"head1": np.array([[1, 0], [1, 1]]), "head2": np.array([[0, 1, 0], [1, 1, 0]])}
TOL = dict(rtol=1e-3, atol=1e-3)


def _two_heads(head_weights=None, **kwargs1):
    return MultiHead(
        [MultiLabelHead(2, name="head1", **kwargs1), MultiLabelHead(3, name="head2")], head_weights
    )


def _metrics(head, logits, labels, features=None, reg=None):
    state = head.init_metrics(reg)
    state = head.update_metrics(state, features, logits, labels, reg)
    return {k: float(v) for k, v in head.compute_metrics(state).items()}


# --------------------------------------------------------------------------- spec §3 vectors
@pytest.mark.parametrize("jit", [False, True])
def test_mh_eval_two_heads_weights(jit):
    head = _two_heads([1.0, 2.0])
    loss = (jax.jit(head.loss) if jit else head.loss)(LABELS, LOGITS, {"x": np.array([[42]])})
    np.testing.assert_allclose(loss, 1.0 * 8.75 + 2.0 * 15.0, **TOL)
    np.testing.assert_allclose(_two_heads().loss(LABELS, LOGITS), 23.75, **TOL)
    got = _metrics(head, LOGITS, LABELS, {"x": np.array([[42]])})
    expected = {
        "loss/head1": 8.75,
        "loss/head2": 15.0,  # before the head weight
        "average_loss/head1": 8.75,
        "average_loss/head2": 15.0,
        "auc/head1": 0.1667,
        "auc/head2": 0.3333,
        "auc_precision_recall/head1": 0.60228,
        "auc_precision_recall/head2": 0.40152,
    }
    assert set(got) == set(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, err_msg=key, **TOL)


def test_mh_eval_contrib_v1_auc_pr():
    head = MultiHead(
        [
            MultiLabelHead(2, name="head1", compat="v1"),
            MultiLabelHead(3, name="head2", compat="v1"),
        ],
        [1.0, 2.0],
    )
    got = _metrics(head, LOGITS, LABELS)
    np.testing.assert_allclose(got["auc_precision_recall/head1"], 0.6667, **TOL)
    np.testing.assert_allclose(got["auc_precision_recall/head2"], 0.5000, **TOL)


@pytest.mark.parametrize("logits", [LOGITS, LOGITS_TENSOR], ids=["dict", "tensor"])
def test_mh_train_example_weights(logits):
    head = MultiHead(
        [
            MultiLabelHead(2, name="head1", weight_column="weights1"),
            MultiLabelHead(3, name="head2", weight_column="weights2"),
        ],
        head_weights=[1.0, 2.0],
    )
    features = {
        "x": np.array([[42]]),
        "weights1": np.array([[1.0], [2.0]], np.float32),
        "weights2": np.array([[2.0], [3.0]], np.float32),
    }
    # head1: (1*10 + 2*7.5)/2 = 12.5 ; head2: (2*20 + 3*10)/2 = 35
    np.testing.assert_allclose(head.loss(LABELS, logits, features), 12.5 + 2.0 * 35.0, **TOL)
    per_head = head.head_losses(LABELS, logits, features)
    np.testing.assert_allclose(per_head["head1"], 12.5, **TOL)
    np.testing.assert_allclose(per_head["head2"], 35.0, **TOL)
    # contrib's create_loss: loss AND weights multiplied by the head weight.
    unreduced, weights = head.unreduced_loss(LABELS, logits, features)
    np.testing.assert_allclose(unreduced["head1"], [[10.0], [7.5]], **TOL)
    np.testing.assert_allclose(unreduced["head2"], [[40.0], [20.0]], **TOL)
    np.testing.assert_allclose(weights["head1"], [[1.0], [2.0]])
    np.testing.assert_allclose(weights["head2"], [[4.0], [6.0]])


def test_mh_logits_tensor_wrong_shape():
    head = MultiHead(
        [
            MultiLabelHead(2, name="head1", weight_column="weights1"),
            MultiLabelHead(3, name="head2", weight_column="weights2"),
        ],
        head_weights=[1.0, 2.0],
    )
    logits = np.array(
        [[-10.0, 10.0, 20.0, -20.0, 20.0, 70.0], [-15.0, 10.0, -30.0, 20.0, -20.0, 80.0]]
    )
    # TF prints "should equal 6 but is 5" (swapped); ours says what it means.
    pattern = (
        r"Could not split logits of shape \[2, 6\] among the heads with individual logits "
        r"dimensions: \[2, 3\]\. The last dimension of the logits tensor should equal 5 but is 6\."
    )
    with pytest.raises(ValueError, match=pattern):
        head.loss(LABELS, logits, {})
    with pytest.raises(ValueError, match="Could not split logits"):
        head.predictions(logits)


def test_mh_regression_multi_dim():
    head = MultiHead(
        [
            RegressionHead(label_dimension=2, name="head1"),
            RegressionHead(label_dimension=3, name="head2"),
        ]
    )
    logits = np.array(
        [
            [[-1.0, 1.0, 2.0, -2.0, 2.0], [-1.0, 1.0, 2.0, -2.0, 2.0]],
            [[-1.5, 1.5, -2.0, 2.0, -2.0], [-1.5, 1.5, -2.0, 2.0, -2.0]],
        ],
        np.float32,
    )
    labels = {
        "head1": np.array([[[1.0, 0.0], [1.0, 0.0]], [[1.5, 1.5], [1.5, 1.5]]], np.float32),
        "head2": np.array(
            [[[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]], [[2.0, 2.0, 0.0], [2.0, 2.0, 0.0]]], np.float32
        ),
    }
    np.testing.assert_allclose(head.loss(labels, logits, {}), 3.5 + 6.167, **TOL)
    export = head.export_outputs(logits)
    assert set(export) == {
        "serving_default",
        "predict",
        "head1",
        "head1/regression",
        "head1/predict",
        "head2",
        "head2/regression",
        "head2/predict",
    }
    assert list(export)[0] == "serving_default"
    np.testing.assert_allclose(export["serving_default"]["value"], logits[..., :2])
    np.testing.assert_allclose(export["predict"]["head2/predictions"], logits[..., 2:])
    predictions = head.predictions(logits)
    assert predictions[("head1", "predictions")].shape == (2, 2, 2)


def test_mh_train_regularization():
    head = _two_heads([1.0, 2.0])
    reg = [1.5, 0.5]
    features = {"x": np.array([[42]])}
    np.testing.assert_allclose(
        head.loss(LABELS, LOGITS, features, regularization_losses=reg),
        1.0 * 8.75 + 2.0 * 15.0 + 2.0,
        **TOL,
    )
    spec = head.create_spec("train", LOGITS, LABELS, features, regularization_losses=reg)
    np.testing.assert_allclose(spec.loss, 40.75, **TOL)
    got = _metrics(head, LOGITS, LABELS, features, reg)
    assert got["regularization_loss/head1_head2"] == 2.0
    np.testing.assert_allclose(got["loss/head1"], 8.75, **TOL)  # no regularization inside


@pytest.mark.parametrize(
    "logits",
    [
        {
            "head1": np.array([[-1.0, 1.0], [-1.5, 1.0]], np.float32),
            "head2": np.array([[2.0, -2.0, 2.0], [-3.0, 2.0, -2.0]], np.float32),
        },
        np.array([[-1.0, 1.0, 2.0, -2.0, 2.0], [-1.5, 1.0, -3.0, 2.0, -2.0]], np.float32),
    ],
    ids=["dict", "tensor"],
)
def test_mh_predict_dict(logits):
    head = _two_heads()
    sigmoid = lambda x: 1 / (1 + np.exp(-np.asarray(x)))  # noqa: E731
    head1 = np.array([[-1.0, 1.0], [-1.5, 1.0]], np.float32)
    head2 = np.array([[2.0, -2.0, 2.0], [-3.0, 2.0, -2.0]], np.float32)
    predictions = head.predictions(logits)
    assert set(predictions) == {
        (h, k) for h in ("head1", "head2") for k in ("logits", "probabilities", "all_class_ids")
    }
    np.testing.assert_allclose(predictions[("head1", "probabilities")], sigmoid(head1), rtol=1e-6)
    np.testing.assert_allclose(predictions[("head2", "logits")], head2)
    assert (
        head.class_names(predictions[("head2", "all_class_ids")], "head2/all_class_ids").tolist()
        == [["0", "1", "2"]] * 2
    )
    export = head.export_outputs(logits)
    assert set(export) == {
        "serving_default",
        "predict",
        "head1",
        "head1/classification",
        "head1/predict",
        "head2",
        "head2/classification",
        "head2/predict",
    }
    np.testing.assert_allclose(export["serving_default"]["scores"], sigmoid(head1), rtol=1e-6)
    np.testing.assert_allclose(export["predict"]["head1/probabilities"], sigmoid(head1), rtol=1e-6)
    np.testing.assert_allclose(export["predict"]["head2/probabilities"], sigmoid(head2), rtol=1e-6)
    np.testing.assert_allclose(export["head2/predict"]["probabilities"], sigmoid(head2), rtol=1e-6)
    spec = jax.jit(lambda lg: head.create_spec("predict", lg))(logits)
    assert spec.loss is None and set(spec.export_outputs) == set(export)
    assert set(head.predictions(logits, keys=[("head1", "logits")])) == {("head1", "logits")}
    with pytest.raises(ValueError, match="Prediction key must be one of"):
        head.predictions(logits, keys=["logits"])


# --------------------------------------------------------------------------- validation
def test_validation():
    with pytest.raises(ValueError, match=r"Must specify heads\. Given: \[\]"):
        MultiHead(heads=[])
    with pytest.raises(ValueError, match=r"All given heads must have name specified\."):
        MultiHead([MultiLabelHead(2, name="head1"), MultiLabelHead(3)])
    with pytest.raises(
        ValueError,
        match=(
            r"heads and head_weights must have the same size\. "
            r"Given len\(heads\): 2\. Given len\(head_weights\): 1\."
        ),
    ):
        _two_heads([1.0])
    with pytest.raises(ValueError, match=r"distinct name.*\['a'\] used more than once"):
        MultiHead([MultiLabelHead(2, name="a"), MultiClassHead(3, name="a")])
    with pytest.raises(TypeError, match="must be a head"):
        MultiHead([MultiLabelHead(2, name="a"), "b"])


def test_loss_reduction_must_be_the_same():
    head = MultiHead(
        [
            MultiLabelHead(2, name="head1", loss_reduction="sum_over_batch_size"),
            MultiLabelHead(3, name="head2", loss_reduction="sum"),
        ]
    )
    with pytest.raises(
        ValueError,
        match=r"The loss_reduction must be the same for different heads\. "
        r"Given: \['sum_over_batch_size', 'sum'\]",
    ):
        head.create_spec("train", LOGITS, LABELS)
    # Raised lazily, as TF: eval and the loss itself still work.
    assert head.create_spec("eval", LOGITS, LABELS).loss is not None
    same = MultiHead(
        [MultiLabelHead(2, name="head1"), MultiLabelHead(3, name="head2", loss_reduction="auto")]
    )
    assert str(same.loss_reduction) == "sum_over_batch_size"


def test_label_and_logit_errors():
    head = _two_heads()
    with pytest.raises(ValueError, match="labels must be a dict"):
        head.loss(LABELS["head1"], LOGITS)
    with pytest.raises(ValueError, match=r"labels has missing values for head\(s\): \['head2'\]"):
        head.loss({"head1": LABELS["head1"]}, LOGITS)
    with pytest.raises(ValueError, match=r"logits has missing values for head\(s\): \['head1'\]"):
        head.loss(LABELS, {"head2": LOGITS["head2"]})
    with pytest.raises(ValueError, match="You must provide a labels Tensor"):
        head.create_spec("eval", LOGITS)
    # Extra label keys are ignored (as TF).
    extra = dict(LABELS, other=np.zeros(3))
    np.testing.assert_allclose(head.loss(extra, LOGITS), head.loss(LABELS, LOGITS))


def test_properties_and_factory():
    head = multi_head([MultiLabelHead(2, name="head1"), MultiClassHead(4, name="head2")], [1, 3])
    assert head.name == "head1_head2" and head.logits_dimension == 6
    assert head.head_weights == (1.0, 3.0)
    assert hash(head) == hash(
        multi_head([MultiLabelHead(2, name="head1"), MultiClassHead(4, name="head2")], (1.0, 3.0))
    )
    assert _two_heads([]).head_weights is None  # TF: an empty list means no weights


# --------------------------------------------------------------------------- streaming (TF bug)
def test_per_head_metrics_stream_across_updates():
    head = MultiHead(
        [BinaryClassHead(name="a", weight_column="w"), RegressionHead(name="b")],
        head_weights=[0.5, 3.0],
    )
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(2):
        batches.append(
            (
                {
                    "a": rng.normal(size=(4, 1)).astype(np.float32),
                    "b": rng.normal(size=(4, 1)).astype(np.float32),
                },
                {
                    "a": rng.integers(0, 2, size=(4, 1)),
                    "b": rng.normal(size=(4, 1)).astype(np.float32),
                },
                {"w": rng.uniform(0.5, 2, size=(4, 1)).astype(np.float32)},
            )
        )
    update = jax.jit(head.update_metrics)
    state = head.init_metrics()
    for logits, labels, features in batches:
        state = update(state, features, logits, labels)
    got = head.compute_metrics(state)
    # Each sub-head streamed on its own, and the loss/<head> mean over batches.
    for name, sub in (("a", head.heads[0]), ("b", head.heads[1])):
        sub_state = sub.init_metrics()
        losses = []
        for logits, labels, features in batches:
            sub_state = sub.update_metrics(sub_state, features, logits[name], labels[name])
            losses.append(float(sub.loss(labels[name], logits[name], features)))
        for key, value in sub.compute_metrics(sub_state).items():
            np.testing.assert_allclose(got[key], value, rtol=1e-6, err_msg=key)
        np.testing.assert_allclose(got[f"loss/{name}"], np.mean(losses), rtol=1e-6)
    # The last batch alone (TF's eager result) differs from the streamed average_loss.
    last = MultiHead(head.heads).init_metrics()
    last = head.update_metrics(last, batches[1][2], batches[1][0], batches[1][1])
    assert not np.isclose(
        float(head.compute_metrics(last)["average_loss/b"]), float(got["average_loss/b"])
    )


def test_mixed_heads_sparse_labels_grad_and_bf16():
    head = MultiHead(
        [MultiClassHead(3, name="c"), MultiLabelHead(2, name="m")], head_weights=[1.0, 0.5]
    )
    logits = jnp.array([[1e4, -1e4, 0.0, 1e4, -1e4], [0.5, 0.2, -0.1, 0.3, 0.4]], jnp.float32)
    labels = {"c": jnp.array([1, 2]), "m": SparseLabels(jnp.array([[1], [-1]]))}
    loss, grad = jax.jit(jax.value_and_grad(lambda x: head.loss(labels, x)))(logits)
    assert np.isfinite(loss) and np.all(np.isfinite(grad)) and grad.shape == (2, 5)
    jitted = jax.jit(head.loss)(labels, logits)
    np.testing.assert_allclose(jitted, loss, rtol=1e-6)
    bf16 = head.loss(labels, logits.astype(jnp.bfloat16))
    assert bf16.dtype == jnp.float32


def test_vmap_over_leading_axis_equals_batched_call():
    head = _two_heads([1.0, 2.0])
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(3, 4, 5)).astype(np.float32)
    labels = {
        "head1": rng.integers(0, 2, size=(3, 4, 2)),
        "head2": rng.integers(0, 2, size=(3, 4, 3)),
    }
    vmapped = jax.jit(jax.vmap(head.loss))(labels, logits)
    one = jax.jit(head.loss)
    expected = [one({k: v[i] for k, v in labels.items()}, logits[i]) for i in range(3)]
    np.testing.assert_allclose(vmapped, expected, rtol=1e-6)


def test_encode_labels_per_head():
    head = MultiHead(
        [MultiClassHead(3, label_vocabulary=["a", "b", "c"], name="c"), RegressionHead(name="r")]
    )
    encoded = head.encode_labels({"c": [["b"], ["c"]], "r": np.array([[1.0], [2.0]], np.float32)})
    assert encoded["c"].tolist() == [[1], [2]]
    loss = jax.jit(head.loss)(encoded, np.zeros((2, 4), np.float32))
    np.testing.assert_allclose(loss, np.log(3.0) + 2.5, rtol=1e-6)


def test_shard_map_global_loss_equals_single_device():
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    head = MultiHead(
        [MultiLabelHead(2, name="head1", weight_column="w"), RegressionHead(name="head2")],
        [1.0, 2.0],
    )
    rng = np.random.default_rng(6)
    logits = rng.normal(size=(4, 3)).astype(np.float32)
    labels = {
        "head1": rng.integers(0, 2, size=(4, 2)),
        "head2": rng.normal(size=(4, 1)).astype(np.float32),
    }
    features = {"w": np.array([1.0, 0.0, 2.0, 0.5], np.float32)}
    mesh = jax.make_mesh((2,), ("batch",), devices=jax.devices()[:2])
    sharded = jax.jit(
        jax.shard_map(
            lambda lb, lg, ft: head.loss(lb, lg, ft, axis_name="batch"),
            mesh=mesh,
            in_specs=P("batch"),
            out_specs=P(),
        )
    )
    args = jax.tree.map(
        lambda a: jax.device_put(a, NamedSharding(mesh, P("batch"))), (labels, logits, features)
    )
    np.testing.assert_allclose(sharded(*args), head.loss(labels, logits, features), rtol=1e-6)
