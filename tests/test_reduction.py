"""Reduction enum and the weighted reduce, on one device and across a mesh."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

import jaxheads as jh

# Spec §1.4 worked example: per-example CE [0, 41, 44].
LOSS = np.array([[0.0], [41.0], [44.0]], np.float32)


@pytest.mark.parametrize(
    "weights, expected",
    [
        (
            [1.0, 0.1, 1.5],
            {
                "sum": 70.1,
                "sum_over_batch_size": 23.366667,
                "mean": 26.961538,
                "sum_by_nonzero_weights": 23.366667,
            },
        ),
        (
            [1.0, 0.0, 1.5],
            {
                "sum": 66.0,
                "sum_over_batch_size": 22.0,
                "mean": 26.4,
                "sum_by_nonzero_weights": 33.0,
            },
        ),
    ],
)
def test_reductions_match_tf_worked_example(weights, expected):
    w = np.array(weights, np.float32)[:, None]
    for name, value in expected.items():
        got = jh.reduce_weighted_loss(LOSS, w, name)
        np.testing.assert_allclose(got, value, rtol=1e-6)  # float32 rounding
        assert got.dtype == jnp.float32


@pytest.mark.parametrize(
    "alias, member",
    [
        ("auto", jh.Reduction.SUM_OVER_BATCH_SIZE),
        (jh.Reduction.AUTO, jh.Reduction.SUM_OVER_BATCH_SIZE),
        ("SUM", jh.Reduction.SUM),
        ("weighted_sum", jh.Reduction.SUM),
        ("weighted_mean", jh.Reduction.MEAN),
        ("weighted_sum_over_batch_size", jh.Reduction.SUM_OVER_BATCH_SIZE),
        ("weighted_sum_by_nonzero_weights", jh.Reduction.SUM_BY_NONZERO_WEIGHTS),
        ("weighted_sum_over_nonzero_weights", jh.Reduction.SUM_BY_NONZERO_WEIGHTS),
        ("sum_by_nonzero_weights", jh.Reduction.SUM_BY_NONZERO_WEIGHTS),
    ],
)
def test_aliases(alias, member):
    assert jh.Reduction.validate(alias) is member


@pytest.mark.parametrize("bad", ["none", jh.Reduction.NONE, "invalid_loss_reduction", 3, None])
def test_invalid_reductions(bad):
    with pytest.raises(ValueError, match=r"Invalid loss_reduction: .*expected one of"):
        jh.Reduction.validate(bad)


def test_zero_denominators_give_zero_not_nan():
    loss = jnp.ones((2, 1))
    w = jnp.zeros((2, 1))
    for r in ("mean", "sum_by_nonzero_weights"):
        assert float(jh.reduce_weighted_loss(loss, w, r)) == 0.0
        g = jax.grad(lambda x, r=r: jh.reduce_weighted_loss(x, w, r))(loss)
        assert np.all(np.isfinite(g))
    assert (
        float(jh.reduce_weighted_loss(jnp.zeros((0, 1)), jnp.zeros((0, 1)), "sum_over_batch_size"))
        == 0.0
    )


def test_per_example_weights_broadcast_over_last_dim():
    loss = jnp.array([[1.0, 2.0, 3.0]])
    w = jnp.array([[2.0]])
    assert float(jh.reduce_weighted_loss(loss, w, "sum_over_batch_size")) == pytest.approx(4.0)
    assert float(jh.reduce_weighted_loss(loss, w, "mean")) == pytest.approx(2.0)


@settings(max_examples=40, deadline=None)
@given(
    loss=hnp.arrays(np.float32, (6, 1), elements=st.floats(0, 100, width=32)),
    weights=hnp.arrays(np.float32, (6, 1), elements=st.sampled_from([0.0, 0.5, 1.0, 2.5])),
)
def test_reductions_agree_with_numpy(loss, weights):
    weighted = (loss * weights).astype(np.float64)
    nonzero = np.count_nonzero(weights)
    expected = {
        "sum": weighted.sum(),
        "sum_over_batch_size": weighted.sum() / loss.size,
        "mean": weighted.sum() / weights.sum() if weights.sum() else 0.0,
        "sum_by_nonzero_weights": weighted.sum() / nonzero if nonzero else 0.0,
    }
    for name, value in expected.items():
        np.testing.assert_allclose(
            jh.reduce_weighted_loss(loss, weights, name), value, rtol=2e-5, atol=1e-4
        )


@pytest.mark.parametrize(
    "reduction", ["sum", "sum_over_batch_size", "mean", "sum_by_nonzero_weights"]
)
def test_shard_map_reduction_is_global(reduction):
    """Global Σw·l / global denominator, never a mean of per-shard means."""
    mesh = Mesh(np.array(jax.devices()[:8]), ("batch",))
    rng = np.random.default_rng(0)
    loss = rng.uniform(0, 5, (16, 1)).astype(np.float32)
    # Uneven weights per shard: a mean of per-shard means would differ.
    weights = np.where(np.arange(16)[:, None] < 3, 0.0, rng.uniform(0.1, 3, (16, 1))).astype(
        np.float32
    )

    @functools.partial(jax.shard_map, mesh=mesh, in_specs=(P("batch"), P("batch")), out_specs=P())
    def sharded(loss_shard, weight_shard):
        return jh.reduce_weighted_loss(loss_shard, weight_shard, reduction, axis_name="batch")

    expected = jh.reduce_weighted_loss(loss, weights, reduction)
    np.testing.assert_allclose(jax.jit(sharded)(loss, weights), expected, rtol=1e-6)


def test_per_example_weights_align_with_rows_when_batch_equals_k():
    """[B] weights on a [B, B] loss weight the rows, as TF does, never the columns."""
    loss = jnp.array([[1.0, 2.0], [3.0, 4.0]])
    w = jnp.array([1.0, 0.0])
    # TF: weights [B] -> [B, 1]; Σ = 1 + 2 = 3 (NumPy broadcasting would give 1 + 3 = 4).
    assert float(jh.reduce_weighted_loss(loss, w, "sum")) == 3.0
    assert float(jh.reduce_weighted_loss(loss, w, "sum_over_batch_size")) == 0.75
    assert float(jh.reduce_weighted_loss(loss, w, "mean")) == 1.5
    assert float(jh.reduce_weighted_loss(loss, w, "sum_by_nonzero_weights")) == 1.5


@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 5),
    k=st.integers(1, 5),
    reduction=st.sampled_from(["sum", "sum_over_batch_size", "mean", "sum_by_nonzero_weights"]),
    data=st.data(),
)
def test_rank_minus_one_weights_equal_column_weights(batch, k, reduction, data):
    loss = data.draw(hnp.arrays(np.float32, (batch, k), elements=st.floats(0, 10, width=32)))
    w = data.draw(hnp.arrays(np.float32, (batch,), elements=st.sampled_from([0.0, 0.5, 2.0])))
    got = jh.reduce_weighted_loss(loss, w, reduction)
    np.testing.assert_array_equal(got, jh.reduce_weighted_loss(loss, w[:, None], reduction))
    tiled = np.repeat(w[:, None], k, axis=1)
    np.testing.assert_allclose(got, jh.reduce_weighted_loss(loss, tiled, reduction), rtol=1e-6)


@pytest.mark.parametrize(
    "loss_shape, weights_shape",
    [
        ((2, 3), (3,)),  # trailing alignment would be a silent per-column weighting
        ((2, 3), (2, 2)),
        ((2, 3), (2, 3, 1)),
        ((4, 2, 3), (4,)),
        ((4, 2, 3), (2, 3)),
        ((2, 1), (3, 1)),
    ],
)
def test_misaligned_weights_are_a_value_error_naming_weights(loss_shape, weights_shape):
    with pytest.raises(ValueError, match=r"weights of shape \[.*\] do not align with the loss"):
        jh.reduce_weighted_loss(jnp.ones(loss_shape), jnp.ones(weights_shape), "sum")


@pytest.mark.parametrize("weights_shape", [(), (2,), (2, 1), (2, 3), (1, 3), (1, 1)])
def test_accepted_weight_shapes(weights_shape):
    loss = jnp.arange(6.0).reshape(2, 3)
    w = np.full(weights_shape, 2.0, np.float32)
    assert float(jh.reduce_weighted_loss(loss, w, "sum")) == 30.0


def test_concrete_nan_weights_are_a_value_error():
    with pytest.raises(ValueError, match="weights must not be NaN"):
        jh.reduce_weighted_loss(jnp.ones((2, 1)), jnp.array([1.0, np.nan]), "sum")


@pytest.mark.parametrize(
    "reduction, expected",
    [
        ("sum", np.inf),
        ("sum_over_batch_size", np.inf),
        ("mean", np.inf),
        ("sum_by_nonzero_weights", np.inf),
    ],
)
def test_inf_loss_gives_inf_and_zero_weight_drops_it(reduction, expected):
    loss = jnp.array([[np.inf], [1.0], [2.0]])
    assert float(jh.reduce_weighted_loss(loss, jnp.ones((3, 1)), reduction)) == expected
    dropped = jh.reduce_weighted_loss(loss, jnp.array([0.0, 1.0, 1.0]), reduction)
    assert np.isfinite(dropped)  # TF: 0 * inf = NaN
    np.testing.assert_allclose(
        dropped,
        jh.reduce_weighted_loss(loss[1:], jnp.ones(2), reduction)
        * (2 / 3 if reduction == "sum_over_batch_size" else 1),
        rtol=1e-6,
    )


def test_nonzero_weight_count_is_exact_past_2_24():
    n = 2**24 + 2**22 + 1
    w = jnp.ones((n,), jnp.float32).at[0].set(0.0)
    loss = jnp.ones((n, 1), jnp.float32)
    # total and count both equal n - 1 = 20971520 (exactly representable): the ratio is 1.
    assert float(jh.reduce_weighted_loss(loss, w, "sum_by_nonzero_weights")) == 1.0
    assert float(jh.reduce_weighted_loss(loss, w, "mean")) == 1.0
