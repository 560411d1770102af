"""ClassLogitHistograms: one LogitHistogram per class from one scatter; one-vs-rest logits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as skm

from jaxheads.metrics import ClassLogitHistograms, LogitHistogram, one_vs_rest_logits


def _data(n=600, c=4, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < 0.2).astype(np.float32)
    y[:, 1] = np.where(rng.random(n) < 0.3, rng.random(n), y[:, 1])  # soft column
    x = (rng.normal(size=(n, c)) + 2 * y).astype(np.float32)
    w = np.round(rng.uniform(0.5, 3.0, n) * 4).astype(np.float32)  # integer: bit-exact
    return y, x, w


@pytest.mark.parametrize("weighted", [False, True])
def test_each_class_equals_its_own_histogram(weighted):
    y, x, w = _data()
    w = w if weighted else None
    many = ClassLogitHistograms.empty(4, num_buckets=2048, grid=(-8.0, 8.0)).update(y, x, w)
    for c in range(4):
        one = LogitHistogram.empty(2048, (-8.0, 8.0)).update(y[:, c], x[:, c], w)
        got = many.histogram(c)
        np.testing.assert_array_equal(got.counts.to_numpy(), one.counts.to_numpy())
        np.testing.assert_allclose(got.sums.to_numpy(), one.sums.to_numpy(), rtol=1e-6)
        assert float(got.roc_auc()) == float(one.roc_auc())
    table = many.compute()
    assert len(table) == 4 and float(table[0]["roc_auc"]) == float(many.histogram(0).roc_auc())


def test_one_vs_rest_logits_are_softmax_log_odds():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 5)).astype(np.float32) * 3
    p = np.exp(x - x.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    want = np.log(p) - np.log1p(-p)
    np.testing.assert_allclose(np.asarray(one_vs_rest_logits(x)), want, atol=2e-5)
    big = one_vs_rest_logits(jnp.array([[100.0, 0.0, -100.0]]))
    assert np.all(np.isfinite(np.asarray(big)))


def test_one_vs_rest_auc_matches_sklearn():
    rng = np.random.default_rng(2)
    n, c = 3000, 3
    cls = rng.integers(0, c, n)
    x = (rng.normal(size=(n, c)) + 1.5 * np.eye(c)[cls]).astype(np.float32)
    onehot = np.eye(c, dtype=np.float32)[cls]
    h = ClassLogitHistograms.empty(c).update(onehot, one_vs_rest_logits(x))
    probs = np.asarray(jax.nn.softmax(x, axis=-1))
    for k in range(c):
        exact = skm.roc_auc_score(cls == k, probs[:, k])
        assert float(h.histogram(k).roc_auc()) == pytest.approx(exact, abs=1e-4)
        lo, hi = h.histogram(k).roc_auc_bounds()
        assert float(lo) <= exact <= float(hi)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="num_classes"):
        ClassLogitHistograms.empty(0)
    h = ClassLogitHistograms.empty(3, num_buckets=16)
    with pytest.raises(ValueError, match=r"\[\.\.\., 3\]"):
        h.update(np.zeros((2, 4), np.float32), np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="class_index"):
        h.histogram(3)
    with pytest.raises(ValueError):
        h.merge(ClassLogitHistograms.empty(3, num_buckets=32))
