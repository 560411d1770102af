"""Exact counts and compensated weighted sums WITHIN one update call (issue 9).

Across calls the :class:`ExactSum` accumulators were always exact; these tests
pin the single-call case: one ``update`` of more than 2^24 examples, and
weighted histograms / totals of 2^20 elements, against float64 NumPy.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxheads import metrics
from jaxheads.metrics._batch_sum import exact_segment_sum, exact_total, int_to_exact

BIG = 2**24 + 2**22  # 20,971,520 examples in ONE call
CORRECT = 2**24 + 2**21  # accuracy 0.9 exactly


@pytest.fixture(scope="module")
def big_batch():
    labels = jnp.ones((BIG,), jnp.int8)
    preds = (jnp.arange(BIG, dtype=jnp.int32) < CORRECT).astype(jnp.int8)
    return labels, preds


def test_one_call_past_2_24_counts_exactly(big_batch):
    """The issue's case: float32 segment_sum gave accuracy 0.8889 instead of 0.9."""
    labels, preds = big_batch
    acc = metrics.BinaryAccuracy.empty().update(labels, preds)
    assert acc.counts.to_numpy().sum() == BIG
    assert float(acc.compute()) == pytest.approx(0.9, abs=1e-7)
    at = metrics.ConfusionAtThresholds.empty((0.5,)).update(labels, preds)
    conf = at.confusion()
    assert float(conf["tp"][0]) == float(np.float32(CORRECT))
    assert float(conf["fn"][0]) == float(np.float32(BIG - CORRECT))
    curve = metrics.ConfusionCurve.empty(10).update(labels, preds)
    np.testing.assert_array_equal(curve.counts.to_numpy()[1, [0, 8]], [BIG - CORRECT, CORRECT])
    mean = metrics.Accuracy.empty().update(labels, preds)
    assert mean.total.to_numpy() == CORRECT and mean.count.to_numpy() == BIG
    assert float(mean.compute()) == pytest.approx(0.9, abs=1e-7)


def test_binary_classifier_metrics_one_call_past_2_24(big_batch):
    labels, preds = big_batch
    m = metrics.BinaryClassifierMetrics.empty().update(labels, preds)
    out = m.compute()
    assert float(out["accuracy"]) == pytest.approx(0.9, abs=1e-7)
    assert m.joint.to_numpy().sum() == BIG
    assert m.sums.to_numpy()[1] == CORRECT  # Σ prediction, unweighted: exact


def test_plain_float32_scatter_is_what_we_fix():
    """The failure mode: 2^20 equal weights in one bucket lose ~1 % in float32."""
    n = 2**20
    w = jnp.full((n,), 0.7, jnp.float32)
    ids = jnp.zeros((n,), jnp.int32)
    want = n * np.float64(np.float32(0.7))
    plain = float(jax.ops.segment_sum(w, ids, num_segments=1)[0])
    assert abs(plain - want) / want > 1e-3
    assert exact_segment_sum(w, ids, 1).to_numpy()[0] == want


def _weights(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "uniform":
        return rng.uniform(0, 1, n).astype(np.float32)
    if kind == "constant":
        return np.full(n, 0.7, np.float32)
    if kind == "lognormal":  # six orders of magnitude
        return rng.lognormal(0.0, 3.0, n).astype(np.float32)
    return rng.integers(0, 5, n).astype(np.float32)  # integer weights: exact


@pytest.mark.parametrize("kind", ["uniform", "constant", "lognormal", "integer"])
@pytest.mark.parametrize("num_segments", [1, 4, 400])
def test_weighted_segment_sum_matches_float64(kind, num_segments):
    """Relative error per bucket <= 1e-7 (TF's reduce_sum level), 0 for integers."""
    n = 2**20 + 7
    rng = np.random.default_rng(num_segments)
    w = _weights(kind, n, rng)
    ids = rng.integers(0, num_segments, n).astype(np.int32)
    got = jax.jit(exact_segment_sum, static_argnums=2)(w, ids, num_segments).to_numpy()
    want = np.bincount(ids, weights=w.astype(np.float64), minlength=num_segments)
    rel = np.abs(got - want) / want
    assert rel.max() <= (0.0 if kind == "integer" else 1e-7), rel.max()
    total = exact_total(jnp.asarray(w)).to_numpy()
    assert abs(total - want.sum()) / want.sum() <= (0.0 if kind == "integer" else 1e-7)


def test_weighted_metrics_within_one_call_match_float64():
    n = 2**20
    rng = np.random.default_rng(0)
    w = rng.uniform(0, 1, n).astype(np.float32)
    y = (rng.uniform(size=n) < 0.3).astype(np.float32)
    p = rng.uniform(size=n).astype(np.float32)
    w64 = w.astype(np.float64)
    at = metrics.ConfusionAtThresholds.empty((0.5,)).update(y, p, w)
    tp = np.sum(w64 * (y == 1) * (p > 0.5))
    assert abs(at.counts.to_numpy()[1, 1] - tp) / tp < 1e-7
    mean = metrics.Mean.empty().update(p, w)
    assert abs(mean.total.to_numpy() - np.sum(w64 * p)) / np.sum(w64 * p) < 1e-7
    assert abs(mean.count.to_numpy() - w64.sum()) / w64.sum() < 1e-7
    curve = metrics.ConfusionCurve.empty().update(y, p, w)
    pos = curve.counts.to_numpy()[1].sum()
    assert abs(pos - np.sum(w64 * y)) / np.sum(w64 * y) < 1e-7


def test_exact_under_jit_on_sharded_arrays():
    """8 fake devices: the sharded, jitted update equals the exact float64 sums."""
    n = 8 * (2**17 + 1)
    mesh = jax.make_mesh((8,), ("batch",), (jax.sharding.AxisType.Auto,))
    shard = NamedSharding(mesh, P("batch"))
    rng = np.random.default_rng(1)
    w = np.full(n, 0.7, np.float32)
    w[::3] = rng.uniform(0, 5, w[::3].shape).astype(np.float32)
    ids = rng.integers(0, 3, n).astype(np.int32)
    f = jax.jit(lambda w, i: exact_segment_sum(w, i, 3))
    got = f(jax.device_put(w, shard), jax.device_put(ids, shard)).to_numpy()
    want = np.bincount(ids, weights=w.astype(np.float64), minlength=3)
    assert np.max(np.abs(got - want) / want) <= 1e-7
    counts = jax.jit(lambda i: exact_segment_sum(None, i, 3))(jax.device_put(ids, shard))
    np.testing.assert_array_equal(counts.to_numpy(), np.bincount(ids, minlength=3))


def test_int_to_exact_handles_negative_and_large():
    s = jnp.array([0, 1, -1, 2**31 - 1, -(2**31), 123456789], jnp.int32)
    got = int_to_exact(s).to_numpy()
    np.testing.assert_array_equal(got, np.asarray(s, np.float64))
    np.testing.assert_array_equal(int_to_exact(s, 0.25).to_numpy(), np.asarray(s) * 0.25)


def test_non_finite_values_fall_back_to_float_sum():
    w = jnp.array([1.0, jnp.inf, 2.0])
    assert exact_total(w).to_numpy() == np.inf
    got = exact_segment_sum(w, jnp.array([0, 1, 0]), 2).to_numpy()
    np.testing.assert_array_equal(got, [3.0, np.inf])
    assert np.isnan(exact_total(jnp.array([1.0, jnp.nan])).to_numpy())


def test_tiny_and_huge_weights_are_summed():
    for scale in (1e-30, 1e-12, 1e12, 1e30):
        w = jnp.asarray(np.float32(scale) * np.arange(1, 101, dtype=np.float32))
        want = np.sum(np.asarray(w, np.float64))
        assert abs(exact_total(w).to_numpy() - want) / want < 1e-7
        got = exact_segment_sum(w, jnp.zeros((100,), jnp.int32), 1).to_numpy()[0]
        assert abs(got - want) / want < 1e-7
