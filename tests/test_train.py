"""Tests of jaxheads.train: train / eval steps on one device, 8 sharded devices, nnx.

Sharded, micro-batched and single-device results are compared with
``rtol=2e-6, atol=1e-7`` on the loss, the updated parameters (SGD with a unit
learning rate, so the parameter change *is* the gradient) and every metric
value: the only difference is the order of float32 summation.
"""

import functools

import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np
import optax
import pytest
from flax import linen as nn
from flax import nnx
from flax.training.train_state import TrainState

import jaxheads as jh
from jaxheads import train
from jaxheads.flax import LinenHead, NnxHead

RTOL, ATOL = 2e-6, 1e-7
B = 64


class MLP(nn.Module):
    head: object
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.Dense(8)(x))
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return LinenHead(self.head)(x)


class NnxMLP(nnx.Module):
    def __init__(self, head, rngs):
        self.hidden = nnx.Linear(5, 8, rngs=rngs)
        self.head = NnxHead(head, 8, rngs=rngs)

    def __call__(self, x):
        return self.head(nnx.relu(self.hidden(x)))


def _batch(head, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, 5)).astype(np.float32)
    if isinstance(head, jh.BinaryClassHead):
        y = (rng.uniform(size=(B, 1)) > 0.6).astype(np.float32)
    else:
        y = rng.uniform(size=(B, 1)).astype(np.float32)
    # Zero weights packed in the first shards: a mean of per-shard means is wrong here.
    w = np.where(np.arange(B) < 24, 0.0, rng.uniform(0.5, 3.0, size=B)).astype(np.float32)
    return {"x": x, "w": w}, y


def _state(head, lr=1.0):
    model = MLP(head)
    params = model.init(jax.random.key(0), jnp.ones((1, 5)))["params"]
    return model, TrainState.create(apply_fn=model.apply, params=params, tx=optax.sgd(lr))


def _close(a, b, rtol=RTOL, atol=ATOL):
    jax.tree.map(
        functools.partial(np.testing.assert_allclose, rtol=rtol, atol=atol),
        jax.device_get(a),
        jax.device_get(b),
    )


@functools.partial(jax.jit, static_argnums=0)
def _metrics_of(head, features, logits, labels):
    """The head's metric values on one batch (jitted: eager metric updates are slow)."""
    return head.compute_metrics(head.update_metrics(head.init_metrics(), features, logits, labels))


def _values(state):
    """Metric state leaves as float64 values (an exact sum's hi + lo words)."""

    def value(x):
        if isinstance(x, jh.metrics.ExactSum):
            return np.asarray(x.hi, np.float64) + np.asarray(x.lo, np.float64)
        return np.asarray(x, np.float64)

    return jax.tree.map(value, state, is_leaf=lambda x: isinstance(x, jh.metrics.ExactSum))


HEADS = {
    "binary_mean": jh.BinaryClassHead(weight_column="w", loss_reduction="mean", thresholds=[0.3]),
    "binary_nonzero": jh.BinaryClassHead(
        weight_column="w", loss_reduction="sum_by_nonzero_weights"
    ),
    "logistic_sobs": jh.LogisticRegressionHead(weight_column="w"),
    "logistic_sum": jh.LogisticRegressionHead(weight_column="w", loss_reduction="sum"),
}


@pytest.fixture(scope="module")
def mesh():
    return train.make_mesh(8)


@pytest.fixture(scope="module", params=list(HEADS))
def case(request):
    """Each head's single-device reference step, computed once."""
    head = HEADS[request.param]
    features, labels = _batch(head)
    _, state = _state(head)
    reference = train.make_train_step(None, head, inputs_key="x")(state, features, labels)
    return head, state, features, labels, reference


@pytest.mark.parametrize("case", ["binary_mean", "logistic_sum"], indirect=True)
def test_train_step_is_gradient_descent_on_head_loss(case):
    head, state, features, labels, (new_state, out) = case
    model = MLP(head)

    def loss_fn(p):
        return head.loss(labels, model.apply({"params": p}, features["x"]), features)

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    _close(out.loss, loss)
    _close(new_state.params, jax.tree.map(jnp.subtract, state.params, grads))
    assert int(new_state.step) == 1
    logits = model.apply({"params": state.params}, features["x"])
    _close(head.compute_metrics(out.metrics), _metrics_of(head, features, logits, labels))


OPTIONS = {
    "micro4": {"micro_batches": 4},
    "jit8": {"strategy": "jit"},
    "shard_map8": {"strategy": "shard_map"},
    "shard_map8_micro2": {"strategy": "shard_map", "micro_batches": 2},
}
# Every path for one head; the paths whose arithmetic depends on the reduction
# (sums and denominators accumulated by hand) for the other reductions.
SHARDED_CASES = {
    "binary_mean": list(OPTIONS),
    "binary_nonzero": ["micro4", "shard_map8"],
    "logistic_sobs": ["shard_map8_micro2"],
    "logistic_sum": ["micro4", "shard_map8_micro2"],
}


@pytest.mark.parametrize(
    ("case", "option"),
    [(h, o) for h, opts in SHARDED_CASES.items() for o in opts],
    indirect=["case"],
)
def test_sharded_and_micro_batched_steps_equal_one_device(case, mesh, option):
    head, state, features, labels, (ref_state, ref_out) = case
    options = OPTIONS[option]
    if "strategy" in options:
        options = dict(options, mesh=mesh)
        state = train.replicate(state, mesh)
    step = train.make_train_step(None, head, inputs_key="x", **options)
    new_state, out = step(state, features, labels)
    _close(out.loss, ref_out.loss)
    _close(new_state.params, ref_state.params)
    _close(head.compute_metrics(out.metrics), head.compute_metrics(ref_out.metrics))
    # Metric states come back reduced: the additive states themselves agree
    # (up to the compensation words of the exact sums).
    _close(_values(out.metrics), _values(ref_out.metrics))
    if "mesh" in options:
        assert out.loss.sharding.is_fully_replicated
        assert new_state.params["Dense_0"]["kernel"].sharding.is_fully_replicated


# Only the weight-normalized reductions: with equal shards a mean of means coincides
# with SUM_OVER_BATCH_SIZE (and SUM is no mean), so those cases would prove nothing.
@pytest.mark.parametrize("case", ["binary_mean", "binary_nonzero"], indirect=True)
def test_mean_of_shard_means_would_be_wrong(case):
    """The batch above discriminates: averaging per-shard losses differs."""
    head, state, features, labels, (_, ref_out) = case
    model = MLP(head)
    logits = model.apply({"params": state.params}, features["x"])
    n = B // 8  # contiguous shards, as NamedSharding(P("data")) splits the batch
    shards = [
        head.loss(labels[i : i + n], logits[i : i + n], {"w": features["w"][i : i + n]})
        for i in range(0, B, n)
    ]
    assert abs(float(np.mean(shards)) - float(ref_out.loss)) > 1e-3


@pytest.mark.parametrize(
    "reduction", ["sum", "sum_over_batch_size", "mean", "sum_by_nonzero_weights"]
)
def test_loss_terms_eager_jit_vmap_grad(reduction):
    head = jh.BinaryClassHead(weight_column="w", loss_reduction=reduction)
    features, labels = _batch(head)
    logits = jnp.asarray(features["x"][:, :1])

    def loss(lg):
        return head.loss_terms(labels, lg, features).value()

    def terms(y, lg, w):
        t = head.loss_terms(y, lg, {"w": w})
        return jnp.concatenate([t.totals, t.denominators])

    np.testing.assert_allclose(loss(logits), head.loss(labels, logits, features), rtol=1e-6)
    np.testing.assert_allclose(jax.jit(loss)(logits), loss(logits), rtol=1e-6)
    # vmap over 4 independent batches of 16.
    batched = jax.vmap(terms)(
        labels.reshape(4, 16, 1), logits.reshape(4, 16, 1), features["w"].reshape(4, 16)
    )
    for i in range(4):
        sl = slice(16 * i, 16 * i + 16)
        expected = terms(labels[sl], logits[sl], features["w"][sl])
        np.testing.assert_allclose(batched[i], expected, rtol=1e-6)
    if reduction == "mean":
        jax.test_util.check_grads(loss, (logits,), order=1, modes=["rev"], atol=1e-2, rtol=1e-2)


def test_regularization_dropout_and_explicit_tx():
    head = jh.BinaryClassHead()
    features, labels = _batch(head)
    x = features["x"]
    model = MLP(head, dropout=0.5)
    params = model.init(jax.random.key(0), x[:1])["params"]
    donated = jax.tree.map(jnp.copy, params)
    tx = optax.sgd(1e-2, momentum=0.9)  # (optax.adam is not strict-dtype-promotion clean)
    state = TrainState.create(apply_fn=model.apply, params=donated, tx=tx)

    def l2(p):
        return [0.01 * jnp.sum(jnp.square(p["Dense_0"]["kernel"]))]

    step = train.make_train_step(
        model, head, tx, regularization_fn=l2, apply_kwargs={"train": True}, donate=True
    )
    key = jax.random.key(3)
    old = state.params["Dense_0"]["kernel"]
    new_state, out = step(state, x, labels, key)
    assert old.is_deleted()  # the state was donated

    def objective(p):
        logits = model.apply({"params": p}, x, train=True, rngs={"dropout": key})
        return head.loss(labels, logits, regularization_losses=l2(p))

    fresh = TrainState.create(apply_fn=model.apply, params=params, tx=tx)
    loss, grads = jax.jit(jax.value_and_grad(objective))(fresh.params)
    expected = fresh.apply_gradients(grads=grads)
    np.testing.assert_allclose(out.loss, loss, rtol=1e-6)
    _close(new_state.params, expected.params, rtol=1e-5, atol=1e-7)
    metrics = head.compute_metrics(out.metrics)
    np.testing.assert_allclose(metrics["regularization_loss"], l2(params)[0], rtol=1e-6)
    # Another key, another dropout mask, another loss.
    _, out2 = step(fresh, x, labels, jax.random.key(4))
    assert float(out2.loss) != float(out.loss)


def test_micro_batches_with_dropout_and_regularization_on_shard_map(mesh):
    head = jh.BinaryClassHead(weight_column="w", loss_reduction="mean")
    features, labels = _batch(head)
    model = MLP(head, dropout=0.1)
    params = model.init(jax.random.key(0), features["x"][:1])["params"]
    state = train.replicate(
        TrainState.create(apply_fn=model.apply, params=params, tx=optax.sgd(1.0)), mesh
    )

    def l2(p):
        return 0.01 * jnp.sum(jnp.square(p["Dense_0"]["kernel"]))

    step = train.make_train_step(
        None,
        head,
        inputs_key="x",
        regularization_fn=l2,
        micro_batches=2,
        mesh=mesh,
        strategy="shard_map",
        apply_kwargs={"train": True},
        with_metrics=False,
    )
    new_state, out = step(state, features, labels, jax.random.key(0))
    assert np.isfinite(float(out.loss))
    # Without dropout randomness (no rng -> deterministic=False needs one), compare with one device.
    step_det = train.make_train_step(
        None,
        head,
        inputs_key="x",
        regularization_fn=l2,
        micro_batches=2,
        mesh=mesh,
        strategy="shard_map",
    )
    ref_step = train.make_train_step(None, head, inputs_key="x", regularization_fn=l2)
    s1, o1 = step_det(state, features, labels)
    s2, o2 = ref_step(jax.device_get(state), features, labels)
    _close(o1.loss, o2.loss)
    _close(s1.params, s2.params)
    _close(head.compute_metrics(o1.metrics), head.compute_metrics(o2.metrics))


@jax.numpy_dtype_promotion("standard")  # optax.MultiSteps mixes float32 and int32
def test_multisteps_accumulation_composes():
    head = jh.LogisticRegressionHead()
    features, labels = _batch(head)
    model = MLP(head)
    params = model.init(jax.random.key(0), features["x"][:1])["params"]
    tx = optax.MultiSteps(optax.sgd(1.0), every_k_schedule=2)
    state = TrainState.create(apply_fn=model.apply, params=params, tx=tx)
    step = train.make_train_step(None, head, with_metrics=False)
    state, out = step(state, features["x"][:32], labels[:32])
    assert out.metrics is None
    _close(state.params, params)  # nothing applied after the first micro-step
    state, _ = step(state, features["x"][32:], labels[32:])
    assert not np.allclose(state.params["Dense_0"]["kernel"], params["Dense_0"]["kernel"])


@pytest.mark.parametrize("strategy", [None, "shard_map"])
def test_eval_step_folds_batches(mesh, strategy):
    head = HEADS["binary_mean"]
    features, labels = _batch(head)
    model, state = _state(head)
    kwargs = {} if strategy is None else {"mesh": mesh, "strategy": strategy}
    evaluate = train.make_eval_step(model, head, inputs_key="x", **kwargs)
    params = state.params if strategy is None else train.replicate(state.params, mesh)
    half = {k: v[:32] for k, v in features.items()}, labels[:32]
    rest = {k: v[32:] for k, v in features.items()}, labels[32:]
    out1 = evaluate(params, *half)
    out2 = evaluate(params, *rest, out1)
    logits = model.apply({"params": state.params}, features["x"])
    expected = head.update_metrics(head.init_metrics(), features, logits, labels)
    _close(head.compute_metrics(out2.metrics), head.compute_metrics(expected))
    _close(out1.loss, head.loss(labels[:32], logits[:32], half[0]))


def test_global_batch_single_process(mesh):
    features, labels = _batch(HEADS["binary_mean"])
    batch = train.global_batch({"features": features, "labels": labels}, mesh)
    x = batch["features"]["x"]
    assert x.shape == (B, 5)
    assert x.sharding == train.data_sharding(mesh)
    assert len(x.addressable_shards) == 8
    assert x.addressable_shards[0].data.shape == (B // 8, 5)
    np.testing.assert_array_equal(x, features["x"])
    assert train.global_batch(batch, mesh)["labels"] is batch["labels"]  # already global
    assert jax.process_count() == 1


def test_string_labels_are_encoded_on_the_host():
    head = jh.BinaryClassHead(label_vocabulary=["no", "yes"])
    features, labels = _batch(head)
    names = np.where(labels > 0.5, "yes", "no")
    model, state = _state(head)
    step = train.make_train_step(None, head, inputs_key="x", with_metrics=False)
    _, out_str = step(state, features, names)
    _, out_num = step(state, features, labels)
    np.testing.assert_allclose(out_str.loss, out_num.loss)


def test_argument_errors(mesh):
    head = jh.BinaryClassHead()
    with pytest.raises(ValueError, match="strategy"):
        train.make_train_step(None, head, strategy="pmap")
    with pytest.raises(ValueError, match="needs a `mesh`"):
        train.make_train_step(None, head, strategy="shard_map")
    with pytest.raises(ValueError, match="micro_batches"):
        train.make_train_step(None, head, micro_batches=0)
    features, labels = _batch(head)
    _, state = _state(head)
    step = train.make_train_step(None, head, inputs_key="x", micro_batches=5)
    with pytest.raises(ValueError, match="must divide"):
        step(state, features, labels)
    with pytest.raises(TypeError, match="apply_fn"):
        train.make_eval_step(None, head)({"w": jnp.ones(1)}, features["x"], labels)


def _nnx(head, mesh=None, lr=1.0):
    model = NnxMLP(head, nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.sgd(lr), wrt=nnx.Param)
    if mesh is not None:
        train.replicate(model, mesh)
        train.replicate(optimizer, mesh)
    return model, optimizer


@pytest.mark.parametrize(
    "options",
    [{"micro_batches": 4, "donate": True}, {"strategy": "jit"}, {"strategy": "shard_map"}],
    ids=["micro4_donate", "jit8", "shard_map8"],
)
def test_nnx_train_step_matches_linen(mesh, options):
    head = HEADS["binary_mean"]
    features, labels = _batch(head)
    if "strategy" in options:
        options = dict(options, mesh=mesh)
    model, optimizer = _nnx(head, options.get("mesh"))
    before = jax.device_get(nnx.state(model, nnx.Param))

    def loss_fn(m):
        return head.loss(labels, m(features["x"]), features)

    reference, _ = _nnx(head)
    loss, grads = nnx.value_and_grad(loss_fn)(reference)
    step = train.make_nnx_train_step(None, head, inputs_key="x", **options)
    out = step(model, optimizer, features, labels)
    _close(out.loss, loss)
    after = jax.device_get(nnx.state(model, nnx.Param))
    _close(after, jax.tree.map(jnp.subtract, before, grads))
    assert int(optimizer.step[...]) == 1
    expected = _metrics_of(head, features, reference(features["x"]), labels)
    _close(head.compute_metrics(out.metrics), expected)


@pytest.mark.parametrize("strategy", [None, "shard_map"])
def test_nnx_eval_step(mesh, strategy):
    head = HEADS["logistic_sobs"]
    features, labels = _batch(head)
    kwargs = {} if strategy is None else {"mesh": mesh, "strategy": strategy}
    model, _ = _nnx(head, kwargs.get("mesh"))
    evaluate = train.make_nnx_eval_step(None, head, inputs_key="x", **kwargs)
    out = evaluate(model, features, labels)
    out = evaluate(model, features, labels, out)  # the same batch twice
    logits = model(features["x"])
    _close(head.compute_metrics(out.metrics), _metrics_of(head, features, logits, labels))
    _close(out.loss, head.loss(labels, logits, features))


def test_unjitted_step_is_pure():
    head = jh.LogisticRegressionHead()
    features, labels = _batch(head)
    _, state = _state(head)
    step = train.make_train_step(None, head, jit=False, with_metrics=False)
    s1, o1 = step(state, features["x"], labels)  # eagerly
    s2, o2 = jax.jit(step)(state, features["x"], labels)
    _close(o2.loss, o1.loss)
    _close(s2.params, s1.params)
    _close(state.params, _state(head)[1].params, rtol=0, atol=0)  # the input is untouched


@pytest.mark.parametrize(
    "options",
    [
        {"micro_batches": 4},
        {"strategy": "shard_map", "micro_batches": 2},
    ],
    ids=["micro4", "shard_map8_micro2"],
)
def test_multi_head_sharded_and_micro_batched(mesh, options):
    """A MultiHead (a weighted sum of two reductions) through the generic paths."""
    from jaxheads.heads.multi_head import MultiHead

    head = MultiHead(
        [
            jh.BinaryClassHead(name="a", weight_column="w", loss_reduction="mean"),
            jh.LogisticRegressionHead(name="b", loss_reduction="mean"),
        ],
        head_weights=[1.0, 0.5],
    )
    features, labels = _batch(HEADS["binary_mean"])
    labels = {"a": labels, "b": np.linspace(0.0, 1.0, B, dtype=np.float32).reshape(B, 1)}
    _, state = _state(head)
    if "strategy" in options:
        options = dict(options, mesh=mesh)
    ref_state, ref = train.make_train_step(None, head, inputs_key="x")(state, features, labels)
    new_state, out = train.make_train_step(None, head, inputs_key="x", **options)(
        train.replicate(state, mesh) if "mesh" in options else state, features, labels
    )
    _close(out.loss, ref.loss)
    _close(new_state.params, ref_state.params)
    _close(head.compute_metrics(out.metrics), head.compute_metrics(ref.metrics))


def test_bfloat16_model_float32_loss():
    head = jh.BinaryClassHead()
    features, labels = _batch(head)

    class Bf16(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Dense(8, dtype=jnp.bfloat16)(x))
            return LinenHead(head, dtype=jnp.bfloat16)(x)

    model = Bf16()
    params = model.init(jax.random.key(0), features["x"][:1])["params"]
    state = TrainState.create(apply_fn=model.apply, params=params, tx=optax.sgd(0.1))
    new_state, out = train.make_train_step(None, head, micro_batches=2)(
        state, features["x"], labels
    )
    assert out.loss.dtype == jnp.float32
    assert new_state.params["Dense_0"]["kernel"].dtype == jnp.float32
    logits = model.apply({"params": params}, features["x"])
    assert logits.dtype == jnp.bfloat16
    np.testing.assert_allclose(out.loss, head.loss(labels, logits), rtol=1e-6)


@pytest.mark.parametrize("option", ["micro4", "shard_map8_micro2"])
def test_sequence_head_micro_batched_and_sharded_equal_one_device(mesh, option):
    """Padded steps count nowhere, whatever the split (SUM_OVER_BATCH_SIZE over valid steps)."""
    head = jh.SequentialHeadWrapper(jh.BinaryClassHead(weight_column="w"))
    rng = np.random.default_rng(5)
    lengths = rng.integers(1, 7, size=B)
    mask = np.arange(6)[None, :] < lengths[:, None]
    features = {
        "x": rng.normal(size=(B, 6, 5)).astype(np.float32),
        "w": rng.uniform(0.5, 2.0, size=(B, 6)).astype(np.float32),
        "sequence_length_mask": mask,
    }
    labels = (rng.uniform(size=(B, 6, 1)) > 0.5).astype(np.float32)
    _, state = _state(head)
    ref_state, ref_out = train.make_train_step(None, head, inputs_key="x")(state, features, labels)
    model = MLP(head)
    direct = head.loss(labels, model.apply({"params": state.params}, features["x"]), features)
    _close(ref_out.loss, direct)
    options = OPTIONS[option]
    if "strategy" in options:
        options = dict(options, mesh=mesh)
        state = train.replicate(state, mesh)
    new_state, out = train.make_train_step(None, head, inputs_key="x", **options)(
        state, features, labels
    )
    _close(out.loss, ref_out.loss)
    _close(new_state.params, ref_state.params)
