"""The head contract: LossTerms, typed metric states, vocabularies, traced checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

import jaxheads as jh
from jaxheads.heads.base import Head
from jaxheads.keys import MetricKeys, PredictionKeys, summary_key, threshold_key

LOGITS = np.array([[1.0], [-2.0], [0.5], [3.0]], np.float32)
LABELS = np.array([[1.0], [0.0], [0.0], [1.0]], np.float32)
W = np.array([[1.0], [2.0], [0.0], [0.5]], np.float32)


# ---------------------------------------------------------------------- LossTerms
@pytest.mark.parametrize(
    "reduction", ["sum", "sum_over_batch_size", "mean", "sum_by_nonzero_weights"]
)
def test_loss_terms_add_to_the_whole_batch_loss(reduction):
    head = jh.BinaryClassHead(weight_column="w", loss_reduction=reduction)
    whole = head.loss(LABELS, LOGITS, {"w": W})
    parts = [head.loss_terms(LABELS[s], LOGITS[s], {"w": W[s]}) for s in (slice(0, 1), slice(1, 4))]
    np.testing.assert_allclose((parts[0] + parts[1]).value(), whole, rtol=1e-6)
    assert isinstance(parts[0], jh.LossTerms) and parts[0].totals.shape == (1,)


def test_loss_terms_sum_ignores_the_denominator_when_added():
    a = jh.LossTerms.single(jnp.float32(2.0), None)
    assert float((a + a + a).value()) == 6.0


def test_loss_terms_refuse_other_heads_and_bad_concatenation():
    a = jh.LossTerms.single(1.0, 2.0)
    b = jh.LossTerms.concatenate([a, a], head_weights=[1.0, 3.0])
    assert b.head_weights == (1.0, 3.0) and float(b.value()) == pytest.approx(2.0)
    with pytest.raises(ValueError, match=r"head_weights \(1.0,\) vs \(1.0, 3.0\)"):
        _ = a + b
    with pytest.raises(ValueError, match="2 terms but 1 head_weights"):
        jh.LossTerms.concatenate([a, a], head_weights=[1.0])


def test_multi_head_loss_terms_are_global_batch_terms():
    head = jh.MultiHead(
        [jh.BinaryClassHead(name="a", weight_column="w"), jh.RegressionHead(name="b")],
        head_weights=[2.0, 0.5],
    )
    labels = {"a": LABELS, "b": LOGITS * 2}
    logits = np.concatenate([LOGITS, LOGITS], axis=-1)
    whole = head.loss(labels, logits, {"w": W})
    parts = [
        head.loss_terms({k: v[s] for k, v in labels.items()}, logits[s], {"w": W[s]})
        for s in (slice(0, 2), slice(2, 4))
    ]
    total = parts[0] + parts[1]
    assert total.totals.shape == (2,) and total.head_weights == (2.0, 0.5)
    np.testing.assert_allclose(total.value(), whole, rtol=1e-6)
    per_head = head.head_losses(labels, logits, {"w": W})
    np.testing.assert_allclose(2.0 * per_head["a"] + 0.5 * per_head["b"], whole, rtol=1e-6)


# ---------------------------------------------------------------------- metric states
def _state(head, logits=LOGITS, labels=LABELS):
    return head.update_metrics(head.init_metrics(), None, logits, labels)


def test_state_is_typed_and_remembers_its_configuration():
    state = _state(jh.BinaryClassHead(thresholds=[0.5], compat="v1"))
    assert isinstance(state, jh.heads.BinaryHeadMetrics)
    assert state.config.thresholds == (0.5,) and state.config.compat == "v1"
    assert state.regularization_loss is None


@pytest.mark.parametrize(
    "other, differs",
    [
        (jh.BinaryClassHead(thresholds=[0.25]), r"config\.thresholds: \(0\.5,\) vs \(0\.25,\)"),
        (jh.BinaryClassHead(thresholds=[0.5], num_thresholds=50), r"num_thresholds: 200 vs 50"),
        (jh.BinaryClassHead(thresholds=[0.5], compat="v1"), r"compat: 'v2' vs 'v1'"),
    ],
)
def test_head_refuses_a_state_of_another_configuration(other, differs):
    state = _state(jh.BinaryClassHead(thresholds=[0.5]))
    with pytest.raises(ValueError, match=differs):
        other.compute_metrics(state)
    with pytest.raises(ValueError, match=differs):
        other.update_metrics(state, None, LOGITS, LABELS)
    with pytest.raises(ValueError, match="Cannot merge"):
        jh.metrics.merge(state, other.init_metrics())


def test_head_refuses_a_state_of_another_head_type():
    state = _state(jh.BinaryClassHead())
    with pytest.raises(ValueError, match=r"RegressionHead expects its own metric state"):
        jh.RegressionHead().compute_metrics(state)
    with pytest.raises(
        ValueError, match=r"config\.head: 'LogisticRegressionHead' vs 'RegressionHead'"
    ):
        jh.RegressionHead().compute_metrics(_state(jh.LogisticRegressionHead(), labels=LABELS))


def test_merge_names_the_differing_field():
    head = jh.MultiLabelHead(3, thresholds=[0.5], classes_for_class_based_metrics=[1])
    other = jh.MultiLabelHead(3, thresholds=[0.5], classes_for_class_based_metrics=[2])
    with pytest.raises(ValueError, match=r"classes: \(1,\) vs \(2,\)"):
        jh.metrics.merge(head.init_metrics(), other.init_metrics())
    tracked = jh.BinaryClassHead().init_metrics(regularization_losses=True)
    with pytest.raises(ValueError, match=r"regularization_loss: Mean vs NoneType"):
        jh.metrics.merge(tracked, jh.BinaryClassHead().init_metrics())
    merged = jh.metrics.merge(head.init_metrics(), head.init_metrics())
    assert merged.config == head.init_metrics().config


def test_multi_head_state_checks_its_heads():
    head = jh.MultiHead([jh.BinaryClassHead(name="a"), jh.RegressionHead(name="b")])
    other = jh.MultiHead([jh.BinaryClassHead(name="a"), jh.RegressionHead(name="c")])
    with pytest.raises(ValueError, match=r"head_names: \('a', 'b'\) vs \('a', 'c'\)"):
        other.compute_metrics(head.init_metrics())


def test_sequence_wrapper_state_is_the_wrapped_heads():
    head = jh.SequentialHeadWrapper(jh.BinaryClassHead(thresholds=[0.5]), "mask")
    assert type(head.init_metrics()) is jh.heads.BinaryHeadMetrics
    with pytest.raises(ValueError, match="thresholds"):
        head.compute_metrics(jh.BinaryClassHead().init_metrics())


def test_mask_argument_of_the_template():
    head = jh.BinaryClassHead(weight_column="w")
    mask = np.array([True, False, True, True])
    weights = np.where(mask[:, None], W, 0.0)
    masked = head.loss_terms(LABELS, LOGITS, {"w": W}, mask=mask)
    # SUM_OVER_BATCH_SIZE counts the 3 valid elements only; the masked one weighs 0.
    expected = head.loss_terms(LABELS, LOGITS, {"w": weights}).totals[0] / 3.0
    np.testing.assert_allclose(masked.value(), expected, rtol=1e-6)
    assert float(masked.denominators[0]) == 3.0
    with pytest.raises(ValueError, match=r"mask must have the logits' batch shape \[4\]"):
        head.loss_terms(LABELS, LOGITS, {"w": W}, mask=mask[:2])


# ---------------------------------------------------------------------- vocabularies
def test_class_vocabularies_of_every_head():
    binary = jh.BinaryClassHead(label_vocabulary=["neg", "pos"], name="b")
    classes = jh.MultiClassHead(3, label_vocabulary=["x", "y", "z"], name="c")
    multi = jh.MultiHead([binary, classes, jh.RegressionHead(name="r")])
    assert binary.class_vocabularies()[PredictionKeys.CLASS_IDS] == ("neg", "pos")
    assert jh.RegressionHead().class_vocabularies() == {}
    vocabularies = multi.class_vocabularies()
    assert vocabularies["b/class_ids"] == ("neg", "pos")
    assert vocabularies["c/all_class_ids"] == ("x", "y", "z")
    assert not any(k.startswith("r/") for k in vocabularies)
    # Every key is an output of the merged `predict` signature.
    logits = np.zeros((2, 5), np.float32)
    assert set(vocabularies) <= set(multi.export_outputs(logits)["predict"])
    assert multi.class_names(np.array([[2], [0]]), "c/class_ids").tolist() == [["z"], ["x"]]
    with pytest.raises(ValueError, match="not a class-id output"):
        multi.class_names(np.array([0]), "r/predictions")
    wrapped = jh.SequentialHeadWrapper(classes, "mask")
    assert wrapped.class_vocabularies() == classes.class_vocabularies()


def test_every_head_implements_the_contract():
    heads = [
        jh.BinaryClassHead(name="a"),
        jh.MultiHead([jh.MultiClassHead(3, name="m"), jh.PoissonRegressionHead(name="p")]),
        jh.SequentialHeadWrapper(jh.MultiLabelHead(2)),
    ]
    for head in heads:
        assert isinstance(head, Head)


def test_keys_module():
    assert summary_key(MetricKeys.AUC, "h") == "auc/h"
    assert threshold_key(MetricKeys.RECALL, 0.25) == "recall/positive_threshold_0.25"
    metrics = jh.BinaryClassHead(thresholds=[0.25]).compute_metrics(
        _state(jh.BinaryClassHead(thresholds=[0.25]))
    )
    assert threshold_key(MetricKeys.RECALL, 0.25) in metrics and MetricKeys.AUC_PR in metrics


# ---------------------------------------------------------------------- traced checks
def test_traced_value_checks_survive_the_jit_cache():
    head = jh.MultiClassHead(3)
    step = jax.jit(checkify.checkify(lambda lb, lg: head.loss(lb, lg)))
    logits = jnp.zeros((2, 3))
    bad = jnp.array([[1], [7]])
    err, _ = step(bad, logits)  # first traced outside the context: no check staged
    assert err.get() is None
    with jh.traced_value_checks():
        err, _ = step(bad, logits)  # retraced inside the context: the check fires
    with pytest.raises(checkify.JaxRuntimeError, match=r"Labels must be <= 3 - 1"):
        err.throw()
    err, _ = step(bad, logits)  # and outside again, no check
    assert err.get() is None
