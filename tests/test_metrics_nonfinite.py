"""inf in, inf out: the accumulators never turn an infinite value into NaN (issue 9).

TF's ``Mean`` of an infinite per-example loss is ``inf``; a double-float
accumulator computes its rounding error as ``inf - inf = nan`` unless it
guards it. These tests pin TF's answer for every path an infinite value
takes: one batch, later batches, merges, all-reduce and the head-style
binary state.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxheads import metrics
from jaxheads.metrics import ExactSum, fast_two_sum, two_sum


def test_two_sum_of_inf_has_zero_error():
    s, e = two_sum(jnp.float32(1.0), jnp.float32(jnp.inf))
    assert float(s) == np.inf and float(e) == 0.0
    s, e = fast_two_sum(jnp.float32(jnp.inf), jnp.float32(1.0))
    assert float(s) == np.inf and float(e) == 0.0
    s, e = two_sum(jnp.float32(jnp.inf), jnp.float32(-jnp.inf))
    assert np.isnan(float(s))  # inf - inf is NaN, as in float64


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_mean_of_an_infinite_value_is_inf(where):
    batches = [jnp.array([1.0, 2.0]), jnp.array([3.0]), jnp.array([4.0, 5.0])]
    i = {"first": 0, "middle": 1, "last": 2}[where]
    batches[i] = batches[i].at[0].set(jnp.inf)
    m = metrics.Mean.empty()
    for b in batches:
        m = m.update(b)
    assert float(m.compute()) == np.inf
    assert m.total.to_numpy() == np.inf


def test_mean_inf_survives_merge_and_jit():
    a = metrics.Mean.empty().update(jnp.array([jnp.inf, 1.0]))
    b = metrics.Mean.empty().update(jnp.array([2.0]), jnp.array([3.0]))
    assert float(a.merge(b).compute()) == np.inf
    assert float(metrics.merge(b, a).compute()) == np.inf
    f = jax.jit(lambda v: metrics.Mean.empty().update(v).compute())
    assert float(f(jnp.array([jnp.inf, 0.0, 1.0]))) == np.inf
    neg = metrics.Mean.empty().update(jnp.array([-jnp.inf, 1.0]))
    assert float(neg.compute()) == -np.inf


def test_mean_of_plus_and_minus_inf_is_nan_as_tf():
    m = metrics.Mean.empty().update(jnp.array([jnp.inf, -jnp.inf]))
    assert np.isnan(float(m.compute()))


def test_overflowing_exp_prediction_mean_is_inf():
    """Poisson's prediction/mean: exp(logit) overflows float32 to inf."""
    pred = jnp.exp(jnp.array([1.0, 100.0, 2.0]))
    assert float(metrics.Mean.empty().update(pred).compute()) == np.inf
    assert float(metrics.Mean.empty().update(pred, jnp.array([1.0, 2.0, 1.0])).compute()) == np.inf


def test_all_reduce_of_inf_is_inf():
    mesh = jax.make_mesh((8,), ("batch",), (jax.sharding.AxisType.Auto,))
    from jax.sharding import PartitionSpec as P

    def step(v):
        return metrics.all_reduce(metrics.Mean.empty().update(v), "batch")

    f = jax.jit(jax.shard_map(step, mesh=mesh, in_specs=P("batch"), out_specs=P()))
    v = jnp.arange(16.0).at[5].set(jnp.inf)
    assert float(f(v).compute()) == np.inf


def test_binary_state_average_loss_inf():
    labels = jnp.array([[1.0], [0.0]])
    probs = jnp.array([[0.5], [0.25]])
    loss = jnp.array([[jnp.inf], [1.0]])
    m = metrics.BinaryClassifierMetrics.empty().update(labels, probs, loss=loss)
    out = m.compute()
    assert float(out["average_loss"]) == np.inf
    assert float(out["accuracy"]) == pytest.approx(0.5)
    assert np.isfinite(float(out["auc"]))


def test_exact_sum_add_inf_then_finite_stays_inf():
    acc = ExactSum.zeros((2,)).add(jnp.array([jnp.inf, 1.0]))
    acc = acc.add(jnp.array([1.0, 2.0])).merge(ExactSum.from_value(np.array([3.0, 4.0])))
    np.testing.assert_array_equal(acc.to_numpy(), [np.inf, 7.0])


def test_zero_weight_removes_an_infinite_value():
    """An example of weight 0 is not evaluated: its inf loss must not make NaN (0·inf)."""
    m = metrics.Mean.empty().update(jnp.array([jnp.inf, 1.0, 3.0]), jnp.array([0.0, 1.0, 1.0]))
    assert float(m.compute()) == 2.0
    b = metrics.BinaryClassifierMetrics.empty().update(
        jnp.array([1.0, 0.0]),
        jnp.array([0.5, 0.25]),
        jnp.array([0.0, 1.0]),
        loss=jnp.array([jnp.inf, 0.5]),
    )
    assert float(b.compute()["average_loss"]) == 0.5
    h = metrics.LogitHistogram.empty().update(
        jnp.array([1.0, 0.0]), jnp.array([-jnp.inf, -1.0]), jnp.array([0.0, 2.0])
    )
    assert float(h.mean("loss")) == pytest.approx(float(jnp.log1p(jnp.exp(-1.0))))
