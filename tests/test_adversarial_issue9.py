"""Issue 9, item by item: each case checks TF's number, the README's promise or a named error.

Silent wrong numbers, NaN where none is promised, and unclear crashes, run the
way a demanding user would (eager, jit, steps, mesh, export).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.training import train_state
from jax.experimental import checkify

import jaxheads as jh
from jaxheads import train
from jaxheads.export import ExportedHead, export_head
from jaxheads.flax import LinenHead

# ------------------------------------------------------------------ silent wrong numbers


def test_counts_exact_within_one_call_past_2_24():
    """One update of 2^24 + 2^22 examples: accuracy 0.9 exactly (float32 counts gave 0.8889)."""
    n = 2**24 + 2**22
    head = jh.BinaryClassHead()
    labels = jnp.ones((n, 1), jnp.float32)
    # 90 % correct: the first n/10 logits are negative (class 0), the rest positive.
    logits = jnp.where(jnp.arange(n)[:, None] < n // 10, -1.0, 1.0)
    state = head.update_metrics(head.init_metrics(), None, logits, labels)
    metrics = head.compute_metrics(state)
    assert float(metrics["accuracy"]) == np.float32(0.9)
    assert float(metrics["recall"]) == np.float32(0.9)


def test_weighted_sums_within_one_call_as_accurate_as_tf():
    """2^20 weighted examples: label/mean within TF's accuracy (~6e-8), not 1.5e-5 off."""
    n = 2**20
    rng = np.random.default_rng(0)
    w = rng.uniform(0.0, 1.0, n).astype(np.float32)
    y = (rng.uniform(size=(n, 1)) < 0.3).astype(np.float32)
    head = jh.BinaryClassHead(weight_column="w")
    state = head.update_metrics(head.init_metrics(), {"w": w}, np.zeros((n, 1), np.float32), y)
    got = float(head.compute_metrics(state)["label/mean"])
    exact = np.sum(w.astype(np.float64) * y[:, 0]) / np.sum(w.astype(np.float64))
    assert abs(got - exact) / exact < 2.5e-7


def test_per_example_weights_on_square_loss_weight_rows_as_tf():
    """[B] weights on a [B, B] loss: TF expands to [B, 1] (rows), NumPy would weight columns."""
    loss = jnp.arange(16.0).reshape(4, 4)
    w = jnp.array([1.0, 0.0, 0.0, 0.0])
    assert float(jh.reduce_weighted_loss(loss, w, "sum")) == 0 + 1 + 2 + 3  # TF: 6.0


def test_train_and_eval_steps_check_label_values():
    head = jh.MultiClassHead(3)
    model = LinenHead(head)
    x = np.ones((2, 4), np.float32)
    params = model.init(jax.random.key(0), x)["params"]
    state = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=optax.sgd(0.1))
    with pytest.raises(ValueError, match=r"Labels must be >= 0"):
        train.make_train_step(None, head)(state, x, np.array([[-1], [0]], np.int32))
    with pytest.raises(ValueError, match=r"Labels must be <= 3 - 1"):
        train.make_eval_step(None, head)(state, x, np.array([[5], [0]], np.int32))


def test_jitted_loss_never_scores_label_minus_one_as_the_last_class():
    head = jh.MultiClassHead(3)
    logits = jnp.array([[0.0, 0.0, 9.0]])
    loss = jax.jit(head.loss)(jnp.array([[-1]]), logits)
    assert np.isnan(loss)  # loud, not the small loss of class 2


def test_traced_value_checks_not_bypassed_by_the_jit_cache():
    head = jh.MultiClassHead(3)
    f = jax.jit(checkify.checkify(lambda y, x: head.loss(y, x)))
    logits = jnp.zeros((1, 3))
    f(jnp.array([[1]]), logits)  # first traced outside the context
    with jh.traced_value_checks():
        err, _ = f(jnp.array([[7]]), logits)
    with pytest.raises(Exception, match=r"Labels must be <= "):
        err.throw()


@pytest.mark.parametrize("weights", [np.zeros(3, np.float32), np.zeros(0, np.float32)])
def test_accuracy_baseline_is_zero_on_empty_or_zero_weight_evaluation(weights):
    """TF: 0.0 (0.1.0 gave max(0, 1 - 0) = 1.0)."""
    head = jh.BinaryClassHead(weight_column="w")
    n = weights.shape[0]
    state = head.update_metrics(
        head.init_metrics(), {"w": weights}, np.zeros((n, 1), np.float32), np.ones((n, 1))
    )
    assert float(head.compute_metrics(state)["accuracy_baseline"]) == 0.0
    assert float(head.compute_metrics(head.init_metrics())["accuracy_baseline"]) == 0.0


def test_metric_values_do_not_depend_on_what_ran_before():
    """No state leak: a jit cache keyed on too little would give B the numbers of A."""
    rng = np.random.default_rng(3)
    p = rng.uniform(size=(64, 1)).astype(np.float32)
    y = (rng.uniform(size=(64, 1)) < 0.5).astype(np.float32)
    logits = np.log(p / (1 - p))

    def recall(thresholds, num_thresholds):
        head = jh.BinaryClassHead(thresholds=thresholds, num_thresholds=num_thresholds)
        state = jax.jit(head.update_metrics)(head.init_metrics(), None, logits, y)
        return {k: float(v) for k, v in head.compute_metrics(state).items()}

    first = recall([0.5], 200)
    other = recall([0.3], 50)
    again = recall([0.5], 200)
    assert first == again
    positives = y[:, 0] == 1
    tf_recall = np.sum((p[:, 0] > 0.5) & positives) / np.sum(positives)  # Keras Recall(0.5)
    np.testing.assert_allclose(first["recall/positive_threshold_0.5"], tf_recall, rtol=1e-6)
    assert other["recall/positive_threshold_0.3"] == pytest.approx(
        np.sum((p[:, 0] > 0.3) & positives) / np.sum(positives), rel=1e-6
    )


# ------------------------------------------------------------------ NaN where none is promised


def test_one_infinite_loss_gives_inf_average_loss():
    head = jh.BinaryClassHead()
    logits = np.array([[-np.inf], [1.0]], np.float32)
    state = head.update_metrics(head.init_metrics(), None, logits, np.ones((2, 1)))
    assert float(head.compute_metrics(state)["average_loss"]) == np.inf  # TF: inf


def test_poisson_prediction_mean_overflow_is_inf():
    head = jh.PoissonRegressionHead()
    logits = np.array([[100.0], [0.0]], np.float32)  # exp(100) overflows float32
    state = head.update_metrics(head.init_metrics(), None, logits, np.ones((2, 1)))
    metrics = head.compute_metrics(state)
    assert float(metrics["prediction/mean"]) == np.inf
    assert float(metrics["average_loss"]) == np.inf


@pytest.mark.parametrize(
    "head, labels",
    [(jh.MultiClassHead(3), [[1]]), (jh.PoissonRegressionHead(), [[2.0]])],
    ids=["multi_class", "poisson"],
)
def test_plus_inf_logit_loss_and_gradient(head, labels):
    logits = jnp.full((1, head.logits_dimension), jnp.inf)
    if head.logits_dimension > 1:
        logits = logits.at[0, 1:].set(0.0)
    loss, grad = jax.value_and_grad(lambda x: head.loss(np.array(labels), x))(logits)
    assert float(loss) == np.inf
    assert not np.isnan(grad).any()


# ------------------------------------------------------------------ unclear crashes → named errors


@pytest.mark.parametrize(
    "make",
    [
        lambda t: jh.BinaryClassHead(thresholds=t),
        lambda t: jh.MultiLabelHead(3, thresholds=t),
    ],
    ids=["binary", "multi_label"],
)
@pytest.mark.parametrize("container", [np.array, jnp.array, tuple])
def test_array_thresholds_accepted(make, container):
    head = make(container([0.25, 0.75]))
    assert head.thresholds == (0.25, 0.75)
    assert "recall/positive_threshold_0.75" in head.compute_metrics(head.init_metrics())


@pytest.mark.parametrize(
    "make",
    [lambda t: jh.BinaryClassHead(thresholds=t), lambda t: jh.MultiLabelHead(3, thresholds=t)],
    ids=["binary", "multi_label"],
)
def test_nan_threshold_rejected_at_construction(make):
    with pytest.raises(ValueError, match=r"thresholds must be in \(0, 1\) range\. Given: nan"):
        make(np.array([0.5, np.nan]))


def test_array_classes_for_class_based_metrics_accepted():
    head = jh.MultiLabelHead(3, classes_for_class_based_metrics=np.array([2, 0]))
    assert head.classes_for_class_based_metrics == (2, 0)
    with pytest.raises(ValueError, match=r"classes_for_class_based_metrics must be in range"):
        jh.MultiLabelHead(3, classes_for_class_based_metrics=np.array([3]))


def test_array_head_weights_accepted_and_checked():
    heads = [jh.MultiLabelHead(2, name="a"), jh.MultiClassHead(3, name="b")]
    assert jh.MultiHead(heads, head_weights=np.array([1.0, 2.0])).head_weights == (1.0, 2.0)
    with pytest.raises(ValueError, match=r"head_weights must hold finite numbers.*nan"):
        jh.MultiHead(heads, head_weights=np.array([1.0, np.nan]))


@pytest.mark.parametrize("vocabulary", [["a"], ["a", "b", "c"], ("a", "a")])
def test_binary_vocabulary_needs_two_distinct_strings(vocabulary):
    with pytest.raises(
        ValueError, match=r"label_vocabulary (must have exactly n_classes=2|has dup)"
    ):
        jh.BinaryClassHead(label_vocabulary=vocabulary)


@pytest.mark.parametrize("value", [np.int64(2), np.int32(2), jnp.array(2)])
def test_numpy_and_jax_integers_accepted(value):
    assert jh.RegressionHead(label_dimension=value).label_dimension == 2
    assert jh.PoissonRegressionHead(label_dimension=value).logits_dimension == 2
    assert jh.BinaryClassHead(num_thresholds=value).num_thresholds == 2
    assert jh.MultiLabelHead(value).n_classes == 2
    assert type(jh.MultiLabelHead(3, num_thresholds=value).num_thresholds) is int


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: jh.RegressionHead(label_dimension=True), r"label_dimension .*got True"),
        (lambda: jh.RegressionHead(label_dimension=2.0), r"label_dimension .*got 2\.0"),
        (lambda: jh.BinaryClassHead(num_thresholds=True), r"num_thresholds .*got True"),
        (lambda: jh.BinaryClassHead(num_thresholds=1), r"num_thresholds must be an int >= 2"),
        (lambda: jh.MultiLabelHead(True), r"n_classes must be > 1"),
        (lambda: jh.MultiClassHead(np.float32(3)), r"n_classes must be an int > 2"),
        (lambda: jh.BinaryClassHead(name=""), r"name must be a non-empty string"),
    ],
)
def test_bad_integers_and_names_name_the_argument(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    "head",
    [
        jh.BinaryClassHead(weight_column="w"),
        jh.BinaryClassHead(),
        jh.RegressionHead(weight_column="w"),
        jh.MultiClassHead(3, weight_column="w"),
    ],
)
def test_features_given_as_an_array(head):
    logits = np.zeros((3, head.logits_dimension), np.float32)
    labels = np.zeros((3, 1), np.int32 if head.logits_dimension == 3 else np.float32)
    with pytest.raises(TypeError, match=r"features must be a dict .*got an array of shape \[3\]"):
        head.loss(labels, logits, np.ones(3, np.float32))


def test_sequence_mask_of_strings():
    head = jh.SequentialHeadWrapper(jh.BinaryClassHead(), "mask")
    with pytest.raises(
        TypeError, match=r"sequence mask features\['mask'\] must be bool or numeric"
    ):
        head.loss(np.ones((1, 2)), np.zeros((1, 2, 1)), {"mask": np.array([["a", ""]])})


def test_bool_multi_hot_labels_under_strict_promotion():
    """tests/conftest.py sets jax_numpy_dtype_promotion='strict'; bool labels still work."""
    head = jh.MultiLabelHead(3)
    logits = np.array([[2.0, -1.0, 0.5]], np.float32)
    as_bool = np.array([[True, False, True]])
    np.testing.assert_array_equal(
        head.loss(as_bool, logits), head.loss(as_bool.astype(np.int32), logits)
    )
    state = head.update_metrics(head.init_metrics(), None, logits, as_bool)
    state_int = head.update_metrics(head.init_metrics(), None, logits, as_bool.astype(np.int32))
    as_float = {k: float(v) for k, v in head.compute_metrics(state).items()}
    assert as_float == {k: float(v) for k, v in head.compute_metrics(state_int).items()}


def test_padded_string_labels_in_the_steps():
    """Sequence labels padded with '' (not in the vocabulary) at masked steps train fine."""
    head = jh.SequentialHeadWrapper(jh.BinaryClassHead(label_vocabulary=["no", "yes"]), "mask")
    model = LinenHead(head)
    x = np.ones((2, 3, 4), np.float32)
    params = model.init(jax.random.key(0), x)["params"]
    state = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=optax.sgd(0.1))
    mask = np.array([[True, True, False], [True, False, False]])
    names = np.array([["yes", "no", ""], ["no", "", ""]])
    ids = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]], np.float32)
    features = {"x": x, "mask": mask}
    step = train.make_train_step(None, head, inputs_key="x")
    _, out_names = step(state, features, names)
    _, out_ids = step(state, features, ids)
    np.testing.assert_allclose(out_names.loss, out_ids.loss, rtol=1e-6)
    evaluate = train.make_eval_step(None, head, inputs_key="x")
    np.testing.assert_allclose(
        evaluate(state, features, names).loss, evaluate(state, features, ids).loss, rtol=1e-6
    )


def test_python_list_labels_with_a_mesh():
    head = jh.BinaryClassHead()
    model = LinenHead(head)
    x = np.ones((8, 4), np.float32)
    params = model.init(jax.random.key(0), x)["params"]
    mesh = train.make_mesh(8)
    state = train.replicate(
        train_state.TrainState.create(apply_fn=model.apply, params=params, tx=optax.sgd(0.1)), mesh
    )
    labels = [[1.0], [0.0]] * 4
    _, out = train.make_train_step(None, head, mesh=mesh)(state, x, labels)
    _, ref = train.make_train_step(None, head, mesh=mesh)(state, x, np.array(labels, np.float32))
    np.testing.assert_allclose(out.loss, ref.loss, rtol=1e-6)


def _exported():
    head = jh.BinaryClassHead(label_vocabulary=["no", "yes"])
    return head, export_head(head, lambda x: x[:, :1], np.zeros((2, 3), np.float32))


def test_served_function_on_an_empty_batch():
    _, exported = _exported()
    out = exported(np.zeros((0, 3), np.float32))
    assert out["class_ids"].shape[0] == 0 and out["scores"].shape == (0, 2)


@pytest.mark.parametrize("cut", [3, 100, -200, -1])
def test_truncated_export_blob_is_a_named_error(cut):
    _, exported = _exported()
    blob = exported.serialize()
    with pytest.raises(ValueError, match=r"^data: (truncated|not a jaxheads export)"):
        ExportedHead.deserialize(blob[:cut])


# ------------------------------------------------------------------ found while attacking


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda: jh.BinaryClassHead().loss(np.ones((1, 1)), np.array([["a"]])),
            r"logits must be numbers \(or bool\); got an array of dtype <U1",
        ),
        (
            lambda: jh.RegressionHead().loss(np.array([["a"]]), np.zeros((1, 1))),
            r"labels must be numbers \(or bool\); got an array of dtype <U1.*label_vocabulary",
        ),
    ],
    ids=["string_logits", "string_regression_labels"],
)
def test_string_arrays_are_named_type_errors(call, match):
    with pytest.raises(TypeError, match=match):
        call()


@pytest.mark.parametrize(
    "make",
    [
        lambda: jh.BinaryClassHead(weight_column=3),
        lambda: jh.MultiClassHead(3, weight_column=["w"]),
        lambda: jh.RegressionHead(weight_column=1.0),
        lambda: jh.PoissonRegressionHead(weight_column=b"w"),
    ],
)
def test_weight_column_checked_at_construction(make):
    with pytest.raises(TypeError, match=r"Weight column must be either a string or NumericColumn"):
        make()


@pytest.mark.parametrize(
    "head, logits",
    [
        (jh.BinaryClassHead(), np.zeros(3, np.float32)),
        (jh.MultiClassHead(3), np.float32(0.0)),
        (jh.RegressionHead(label_dimension=2), np.zeros((3, 3), np.float32)),
    ],
    ids=["1d", "0d", "wrong_last_dim"],
)
def test_logits_rank_and_width_errors_name_logits(head, logits):
    with pytest.raises(ValueError, match=r"^logits (must have rank at least 2|shape must be)"):
        head.loss(np.zeros((3, 1), np.float32), logits)


@pytest.mark.parametrize(
    "labels",
    [np.ones((3, 1, 1), np.float32), np.ones((2, 1), np.float32), np.ones((3, 2), np.float32)],
    ids=["3d", "short_batch", "two_columns"],
)
def test_label_shape_errors_name_labels(labels):
    with pytest.raises(ValueError, match=r"(?i)label"):
        jh.BinaryClassHead().loss(labels, np.zeros((3, 1), np.float32))


@pytest.mark.parametrize(
    "reduction", ["sum", "sum_over_batch_size", "mean", "sum_by_nonzero_weights"]
)
def test_empty_batch_loss_is_zero_and_metrics_are_finite(reduction):
    """TF's div_no_nan: an empty batch gives loss 0 under every reduction."""
    for head, labels in [
        (jh.BinaryClassHead(loss_reduction=reduction), np.zeros((0, 1), np.float32)),
        (jh.MultiClassHead(3, loss_reduction=reduction), np.zeros((0, 1), np.int32)),
        (jh.MultiLabelHead(3, loss_reduction=reduction), np.zeros((0, 3), np.int32)),
        (jh.PoissonRegressionHead(loss_reduction=reduction), np.zeros((0, 1), np.float32)),
    ]:
        logits = np.zeros((0, head.logits_dimension), np.float32)
        assert float(head.loss(labels, logits)) == 0.0
        state = head.update_metrics(head.init_metrics(), None, logits, labels)
        assert all(np.isfinite(v).all() for v in head.compute_metrics(state).values())


def test_nan_weights_are_a_named_error_when_concrete():
    head = jh.BinaryClassHead(weight_column="w")
    with pytest.raises(ValueError, match=r"weights must not be NaN"):
        head.loss(np.ones((2, 1)), np.zeros((2, 1)), {"w": np.array([1.0, np.nan])})


@pytest.mark.parametrize("dtype", [np.float16, jnp.bfloat16, np.int8, np.int32])
def test_low_precision_and_int_logits_give_float32_tf_loss(dtype):
    head = jh.BinaryClassHead()
    logits = np.array([[-3.0], [2.0]], np.float32)
    loss = head.loss(np.array([[1.0], [0.0]]), logits.astype(dtype))  # NumPy array of dtype
    assert loss.dtype == jnp.float32
    expected = np.mean(np.maximum(logits, 0) - logits * [[1], [0]] + np.log1p(np.exp(-abs(logits))))
    np.testing.assert_allclose(loss, expected, rtol=1e-6)  # -3, 2 exact in every dtype


def test_three_d_logits_equal_flattened_tf_loss():
    """Leading dims [B, T]: the loss is TF's over the flattened B·T examples."""
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(2, 3, 1)).astype(np.float32)
    labels = (rng.uniform(size=(2, 3, 1)) < 0.5).astype(np.float32)
    w = rng.uniform(size=(2, 3)).astype(np.float32)
    head = jh.BinaryClassHead(weight_column="w", loss_reduction="mean")
    got = head.loss(labels, logits, {"w": w})
    flat = head.loss(labels.reshape(6, 1), logits.reshape(6, 1), {"w": w.reshape(6)})
    np.testing.assert_allclose(got, flat, rtol=1e-6)


def test_zero_head_weight_removes_a_head_with_infinite_loss():
    """MultiHead: Σ head_weight·loss with head_weight 0 and loss inf is 0·inf = 0, not NaN."""
    head = jh.MultiHead(
        [jh.BinaryClassHead(name="a"), jh.RegressionHead(name="b")], head_weights=[0.0, 1.0]
    )
    labels = {"a": np.ones((2, 1), np.float32), "b": np.ones((2, 1), np.float32)}
    logits = {"a": np.array([[-np.inf], [0.0]], np.float32), "b": np.zeros((2, 1), np.float32)}
    assert float(head.loss(labels, logits)) == 1.0  # the regression head's mean (1 - 0)^2
    grad = jax.grad(lambda x: head.loss(labels, x))(jax.tree.map(jnp.asarray, logits))
    np.testing.assert_array_equal(grad["a"], 0.0)


def test_int64_labels_beyond_int32_are_refused_not_wrapped():
    """2**32 + 1 must not wrap to the valid class id 1 on the host path (NumPy int64)."""
    head = jh.MultiClassHead(n_classes=3)
    labels = np.array([[0], [2**32 + 1]], np.int64)
    with pytest.raises(ValueError, match="[Ll]abels"):
        head.encode_labels(labels)
    binary = jh.BinaryClassHead()
    with pytest.raises(ValueError, match="[Ll]abels"):
        binary.encode_labels(np.array([[0], [2**32 + 1]], np.int64))


def test_host_label_check_of_a_jax_array_keeps_its_values():
    """A jax.Array label passes the host check unchanged (zero-copy view on CPU)."""
    head = jh.MultiClassHead(n_classes=3)
    labels = jnp.array([[0], [2], [1]], jnp.int32)
    np.testing.assert_array_equal(np.asarray(head.encode_labels(labels)), [[0], [2], [1]])
    with pytest.raises(ValueError, match="[Ll]abels"):
        head.encode_labels(jnp.array([[0], [3]], jnp.int32))
