"""Per-element losses: values, stability for huge logits, gradients, dtypes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

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
