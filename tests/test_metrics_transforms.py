"""Metric states under jit, lax.scan, vmap, sharded jit (8 CPU devices) and shard_map.

Also checks the complexity contract: no [N, T] intermediate in any update.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxheads import metrics

B, K = 64, 1  # per batch
NB = 4  # batches
T = 50


def _data(seed=0, n=NB * B, k=K, integer_weights=True):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, k)) < 0.4).astype(np.float32)
    p = np.clip(rng.normal(0.35 + 0.3 * y, 0.25), -0.1, 1.1).astype(np.float32)
    w = (rng.integers(0, 4, (n, 1)) if integer_weights else rng.random((n, 1))).astype(np.float32)
    return jnp.asarray(y), jnp.asarray(p), jnp.asarray(w)


def fresh():
    return {
        "loss": metrics.Mean.empty(),
        "acc": metrics.Accuracy.empty(),
        "curve": metrics.ConfusionCurve.empty(T),
        "at": metrics.ConfusionAtThresholds.empty((0.25, 0.5, 0.75)),
    }


def update(state, y, p, w):
    return {
        "loss": state["loss"].update(jnp.abs(y - p), w),
        "acc": state["acc"].update(y, (p > 0.5).astype(jnp.float32), w),
        "curve": state["curve"].update(y, p, w),
        "at": state["at"].update(y, p, w),
    }


def results(state):
    at = state["at"].compute()
    return {
        "loss": state["loss"].compute(),
        "acc": state["acc"].compute(),
        "roc": state["curve"].roc_auc(),
        "pr": state["curve"].pr_auc(),
        "roc_v1": state["curve"].roc_auc("trapezoidal"),
        "fpr": state["curve"].roc_curve()["fpr"],
        "precision": at["precision"],
        "recall": at["recall"],
        "accuracy": at["accuracy"],
    }


def assert_same(a, b, exact=True):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        if exact:
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        else:
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-6)


@pytest.fixture(scope="module")
def data():
    return _data()


@pytest.fixture(scope="module")
def reference(data):
    """Batches folded eagerly, one at a time."""
    y, p, w = data
    state = fresh()
    for i in range(NB):
        sl = slice(i * B, (i + 1) * B)
        state = update(state, y[sl], p[sl], w[sl])
    return state


def test_jit_equals_eager(data, reference):
    y, p, w = data
    step = jax.jit(update)
    state = fresh()
    for i in range(NB):
        sl = slice(i * B, (i + 1) * B)
        state = step(state, y[sl], p[sl], w[sl])
    assert_same(state, reference)
    assert_same(jax.jit(results)(state), results(reference), exact=False)


def test_scan_equals_folding_equals_one_batch(data, reference):
    y, p, w = data

    @jax.jit
    def scanned(y, p, w):
        def body(state, batch):
            return update(state, *batch), None

        shaped = [a.reshape(NB, B, -1) for a in (y, p, w)]
        return jax.lax.scan(body, fresh(), shaped)[0]

    assert_same(scanned(y, p, w), reference)
    one = update(fresh(), y, p, w)
    # Integer weights: every count is identical; the loss mean is a float sum.
    assert_same(
        {k: one[k] for k in ("acc", "curve", "at")},
        {k: reference[k] for k in ("acc", "curve", "at")},
    )
    assert_same(results(one), results(reference), exact=False)


def test_sharded_jit_gives_the_global_result(data, reference):
    y, p, w = data
    mesh = jax.make_mesh((8,), ("batch",), (jax.sharding.AxisType.Auto,))
    sharding = NamedSharding(mesh, P("batch"))
    ys, ps, ws = (jax.device_put(a, sharding) for a in (y, p, w))
    assert len(ys.sharding.device_set) == 8
    out = jax.jit(update)(fresh(), ys, ps, ws)
    one = update(fresh(), y, p, w)
    assert_same(results(out), results(one), exact=False)
    np.testing.assert_array_equal(out["curve"].counts.to_numpy(), one["curve"].counts.to_numpy())
    np.testing.assert_array_equal(out["at"].counts.to_numpy(), reference["at"].counts.to_numpy())


def test_shard_map_all_reduce_equals_one_batch(data):
    y, p, w = data
    mesh = jax.make_mesh((8,), ("batch",), (jax.sharding.AxisType.Auto,))

    def per_device(y, p, w):
        return metrics.all_reduce(update(fresh(), y, p, w), "batch")

    f = jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=P("batch"), out_specs=P()))
    out = f(y, p, w)
    one = update(fresh(), y, p, w)
    for key in ("acc", "curve", "at"):
        for a, b in zip(
            jax.tree_util.tree_leaves(out[key]), jax.tree_util.tree_leaves(one[key]), strict=True
        ):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert_same(results(out), results(one), exact=False)
    # Shard states merged on the host give the same numbers.
    shards = [update(fresh(), y[i::8], p[i::8], w[i::8]) for i in range(8)]
    merged = shards[0]
    for s in shards[1:]:
        merged = metrics.merge(merged, s)
    assert_same(results(merged), results(one), exact=False)


def test_vmap_per_class_metrics():
    y, p, w = _data(seed=3, n=40, k=3, integer_weights=False)

    def per_class(yc, pc):
        c = metrics.ConfusionCurve.empty(T).update(yc, pc, w[:, 0])
        m = metrics.Mean.empty().update(pc, w[:, 0])
        return c.roc_auc(), c.pr_auc(), m.compute()

    got = jax.vmap(per_class, in_axes=(1, 1))(y, p)
    for j in range(3):
        want = per_class(y[:, j], p[:, j])
        for g, v in zip(got, want, strict=True):
            np.testing.assert_allclose(g[j], v, rtol=1e-6, atol=1e-7)


def test_vmap_all_reduce_over_a_named_axis():
    y, p, w = _data(seed=4, n=32)
    per = jax.vmap(
        lambda y, p, w: metrics.all_reduce(update(fresh(), y, p, w), "i"), axis_name="i"
    )(y.reshape(4, 8, 1), p.reshape(4, 8, 1), w.reshape(4, 8, 1))
    one = update(fresh(), y, p, w)
    first = jax.tree_util.tree_map(lambda x: x[0], per)
    assert_same(results(first), results(one), exact=False)


def _max_intermediate(fn, *args):
    """Largest array (in elements) produced anywhere in fn's jaxpr, sub-jaxprs included."""
    closed = jax.extend.core.ClosedJaxpr

    def subjaxprs(param):
        if isinstance(param, closed):
            yield param.jaxpr
        elif isinstance(param, jax.extend.core.Jaxpr):
            yield param
        elif isinstance(param, (tuple, list)):
            for q in param:
                yield from subjaxprs(q)

    def walk(jp):
        biggest = 0
        for eqn in jp.eqns:
            for v in eqn.outvars:
                biggest = max(biggest, int(np.prod(getattr(v.aval, "shape", ()))))
            for param in eqn.params.values():
                for sub in subjaxprs(param):
                    biggest = max(biggest, walk(sub))
        return biggest

    return walk(jax.make_jaxpr(fn)(*args).jaxpr)


@pytest.mark.parametrize("num_thresholds", [200, 20_000])
def test_no_n_by_t_intermediate(num_thresholds):
    n = 1000
    y, p, w = _data(seed=5, n=n)
    curve = metrics.ConfusionCurve.empty(num_thresholds)
    biggest = _max_intermediate(lambda s, y, p, w: s.update(y, p, w), curve, y, p, w)
    assert biggest <= max(n, 2 * num_thresholds)  # [N] arrays and the [2, T] buckets only
    many = tuple(np.linspace(0.01, 0.99, 97).tolist())
    at = metrics.ConfusionAtThresholds.empty(many)
    biggest = _max_intermediate(lambda s, y, p, w: s.update(y, p, w), at, y, p, w)
    assert biggest <= max(n, 3 * (len(many) + 1))


def test_compute_inside_outer_jit_and_dead_code():
    y, p, w = _data(seed=6, n=64)
    state = update(fresh(), y, p, w)
    only_roc = jax.jit(lambda s: s["curve"].roc_auc())
    assert float(only_roc(state)) == pytest.approx(float(state["curve"].roc_auc()))


def test_pmap_all_reduce():
    y, p, w = _data(seed=7, n=8 * 16)
    per = jax.pmap(
        lambda y, p, w: metrics.all_reduce(update(fresh(), y, p, w), "i"), axis_name="i"
    )(y.reshape(8, 16, 1), p.reshape(8, 16, 1), w.reshape(8, 16, 1))
    one = update(fresh(), y, p, w)
    first = jax.tree_util.tree_map(lambda x: x[0], per)
    assert_same(results(first), results(one), exact=False)
    np.testing.assert_array_equal(first["curve"].counts.to_numpy(), one["curve"].counts.to_numpy())


def test_mean_is_differentiable():
    from jax.test_util import check_grads

    w = jnp.array([1.0, 2.0, 3.0])

    def f(v):
        return metrics.Mean.empty().update(v, w).compute()

    check_grads(f, (jnp.array([0.5, -1.0, 2.0]),), order=1, modes=["fwd", "rev"])
    np.testing.assert_allclose(jax.grad(f)(jnp.zeros(3)), w / w.sum(), rtol=1e-6)
