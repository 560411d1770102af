"""Per-element losses: values, stability for huge logits, gradients, dtypes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

import jaxheads as jh
from jaxheads import losses


def _reference_sigmoid_ce(z, x):
    z = np.asarray(z, np.float64)
    x = np.asarray(x, np.float64)
    return np.maximum(x, 0) - x * z + np.log1p(np.exp(-np.abs(x)))


def test_sigmoid_ce_values():
    # spec §3 bin_v2_float_labels: CE = [0.57407698418, 0.67435524446]
    got = losses.sigmoid_cross_entropy(jnp.array([0.8, 0.4]), jnp.array([0.5, -0.3]))
    np.testing.assert_allclose(got, [0.57407698418, 0.67435524446], rtol=1e-6)


@pytest.mark.parametrize("x", [1e4, -1e4, 50.0, -50.0, 1e30])
@pytest.mark.parametrize("z", [0.0, 0.3, 1.0])
def test_sigmoid_ce_huge_logits_exact(x, z):
    loss = losses.sigmoid_cross_entropy(jnp.float32(z), jnp.float32(x))
    np.testing.assert_allclose(loss, _reference_sigmoid_ce(z, x), rtol=1e-6)
    grad = jax.grad(lambda v: losses.sigmoid_cross_entropy(jnp.float32(z), v))(jnp.float32(x))
    np.testing.assert_allclose(grad, (1.0 if x > 0 else 0.0) - z, atol=1e-6)


def test_sigmoid_ce_infinite_logits():
    x = jnp.array([jnp.inf, -jnp.inf, jnp.inf, -jnp.inf])
    z = jnp.array([1.0, 0.0, 0.0, 1.0])
    loss = losses.sigmoid_cross_entropy(z, x)
    np.testing.assert_array_equal(loss, [0.0, 0.0, jnp.inf, jnp.inf])  # documented inf, never NaN
    grad = jax.grad(lambda v: jnp.sum(losses.sigmoid_cross_entropy(z, v)))(x)
    np.testing.assert_array_equal(grad, [0.0, 0.0, 1.0, -1.0])
    grad_labels = jax.grad(lambda t: jnp.sum(losses.sigmoid_cross_entropy(t, x[:2])))(z[:2])
    assert not np.any(np.isnan(grad_labels))


def test_sigmoid_ce_grads_numerically():
    z = jnp.array([0.0, 0.3, 1.0, 0.7])
    x = jnp.array([-2.0, 0.5, 3.0, 0.1])
    check_grads(losses.sigmoid_cross_entropy, (z, x), order=2, modes=("fwd", "rev"))


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_inputs_give_float32(dtype):
    x = jnp.array([0.5, -0.3], dtype)
    z = jnp.array([0.8, 0.4], dtype)
    got = losses.sigmoid_cross_entropy(z, x)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(
        got, _reference_sigmoid_ce(z.astype(np.float32), x.astype(np.float32)), rtol=1e-6
    )


@settings(max_examples=50, deadline=None)
@given(
    st.floats(-1e4, 1e4, width=32),
    st.floats(0, 1, width=32),
)
def test_sigmoid_ce_nonnegative_and_matches_reference(x, z):
    got = float(losses.sigmoid_cross_entropy(jnp.float32(z), jnp.float32(x)))
    assert got >= 0
    np.testing.assert_allclose(got, _reference_sigmoid_ce(z, x), rtol=1e-5, atol=1e-6)


def test_sparse_softmax_ce():
    # spec §3 mc_eval_basic: CE = [10.0000906, 0.0000908] for logits [[10,0,0],[0,10,0]], labels [[1],[1]]
    got = losses.sparse_softmax_cross_entropy(
        jnp.array([[1], [1]]), jnp.array([[10.0, 0, 0], [0, 10.0, 0]])
    )
    expected = np.log(np.exp(10) + 2) - np.array([0.0, 10.0])
    np.testing.assert_allclose(got[:, 0], expected, rtol=1e-6, atol=1e-6)  # float32 rounding
    big = losses.sparse_softmax_cross_entropy(jnp.array([[0]]), jnp.array([[1e4, -1e4, 0.0]]))
    assert float(big[0, 0]) == 0.0
    # TF 2.15 values at huge logits (tests/data/tf_reference_multi_class.json, mc_large_logits).
    huge = losses.sparse_softmax_cross_entropy(
        jnp.array([[0], [0]]), jnp.array([[-1e4, -1e4, -1e4], [1e4, 1.846, 1e4]])
    )
    np.testing.assert_allclose(huge[:, 0], [np.log(3.0), np.log(2.0)], rtol=1e-6)


def test_squared_error_and_poisson():
    np.testing.assert_allclose(
        losses.squared_error(jnp.array([43.0, 44.0]), jnp.array([45.0, 41.0])), [4.0, 9.0]
    )
    # spec §3 poisson_train: loss_i = [1.0, 3.020, 1.482] (full), mean 1.8340163; without Stirling 1.0287204.
    z = jnp.array([1.0, 2.0, 3.0])
    x = jnp.array([0.0, -1.0, 1.0])
    np.testing.assert_allclose(jnp.mean(losses.log_poisson_loss(z, x)), 1.8340163, rtol=1e-6)
    np.testing.assert_allclose(jnp.mean(losses.log_poisson_loss(z, x, False)), 1.0287204, rtol=1e-6)


# --- Infinite and huge logits: the limit value, finite gradients, no NaN anywhere. ---

INF = float("inf")
F32_MAX = float(np.finfo(np.float32).max)


@pytest.fixture(params=["plain", "debug_nans"])
def nan_mode(request):
    """Runs a test twice: normally and with ``jax_debug_nans`` (any intermediate NaN raises)."""
    previous = jax.config.jax_debug_nans
    jax.config.update("jax_debug_nans", request.param == "debug_nans")
    jax.clear_caches()  # compiled functions from the other mode must not be reused
    yield request.param
    jax.config.update("jax_debug_nans", previous)
    jax.clear_caches()


def _value_and_grad(fn, labels, logits):
    labels = jnp.asarray(labels, jnp.float32)
    logits = jnp.asarray(logits, jnp.float32)
    value = fn(labels, logits)
    grad = jax.grad(lambda x: jnp.sum(fn(labels, x)))(logits)
    return np.asarray(value), np.asarray(grad)


@pytest.mark.parametrize(
    "label, logits, loss, grad",
    [
        (0, [INF, 0.0, 1.0], 0.0, [0.0, 0.0, 0.0]),  # +inf on the label: certain, loss 0
        (1, [INF, 0.0, 1.0], INF, [1.0, -1.0, 0.0]),  # +inf elsewhere: loss inf, p - onehot
        (0, [INF, INF, 0.0], np.log(2.0), [-0.5, 0.5, 0.0]),  # two +inf share the mass
        (0, [-INF, -INF, -INF], np.log(3.0), [-2 / 3, 1 / 3, 1 / 3]),  # all -inf: uniform
        (0, [-INF, 0.0, 0.0], INF, [-1.0, 0.5, 0.5]),  # label at -inf
        (1, [-INF, 0.0, 0.0], np.log(2.0), [0.0, -0.5, 0.5]),
        (0, [1e38, -1e38, 0.0], 0.0, [0.0, 0.0, 0.0]),  # huge finite
        (0, [3e38, -3e38, 3e38], np.log(2.0), [-0.5, 0.0, 0.5]),
        (1, [3e38, -3e38, 3e38], INF, [0.5, -1.0, 0.5]),  # true loss 6e38 overflows
    ],
)
def test_sparse_softmax_ce_at_infinite_logits(nan_mode, label, logits, loss, grad):
    value, g = _value_and_grad(losses.sparse_softmax_cross_entropy, [[label]], [logits])
    np.testing.assert_allclose(value, [[loss]], rtol=1e-6)
    np.testing.assert_allclose(g, [grad], rtol=1e-6, atol=1e-7)
    # one-hot labels through the dense form give the same numbers
    one_hot = np.eye(3, dtype=np.float32)[[label]]
    value_dense, g_dense = _value_and_grad(losses.softmax_cross_entropy, one_hot, [logits])
    np.testing.assert_array_equal(value_dense, value)
    np.testing.assert_array_equal(g_dense, g)


def test_soft_label_ce_at_infinite_logits(nan_mode):
    value, g = _value_and_grad(losses.softmax_cross_entropy, [[0.5, 0.5, 0.0]], [[INF, 0.0, 1.0]])
    np.testing.assert_array_equal(value, [[INF]])
    np.testing.assert_allclose(g, [[0.5, -0.5, 0.0]])
    # the label gradient is -log p, clipped to float32 max where p = 0
    g_labels = jax.grad(
        lambda y: jnp.sum(losses.softmax_cross_entropy(y, jnp.array([[INF, 0.0, 1.0]])))
    )(jnp.array([[0.5, 0.5, 0.0]]))
    np.testing.assert_array_equal(g_labels, [[0.0, F32_MAX, F32_MAX]])


def test_sparse_softmax_ce_rejects_out_of_range_ids_with_nan():
    """-1 must not score as the last class (JAX's negative indexing) under jit."""
    logits = jnp.array([[0.0, 5.0, 9.0]] * 3)
    loss = jax.jit(losses.sparse_softmax_cross_entropy)(jnp.array([[-1], [3], [2]]), logits)
    assert np.isnan(loss[0, 0]) and np.isnan(loss[1, 0])
    np.testing.assert_allclose(loss[2, 0], -jax.nn.log_softmax(logits[2])[2], rtol=1e-6)


@pytest.mark.parametrize(
    "label, logit, loss, grad",
    [
        (2.0, INF, INF, F32_MAX),  # TF: NaN (inf - inf)
        (0.0, INF, INF, F32_MAX),
        (2.0, -INF, INF, -2.0),
        (0.0, -INF, 0.0, 0.0),
        (1.0, 100.0, INF, F32_MAX),  # exp overflows: inf, gradient clipped
        (2.0, 3e38, INF, F32_MAX),  # z·x overflows too: still inf, not inf - inf
    ],
)
def test_poisson_at_infinite_logits(nan_mode, label, logit, loss, grad):
    value, g = _value_and_grad(
        lambda z, x: losses.log_poisson_loss(z, x, compute_full_loss=False), [label], [logit]
    )
    np.testing.assert_array_equal(value, [loss])
    np.testing.assert_array_equal(g, [grad])
    full, _ = _value_and_grad(losses.log_poisson_loss, [label], [logit])
    assert not np.isnan(full).any()


@pytest.mark.parametrize("logit", [INF, -INF, 3e38])
def test_squared_error_at_infinite_logits(nan_mode, logit):
    value, g = _value_and_grad(losses.squared_error, [2.0], [logit])
    np.testing.assert_array_equal(value, [INF])
    np.testing.assert_array_equal(g, [np.sign(logit) * F32_MAX])


@pytest.mark.parametrize("logit", [INF, -INF])
@pytest.mark.parametrize("label", [0.0, 0.25, 1.0])
def test_sigmoid_ce_infinite_logits_debug_nans(nan_mode, logit, label):
    value, g = _value_and_grad(losses.sigmoid_cross_entropy, [label], [logit])
    matching = (logit > 0 and label == 1.0) or (logit < 0 and label == 0.0)
    np.testing.assert_array_equal(value, [0.0 if matching else INF])
    np.testing.assert_array_equal(g, [(1.0 if logit > 0 else 0.0) - label])


LOSS_FNS = {
    "sigmoid": (losses.sigmoid_cross_entropy, [[1.0], [0.0]]),
    "squared": (losses.squared_error, [[1.0], [0.0]]),
    "poisson": (losses.log_poisson_loss, [[3.0], [0.0]]),
    "sparse_softmax": (losses.sparse_softmax_cross_entropy, [[1], [0]]),
}


@pytest.mark.parametrize("name", sorted(LOSS_FNS))
def test_zero_weight_cancels_an_infinite_loss_and_its_gradient(nan_mode, name):
    """A zero weight drops an example whose loss (or slope) is inf: no 0·inf anywhere."""
    fn, labels = LOSS_FNS[name]
    width = 3 if name == "sparse_softmax" else 1
    logits = jnp.array([[-INF] * width, [0.5] * width])
    weights = jnp.array([[0.0], [1.0]])

    def loss(x):
        return jh.reduce_weighted_loss(fn(jnp.asarray(labels), x), weights, "sum")

    value, grad = jax.value_and_grad(loss)(logits)
    assert np.isfinite(value)
    np.testing.assert_allclose(value, fn(jnp.asarray(labels[1:]), logits[1:]).sum(), rtol=1e-6)
    assert np.isfinite(grad).all() and (np.asarray(grad[0]) == 0).all()


@pytest.mark.parametrize(
    "fn, labels",
    [
        (losses.softmax_cross_entropy, [[0.2, 0.3, 0.5], [0.0, 1.0, 0.0]]),
        (losses.squared_error, [[0.5, -2.0, 3.0], [1.0, 0.0, 7.0]]),
        (losses.log_poisson_loss, [[0.5, 2.0, 3.0], [1.5, 0.25, 7.0]]),  # away from z = 0, 1
    ],
)
def test_custom_gradients_match_finite_differences(fn, labels):
    """The closed-form JVPs (both arguments) agree with numerical differentiation."""
    logits = jnp.array([[-1.0, 0.5, 2.0], [0.3, -0.2, 1.1]])
    check_grads(fn, (jnp.array(labels), logits), order=1, modes=("fwd", "rev"))


def test_softmax_matches_jax_and_is_defined_at_infinite_logits(nan_mode):
    x = jnp.array([[1.0, -2.0, 0.5], [1e4, -1e4, 0.0]])
    np.testing.assert_allclose(losses.softmax(x), jax.nn.softmax(x), rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(losses.softmax(x.T, axis=0), jax.nn.softmax(x.T, axis=0), rtol=1e-6)
    inf_rows = jnp.array([[INF, 0.0, 1.0], [INF, INF, 0.0], [-INF, -INF, -INF], [-INF, 0.0, 0.0]])
    np.testing.assert_allclose(
        losses.softmax(inf_rows),
        [[1, 0, 0], [0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3], [0, 0.5, 0.5]],
        rtol=1e-6,
    )


@pytest.mark.parametrize("shape", [(2,), (2, 2), (1, 1), (2, 1, 1)])
def test_sparse_softmax_ce_label_shape_must_match(shape):
    """[B] ids must not be read as one id broadcast over the batch."""
    with pytest.raises(ValueError, match=r"labels must have shape \[D0, …, DN, 1\] = \[2, 1\]"):
        losses.sparse_softmax_cross_entropy(jnp.zeros(shape, jnp.int32), jnp.zeros((2, 3)))
