"""Tests of jaxheads.flax: the linen and nnx head modules."""

import inspect

import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx

import jaxheads as jh
from jaxheads.flax import HeadMethods, LinenHead, NnxHead, check_logits_dimension
from jaxheads.heads.base import Head

HEADS = [
    jh.BinaryClassHead(),
    jh.LogisticRegressionHead(),
    jh.RegressionHead(label_dimension=3),
    jh.PoissonRegressionHead(),
]
IDS = ["binary", "logistic", "regression3", "poisson"]


def _labels(head, shape):
    k = head.logits_dimension
    return jnp.asarray(np.random.default_rng(0).uniform(size=shape + (k,)).round(), jnp.float32)


@pytest.mark.parametrize("head", HEADS, ids=IDS)
def test_linen_head_any_leading_dims(head):
    module = LinenHead(head)
    x = jnp.ones((2, 3, 5))
    variables = module.init(jax.random.key(0), x)
    kernel = variables["params"]["logits"]["kernel"]
    assert kernel.shape == (5, head.logits_dimension)
    logits = module.apply(variables, x)
    assert logits.shape == (2, 3, head.logits_dimension)
    labels = _labels(head, (2, 3))
    np.testing.assert_allclose(module.loss(labels, logits), head.loss(labels, logits))
    # vmap over the leading axis gives the same logits.
    vmapped = jax.vmap(lambda xi: module.apply(variables, xi))(x)
    np.testing.assert_allclose(vmapped, logits, rtol=1e-6)


@pytest.mark.parametrize("head", HEADS, ids=IDS)
def test_nnx_head_any_leading_dims(head):
    module = NnxHead(head, in_features=5, rngs=nnx.Rngs(0))
    x = jnp.ones((2, 3, 5))
    logits = module(x)
    assert logits.shape == (2, 3, head.logits_dimension)
    labels = _labels(head, (2, 3))
    np.testing.assert_allclose(module.loss(labels, logits), head.loss(labels, logits))
    jitted = nnx.jit(lambda m, x: m(x))(module, x)
    np.testing.assert_allclose(jitted, logits, rtol=1e-6)


def test_delegated_methods_match_the_head():
    head = jh.BinaryClassHead(thresholds=[0.3])
    module = LinenHead(head)  # unbound: the delegated methods need no parameters
    logits = jnp.array([[-1.0], [0.5], [2.0]])
    labels = jnp.array([[0.0], [1.0], [1.0]])
    assert module.logits_dimension == 1
    jax.tree.map(
        np.testing.assert_array_equal, module.predictions(logits), head.predictions(logits)
    )
    assert module.predictions(logits, keys=["logistic"]).keys() == {"logistic"}
    np.testing.assert_array_equal(
        module.loss_terms(labels, logits).value(), head.loss_terms(labels, logits).value()
    )

    @jax.jit
    def both_metrics(logits, labels):
        state = module.update_metrics(module.init_metrics(), None, logits, labels)
        ref = head.update_metrics(head.init_metrics(), None, logits, labels)
        return module.compute_metrics(state), head.compute_metrics(ref)

    jax.tree.map(np.testing.assert_array_equal, *both_metrics(logits, labels))
    assert list(module.export_outputs(logits)) == list(head.export_outputs(logits))
    spec = module.create_spec("eval", logits, labels)
    np.testing.assert_allclose(spec.loss, head.loss(labels, logits))


@pytest.mark.parametrize("kind", ["linen", "nnx"])
def test_bfloat16_compute_float32_loss(kind):
    head = jh.BinaryClassHead()
    x = jnp.ones((4, 6), jnp.bfloat16)
    labels = jnp.ones((4, 1))
    if kind == "linen":
        module = LinenHead(head, dtype=jnp.bfloat16, param_dtype=jnp.float32)
        variables = module.init(jax.random.key(0), x)
        assert variables["params"]["logits"]["kernel"].dtype == jnp.float32
        logits = module.apply(variables, x)
    else:
        module = NnxHead(head, 6, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
        assert module.logits.kernel[...].dtype == jnp.bfloat16
        logits = module(x)
    assert logits.dtype == jnp.bfloat16
    loss = module.loss(labels, logits)
    assert loss.dtype == jnp.float32
    metrics = jax.jit(
        lambda lg, y: module.compute_metrics(
            module.update_metrics(module.init_metrics(), None, lg, y)
        )
    )(logits, labels)
    assert metrics["average_loss"].dtype == jnp.float32


def test_kernel_init_and_no_bias():
    head = jh.LogisticRegressionHead()
    module = LinenHead(head, kernel_init=nn.initializers.zeros, use_bias=False)
    variables = module.init(jax.random.key(0), jnp.ones((2, 3)))
    assert set(variables["params"]["logits"]) == {"kernel"}
    np.testing.assert_array_equal(module.apply(variables, jnp.ones((2, 3))), jnp.zeros((2, 1)))
    nmod = NnxHead(
        head, 3, kernel_init=nn.initializers.ones, bias_init=nn.initializers.ones, rngs=nnx.Rngs(0)
    )
    np.testing.assert_array_equal(nmod(jnp.ones((2, 3))), jnp.full((2, 1), 4.0))


def test_without_projection_checks_the_logits_dimension():
    head = jh.RegressionHead(label_dimension=2)
    module = LinenHead(head, project=False)
    logits = jnp.ones((3, 2))
    assert module.init(jax.random.key(0), logits) == {}
    np.testing.assert_array_equal(module.apply({}, logits), logits)
    with pytest.raises(ValueError, match="logits_dimension 2"):
        module.apply({}, jnp.ones((3, 1)))
    nmod = NnxHead(head)
    np.testing.assert_array_equal(nmod(logits), logits)
    with pytest.raises(ValueError, match="logits_dimension 2"):
        nmod(jnp.ones((3, 5)))
    with pytest.raises(ValueError, match="rngs"):
        NnxHead(head, in_features=3)
    check_logits_dimension(head, {"a": jnp.ones(3)})  # dicts are left to the head


def test_composes_into_a_model_and_differentiates():
    head = jh.BinaryClassHead()

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Dense(8)(x))
            return LinenHead(head, name="head")(x)

    model = Model()
    x = jax.random.normal(jax.random.key(1), (16, 4))
    y = (x[:, :1] > 0).astype(jnp.float32)
    params = model.init(jax.random.key(0), x)["params"]

    def loss_fn(p):
        return head.loss(y, model.apply({"params": p}, x))

    grads = jax.jit(jax.grad(loss_fn))(params)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    # Gradients against finite differences, through the head and the projection.
    jax.test_util.check_grads(
        jax.jit(loss_fn), (params,), order=1, modes=["rev"], atol=2e-2, rtol=2e-2
    )


def test_nnx_module_grad():
    head = jh.LogisticRegressionHead()
    module = NnxHead(head, 4, rngs=nnx.Rngs(0))
    x = jnp.ones((5, 4))
    y = jnp.full((5, 1), 0.25)
    grads = nnx.grad(lambda m: m.loss(y, m(x)))(module)
    # d loss / d bias = mean(sigmoid(logit) - y).
    logits = module(x)
    expected = jnp.mean(jax.nn.sigmoid(logits) - y)
    np.testing.assert_allclose(grads["logits"]["bias"][...][0], expected, rtol=1e-5)


# ---------------------------------------------------------------- the head's API, not a copy of it

FAMILY = {
    "binary": jh.BinaryClassHead(name="b", label_vocabulary=["n", "y"]),
    "multi_class": jh.MultiClassHead(3),
    "multi_label": jh.MultiLabelHead(2),
    "regression": jh.RegressionHead(2),
    "multi_head": jh.MultiHead([jh.MultiClassHead(3, name="k"), jh.RegressionHead(1, name="r")]),
    "sequence": jh.SequentialHeadWrapper(jh.MultiClassHead(3)),
}
# Linen's `name` is the module's own; the head's is `module.head.name`.
PUBLIC = sorted(n for n in dir(Head) if not n.startswith("_") and n != "name")


def _modules(head):
    return {
        "linen": LinenHead(head),
        "linen_bound": LinenHead(head, project=False).bind({}),
        "nnx": NnxHead(head),
    }


def test_every_public_head_member_is_forwarded():
    assert PUBLIC == sorted(n for n in vars(HeadMethods) if not n.startswith("_"))
    assert {"loss", "loss_terms", "init_metrics", "class_vocabularies", "encode_labels"} <= set(
        PUBLIC
    )


@pytest.mark.parametrize("name", list(FAMILY))
def test_forwarded_members_are_the_heads_own(name):
    head = FAMILY[name]
    for kind, module in _modules(head).items():
        assert module.head is head, kind
        for member in PUBLIC:
            ours, theirs = getattr(module, member), getattr(head, member)
            if not callable(theirs):
                assert ours == theirs, (kind, member)
                continue
            # The head's own bound method (overrides included): same function, same signature.
            assert ours.__func__ is theirs.__func__, (kind, member)
            assert ours.__self__ is head, (kind, member)
            assert inspect.signature(ours) == inspect.signature(theirs), (kind, member)


def test_init_metrics_keeps_regularization_losses():
    # HeadMethods.init_metrics() once dropped this argument.
    head = jh.BinaryClassHead()
    logits, labels = jnp.array([[0.5], [-1.0]]), jnp.array([[1.0], [0.0]])
    for module in _modules(head).values():
        state = module.init_metrics(regularization_losses=True)
        state = module.update_metrics(state, None, logits, labels, [jnp.float32(0.25)])
        assert float(module.compute_metrics(state)["regularization_loss"]) == 0.25


def test_multi_head_inside_linen_head():
    head = FAMILY["multi_head"]
    module = LinenHead(head)
    x = jnp.ones((5, 7))
    variables = module.init(jax.random.key(0), x)
    logits = module.apply(variables, x)
    assert logits.shape == (5, 4)
    labels = {"k": jnp.array([0, 1, 2, 0, 1]), "r": jnp.ones((5, 1))}
    np.testing.assert_allclose(module.loss(labels, logits), head.loss(labels, logits))
    spec = module.create_spec("eval", logits, labels)
    metrics = module.compute_metrics(spec.metrics)
    assert "accuracy/k" in metrics and "average_loss/r" in metrics
    assert module.class_names(np.array([2]), "k/class_ids").tolist() == ["2"]


def test_module_argument_errors():
    with pytest.raises(TypeError, match="head must be a jaxheads Head, got str"):
        LinenHead("binary").init(jax.random.key(0), jnp.ones((1, 1)))
    with pytest.raises(TypeError, match="head must be a jaxheads Head, got str"):
        NnxHead("binary")
    for bad in (3.0, 0, -2, True, "3"):
        with pytest.raises(ValueError, match=f"in_features must be a positive int .*got {bad!r}"):
            NnxHead(jh.BinaryClassHead(), in_features=bad, rngs=nnx.Rngs(0))
    assert NnxHead(jh.BinaryClassHead(), np.int64(3), rngs=nnx.Rngs(0)).in_features == 3
    module = NnxHead(jh.BinaryClassHead(), in_features=3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"inputs shape \(2, 4\) must end in in_features=3"):
        module(jnp.ones((2, 4)))
    for m in (module, LinenHead(jh.BinaryClassHead())):
        call = m if isinstance(m, NnxHead) else (lambda x, m=m: m.init(jax.random.key(0), x))
        with pytest.raises(
            TypeError, match=r"inputs must be an array .*got a dict with keys \['x'\]"
        ):
            call({"x": jnp.ones((2, 3))})
        with pytest.raises(ValueError, match="inputs must have at least one dimension"):
            call(jnp.float32(1.0))


def test_without_projection_refuses_a_dict_of_logits():
    head = jh.MultiHead([jh.BinaryClassHead(name="a"), jh.RegressionHead(2, name="b")])
    logits = {"a": jnp.ones((2, 1)), "b": jnp.ones((2, 2))}
    message = r"inputs: a module without projection takes the logits as one array"
    with pytest.raises(TypeError, match=message):
        LinenHead(head, project=False).apply({}, logits)
    with pytest.raises(TypeError, match=message):
        NnxHead(head)(logits)
    # The head's own methods take the dict of logits.
    labels = {"a": jnp.ones((2, 1)), "b": jnp.ones((2, 2))}
    np.testing.assert_allclose(NnxHead(head).loss(labels, logits), head.loss(labels, logits))


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.int32])
def test_low_precision_and_integer_logits_without_projection(dtype):
    head = jh.MultiClassHead(3)
    logits = jnp.array([[1, 5, 2], [7, 0, 0]], dtype)
    labels = jnp.array([1, 0])
    for module in (NnxHead(head), LinenHead(head, project=False).bind({})):
        out = module(logits)
        assert out.dtype == dtype
        loss = module.loss(labels, out)
        assert loss.dtype == jnp.float32
        np.testing.assert_allclose(loss, head.loss(labels, logits.astype(jnp.float32)), rtol=1e-6)


def test_nnx_split_merge_and_vmap():
    head = jh.BinaryClassHead(label_vocabulary=["n", "y"])
    module = NnxHead(head, 3, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(module)
    again = nnx.merge(graphdef, state)
    assert again.head == head
    x = jax.random.normal(jax.random.key(0), (4, 2, 3))
    np.testing.assert_allclose(again(x), module(x))
    vmapped = nnx.vmap(lambda m, x: m(x), in_axes=(None, 0))(module, x)
    np.testing.assert_allclose(vmapped, module(x), rtol=1e-6)


def test_logits_dimension_mismatch_through_the_module():
    head = jh.BinaryClassHead()
    for module in _modules(head).values():
        for call in (
            lambda m: m.loss(jnp.ones((2, 1)), jnp.ones((2, 3))),
            lambda m: m.predictions(jnp.ones((2, 3))),
            lambda m: m.export_outputs(jnp.ones((2, 3))),
        ):
            with pytest.raises(ValueError, match="logits_dimension=1"):
                call(module)
    multi = jh.MultiHead([jh.BinaryClassHead(name="a"), jh.RegressionHead(2, name="b")])
    with pytest.raises(ValueError, match=r"logits dimensions: \[1, 2\]"):
        NnxHead(multi).predictions(jnp.ones((2, 4)))
    with pytest.raises(ValueError, match="logits_dimension 3"):
        NnxHead(multi)(jnp.ones((2, 4)))


def test_features_as_an_array_through_the_module():
    head = jh.BinaryClassHead(weight_column="w")
    logits, labels = jnp.ones((2, 1)), jnp.ones((2, 1))
    for module in _modules(head).values():
        with pytest.raises(TypeError, match="features must be a dict .*got an array of shape"):
            module.loss(labels, logits, jnp.ones((2,)))
        with pytest.raises(TypeError, match="features must be a dict"):
            module.update_metrics(module.init_metrics(), jnp.ones((2,)), logits, labels)
