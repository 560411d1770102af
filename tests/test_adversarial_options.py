"""Fuzzing head options (issue 9): any valid combination builds, computes TF's loss, no NaN.

Hypothesis draws constructor arguments in every accepted form (Python, NumPy,
JAX), then checks the loss against TF's formula in float64, the metric keys
(TF's names, ``/name`` suffix) and that no metric is NaN.
"""

import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxheads as jh

REDUCTIONS = ["sum", "sum_over_batch_size", "mean", "sum_by_nonzero_weights", "auto"]


def _container(values, form, dtype):
    return {
        "list": list(values),
        "tuple": tuple(values),
        "numpy": np.array(values, dtype),
        "jax": jnp.array(values, dtype),
    }[form]


def _sigmoid_ce(z, x):
    x = x.astype(np.float64)
    return np.maximum(x, 0) - x * z + np.log1p(np.exp(-np.abs(x)))


def _reduce(per_example, w, reduction):
    total = float(np.sum(w * per_example))
    if reduction == "sum":
        return total
    if reduction in ("sum_over_batch_size", "auto"):
        return total / per_example.size
    if reduction == "mean":
        return total / float(np.sum(w)) if np.sum(w) else 0.0
    nonzero = np.count_nonzero(w)
    return total / nonzero if nonzero else 0.0


@settings(max_examples=20, deadline=None)
@given(
    thresholds=st.lists(st.floats(0.015625, 0.984375, width=32), max_size=3, unique=True),
    form=st.sampled_from(["list", "tuple", "numpy", "jax"]),
    num_thresholds=st.integers(2, 300),
    int_form=st.sampled_from([int, np.int64, np.int32]),
    compat=st.sampled_from(["v1", "v2"]),
    reduction=st.sampled_from(REDUCTIONS),
    vocabulary=st.sampled_from([None, ("no", "yes"), np.array(["neg", "pos"])]),
    name=st.sampled_from([None, "h", np.str_("head/1")]),
    seed=st.integers(0, 2**16),
)
def test_binary_head_any_options(
    thresholds, form, num_thresholds, int_form, compat, reduction, vocabulary, name, seed
):
    head = jh.BinaryClassHead(
        weight_column="w",
        thresholds=_container(thresholds, form, np.float32) if thresholds else None,
        num_thresholds=int_form(num_thresholds),
        compat=compat,
        loss_reduction=reduction,
        label_vocabulary=vocabulary,
        name=name,
    )
    rng = np.random.default_rng(seed)
    logits = (rng.normal(size=(6, 1)) * 4).astype(np.float32)
    ids = rng.integers(0, 2, size=(6, 1)).astype(np.float32)
    w = rng.choice(np.array([0.0, 1.0, 2.5], np.float32), size=6)
    labels = ids if vocabulary is None else np.asarray(vocabulary)[ids.astype(int)]
    encoded = head.encode_labels(labels)
    loss = head.loss(encoded, logits, {"w": w})
    expected = _reduce(_sigmoid_ce(ids, logits), w[:, None], reduction)
    np.testing.assert_allclose(loss, expected, rtol=1e-5, atol=1e-6)
    state = head.update_metrics(head.init_metrics(), {"w": w}, logits, encoded)
    values = head.compute_metrics(state)
    suffix = "" if name is None else f"/{name}"
    assert f"accuracy{suffix}" in values and f"auc{suffix}" in values
    for t in thresholds:
        assert f"recall/positive_threshold_{float(np.float32(t)):g}{suffix}" in values
    assert not any(np.isnan(v).any() for v in values.values())


@settings(max_examples=15, deadline=None)
@given(
    n_classes=st.integers(2, 5),
    int_form=st.sampled_from([int, np.int64, lambda n: jnp.array(n)]),
    classes_form=st.sampled_from(["list", "tuple", "numpy", "jax"]),
    data=st.data(),
    reduction=st.sampled_from(REDUCTIONS),
    seed=st.integers(0, 2**16),
)
def test_multi_label_head_any_options(n_classes, int_form, classes_form, data, reduction, seed):
    classes = data.draw(st.lists(st.integers(0, n_classes - 1), max_size=n_classes, unique=True))
    head = jh.MultiLabelHead(
        int_form(n_classes),
        weight_column="w",
        classes_for_class_based_metrics=(
            _container(classes, classes_form, np.int32) if classes else None
        ),
        loss_reduction=reduction,
    )
    assert head.classes_for_class_based_metrics == tuple(classes)
    rng = np.random.default_rng(seed)
    logits = (rng.normal(size=(5, n_classes)) * 3).astype(np.float32)
    labels = rng.integers(0, 2, size=(5, n_classes)).astype(np.int32)
    w = rng.choice(np.array([0.0, 0.5, 1.0], np.float32), size=5)
    loss = head.loss(labels, logits, {"w": w})
    per_example = _sigmoid_ce(labels, logits).mean(axis=-1, keepdims=True)
    np.testing.assert_allclose(
        loss, _reduce(per_example, w[:, None], reduction), rtol=1e-5, atol=1e-6
    )
    values = head.compute_metrics(
        head.update_metrics(head.init_metrics(), {"w": w}, logits, labels)
    )
    for c in classes:
        assert f"auc/class{c}" in values and f"probability_mean/class{c}" in values  # TF keys
    assert not any(np.isnan(v).any() for v in values.values())


@settings(max_examples=15, deadline=None)
@given(
    label_dimension=st.integers(1, 3),
    int_form=st.sampled_from([int, np.int64, lambda n: jnp.array(n, jnp.int32)]),
    per_logit=st.booleans(),
    reduction=st.sampled_from(REDUCTIONS),
    poisson=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_regression_heads_any_options(
    label_dimension, int_form, per_logit, reduction, poisson, seed
):
    cls = jh.PoissonRegressionHead if poisson else jh.RegressionHead
    head = cls(
        label_dimension=int_form(label_dimension), weight_column="w", loss_reduction=reduction
    )
    assert head.logits_dimension == label_dimension
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(4, label_dimension)).astype(np.float32)
    labels = rng.integers(0, 4, size=(4, label_dimension)).astype(np.float32)
    shape = (4, label_dimension) if per_logit and not poisson else (4,)
    w = rng.choice(np.array([0.0, 0.5, 2.0], np.float32), size=shape)
    loss = head.loss(labels, logits, {"w": w})
    x = logits.astype(np.float64)
    if poisson:
        safe = np.where(labels > 1, labels, 1.0)
        stirling = np.where(
            labels > 1, safe * np.log(safe) - safe + 0.5 * np.log(2 * np.pi * safe), 0
        )
        per_element = np.exp(x) - labels * x + stirling
    else:
        per_element = (labels - x) ** 2
    weights = np.broadcast_to(w if w.ndim == 2 else w[:, None], per_element.shape)
    np.testing.assert_allclose(loss, _reduce(per_element, weights, reduction), rtol=1e-5, atol=1e-6)
