"""Adversarial metric states, steps and export (issue 9): folding, merging, jit, empty and inf.

Each case checks the README's promises (exact counts, no NaN) or TF's number.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.training import train_state
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxheads as jh
from jaxheads import metrics, train
from jaxheads.export import export_head
from jaxheads.flax import LinenHead

HEADS = {
    "binary": (lambda: jh.BinaryClassHead(weight_column="w", thresholds=[0.3, 0.7]), 1),
    "logistic": (lambda: jh.LogisticRegressionHead(weight_column="w"), 1),
    "multi_class": (lambda: jh.MultiClassHead(4, weight_column="w"), 4),
    "multi_label": (
        lambda: jh.MultiLabelHead(3, weight_column="w", classes_for_class_based_metrics=[0, 2]),
        3,
    ),
    "regression": (lambda: jh.RegressionHead(weight_column="w", label_dimension=2), 2),
    "poisson": (lambda: jh.PoissonRegressionHead(weight_column="w"), 1),
}


def _batch(kind, n, rng):
    k = HEADS[kind][1]
    logits = (rng.normal(size=(n, k)) * 3).astype(np.float32)
    if kind == "multi_class":
        labels = rng.integers(0, k, size=(n, 1)).astype(np.int32)
    elif kind == "multi_label":
        labels = rng.integers(0, 2, size=(n, k)).astype(np.int32)
    elif kind == "regression":
        labels = rng.normal(size=(n, k)).astype(np.float32)
    elif kind == "poisson":
        labels = rng.integers(0, 5, size=(n, 1)).astype(np.float32)
    else:
        labels = rng.integers(0, 2, size=(n, 1)).astype(np.float32)
    # Weights with exact zeros and exact small dyadic values: sums are exact in float32.
    w = rng.choice(np.array([0.0, 0.5, 1.0, 2.0], np.float32), size=n)
    return logits, labels, w


def _values(head, state):
    return {k: float(v) for k, v in head.compute_metrics(state).items()}


@settings(max_examples=12, deadline=None)
@given(
    kind=st.sampled_from(sorted(HEADS)),
    cuts=st.lists(st.integers(0, 24), min_size=1, max_size=4),
    seed=st.integers(0, 2**16),
)
def test_fold_and_merge_equal_one_update(kind, cuts, seed):
    """Any split of the eval set (empty chunks too), folded or merged: the same metrics."""
    head = HEADS[kind][0]()
    rng = np.random.default_rng(seed)
    logits, labels, w = _batch(kind, 24, rng)
    edges = [0, *sorted(cuts), 24]
    whole = head.update_metrics(head.init_metrics(), {"w": w}, logits, labels)
    folded = head.init_metrics()
    parts = []
    update = jax.jit(head.update_metrics)
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        chunk = (head.init_metrics(), {"w": w[a:b]}, logits[a:b], labels[a:b])
        folded = update(folded, *chunk[1:])
        parts.append(update(*chunk))
    merged = parts[0]
    for part in reversed(parts[1:]):  # merge order differs from fold order
        merged = metrics.merge(part, merged)
    expected = _values(head, whole)
    for state in (folded, merged):
        got = _values(head, state)
        assert got.keys() == expected.keys()
        np.testing.assert_allclose(
            list(got.values()), list(expected.values()), rtol=2e-6, atol=1e-7
        )


@pytest.mark.parametrize("kind", sorted(HEADS))
def test_empty_state_is_the_merge_identity_and_computes_without_nan(kind):
    head = HEADS[kind][0]()
    logits, labels, w = _batch(kind, 8, np.random.default_rng(1))
    state = head.update_metrics(head.init_metrics(), {"w": w}, logits, labels)
    empty = head.init_metrics()
    assert _values(head, metrics.merge(empty, state)) == _values(head, state)
    assert _values(head, metrics.merge(state, empty)) == _values(head, state)
    assert not any(np.isnan(v) for v in _values(head, empty).values())


def test_precision_and_recall_states_never_share_a_jit_cache_entry():
    """The recall_0.5 flake: same-shaped states of two metric types must compute their own value."""
    y = np.array([1, 1, 0, 0, 1], np.float32)
    p = np.array([0.9, 0.2, 0.8, 0.1, 0.7], np.float32)
    compute = jax.jit(lambda s: s.compute())
    precision = compute(metrics.Precision.empty(0.5).update(y, p))
    recall = compute(metrics.Recall.empty(0.5).update(y, p))
    # TF/Keras Precision(0.5) = 2/3, Recall(0.5) = 2/3 on y=[1,1,0,0,1]: use other data to differ.
    y2 = np.array([1, 1, 1, 0], np.float32)
    p2 = np.array([0.9, 0.2, 0.1, 0.8], np.float32)
    precision2 = compute(metrics.Precision.empty(0.5).update(y2, p2))
    recall2 = compute(metrics.Recall.empty(0.5).update(y2, p2))
    np.testing.assert_allclose([precision, recall], [2 / 3, 2 / 3], rtol=1e-6)
    np.testing.assert_allclose([precision2, recall2], [1 / 2, 1 / 3], rtol=1e-6)


# ------------------------------------------------------------------ steps


def _linen_state(head, x):
    model = LinenHead(head)
    params = model.init(jax.random.key(0), x)["params"]
    return train_state.TrainState.create(apply_fn=model.apply, params=params, tx=optax.sgd(1.0))


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "mean", "sum_by_nonzero_weights"])
def test_all_zero_weight_batch_trains_to_nothing(reduction):
    """div_no_nan: loss 0, gradient 0 (parameters unchanged), metrics without NaN."""
    head = jh.BinaryClassHead(weight_column="w", loss_reduction=reduction)
    x = np.ones((4, 3), np.float32)
    state = _linen_state(head, x)
    features = {"x": x, "w": np.zeros(4, np.float32)}
    new_state, out = train.make_train_step(None, head, inputs_key="x")(
        state, features, np.ones((4, 1), np.float32)
    )
    assert float(out.loss) == 0.0
    for old, new in zip(
        jax.tree.leaves(state.params), jax.tree.leaves(new_state.params), strict=True
    ):
        np.testing.assert_array_equal(old, new)
    assert not any(np.isnan(v) for v in head.compute_metrics(out.metrics).values())


# ------------------------------------------------------------------ export


@pytest.mark.parametrize("value", [np.inf, -np.inf, 1e4])
def test_served_outputs_equal_head_outputs_at_extreme_logits(value):
    head = jh.MultiClassHead(3, label_vocabulary=["a", "b", "c"])
    exported = export_head(head, lambda x: x, np.zeros((2, 3), np.float32))
    logits = np.array([[value, 0.0, 1.0], [0.0, -1.0, 2.0]], np.float32)
    served = exported(logits)
    direct = head.export_outputs(jnp.asarray(logits))["serving_default"]
    for key, array in direct.items():
        np.testing.assert_array_equal(served[key], array)
    assert not np.isnan(np.asarray(served["scores"], np.float32)).any()


def _binary_state(n=8):
    head = jh.BinaryClassHead()
    x = np.ones((n, 3), np.float32)
    return head, _linen_state(head, x), x


def test_train_and_eval_steps_on_an_empty_batch():
    head, state, _ = _binary_state()
    x, y = np.zeros((0, 3), np.float32), np.zeros((0, 1), np.float32)
    _, out = train.make_train_step(None, head)(state, x, y)
    assert float(out.loss) == 0.0
    values = head.compute_metrics(train.make_eval_step(None, head)(state, x, y).metrics)
    assert all(float(v) == 0.0 for v in values.values())  # TF's div_no_nan, baseline 0


def test_train_step_without_labels_names_labels():
    head, state, x = _binary_state()
    with pytest.raises(ValueError, match=r"You must provide a labels Tensor"):
        train.make_train_step(None, head)(state, x, None)


def test_micro_batches_accepts_numpy_integers():
    head, state, x = _binary_state()
    step = train.make_train_step(None, head, micro_batches=np.int64(2))
    _, out = step(state, x, np.ones((8, 1), np.float32))
    _, ref = train.make_train_step(None, head)(state, x, np.ones((8, 1), np.float32))
    np.testing.assert_allclose(out.loss, ref.loss, rtol=1e-6)


def test_micro_batches_refuses_bool():
    with pytest.raises(ValueError, match=r"micro_batches"):
        train.make_train_step(None, jh.BinaryClassHead(), micro_batches=True)


@pytest.mark.parametrize("labels", [np.full((8, 1), 2.0, np.float32), np.full((8, 1), np.nan)])
def test_train_step_refuses_binary_labels_outside_0_1(labels):
    head, state, x = _binary_state()
    with pytest.raises(ValueError, match=r"Labels must be <= 2 - 1"):
        train.make_train_step(None, head)(state, x, labels)


@pytest.mark.parametrize(
    "labels",
    [np.ones((8, 1), bool), [[1.0]] * 8, np.ones((8,), np.int32)],
    ids=["bool", "list", "int_rank1"],
)
def test_train_step_label_forms_give_the_same_loss(labels):
    head, state, x = _binary_state()
    step = train.make_train_step(None, head)
    _, ref = step(state, x, np.ones((8, 1), np.float32))
    _, out = step(state, x, labels)
    np.testing.assert_array_equal(out.loss, ref.loss)


def _weighted_step_case():
    head = jh.BinaryClassHead(weight_column="w")
    x = np.ones((4, 3), np.float32)
    return head, _linen_state(head, x), x


def test_train_step_checks_concrete_nan_weights():
    head, state, x = _weighted_step_case()
    features = {"x": x, "w": np.array([1.0, np.nan, 1.0, 1.0], np.float32)}
    with pytest.raises(ValueError, match=r"weights must not be NaN"):
        train.make_train_step(None, head, inputs_key="x")(state, features, np.ones((4, 1)))


def test_train_step_names_string_weights():
    head, state, x = _weighted_step_case()
    features = {"x": x, "w": np.array(["a"] * 4)}
    with pytest.raises(ValueError, match=r"features\['w'\] holds strings.*castable to float"):
        train.make_train_step(None, head, inputs_key="x")(state, features, np.ones((4, 1)))


@pytest.mark.parametrize(
    "head",
    [
        jh.BinaryClassHead(weight_column="w"),
        jh.MultiClassHead(3, weight_column="w"),
        jh.MultiLabelHead(3, weight_column="w"),
        jh.RegressionHead(weight_column="w"),
        jh.LogisticRegressionHead(weight_column="w"),
        jh.SequentialHeadWrapper(jh.BinaryClassHead(weight_column="w"), "mask"),
    ],
    ids=lambda h: type(h).__name__,
)
@pytest.mark.parametrize(
    "weights, match",
    [
        (np.array([1.0, np.nan]), r"weights must not be NaN; got NaN in features\['w'\]"),
        (np.array(["a", "b"]), r"Weight column should be castable to float\. Given dtype: <U1"),
    ],
    ids=["nan", "strings"],
)
def test_encode_labels_checks_concrete_weights(head, weights, match):
    """The host-side check every step runs: a bad weight never reaches jit."""
    labels = {
        "MultiLabelHead": np.zeros((2, 3), np.int32),
        "MultiClassHead": np.zeros((2, 1), np.int32),
    }.get(type(head).__name__, np.zeros((2, 1), np.float32))
    features = {"w": weights, "mask": np.ones((2, 1), bool)}
    if isinstance(head, jh.SequentialHeadWrapper):
        labels, features["w"] = labels.reshape(2, 1), weights.reshape(2, 1)
    with pytest.raises(ValueError, match=match):
        head.encode_labels(labels, features)


def test_metrics_on_sharded_arrays_under_jit_equal_one_device():
    """Counts and weighted sums are the same when XLA partitions the update over 8 devices."""
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    head = jh.MultiLabelHead(3, weight_column="w", thresholds=[0.5])
    rng = np.random.default_rng(7)
    n = 2**16
    logits = rng.normal(size=(n, 3)).astype(np.float32)
    labels = rng.integers(0, 2, size=(n, 3)).astype(np.int32)
    w = rng.uniform(0, 3, size=n).astype(np.float32)
    sharding = NamedSharding(Mesh(np.array(jax.devices()[:8]), ("d",)), P("d"))
    update = jax.jit(head.update_metrics)
    local = update(head.init_metrics(), {"w": w}, logits, labels)
    sharded = update(
        head.init_metrics(),
        {"w": jax.device_put(w, sharding)},
        jax.device_put(logits, sharding),
        jax.device_put(labels, sharding),
    )
    got, expected = _values(head, sharded), _values(head, local)
    assert got.keys() == expected.keys()
    np.testing.assert_allclose(list(got.values()), list(expected.values()), rtol=1e-6)
    positives = (labels * w[:, None]).sum()
    recall = ((logits > 0) & (labels == 1)) * w[:, None]
    np.testing.assert_allclose(
        got["recall/positive_threshold_0.5"], recall.sum() / positives, rtol=1e-6
    )


def test_sequence_weights_may_be_nan_at_padded_steps():
    """Padded steps may hold anything: the host weight check looks at valid steps only."""
    head = jh.SequentialHeadWrapper(jh.BinaryClassHead(weight_column="w"), "mask")
    features = {
        "mask": np.array([[True, False]]),
        "w": np.array([[2.0, np.nan]], np.float32),
    }
    encoded = head.encode_labels(np.array([[1.0, -1.0]], np.float32), features)
    loss = head.loss(encoded, np.zeros((1, 2, 1), np.float32), features)
    np.testing.assert_allclose(loss, 2.0 * np.log(2.0), rtol=1e-6)  # one valid step, weight 2
    features["w"] = np.array([[np.nan, 1.0]], np.float32)
    with pytest.raises(ValueError, match=r"weights must not be NaN"):
        head.encode_labels(np.array([[1.0, 0.0]], np.float32), features)
