"""Every head of the family in the Flax wrapper, the train / eval steps on 8
sharded devices, and serving export — exactly like the seed heads.

Sharded results are compared with one device on the same batch at
``rtol=2e-5, atol=1e-6`` (only the order of float32 summation differs).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn
from flax.training.train_state import TrainState

import jaxheads as jh
from jaxheads import train
from jaxheads.export import ExportedHead, export_head, serving_function
from jaxheads.flax import LinenHead

B, T = 16, 3
RTOL, ATOL = 2e-5, 1e-6


def _labels_for(head, rng, shape):
    """Random labels of the right kind for ``head`` over batch ``shape``."""
    if isinstance(head, jh.MultiHead):
        return {h.name: _labels_for(h, rng, shape) for h in head.heads}
    if isinstance(head, jh.SequentialHeadWrapper):
        return _labels_for(head.static_head, rng, shape)
    if isinstance(head, jh.MultiClassHead):
        return rng.integers(0, head.n_classes, size=shape + (1,)).astype(np.int32)
    if isinstance(head, jh.MultiLabelHead):
        return (rng.uniform(size=shape + (head.n_classes,)) > 0.5).astype(np.int32)
    if isinstance(head, jh.PoissonRegressionHead):
        return rng.poisson(2.0, size=shape + (head.logits_dimension,)).astype(np.float32)
    return rng.normal(size=shape + (head.logits_dimension,)).astype(np.float32)


HEADS = {
    "multi_class": jh.MultiClassHead(3, weight_column="w", label_vocabulary=["a", "b", "c"]),
    "multi_label": jh.MultiLabelHead(3, weight_column="w", thresholds=[0.5]),
    "regression": jh.RegressionHead(label_dimension=2, weight_column="w", loss_reduction="sum"),
    "poisson": jh.PoissonRegressionHead(weight_column="w"),
    "multi_head": jh.MultiHead(
        [jh.MultiClassHead(3, name="kind"), jh.RegressionHead(2, name="size")], [1.0, 0.5]
    ),
    "sequence": jh.SequentialHeadWrapper(jh.MultiClassHead(3, weight_column="w")),
}


class Model(nn.Module):
    head: object

    @nn.compact
    def __call__(self, x):
        return LinenHead(self.head)(nn.tanh(nn.Dense(8)(x)))


def _batch(name, head):
    rng = np.random.default_rng(0)
    shape = (B, T) if name == "sequence" else (B,)
    features = {
        "x": rng.normal(size=shape + (4,)).astype(np.float32),
        "w": rng.uniform(0.5, 2.0, size=shape).astype(np.float32),
    }
    if name == "sequence":
        features["sequence_length_mask"] = np.arange(T)[None, :] < rng.integers(
            1, T + 1, size=(B, 1)
        )
    labels = _labels_for(head, rng, shape)
    if name == "multi_class":  # string labels, encoded on the host by the steps
        labels = np.asarray(head.label_vocabulary)[labels]
    return features, labels


@pytest.fixture(scope="module")
def mesh():
    return train.make_mesh(8)


@pytest.mark.parametrize("name", list(HEADS))
def test_train_and_eval_steps_sharded_equal_one_device(name, mesh):
    head = HEADS[name]
    features, labels = _batch(name, head)
    model = Model(head)
    params = model.init(jax.random.key(0), features["x"][:1])["params"]
    state = TrainState.create(apply_fn=model.apply, params=params, tx=optax.sgd(0.1))

    ref_state, ref_out = train.make_train_step(None, head, inputs_key="x")(state, features, labels)
    sharded = train.make_train_step(None, head, inputs_key="x", mesh=mesh, strategy="shard_map")
    new_state, out = sharded(train.replicate(state, mesh), features, labels)
    np.testing.assert_allclose(out.loss, ref_out.loss, rtol=RTOL, atol=ATOL)
    jax.tree.map(
        functools.partial(np.testing.assert_allclose, rtol=RTOL, atol=ATOL),
        jax.device_get(new_state.params),
        jax.device_get(ref_state.params),
    )
    # The step's loss is the head's loss of the model's logits.
    host_labels = head.encode_labels(labels) if name == "multi_class" else labels
    direct = head.loss(host_labels, model.apply({"params": params}, features["x"]), features)
    np.testing.assert_allclose(ref_out.loss, direct, rtol=RTOL, atol=ATOL)

    expected = head.compute_metrics(
        train.make_eval_step(None, head, inputs_key="x")(state, features, labels).metrics
    )
    got = head.compute_metrics(
        train.make_eval_step(None, head, inputs_key="x", mesh=mesh)(
            train.replicate(state, mesh), features, labels
        ).metrics
    )
    assert set(got) == set(expected)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=RTOL, atol=ATOL, err_msg=str(key))


@pytest.mark.parametrize("name", [n for n in HEADS if n != "sequence"])
def test_export_round_trip(name):
    head = HEADS[name]
    features, _ = _batch(name, head)
    model = Model(head)
    params = model.init(jax.random.key(0), features["x"][:1])["params"]

    def logits_fn(x):
        return model.apply({"params": params}, x)

    served = ExportedHead.deserialize(export_head(head, logits_fn, features["x"][:2]).serialize())
    x = features["x"][:5]  # another batch size than the export example: symbolic batch
    for signature in served.signatures:
        expected = serving_function(head, logits_fn, signature)(jnp.asarray(x))
        got = served(x, signature)
        for key, value in expected.items():
            np.testing.assert_allclose(got[key], value, rtol=1e-6, atol=1e-6, err_msg=key)
