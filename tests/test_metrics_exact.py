"""Exact accumulation past 2^24: TwoSum, ExactSum, and every metric state's counts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.sharding import PartitionSpec as P

from jaxheads import metrics
from jaxheads.metrics import ExactSum, fast_two_sum, two_sum

F32 = st.floats(
    width=32, allow_nan=False, allow_infinity=False, min_value=-(2.0**100), max_value=2.0**100
)


@settings(max_examples=200, deadline=None)
@given(a=F32, b=F32)
def test_two_sum_is_exact(a, b):
    s, e = two_sum(np.float32(a), np.float32(b))
    assert np.float64(s) + np.float64(e) == np.float64(np.float32(a)) + np.float64(np.float32(b))
    # FastTwoSum needs |a| >= |b|.
    hi, lo = (a, b) if abs(a) >= abs(b) else (b, a)
    s2, e2 = fast_two_sum(np.float32(hi), np.float32(lo))
    assert np.float64(s2) + np.float64(e2) == np.float64(np.float32(a)) + np.float64(np.float32(b))


def test_two_sum_survives_jit():
    """XLA must not reassociate the compensation away (no fast-math)."""
    s, e = jax.jit(two_sum)(jnp.float32(2.0**24), jnp.float32(1.0))
    assert (float(s), float(e)) == (2.0**24, 1.0)


def test_exact_sum_from_value_splits_host_integers():
    x = ExactSum.from_value(2**40 + 3)
    assert x.to_numpy() == 2**40 + 3
    assert x.hi.dtype == jnp.float32 and x.lo.dtype == jnp.float32


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2**26), min_size=1, max_size=20))
def test_exact_sum_integer_adds_and_merges_are_exact(values):
    acc = ExactSum.zeros(())
    for v in values:
        acc = acc.add(jnp.float32(v))  # every value below 2^24 representable; above, rounded
    expected = sum(float(np.float32(v)) for v in values)
    assert acc.to_numpy() == expected
    half = len(values) // 2
    a, b = ExactSum.zeros(()), ExactSum.zeros(())
    for v in values[:half]:
        a = a.add(jnp.float32(v))
    for v in values[half:]:
        b = b.add(jnp.float32(v))
    assert a.merge(b).to_numpy() == expected == b.merge(a).to_numpy()


N_BATCH = 2**20 + 1  # odd: a float32 running sum loses it once past 2^24
N_UPDATES = 20  # 20 * (2^20 + 1) = 20,971,540 > 2^24 = 16,777,216
EXPECTED = N_UPDATES * N_BATCH


@pytest.fixture(scope="module")
def ones_batch():
    return jnp.ones((N_BATCH,), jnp.float32)


def test_plain_float32_running_count_is_wrong(ones_batch):
    """The failure this module exists for: a float32 running count past 2^24."""

    def body(c, _):
        return c + jnp.sum(ones_batch), None

    count, _ = jax.lax.scan(body, jnp.float32(0), None, length=N_UPDATES)
    assert float(count) != EXPECTED


def test_mean_count_exact_past_2_24(ones_batch):
    @jax.jit
    def run(values):
        def body(state, _):
            return state.update(values, values), None  # weight 1 each

        state, _ = jax.lax.scan(body, metrics.Mean.empty(), None, length=N_UPDATES)
        return state

    state = run(ones_batch)
    assert state.count.to_numpy() == EXPECTED
    assert state.total.to_numpy() == EXPECTED
    assert float(state.compute()) == 1.0
    # Unweighted: the count is the static element count, also exact.
    unweighted = metrics.Mean.empty()
    for _ in range(N_UPDATES):
        unweighted = unweighted.update(ones_batch)
    assert unweighted.count.to_numpy() == EXPECTED


def test_curve_and_threshold_counts_exact_past_2_24(ones_batch):
    labels = ones_batch
    preds = jnp.full((N_BATCH,), 0.6, jnp.float32)

    @jax.jit
    def run(labels, preds):
        def body(carry, _):
            curve, at = carry
            return (curve.update(labels, preds), at.update(labels, preds)), None

        init = (metrics.ConfusionCurve.empty(), metrics.ConfusionAtThresholds.empty((0.5, 0.75)))
        (curve, at), _ = jax.lax.scan(body, init, None, length=N_UPDATES)
        return curve, at

    curve, at = run(labels, preds)
    assert curve.counts.to_numpy().sum() == EXPECTED
    assert at.counts.to_numpy().sum() == EXPECTED
    conf = at.confusion()
    assert float(conf["tp"][0]) == float(np.float32(EXPECTED))  # rounded once, at the end
    assert float(at.precision()[0]) == 1.0 and float(at.recall()[1]) == 0.0
    assert float(curve.roc_auc()) == 0.0  # no negatives
    assert float(curve.pr_auc()) == pytest.approx(1.0)


def test_big_weights_stay_exact_across_updates():
    """Fewer updates, big weights: 2^24 + 1 + 1 (each update's own sum fits float32)."""
    m = metrics.Mean.empty()
    m = m.update(jnp.array([1.0]), jnp.array([2.0**24]))
    m = m.update(jnp.array([1.0]), jnp.array([1.0]))
    assert m.count.to_numpy() == 2**24 + 1  # a float32 cannot hold this, the pair can
    m = m.update(jnp.array([3.0]), jnp.array([1.0]))
    assert m.count.to_numpy() == 2**24 + 2
    assert m.total.to_numpy() == 2**24 + 4
    c = metrics.ConfusionCurve.empty(5)
    for w in (2.0**24, 1.0, 1.0, 1.0):
        c = c.update(jnp.array([1.0]), jnp.array([0.9]), jnp.array([w]))
    assert c.counts.to_numpy().sum() == 2**24 + 3


def test_merge_and_all_reduce_exact_past_2_24():
    """8 devices, 2^21 + 1 examples each, one of weight 2: 2^24 + 9 in all."""
    n_dev = 8
    per_dev = 2**21 + 1
    mesh = jax.make_mesh((n_dev,), ("batch",), (jax.sharding.AxisType.Auto,))

    def step(w):
        w = w.reshape(-1)
        state = {
            "mean": metrics.Mean.empty().update(w, w),
            "curve": metrics.ConfusionCurve.empty(10).update(w, 0.5 * w, w),
        }
        return metrics.all_reduce(state, "batch")

    f = jax.jit(jax.shard_map(step, mesh=mesh, in_specs=P("batch"), out_specs=P()))
    weights = jnp.ones((n_dev, per_dev), jnp.float32).at[0, 0].set(2.0)
    expected = n_dev * per_dev + 1  # odd, > 2^24: no float32 holds it
    assert float(np.float32(expected)) != expected
    out = f(weights)
    assert out["mean"].count.to_numpy() == expected
    assert out["curve"].counts.to_numpy().sum() == expected
    # A psum of the float32 partial counts would round:
    lossy = jax.jit(
        jax.shard_map(
            lambda w: jax.lax.psum(jnp.sum(w), "batch"),
            mesh=mesh,
            in_specs=P("batch"),
            out_specs=P(),
        )
    )(weights)
    assert float(lossy) != expected

    # Host-side merge of per-device states is exact too.
    parts = [metrics.Mean.empty().update(jnp.ones((per_dev + (i == 0),))) for i in range(n_dev)]
    total = parts[0]
    for p in parts[1:]:
        total = metrics.merge(total, p)
    assert total.count.to_numpy() == expected
