"""Adversarial numerics over every head: extreme logits, dtypes, shapes, weights (issue 9).

Each case checks the README's promise (no NaN in the loss, its gradient, the
predictions or the metrics for infinite or huge logits; with
``jax_debug_nans`` on, no intermediate NaN either) or TF's number (the
loss formula of ``tf.estimator`` heads, evaluated in float64 with NumPy).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxheads as jh

INF = float("inf")


@pytest.fixture(scope="module", params=["plain", "debug_nans"])
def nan_mode(request):
    """Module-scoped so that the caches are cleared twice, not per test."""
    previous = jax.config.jax_debug_nans
    jax.config.update("jax_debug_nans", request.param == "debug_nans")
    jax.clear_caches()
    yield request.param
    jax.config.update("jax_debug_nans", previous)
    jax.clear_caches()


def _labels(kind, shape):
    """Valid labels of ``kind`` for logits of ``shape`` (deterministic)."""
    lead = shape[:-1]
    n = int(np.prod(lead)) if lead else 1
    pattern = np.arange(n).reshape(lead)
    if kind == "multi_class":
        return (pattern % shape[-1])[..., None].astype(np.int32)
    if kind == "multi_label":
        return ((pattern[..., None] + np.arange(shape[-1])) % 2).astype(np.int32)
    if kind == "poisson":
        return (pattern % 4)[..., None].astype(np.float32)
    if kind == "regression":
        return (pattern % 3 - 1.0)[..., None].astype(np.float32)
    return (pattern % 2)[..., None].astype(np.float32)  # binary, logistic


SINGLE = {
    "binary": (lambda: jh.BinaryClassHead(weight_column="w", thresholds=[0.3]), 1),
    "logistic": (lambda: jh.LogisticRegressionHead(weight_column="w"), 1),
    "multi_class": (lambda: jh.MultiClassHead(3, weight_column="w"), 3),
    "multi_label": (lambda: jh.MultiLabelHead(3, weight_column="w"), 3),
    "regression": (lambda: jh.RegressionHead(weight_column="w"), 1),
    "poisson": (lambda: jh.PoissonRegressionHead(weight_column="w"), 1),
}


def _finite_or_posinf(x):
    x = np.asarray(x, np.float64)
    return not np.isnan(x).any() and not (x == -INF).any()


def _no_nan(tree):
    leaves = [np.asarray(v) for v in jax.tree_util.tree_leaves(tree)]
    return not any(v.dtype.kind == "f" and np.isnan(v).any() for v in leaves)


def _extreme_logits(k, value):
    """Three examples: the extreme value in the first logit of each, the rest moderate."""
    logits = np.tile(np.array([[0.5, -1.0, 2.0][:k]], np.float32), (3, 1))
    logits[:, 0] = value
    return logits


def _check_loss(head, labels, logits, features):
    loss = head.loss(labels, logits, features)
    assert _finite_or_posinf(loss), loss
    grad = jax.grad(lambda x: head.loss(labels, x, features))(jax.tree.map(jnp.asarray, logits))
    assert _no_nan(grad), grad
    return grad


def _check_metrics(head, labels, logits, features):
    state = head.update_metrics(head.init_metrics(), features, logits, labels)
    metrics = head.compute_metrics(state)
    assert _no_nan(metrics), {k: v for k, v in metrics.items() if np.isnan(v).any()}


WEIGHTS1 = {"w": np.ones(1, np.float32)}
EXTREMES = [INF, -INF, 3e38, -3e38]
WEIGHTS = {"w": np.array([1.0, 0.0, 2.0], np.float32)}


def _case(kind, value):
    make, k = SINGLE[kind]
    logits = _extreme_logits(k, value)
    return make(), _labels(kind, logits.shape), logits


@pytest.mark.parametrize("value", EXTREMES)
@pytest.mark.parametrize("kind", sorted(SINGLE))
def test_extreme_logits_loss_and_gradient_never_nan(nan_mode, kind, value):
    """README promise: loss inf or finite, gradient finite; no NaN even inside (debug_nans)."""
    head, labels, logits = _case(kind, value)
    grad = _check_loss(head, labels, logits, WEIGHTS)
    # The zero-weighted example contributes nothing, not even 0·inf = NaN.
    assert (np.asarray(grad)[1] == 0).all()


@pytest.mark.parametrize("value", EXTREMES)
@pytest.mark.parametrize("kind", sorted(SINGLE))
def test_extreme_logits_predictions_never_nan(nan_mode, kind, value):
    head, _, logits = _case(kind, value)
    assert _no_nan(head.predictions(logits))
    assert _no_nan(head.export_outputs(jnp.asarray(logits)))


@pytest.mark.parametrize("value", EXTREMES)
@pytest.mark.parametrize("kind", sorted(SINGLE))
def test_extreme_logits_metrics_never_nan(nan_mode, kind, value):
    """Metric states: inf in gives inf (or a finite value) out."""
    head, labels, logits = _case(kind, value)
    _check_metrics(head, labels, logits, {"w": np.array([1.0, 0.5, 2.0], np.float32)})


@pytest.mark.parametrize("value", EXTREMES)
@pytest.mark.parametrize("kind", sorted(SINGLE))
def test_extreme_logits_metrics_zero_weight_drops_inf(nan_mode, kind, value):
    """A zero weight drops an example from the metrics even when its loss is inf (no 0·inf)."""
    head, labels, logits = _case(kind, value)
    _check_metrics(head, labels, logits, WEIGHTS)


@pytest.mark.parametrize("value", [INF, -INF])
def test_multi_head_extreme_logits(nan_mode, value):
    multi = jh.MultiHead(
        [jh.MultiClassHead(3, name="a"), jh.PoissonRegressionHead(name="b")], head_weights=[1, 2]
    )
    logits = {"a": _extreme_logits(3, value), "b": _extreme_logits(1, value)}
    labels = {"a": _labels("multi_class", (3, 3)), "b": _labels("poisson", (3, 1))}
    _check_loss(multi, labels, jax.tree.map(jnp.asarray, logits), None)
    assert _no_nan(multi.predictions(logits))
    _check_metrics(multi, labels, logits, None)


@pytest.mark.parametrize("value", [INF, -INF])
def test_sequence_wrapper_extreme_and_nan_padded_logits(nan_mode, value):
    seq = jh.SequentialHeadWrapper(jh.MultiClassHead(3), "mask")
    logits = np.stack([_extreme_logits(3, value)] * 2)  # [B=2, T=3, 3]
    if nan_mode == "plain":
        logits[1, 1:] = np.nan  # padding may hold anything (a NaN input trips debug_nans)
    labels = np.array([[0, 1, 2], [2, -1, -1]], np.int32)
    features = {"mask": np.array([[True, True, True], [True, False, False]])}
    _check_loss(seq, labels, logits, features)
    _check_metrics(seq, labels, logits, features)


@pytest.mark.parametrize(
    "kind, logit, label, loss",
    [
        # TF: sigmoid_cross_entropy_with_logits is exact at |x| = 1e4.
        ("binary", 1e4, 0.0, 1e4),
        ("binary", -1e4, 1.0, 1e4),
        ("binary", 1e4, 1.0, 0.0),
        ("logistic", -1e4, 0.5, 5e3),
        # TF: log_poisson_loss(z, x) = exp(x) - z·x (+ Stirling for z > 1); exp(-1e4) = 0.
        ("poisson", -1e4, 0.0, 0.0),
        ("poisson", 80.0, 0.0, float(np.float32(np.exp(80.0)))),
        ("regression", 1e4, -1e4, 4e8),
    ],
)
def test_huge_finite_logits_match_tf_formula(kind, logit, label, loss):
    head = SINGLE[kind][0]()
    got = head.loss(np.array([[label]], np.float32), np.array([[logit]], np.float32), WEIGHTS1)
    np.testing.assert_allclose(got, loss, rtol=1e-6)


def test_multi_class_huge_logits_tf_reference():
    """TF 2.15 values (tests/data/tf_reference_multi_class.json, mc_large_logits)."""
    head = jh.MultiClassHead(3, loss_reduction="sum")
    logits = np.array([[-1e4, -1e4, -1e4], [1e4, 1.846, 1e4]], np.float32)
    got = head.loss(np.array([[0], [0]], np.int32), logits)
    np.testing.assert_allclose(got, np.log(3.0) + np.log(2.0), rtol=1e-6)


# --- Fuzzing: random heads, shapes, dtypes, weights and reductions vs. TF's formulas. ---


def _reference_per_example(kind, labels, logits):
    """TF's unweighted per-example loss, [..., 1] (or [..., k] for regression), float64."""
    x = logits.astype(np.float64)
    z = labels.astype(np.float64)
    if kind in ("binary", "logistic", "multi_label"):
        ce = np.maximum(x, 0) - x * z + np.log1p(np.exp(-np.abs(x)))
        return ce.mean(axis=-1, keepdims=True)
    if kind == "multi_class":
        top = x.max(axis=-1, keepdims=True)
        log_probs = x - top - np.log(np.exp(x - top).sum(axis=-1, keepdims=True))
        return -np.take_along_axis(log_probs, labels.astype(np.int64), axis=-1)
    if kind == "regression":
        return (z - x) ** 2
    safe = np.where(z > 1, z, 1.0)
    stirling = np.where(z > 1, safe * np.log(safe) - safe + 0.5 * np.log(2 * np.pi * safe), 0)
    return np.exp(x) - z * x + stirling


def _reference_loss(per_example, weights, reduction):
    w = np.broadcast_to(weights.astype(np.float64), per_example.shape)
    total = (w * per_example).sum()
    if reduction == "sum":
        return total
    if reduction == "sum_over_batch_size":
        return total / per_example.size if per_example.size else 0.0
    if reduction == "mean":
        return total / w.sum() if w.sum() else 0.0
    nonzero = np.count_nonzero(w)
    return total / nonzero if nonzero else 0.0


@settings(max_examples=30, deadline=None)
@given(
    kind=st.sampled_from(sorted(SINGLE)),
    lead=st.lists(st.integers(0, 4), min_size=1, max_size=2).map(tuple),
    dtype=st.sampled_from(["float32", "bfloat16", "float16", "int32"]),
    scale=st.sampled_from([1.0, 30.0, 1e4]),
    reduction=st.sampled_from(["sum", "sum_over_batch_size", "mean", "sum_by_nonzero_weights"]),
    weight_rank=st.sampled_from(["lead", "lead1"]),
    seed=st.integers(0, 2**16),
)
def test_fuzz_loss_equals_tf_formula(kind, lead, dtype, scale, reduction, weight_rank, seed):
    """Any batch shape (empty too), logits dtype and scale: the loss is TF's, never NaN."""
    k = SINGLE[kind][1]
    if kind == "poisson":
        scale = min(scale, 30.0)  # exp(1e4) is inf in float64 too
    rng = np.random.default_rng(seed)
    head = SINGLE[kind][0]()
    head = type(head)(**{**_head_kwargs(kind), "loss_reduction": reduction})
    logits = (rng.normal(size=(*lead, k)) * scale).astype(dtype)
    labels = _labels(kind, (*lead, k))
    w = np.where(rng.uniform(size=lead) < 0.3, 0.0, rng.uniform(0.1, 3.0, size=lead))
    w = w.astype(np.float32)
    features = {"w": w if weight_rank == "lead" else w[..., None]}
    got = head.loss(labels, logits, features)
    assert not np.isnan(got)
    as_f32 = np.asarray(jnp.asarray(logits).astype(jnp.float32))  # the head computes in f32
    per_example = _reference_per_example(kind, labels, as_f32)
    expected = _reference_loss(per_example, w[..., None], reduction)
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=1e-5)


def _head_kwargs(kind):
    return {
        "binary": {"weight_column": "w"},
        "logistic": {"weight_column": "w"},
        "multi_class": {"n_classes": 3, "weight_column": "w"},
        "multi_label": {"n_classes": 3, "weight_column": "w"},
        "regression": {"weight_column": "w"},
        "poisson": {"weight_column": "w"},
    }[kind]


@settings(max_examples=15, deadline=None)
@given(
    kind=st.sampled_from(sorted(SINGLE)),
    batch=st.integers(1, 6),
    seed=st.integers(0, 2**16),
)
def test_fuzz_jit_vmap_grad_agree_with_eager(kind, batch, seed):
    """jit and vmap give the eager loss; the gradient is finite."""
    make, k = SINGLE[kind]
    head = make()
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(2, batch, k)).astype(np.float32) * 5
    labels = np.stack([_labels(kind, (batch, k))] * 2)
    w = rng.uniform(0, 2, size=(2, batch)).astype(np.float32)
    eager = [float(head.loss(labels[i], logits[i], {"w": w[i]})) for i in range(2)]
    jitted = jax.jit(lambda y, x, f: head.loss(y, x, f))
    for i in range(2):
        np.testing.assert_allclose(jitted(labels[i], logits[i], {"w": w[i]}), eager[i], rtol=1e-6)
    mapped = jax.vmap(lambda y, x, f: head.loss(y, x, {"w": f}))(labels, logits, w)
    np.testing.assert_allclose(mapped, eager, rtol=1e-6)
    grad = jax.grad(lambda x: head.loss(labels[0], x, {"w": w[0]}))(jnp.asarray(logits[0]))
    assert np.isfinite(grad).all()
