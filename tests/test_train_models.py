"""Train / eval steps for real Flax models (issue 10): mutable collections, nnx
dropout and batch norm, scans under shard_map, any mesh, padding, argument errors,
label checks and Estimator's eval ``loss``."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn
from flax import nnx
from flax.training import train_state

import jaxheads as jh
from jaxheads import train
from jaxheads.flax import LinenHead

RTOL, ATOL = 2e-5, 1e-6
B = 32


def _close(a, b, rtol=RTOL, atol=ATOL):
    jax.tree.map(
        functools.partial(np.testing.assert_allclose, rtol=rtol, atol=atol),
        jax.device_get(a),
        jax.device_get(b),
    )


def _data(n=B, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = (rng.uniform(size=(n, 1)) > 0.5).astype(np.float32)
    w = rng.uniform(0.5, 2.0, size=n).astype(np.float32)
    return {"x": x, "w": w}, y


HEAD = jh.BinaryClassHead(weight_column="w")  # SUM_OVER_BATCH_SIZE: counts rows


@pytest.fixture(scope="module")
def mesh():
    return train.make_mesh(8)


# ----------------------------------------------------------------------------- linen batch_stats
class BNNet(nn.Module):
    bn_axis: str | None = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Dense(6)(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.5, axis_name=self.bn_axis)(x)
        return LinenHead(HEAD)(nn.relu(x))


class BNState(train_state.TrainState):
    batch_stats: dict


def _bn_state(bn_axis=None):
    model = BNNet(bn_axis)
    variables = BNNet().init(jax.random.key(0), jnp.ones((2, 4)))
    state = BNState.create(
        apply_fn=model.apply,
        params=variables["params"],
        batch_stats=variables["batch_stats"],
        tx=optax.sgd(0.5),
    )
    return model, state


@pytest.fixture(scope="module")
def bn_reference():
    model, state = _bn_state()
    features, labels = _data()
    step = train.make_train_step(
        None, HEAD, inputs_key="x", mutable=("batch_stats",), apply_kwargs={"train": True}
    )
    return state, step(state, features, labels)


def test_linen_batch_stats_train_step_is_the_hand_written_one(bn_reference):
    state, (new_state, out) = bn_reference
    features, labels = _data()
    model = BNNet()

    def objective(p):
        logits, updated = model.apply(
            {"params": p, "batch_stats": state.batch_stats},
            features["x"],
            train=True,
            mutable=["batch_stats"],
        )
        return HEAD.loss(labels, logits, features), updated["batch_stats"]

    (loss, stats), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    _close(out.loss, loss)
    _close(new_state.params, jax.tree.map(lambda p, g: p - 0.5 * g, state.params, grads))
    _close(new_state.batch_stats, stats)
    assert not np.allclose(stats["BatchNorm_0"]["mean"], state.batch_stats["BatchNorm_0"]["mean"])


@pytest.mark.parametrize("strategy", ["jit", "shard_map"])
def test_linen_batch_stats_global_on_a_mesh(bn_reference, mesh, strategy):
    """8 devices give the 1-device statistics: XLA's global mean under jit,
    BatchNorm(axis_name="data") under shard_map."""
    state, (ref_state, ref_out) = bn_reference
    features, labels = _data()
    _, sharded_state = _bn_state("data" if strategy == "shard_map" else None)
    step = train.make_train_step(
        None,
        HEAD,
        inputs_key="x",
        mutable=("batch_stats",),
        apply_kwargs={"train": True},
        mesh=mesh,
        strategy=strategy,
    )
    new_state, out = step(train.replicate(sharded_state, mesh), features, labels)
    _close(out.loss, ref_out.loss)
    _close(new_state.params, ref_state.params)
    _close(new_state.batch_stats, ref_state.batch_stats)
    _close(HEAD.compute_metrics(out.metrics), HEAD.compute_metrics(ref_out.metrics))


def test_linen_eval_step_reads_batch_stats(bn_reference):
    _, (state, _) = bn_reference
    features, labels = _data(seed=1)
    evaluate = train.make_eval_step(
        None, HEAD, inputs_key="x", mutable=("batch_stats",), apply_kwargs={"train": False}
    )
    out = evaluate(state, features, labels)
    logits = BNNet().apply(
        {"params": state.params, "batch_stats": state.batch_stats}, features["x"]
    )
    _close(out.loss, HEAD.loss(labels, logits, features))
    with pytest.raises(TypeError, match="no field 'batch_stats'"):
        train.make_eval_step(None, HEAD, mutable=("batch_stats",))(
            train_state.TrainState.create(apply_fn=BNNet().apply, params={}, tx=optax.sgd(1.0)),
            features["x"],
            labels,
        )


# ----------------------------------------------------------------------------- nnx dropout + bn
class NnxNet(nnx.Module):
    def __init__(self, rngs, rate=0.3, bn_axis=None):
        self.hidden = nnx.Linear(4, 6, rngs=rngs)
        self.norm = nnx.BatchNorm(6, momentum=0.5, axis_name=bn_axis, rngs=rngs)
        self.drop = nnx.Dropout(rate, rngs=rngs)
        self.out = nnx.Linear(6, 1, rngs=rngs)

    def __call__(self, x):
        return self.out(self.drop(nnx.relu(self.norm(self.hidden(x)))))


def _nnx(rate=0.3, bn_axis=None, mesh=None):
    module = NnxNet(nnx.Rngs(0), rate, bn_axis)
    optimizer = nnx.Optimizer(module, optax.sgd(0.5), wrt=nnx.Param)
    if mesh is not None:
        train.replicate(module, mesh)
        train.replicate(optimizer, mesh)
    return module, optimizer


def _hand_written(module, optimizer, features, labels, steps):
    @nnx.jit
    def step(module, optimizer, x, y, w):
        def loss_fn(m):
            return HEAD.loss(y, m(x), {"w": w})

        loss, grads = nnx.value_and_grad(loss_fn)(module)
        optimizer.update(module, grads)
        return loss

    return [step(module, optimizer, features["x"], labels, features["w"]) for _ in range(steps)]


@pytest.mark.parametrize("options", [{}, {"strategy": "jit"}], ids=["one_device", "jit8"])
def test_nnx_dropout_batch_norm_match_a_hand_written_nnx_jit_step(mesh, options):
    features, labels = _data()
    if options:
        options = dict(options, mesh=mesh)
    module, optimizer = _nnx(mesh=options.get("mesh"))
    ref_module, ref_optimizer = _nnx()
    expected = _hand_written(ref_module, ref_optimizer, features, labels, steps=2)
    step = train.make_nnx_train_step(None, HEAD, inputs_key="x", **options)
    losses = [step(module, optimizer, features, labels).loss for _ in range(2)]
    _close(losses, expected)
    kept = (nnx.Param, nnx.BatchStat, nnx.RngCount)
    _close(nnx.state(module, kept), nnx.state(ref_module, kept))
    assert float(losses[0]) != float(losses[1])  # another dropout mask on the second step
    module.eval()
    ref_module.eval()
    out = train.make_nnx_eval_step(None, HEAD, inputs_key="x", **options)(module, features, labels)
    _close(out.loss, HEAD.loss(labels, ref_module(features["x"]), features))


def test_nnx_batch_norm_global_under_shard_map(mesh):
    features, labels = _data()
    module, optimizer = _nnx(rate=0.0, bn_axis="data", mesh=mesh)
    ref_module, ref_optimizer = _nnx(rate=0.0)
    expected = _hand_written(ref_module, ref_optimizer, features, labels, steps=1)
    step = train.make_nnx_train_step(None, HEAD, inputs_key="x", mesh=mesh, strategy="shard_map")
    out = step(module, optimizer, features, labels)
    _close(out.loss, expected[0])
    _close(nnx.state(module, nnx.Param), nnx.state(ref_module, nnx.Param))
    _close(nnx.state(module, nnx.BatchStat), nnx.state(ref_module, nnx.BatchStat))


def test_nnx_micro_batches_with_dropout_run():
    features, labels = _data()
    module, optimizer = _nnx()
    out = train.make_nnx_train_step(None, HEAD, inputs_key="x", micro_batches=4)(
        module, optimizer, features, labels
    )
    assert np.isfinite(float(out.loss))
    assert int(optimizer.step[...]) == 1


# ----------------------------------------------------------------------------- loops, meshes
class Recurrent(nn.Module):
    @nn.compact
    def __call__(self, x):
        seq = nn.RNN(nn.SimpleCell(5))(x)  # a scan over time
        h = jax.lax.fori_loop(0, 2, lambda _, v: jnp.tanh(v), seq[:, -1])
        return LinenHead(HEAD)(h)


def test_shard_map_with_scan_and_fori_loop_equals_one_device(mesh):
    rng = np.random.default_rng(1)
    features = {"x": rng.normal(size=(B, 3, 4)).astype(np.float32), "w": _data()[0]["w"]}
    labels = _data()[1]
    model = Recurrent()
    params = model.init(jax.random.key(0), features["x"][:1])["params"]
    state = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=optax.sgd(1.0))
    ref_state, ref = train.make_train_step(None, HEAD, inputs_key="x")(state, features, labels)
    for micro in (1, 2):
        step = train.make_train_step(
            None, HEAD, inputs_key="x", mesh=mesh, strategy="shard_map", micro_batches=micro
        )
        new_state, out = step(train.replicate(state, mesh), features, labels)
        _close(out.loss, ref.loss)
        _close(new_state.params, ref_state.params)


@pytest.mark.parametrize("strategy", ["jit", "shard_map"])
def test_any_mesh_from_jax_make_mesh(strategy):
    """Explicit axes (jax.make_mesh's default) and a second mesh axis both work."""
    features, labels = _data()
    model = BNNet()
    variables = model.init(jax.random.key(0), jnp.ones((2, 4)))
    state = BNState.create(
        apply_fn=model.apply,
        params=variables["params"],
        batch_stats=variables["batch_stats"],
        tx=optax.sgd(0.5),
    )
    ref_state, ref = train.make_train_step(None, HEAD, inputs_key="x", mutable=("batch_stats",))(
        state, features, labels
    )
    for mesh in (jax.make_mesh((8,), ("data",)), jax.make_mesh((4, 2), ("data", "model"))):
        step = train.make_train_step(
            None, HEAD, inputs_key="x", mutable=("batch_stats",), mesh=mesh, strategy=strategy
        )
        new_state, out = step(train.replicate(state, mesh), features, labels)
        _close(out.loss, ref.loss)
        _close(new_state.params, ref_state.params)


def test_mesh_without_the_data_axis_is_a_clear_error():
    mesh = jax.make_mesh((8,), ("batch",))
    with pytest.raises(ValueError, match=r"data_axis='data' is not an axis of the mesh.*'batch'"):
        train.make_train_step(None, HEAD, mesh=mesh)
    train.make_eval_step(None, HEAD, mesh=mesh, data_axis="batch")  # the fix works


# ----------------------------------------------------------------------------- padding
def _linear_state():
    model = LinenHead(HEAD)
    params = model.init(jax.random.key(0), jnp.ones((1, 4)))["params"]
    return train_state.TrainState.create(apply_fn=model.apply, params=params, tx=optax.sgd(1.0))


@pytest.mark.parametrize("strategy", ["jit", "shard_map"])
def test_batches_not_divisible_by_the_devices_are_padded_and_masked(mesh, strategy):
    """13 rows on 8 devices: loss (SUM_OVER_BATCH_SIZE counts rows), gradient and
    metrics are those of the 13 rows on one device."""
    features, labels = _data(13, seed=3)
    state = _linear_state()
    ref_state, ref = train.make_train_step(None, HEAD, inputs_key="x")(state, features, labels)
    ref_eval = train.make_eval_step(None, HEAD, inputs_key="x")(state, features, labels)
    step = train.make_train_step(None, HEAD, inputs_key="x", mesh=mesh, strategy=strategy)
    new_state, out = step(train.replicate(state, mesh), features, labels)
    _close(out.loss, ref.loss)
    _close(new_state.params, ref_state.params)
    _close(HEAD.compute_metrics(out.metrics), HEAD.compute_metrics(ref.metrics))
    evaluate = train.make_eval_step(None, HEAD, inputs_key="x", mesh=mesh, strategy=strategy)
    got = evaluate(train.replicate(state, mesh), features, labels)
    _close(got.results(HEAD), ref_eval.results(HEAD))


def test_pad_batch_zero_weights_give_exact_metrics():
    features, labels = _data(13, seed=4)
    logits = np.linspace(-2, 2, 13, dtype=np.float32).reshape(13, 1)
    padded, padded_labels, mask = train.pad_batch(features, labels, 8, weight_key="w")
    assert padded["x"].shape == (16, 4) and mask.sum() == 13
    np.testing.assert_array_equal(padded["w"][13:], 0.0)
    padded_logits = np.concatenate([logits, np.zeros((3, 1), np.float32)])

    def metrics(f, lg, y):
        return HEAD.compute_metrics(HEAD.update_metrics(HEAD.init_metrics(), f, lg, y))

    _close(metrics(padded, padded_logits, padded_labels), metrics(features, logits, labels))
    with pytest.raises(ValueError, match="multiple"):
        train.pad_batch(features, labels, 0)


# ----------------------------------------------------------------------------- argument errors
def test_state_without_replace_and_mixed_up_fourth_arguments():
    features, labels = _data()
    state = _linear_state()
    step = train.make_train_step(None, HEAD, inputs_key="x")
    evaluate = train.make_eval_step(None, HEAD, inputs_key="x")

    class Plain:
        params = state.params
        opt_state = state.opt_state
        step = 0

    with pytest.raises(TypeError, match="replace"):
        train.make_train_step(LinenHead(HEAD), HEAD, optax.sgd(1.0), inputs_key="x")(
            Plain(), features, labels
        )
    with pytest.raises(TypeError, match="tx"):
        train.make_train_step(LinenHead(HEAD), HEAD, inputs_key="x")(
            _PlainStruct(state.params, state.opt_state, 0), features, labels
        )
    previous = evaluate(state, features, labels)
    with pytest.raises(TypeError, match="4th argument is `rng`"):
        step(state, features, labels, previous)
    with pytest.raises(TypeError, match="4th argument is `rng`"):
        step(state, features, labels, previous.metrics)
    with pytest.raises(TypeError, match="PRNG key"):
        evaluate(state, features, labels, jax.random.key(0))
    with pytest.raises(TypeError, match="previous EvalOutput"):
        evaluate(state, features, labels, previous.metrics)
    # A flax.struct state with replace works when tx is given.
    plain = _PlainStruct(state.params, state.opt_state, jnp.zeros((), jnp.int32))
    new, _ = train.make_train_step(LinenHead(HEAD), HEAD, optax.sgd(1.0), inputs_key="x")(
        plain, features, labels
    )
    assert int(new.step) == 1


from flax import struct  # noqa: E402


@struct.dataclass
class _PlainStruct:
    params: dict
    opt_state: tuple
    step: jax.Array


def test_nnx_and_linen_factories_share_the_argument_order():
    import inspect

    linen = inspect.signature(train.make_train_step).parameters
    nnx_ = inspect.signature(train.make_nnx_train_step).parameters
    assert list(linen)[:2] == list(nnx_)[:2] == ["model", "head"]
    shared = [p for p in nnx_ if p in linen]
    assert shared == list(nnx_)  # every nnx option exists for linen, same name
    assert linen["donate"].default is nnx_["donate"].default is False


# ----------------------------------------------------------------------------- labels, eval loss
def test_label_values_are_checked_before_tracing():
    head = jh.MultiClassHead(3)
    model = LinenHead(head)
    x = np.ones((4, 4), np.float32)
    params = model.init(jax.random.key(0), x)["params"]
    state = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=optax.sgd(1.0))
    step = train.make_train_step(None, head)
    with pytest.raises(ValueError, match="(?i)labels"):
        step(state, x, np.array([[0], [1], [-1], [2]], np.int32))
    with pytest.raises(ValueError, match="(?i)labels"):
        train.make_eval_step(None, head)(state, x, np.array([[0], [5], [1], [2]], np.int32))
    with pytest.raises(ValueError, match="(?i)labels"):
        train.make_train_step(None, head, mesh=train.make_mesh(8), strategy="shard_map")(
            train.replicate(state, train.make_mesh(8)),
            np.ones((8, 4), np.float32),
            np.full((8, 1), 3, np.int32),
        )


def test_eval_loss_is_the_mean_over_batches():
    state = _linear_state()
    evaluate = train.make_eval_step(None, HEAD, inputs_key="x")
    batches = [_data(8, seed=s) for s in range(3)]
    out = None
    losses = []
    for features, labels in batches:
        out = evaluate(state, features, labels, out)
        losses.append(float(out.loss))
    results = out.results(HEAD)
    np.testing.assert_allclose(results["loss"], np.mean(losses), rtol=1e-6)
    assert "loss" not in HEAD.compute_metrics(out.metrics)  # head keys unchanged
    assert float(out.batches) == 3.0


def test_check_labels_false_still_encodes_strings():
    head = jh.BinaryClassHead(label_vocabulary=["no", "yes"])
    model = LinenHead(head)
    x = np.ones((4, 4), np.float32)
    params = model.init(jax.random.key(0), x)["params"]
    state = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=optax.sgd(1.0))
    names = np.array([["yes"], ["no"], ["yes"], ["yes"]])
    ids = np.array([[1.0], [0.0], [1.0], [1.0]], np.float32)
    unchecked = train.make_train_step(None, head, check_labels=False)
    _, a = unchecked(state, x, names)
    _, b = train.make_train_step(None, head)(state, x, ids)
    _close(a.loss, b.loss)
    with pytest.raises(ValueError, match="maybe"):
        unchecked(state, x, np.array([["yes"], ["maybe"], ["no"], ["no"]]))


def test_global_batch_refuses_rows_that_do_not_split(mesh):
    with pytest.raises(ValueError, match=r"host batch sizes \[13\].*pad_batch"):
        train.global_batch({"x": np.ones((13, 3), np.float32)}, mesh)


def _family_case(kind):
    rng = np.random.default_rng(11)
    n = 13
    if kind == "multi_head":
        head = jh.MultiHead(
            [
                jh.BinaryClassHead(name="a", weight_column="w"),
                jh.RegressionHead(name="b", loss_reduction="mean"),
            ],
            head_weights=[1.0, 0.5],
        )
        features = {"x": rng.normal(size=(n, 4)).astype(np.float32)}
        features["w"] = rng.uniform(0.5, 2.0, size=n).astype(np.float32)
        labels = {
            "a": (rng.uniform(size=(n, 1)) > 0.5).astype(np.float32),
            "b": rng.normal(size=(n, 1)).astype(np.float32),
        }
    else:
        head = jh.SequentialHeadWrapper(jh.MultiClassHead(3, weight_column="w"))
        lengths = rng.integers(1, 5, size=n)
        features = {
            "x": rng.normal(size=(n, 4, 4)).astype(np.float32),
            "w": rng.uniform(0.5, 2.0, size=(n, 4)).astype(np.float32),
            "sequence_length_mask": np.arange(4)[None, :] < lengths[:, None],
        }
        labels = rng.integers(0, 3, size=(n, 4, 1)).astype(np.int32)
    return head, features, labels


@pytest.mark.parametrize("kind", ["multi_head", "sequence"])
def test_padding_is_exact_for_composite_heads(mesh, kind):
    head, features, labels = _family_case(kind)
    model = LinenHead(head)
    params = model.init(jax.random.key(0), features["x"][:1])["params"]
    state = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=optax.sgd(1.0))
    ref_state, ref = train.make_train_step(None, head, inputs_key="x")(state, features, labels)
    for strategy in ("jit", "shard_map"):
        step = train.make_train_step(None, head, inputs_key="x", mesh=mesh, strategy=strategy)
        new_state, out = step(train.replicate(state, mesh), features, labels)
        _close(out.loss, ref.loss)
        _close(new_state.params, ref_state.params)
        _close(head.compute_metrics(out.metrics), head.compute_metrics(ref.metrics))


def test_padding_also_splits_into_micro_batches(mesh):
    """13 rows, 8 devices, 4 micro-batches: padded to 32 rows (4 per device), not 16."""
    features, labels = _data(13, seed=5)
    state = _linear_state()
    ref_state, ref = train.make_train_step(None, HEAD, inputs_key="x")(state, features, labels)
    for strategy in ("jit", "shard_map"):
        step = train.make_train_step(
            None, HEAD, inputs_key="x", mesh=mesh, strategy=strategy, micro_batches=4
        )
        new_state, out = step(train.replicate(state, mesh), features, labels)
        _close(out.loss, ref.loss)
        _close(new_state.params, ref_state.params)


def test_nnx_dropout_under_shard_map_draws_other_masks_per_device(mesh):
    """Keys folded with the device index: shards draw other dropout masks, and the
    model's rng state stays replicated (one count, the original key)."""
    from jax.sharding import PartitionSpec as P

    from jaxheads.train._nnx import _per_device_keys, _restore_keys

    features = {"x": np.ones((B, 4), np.float32), "w": np.ones(B, np.float32)}
    module, optimizer = _nnx(rate=0.5, mesh=mesh)
    key_before = jax.random.key_data(module.drop.rngs.key[...])
    step = train.make_nnx_train_step(None, HEAD, inputs_key="x", mesh=mesh, strategy="shard_map")
    out = step(module, optimizer, features, np.ones((B, 1), np.float32))
    assert np.isfinite(float(out.loss))
    assert int(module.drop.rngs.count[...]) == 1
    np.testing.assert_array_equal(jax.random.key_data(module.drop.rngs.key[...]), key_before)

    rest = {"key": jax.random.key(3), "count": jnp.zeros((), jnp.uint32)}

    def draw(rest):
        local = _per_device_keys(rest, "data")
        kept = _restore_keys(local, rest)
        mask = jax.random.bernoulli(local["key"], 0.5, (1, 16))
        return mask, jax.random.key_data(kept["key"])[None]

    masks, keys = jax.shard_map(
        draw, mesh=mesh, in_specs=P(), out_specs=(P("data"), P("data")), check_vma=False
    )(rest)
    assert len({tuple(m) for m in np.asarray(masks)}) > 1  # other masks per device
    assert len({tuple(k) for k in np.asarray(keys)}) == 1  # the state's key unchanged


def test_train_package_uses_only_the_head_contract():
    """No probes of a head (or a state) in jaxheads/train: the only attribute read
    by name is of the collections the user declared (checked against the fields)."""
    import pathlib
    import re

    root = pathlib.Path(train.__file__).parent
    for path in root.glob("*.py"):
        text = path.read_text()
        assert "hasattr(" not in text, path.name
        assert "inspect." not in text, path.name
        uses = re.findall(r"getattr\((\w+), (\w+)\)", text)
        assert uses in ([], [("state", "name")]), (path.name, uses)
        assert len(text.splitlines()) < 400, path.name


def test_missing_labels_string_features_and_micro_batch_types():
    features, labels = _data(8)
    state = _linear_state()
    for factory in (train.make_train_step, train.make_eval_step):
        with pytest.raises(ValueError, match="You must provide a labels Tensor"):
            factory(None, HEAD, inputs_key="x")(state, features, None)
    bad = dict(features, w=np.array(["a"] * 8))
    with pytest.raises(ValueError, match=r"features\['w'\] holds strings"):
        train.make_train_step(None, HEAD, inputs_key="x")(state, bad, labels)
    with pytest.raises(ValueError, match="micro_batches"):
        train.make_train_step(None, HEAD, micro_batches=True)
    step = train.make_train_step(None, HEAD, inputs_key="x", micro_batches=np.int64(2))
    _, out = step(state, features, labels)
    _, ref = train.make_train_step(None, HEAD, inputs_key="x")(state, features, labels)
    _close(out.loss, ref.loss)


def test_padding_a_training_batch_with_batch_statistics_is_refused(mesh):
    """Padding is masked out of loss/gradients/metrics but not out of BatchNorm's
    statistics: a training batch that would need it is a clear error, not a silent
    change (linen mutable collections; nnx BatchStat variables)."""
    features, labels = _data(n=B - 3)  # 29 rows do not split over 8 devices
    _, state = _bn_state()
    step = train.make_train_step(
        None,
        HEAD,
        inputs_key="x",
        mutable=("batch_stats",),
        apply_kwargs={"train": True},
        mesh=mesh,
    )
    with pytest.raises(ValueError, match=r"29 rows.*batch statistics over the padded rows"):
        step(train.replicate(state, mesh), features, labels)
    module, optimizer = _nnx(mesh=mesh)
    nnx_step = train.make_nnx_train_step(None, HEAD, inputs_key="x", mesh=mesh, strategy="jit")
    with pytest.raises(ValueError, match=r"29 rows.*batch statistics over the padded rows"):
        nnx_step(module, optimizer, features, labels)
    # The same rows without batch statistics are padded and trained exactly.
    plain = train.make_train_step(None, HEAD, inputs_key="x", mesh=mesh)
    _, out = plain(train.replicate(_linear_state(), mesh), features, labels)
    assert np.isfinite(float(out.loss))
