"""Our metric states against Keras 3 numbers (tests/data/keras_metrics_reference.json).

The JSON is produced by tests/data/make_keras_reference.py in a separate
environment with keras; these tests need neither keras nor TensorFlow. The
inputs include scores exactly on the thresholds, at 0 and 1, and outside
[0, 1], soft labels, multi-label arrays and every weight shape, streamed over
one to three batches.
"""

import json
import pathlib

import jax
import numpy as np
import pytest

from jaxheads import metrics

DATA = json.loads(
    (pathlib.Path(__file__).parent / "data" / "keras_metrics_reference.json").read_text()
)
CASES = DATA["cases"]
PAD = 64  # batches are padded to PAD rows with zero weight, so each config compiles once


def _pad_rows(x: np.ndarray, rows: int) -> np.ndarray:
    out = np.zeros((rows, *x.shape[1:]), np.float32)
    out[: x.shape[0]] = x
    return out


def _padded_batch(batch: dict) -> tuple[list[np.ndarray], np.ndarray]:
    args = [np.asarray(a, np.float32) for a in batch["args"]]
    b = args[0].shape[0]
    assert b <= PAD
    if batch["sample_weight"] is None:
        weights = np.ones((b,) + ((1,) * (args[-1].ndim - 1)), np.float32)
    else:
        weights = np.asarray(batch["sample_weight"], np.float32)
    return [_pad_rows(a, PAD) for a in args], _pad_rows(weights, PAD)


def _state(case: dict):
    kw = case["kwargs"]
    name = case["metric"]
    if name == "AUC":  # one ConfusionCurve per T serves every curve / summation method
        return metrics.ConfusionCurve.empty(kw["num_thresholds"])
    if name == "Precision":
        return metrics.Precision.empty(kw["thresholds"])
    if name == "Recall":
        return metrics.Recall.empty(kw["thresholds"])
    if name == "BinaryAccuracy":
        return metrics.BinaryAccuracy.empty(kw["threshold"])
    if name == "Mean":
        return metrics.Mean.empty()
    if name == "Accuracy":
        return metrics.Accuracy.empty()
    raise AssertionError(name)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_matches_keras(case):
    state = _state(case)
    for batch in case["batches"]:
        args, weights = _padded_batch(batch)
        state = state.update(*args, weights)
    if case["metric"] == "AUC":
        kw = case["kwargs"]
        got = np.asarray(state.auc(kw["curve"], kw.get("summation_method", "interpolation")))
    else:
        got = np.asarray(state.compute(), np.float64)
    np.testing.assert_allclose(got, case["result"], rtol=1e-6, atol=1e-6)


def test_reference_covers_the_awkward_cases():
    assert DATA["backend"] == "jax"
    names = {c["name"] for c in CASES}
    for method in ("interpolation", "minoring", "majoring"):
        assert f"auc_T200_PR_{method}" in names and f"auc_T7_ROC_{method}" in names
    for w in ("B", "B1", "Bk", "none"):
        assert f"auc_multilabel_w{w}_ROC" in names and f"mean_w{w}" in names
    scores = np.concatenate(
        [np.ravel(b["args"][1]) for c in CASES if c["metric"] == "AUC" for b in c["batches"]]
    )
    assert (scores == 0.5).any() and (scores == 1.0).any() and (scores < 0).any()


def test_auc_wrapper_matches_keras():
    case = next(c for c in CASES if c["name"] == "auc_T7_PR_majoring")
    state = metrics.AUC.empty(num_thresholds=7, curve="PR", summation_method="majoring")
    for batch in case["batches"]:
        state = state.update(*_padded_batch(batch)[0], _padded_batch(batch)[1])
    np.testing.assert_allclose(float(state.compute()), case["result"], rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------ jit cache and twin states
# `recall_0.5` once returned 0.4007 — the *precision* of the same data — under two
# xdist workers. Precision, Recall and BinaryAccuracy (and Mean / Accuracy) have the
# same fields and static values; with flax.struct's `register_dataclass` their tree
# structures compared equal (hashes differed), so the C++ jit cache now and then
# matched a Recall state to the executable traced for a Precision state and rebuilt
# the output as a Precision. MetricState registers each class as a node of its own.
def test_twin_state_classes_have_distinct_tree_structures():
    a, b = metrics.Precision.empty(0.5), metrics.Recall.empty(0.5)
    assert jax.tree_util.tree_structure(a) != jax.tree_util.tree_structure(b)
    c = metrics.BinaryAccuracy.empty(0.5)
    assert jax.tree_util.tree_structure(a) != jax.tree_util.tree_structure(c)
    assert jax.tree_util.tree_structure(metrics.Mean.empty()) != jax.tree_util.tree_structure(
        metrics.Accuracy.empty()
    )


def test_jit_never_returns_a_twin_class():
    # Many twins in one jit cache make the collision certain (about 1 in 3 calls
    # came back as another class before the fix); the types must survive every call.
    twins = [type(f"Twin{i}", (metrics.Mean,), {}) for i in range(64)]
    identity = jax.jit(lambda state: state)
    for _ in range(2):
        for cls in twins:
            assert type(identity(cls.empty())) is cls
    recall = metrics.Recall.empty(0.5).update(np.ones(4, np.float32), np.full(4, 0.7, np.float32))
    assert type(recall) is metrics.Recall
