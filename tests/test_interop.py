"""jaxheads.interop: heads as clu metrics, and orbax round trips of metric states."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxheads as jh
from jaxheads import interop

clu_metrics = pytest.importorskip("clu.metrics")
pytest.importorskip("orbax.checkpoint")

RNG = np.random.default_rng(0)


def _batch(n: int, k: int = 1, classes: int = 0):
    logits = RNG.normal(size=(n, k)).astype(np.float32)
    if classes:
        labels = RNG.integers(0, classes, size=(n, 1)).astype(np.int32)
    else:
        labels = (RNG.uniform(size=(n, k)) < 0.4).astype(np.float32)
    return logits, labels, {"w": RNG.uniform(0.5, 2.0, size=n).astype(np.float32)}


def _values(metrics: dict) -> dict:
    return {k: np.asarray(v) for k, v in metrics.items()}


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


HEADS = {
    "binary": (jh.BinaryClassHead(weight_column="w", thresholds=(0.3, 0.7), name="ctr"), 1, 0),
    "multi_class": (jh.MultiClassHead(4, weight_column="w"), 4, 4),
    "multi_label": (jh.MultiLabelHead(3, weight_column="w"), 3, 0),
    "regression": (jh.RegressionHead(label_dimension=2, weight_column="w"), 2, 0),
}


# ---------------------------------------------------------------------------- clu
@pytest.mark.parametrize("name", sorted(HEADS))
def test_clu_metric_is_the_heads_streaming_state(name):
    head, k, classes = HEADS[name]
    metric_cls = interop.clu_metric(head)
    assert issubclass(metric_cls, clu_metrics.Metric)
    batches = [_batch(n, k, classes) for n in (7, 16, 3)]
    state = head.init_metrics()
    merged = metric_cls.empty()
    update = jax.jit(
        lambda lg, lb, f: metric_cls.from_model_output(logits=lg, labels=lb, features=f)
    )
    for logits, labels, features in batches:
        state = head.update_metrics(state, features, logits, labels)
        merged = merged.merge(update(logits, labels, features))
    assert type(merged) is metric_cls
    _assert_same(_values(merged.compute()), _values(head.compute_metrics(state)))


@jax.numpy_dtype_promotion("standard")  # clu's Average adds an int32 count to float32
def test_clu_metric_in_a_collection_with_clus_own_metrics():
    head = HEADS["binary"][0]
    collection = clu_metrics.Collection.create(
        head=interop.clu_metric(head), loss=clu_metrics.Average.from_output("loss")
    )
    logits, labels, features = _batch(12)

    @jax.jit
    def step(logits, labels, features):
        loss = head.loss(labels, logits, features)
        # clu passes every model output to every metric: the head ignores `loss`.
        return collection.single_from_model_output(
            logits=logits, labels=labels, features=features, loss=loss
        )

    out = collection.empty().merge(step(logits, labels, features)).compute()
    expected = head.compute_metrics(
        head.update_metrics(head.init_metrics(), features, logits, labels)
    )
    _assert_same(_values(out["head"]), _values(expected))
    np.testing.assert_allclose(out["loss"], head.loss(labels, logits, features), rtol=1e-6)


def test_clu_reduce_folds_a_device_axis_exactly():
    head, k, classes = HEADS["multi_class"]
    metric_cls = interop.clu_metric(head)
    parts = [
        metric_cls.from_model_output(logits=lg, labels=lb, features=f)
        for lg, lb, f in (_batch(5, k, classes), _batch(9, k, classes), _batch(4, k, classes))
    ]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *parts)  # as after all_gather
    reduced = stacked.reduce()
    _assert_same(
        _values(reduced.compute()), _values(parts[0].merge(parts[1]).merge(parts[2]).compute())
    )


def test_clu_metric_class_per_head_and_refuses_another_heads_metric():
    a = jh.BinaryClassHead(name="a")
    assert interop.clu_metric(a) is interop.clu_metric(jh.BinaryClassHead(name="a"))
    other = interop.clu_metric(jh.BinaryClassHead(thresholds=(0.2,), name="a"))
    assert other is not interop.clu_metric(a)
    logits, labels, _ = _batch(4)
    mine = interop.clu_metric(a).from_model_output(logits=logits, labels=labels)
    with pytest.raises(ValueError, match="Cannot merge"):
        mine.merge(other.from_model_output(logits=logits, labels=labels))


def test_clu_metric_tracks_regularization_when_asked():
    head = jh.BinaryClassHead()
    metric_cls = interop.clu_metric(head, regularization=True)
    logits, labels, _ = _batch(6)
    m = metric_cls.empty().merge(
        metric_cls.from_model_output(
            logits=logits, labels=labels, regularization_losses=[jnp.float32(0.5)]
        )
    )
    m = m.merge(
        metric_cls.from_model_output(
            logits=logits, labels=labels, regularization_losses=[jnp.float32(1.5)]
        )
    )
    assert float(m.compute()["regularization_loss"]) == pytest.approx(1.0)


# ---------------------------------------------------------------------------- orbax
def _state(head, k, classes, regularization=None, batches=2):
    state = head.init_metrics(regularization)
    for n in (11, 5)[:batches]:
        logits, labels, features = _batch(n, k, classes)
        state = head.update_metrics(state, features, logits, labels, regularization)
    return state


@pytest.mark.parametrize("name", sorted(HEADS))
def test_orbax_round_trip_restores_the_heads_own_state(name, tmp_path):
    head, k, classes = HEADS[name]
    state = _state(head, k, classes)
    interop.save_metric_state(tmp_path / "state", state)
    restored = interop.restore_metric_state(tmp_path / "state", head)
    assert type(restored) is type(state)
    assert jax.tree.structure(restored) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state), strict=True):
        np.testing.assert_array_equal(a, b)  # both words of every exact sum
    _assert_same(_values(head.compute_metrics(restored)), _values(head.compute_metrics(state)))
    # It keeps streaming: restore, then fold and merge as if never interrupted.
    logits, labels, features = _batch(8, k, classes)
    _assert_same(
        _values(head.compute_metrics(head.update_metrics(restored, features, logits, labels))),
        _values(head.compute_metrics(head.update_metrics(state, features, logits, labels))),
    )


def test_orbax_round_trip_with_regularization_and_multi_head(tmp_path):
    head = jh.MultiHead([jh.BinaryClassHead(name="a"), jh.MultiClassHead(3, name="b")])
    reg = [jnp.float32(0.25)]
    state = head.init_metrics(reg)
    logits = {"a": _batch(6)[0], "b": _batch(6, 3, 3)[0]}
    labels = {"a": _batch(6)[1], "b": _batch(6, 3, 3)[1]}
    state = head.update_metrics(state, None, logits, labels, reg)
    interop.save_metric_state(tmp_path / "m", state)
    restored = interop.restore_metric_state(tmp_path / "m", head, reg)
    _assert_same(_values(head.compute_metrics(restored)), _values(head.compute_metrics(state)))
    assert restored.regularization_loss is not None
    np.testing.assert_array_equal(restored.regularization_loss.total.hi, np.float32(0.25))


def test_orbax_restore_into_another_head_is_a_clear_error(tmp_path):
    head, k, classes = HEADS["binary"]
    interop.save_metric_state(tmp_path / "s", _state(head, k, classes))
    with pytest.raises(ValueError, match="does not hold a metric state of MultiClassHead"):
        interop.restore_metric_state(tmp_path / "s", jh.MultiClassHead(3))
