"""TensorFlow's own test vectors for the binary and logistic-regression heads.

Every ``bin_*``, ``contrib_bin_*`` and ``logreg_*`` vector of the spec's §3
``CASES`` (``/work/shared/reference/tf_heads_spec.md``), and the
``BinaryClassHead`` rows of its ``VALIDATION_CASES``, ported to jaxheads.
Each vector keeps the spec's id and tolerance; ``tol=(rtol, atol)`` is the
``assertAllClose`` tolerance the upstream TF test uses (its default is
rtol = atol = 1e-6), ``delta`` an absolute tolerance, ``places=7``
``assertAlmostEqual``'s ``round(|a - b|, 7) == 0``.

How a TF vector maps onto jaxheads:

* ``"v1"`` vectors (TF1 canned heads, default SUM) use
  ``BinaryClassHead(compat="v1", loss_reduction=jh.Reduction.SUM)``; contrib
  vectors use ``compat="v1"`` with their (v1-spelled) reduction mapped to
  ``jh.Reduction`` (``'weighted_sum_over_batch_size'`` → ``SUM_OVER_BATCH_SIZE``,
  ``'weighted_sum_by_nonzero_weights'`` → ``SUM_BY_NONZERO_WEIGHTS``).
* Metrics: ``head.compute_metrics(head.update_metrics(head.init_metrics(reg),
  features, logits, labels, reg))``.  Train "summaries" are not a jaxheads
  concept: the ``loss`` summary is ``head.loss``, ``regularization_loss`` is
  the sum of the regularization losses (checked through the eval metric), and
  v1's ``average_loss`` summary is ``loss / Σ weights`` (from
  ``head.unreduced_loss``).
* String predictions: ``classes`` / ``all_classes`` are
  ``head.class_names(predictions['class_ids'])`` / ``(predictions['all_class_ids'])``,
  numpy ``str`` arrays (TF: bytes).  ``class_ids`` is int32 (TF int64).
* Loss, predictions and export outputs run eagerly and under ``jax.jit``
  (the head is closed over).  Shape errors are static: ``ValueError`` in both
  modes.  Value errors (label ranges) raise ``ValueError`` where the values are
  known (eagerly); under ``jit`` they are ``checkify`` checks, enabled with
  ``jh.traced_value_checks()`` and thrown with the same message.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

import jaxheads as jh

MODES = ("eager", "jit")

# TF1 `tf.compat.v1.losses.Reduction` strings -> jaxheads.
V1_REDUCTION = {
    "weighted_sum": jh.Reduction.SUM,
    "weighted_sum_over_batch_size": jh.Reduction.SUM_OVER_BATCH_SIZE,
    "weighted_mean": jh.Reduction.MEAN,
    "weighted_sum_by_nonzero_weights": jh.Reduction.SUM_BY_NONZERO_WEIGHTS,
}


# ----------------------------------------------------------------------------- custom loss_fns
_SEEN_BY_LOSS_FN: list = []


def _loss_fn_1_2(labels, logits):
    """bin_v2_custom_loss_fn: records its inputs, returns [[1.], [2.]]."""
    _SEEN_BY_LOSS_FN.append((labels, logits))
    return jnp.array([[1.0], [2.0]], jnp.float32)


def _loss_fn_wrong_shape(labels, logits):
    """bin_v2_loss_fn_wrong_shape: returns shape [2] instead of [2, 1]."""
    del labels, logits
    return jnp.array([1.0, 2.0], jnp.float32)


# ----------------------------------------------------------------------------- vectors
# Fields: head (class name), kwargs, logits, labels, features, reg (regularization
# losses), and what to check: loss, metrics, metric_keys, full_metrics (the spec
# lists every metric key, so the key sets must be equal), predictions, export,
# unreduced_loss / weights, error, plus tolerances.
_BASIC_METRICS = {
    "average_loss": 20.5,
    "accuracy": 0.5,
    "precision": 1.0,
    "recall": 0.5,
    "prediction/mean": 0.5,
    "label/mean": 1.0,
    "accuracy_baseline": 1.0,
    "auc": 0.0,
    "auc_precision_recall": 1.0,
}
_THRESHOLD_METRICS = {
    "average_loss": 1.62652338 / 2.0,
    "accuracy": 0.5,
    "precision": 1.0,
    "recall": 0.5,
    "prediction/mean": 0.5,
    "label/mean": 1.0,
    "accuracy_baseline": 1.0,
    "auc": 0.0,
    "auc_precision_recall": 1.0,
    "accuracy/positive_threshold_0.25": 1.0,
    "precision/positive_threshold_0.25": 1.0,
    "recall/positive_threshold_0.25": 1.0,
    "accuracy/positive_threshold_0.5": 0.5,
    "precision/positive_threshold_0.5": 1.0,
    "recall/positive_threshold_0.5": 0.5,
    "accuracy/positive_threshold_0.75": 0.0,
    "precision/positive_threshold_0.75": 0.0,
    "recall/positive_threshold_0.75": 0.0,
}
_WEIGHTED_3EX_METRICS = {
    "average_loss": 26.9615384615,
    "accuracy": 0.38461538461,
    "precision": 1.0 / 2.5,
    "recall": 1.0 / 1.1,
    "prediction/mean": 0.96153846153,
    "label/mean": 0.42307692307,
    "accuracy_baseline": 1 - 0.42307692307,
    "auc": 0.45454565,
}
_MULTI_DIM_LOGITS = [[[10], [-10]], [[12], [-12]]]
_MULTI_DIM_LABELS = [[[0], [0]], [[1], [1]]]
_MULTI_DIM_METRICS = {
    "average_loss": 40.0 / 7.0,
    "accuracy": (1.5 + 2.0) / 7.0,
    "precision": 2.0 / 3.0,
    "recall": 2.0 / 4.5,
    "prediction/mean": (1.0 + 2.0) / 7.0,
    "label/mean": (2.0 + 2.5) / 7.0,
    "accuracy_baseline": (2.0 + 2.5) / 7.0,
    "auc": 0.5222,
}

VECTORS = [
    # ------------------------------------------------------------------ BINARY (v2)
    dict(
        id="bin_v2_eval_basic",
        kwargs={},
        logits=[[45.0], [-41.0]],
        labels=[[1], [1]],
        features={"x": [[42]]},
        loss=20.5,
        metrics=_BASIC_METRICS,
        full_metrics=True,
        tol=(1e-6, 1e-6),
    ),
    dict(
        id="bin_v2_eval_basic_named",
        kwargs={"name": "some_binary_head"},
        logits=[[45.0], [-41.0]],
        labels=[[1], [1]],
        features={"x": [[42]]},
        # train_summaries={'loss/some_binary_head': 20.5}: the loss summary is head.loss.
        loss=20.5,
        metric_keys=[
            "average_loss/some_binary_head",
            "accuracy/some_binary_head",
            "precision/some_binary_head",
            "recall/some_binary_head",
            "prediction/mean/some_binary_head",
            "label/mean/some_binary_head",
            "accuracy_baseline/some_binary_head",
            "auc/some_binary_head",
            "auc_precision_recall/some_binary_head",
        ],
        tol=(1e-6, 1e-6),
    ),
    dict(
        id="bin_v2_sum_reduction",
        kwargs={"loss_reduction": jh.Reduction.SUM},
        logits=[[45.0], [-41.0]],
        labels=[[1.0], [1.0]],
        features={"x": [[42.0]]},
        loss=41.0,
        metrics={"average_loss": 20.5},  # metrics: observed
        tol=(1e-6, 1e-6),
    ),
    dict(
        id="bin_v2_regularization",
        kwargs={},
        reg=[1.5, 0.5],
        logits=[[45.0], [-41.0]],
        labels=[[1], [1]],
        features={"x": [[42]]},
        # train_summaries={'loss': 22.5, 'regularization_loss': 2.0}
        loss=22.5,
        metrics={**_BASIC_METRICS, "regularization_loss": 2.0},
        full_metrics=True,
        tol=(1e-6, 1e-6),
    ),
    dict(
        id="bin_v2_thresholds",
        kwargs={"thresholds": [0.25, 0.5, 0.75]},
        logits=[[-1.0], [1.0]],
        labels=[[1], [1]],
        features={"x": [[42]]},
        loss=1.62652338 / 2.0,
        loss_tol=(1e-6, 1e-6),  # loss: default assertAllClose tol
        metrics=_THRESHOLD_METRICS,
        full_metrics=True,
        tol=(1e-2, 1e-2),  # metrics tol = 1e-2
    ),
    dict(
        id="bin_v2_float_labels",
        kwargs={},
        logits=[[0.5], [-0.3]],
        labels=[[0.8], [0.4]],
        features={"x": [[42.0]]},
        # CE = [0.57407698418, 0.67435524446]
        loss=0.6242161,
        loss_tol=(0.0, 1e-5),  # assertAlmostEqual(delta=1e-5)
        metrics={
            "average_loss": 0.6242161,  # places=7, checked separately (average_loss_places)
            # observed, not asserted upstream (default tol):
            "accuracy": 0.0,
            "label/mean": 0.6,
            "accuracy_baseline": 0.6,
            "prediction/mean": 0.5240084,
            "precision": 1.0,
            "recall": 0.5,
        },
        average_loss_places=7,
        tol=(1e-6, 1e-6),
    ),
    dict(
        id="bin_v2_float_label_out_of_range",
        kwargs={},
        logits=[[0.5], [-0.3]],
        labels=[[1.2], [0.4]],
        features={"x": [[42.0]]},
        error=(ValueError, r"Labels must be <= 2 - 1"),
        value_error=True,
    ),
    dict(
        id="bin_v2_weighted_3ex",
        kwargs={"weight_column": "label_weights"},
        logits=np.array([[45], [-41], [44]], np.int32),  # int32 logits are accepted
        labels=[[1], [1], [0]],
        features={"x": [[42], [43], [44]], "label_weights": [[1.0], [0.1], [1.5]]},
        # CE = [0, 41, 44]; weighted = [0, 4.1, 66] -> 70.1
        loss=23.366666667,  # 70.1 / 3
        metrics={**_WEIGHTED_3EX_METRICS, "auc_precision_recall": 0.4010627},  # v2 interpolation
        full_metrics=True,
        tol=(1e-6, 1e-6),
    ),
    dict(
        id="bin_v2_rank1_labels_weights",
        kwargs={"weight_column": "label_weights"},
        logits=[[45.0], [-41.0], [44.0]],
        labels=[1.0, 1.0, 0.0],
        features={"x": [[42.0], [43.0], [44.0]], "label_weights": [1.0, 0.1, 1.5]},
        loss=23.366666667,  # train_summaries={'loss': 23.366666667}
        tol=(1e-6, 1e-6),
    ),
    dict(
        id="bin_v2_multi_dim",
        kwargs={"weight_column": "weights"},
        logits=np.array(_MULTI_DIM_LOGITS, np.int32),
        labels=_MULTI_DIM_LABELS,
        features={"weights": [[1.0, 1.5], [2.0, 2.5]]},
        # CE = [[10, 0], [0, 12]]; weighted sum = 40
        loss=10.0,  # 40 / (2*2); observed 10.000035
        metrics={**_MULTI_DIM_METRICS, "auc_precision_recall": 0.6582},
        full_metrics=True,
        tol=(1e-2, 1e-2),
    ),
    dict(
        id="bin_v2_weights_wrong_inner_dim",
        kwargs={"weight_column": "weights"},
        logits=_MULTI_DIM_LOGITS,
        labels=_MULTI_DIM_LABELS,
        features={"weights": [[1.0], [2.0]]},
        error=(ValueError, "weights shape"),
    ),
    dict(
        id="bin_v2_weights_wrong_outer_dim",
        kwargs={"weight_column": "weights"},
        logits=_MULTI_DIM_LOGITS,
        labels=_MULTI_DIM_LABELS,
        features={"weights": [[[1.0, 1.1], [1.5, 1.6]], [[2.0, 2.1], [2.5, 2.6]]]},
        error=(ValueError, "weights shape"),
    ),
    dict(
        id="bin_v2_vocab",
        kwargs={"label_vocabulary": ["aang", "iroh"]},
        logits=[[45.0], [-41.0]],
        labels=np.array([[b"iroh"], [b"iroh"]]),
        features={"x": [[42]]},
        loss=20.5,
        metrics={"accuracy": 0.5},
        tol=(1e-2, 1e-2),
    ),
    dict(
        id="bin_v2_custom_loss_fn",
        kwargs={"loss_fn": _loss_fn_1_2},
        logits=[[-10.0], [10.0]],
        labels=[[1], [0]],
        features={"x": [[42]]},
        loss=1.5,  # np.sum([[1.], [2.]]) / 2
        loss_fn_sees=dict(labels=[[1.0], [0.0]], logits=[[-10.0], [10.0]]),
        tol=(1e-6, 1e-6),
    ),
    dict(
        id="bin_v2_loss_fn_wrong_shape",
        kwargs={"loss_fn": _loss_fn_wrong_shape},
        logits=[[-10.0], [10.0]],
        labels=[[1], [0]],
        features={"x": [[42]]},
        error=(ValueError, "loss_shape"),
    ),
    dict(
        id="bin_v2_predict",
        kwargs={},
        logits=[[0.3], [-0.4]],
        predictions={
            "logits": [[0.3], [-0.4]],
            "logistic": [[0.574443], [0.401312]],
            "probabilities": [[0.425557, 0.574443], [0.598688, 0.401312]],
            "class_ids": [[1], [0]],
            "classes": [["1"], ["0"]],
            "all_class_ids": [[0, 1], [0, 1]],
            "all_classes": [["0", "1"], ["0", "1"]],
        },
        export_keys=["serving_default", "classification", "regression", "predict"],
        export={
            "serving_default.scores": [[0.425557, 0.574443], [0.598688, 0.401312]],
            "serving_default.classes": [["0", "1"], ["0", "1"]],
            "regression.value": [[0.574443], [0.401312]],
        },
        tol=(1e-6, 1e-6),
    ),
    dict(
        id="bin_v2_predict_vocab",
        kwargs={"label_vocabulary": ["aang", "iroh"]},
        logits=[[1.0], [0.0]],
        predictions={
            "classes": [["iroh"], ["aang"]],  # logit 0 -> class 0 (tie)
            "all_classes": [["aang", "iroh"], ["aang", "iroh"]],  # observed
        },
        tol=(1e-6, 1e-6),
    ),
    dict(
        id="bin_v2_predict_large_logits",
        kwargs={"weight_column": "label_weights"},
        logits=np.array([[45], [-41], [44]], np.int32),
        predictions={
            "logits": [[45.0], [-41.0], [44.0]],
            "probabilities": [[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]],
            "class_ids": [[1], [0], [1]],
            "classes": [["1"], ["0"], ["1"]],
        },
        tol=(1e-6, 1e-6),
    ),
    # ------------------------------------------------ BINARY (v1 canned SUM / contrib)
    dict(
        id="bin_v1_eval_sum",
        kwargs={"compat": "v1", "loss_reduction": jh.Reduction.SUM},
        logits=[[45.0], [-41.0]],
        labels=[[1], [1]],
        features={"x": [[42]]},
        loss=41.0,
        # auc_precision_recall: observed 0.9999995 in v1 (eps smoothing), within tol of 1.
        metrics=_BASIC_METRICS,
        full_metrics=True,
        tol=(1e-6, 1e-6),
    ),
    dict(
        id="bin_v1_train_summaries",
        kwargs={"compat": "v1", "loss_reduction": jh.Reduction.SUM},
        logits=[[45.0], [-41.0]],
        labels=[[1.0], [1.0]],
        features={"x": [[42.0]]},
        # train_summaries={'loss': 41., 'average_loss': 20.5}; the named head's
        # summaries ('loss/some_binary_head', ...) carry the same numbers.
        loss=41.0,
        v1_average_loss_summary=20.5,
        also_named="some_binary_head",
        tol=(1e-6, 1e-6),
    ),
    dict(
        id="bin_v1_sum_by_nonzero_weights",
        kwargs={"compat": "v1", "loss_reduction": V1_REDUCTION["weighted_sum_by_nonzero_weights"]},
        logits=[[45.0], [-41.0]],
        labels=[[1.0], [1.0]],
        features={"x": [[42.0]]},
        loss=41.0 / 2.0,
        unreduced_loss=[[0.0], [41.0]],
        weights=1.0,
        tol=(1e-6, 1e-6),
    ),
    dict(
        id="bin_v1_weighted_3ex",
        kwargs={
            "compat": "v1",
            "loss_reduction": jh.Reduction.SUM,
            "weight_column": "label_weights",
        },
        logits=np.array([[45], [-41], [44]], np.int32),
        labels=[[1], [1], [0]],
        features={"x": [[42], [43], [44]], "label_weights": [[1.0], [0.1], [1.5]]},
        loss=70.1,
        metrics={
            **_WEIGHTED_3EX_METRICS,
            "auc_precision_recall": 0.6737757325172424,
        },  # v1 trapezoid
        full_metrics=True,
        tol=(1e-6, 1e-6),
    ),
    dict(
        id="bin_v1_multi_dim",
        kwargs={"compat": "v1", "loss_reduction": jh.Reduction.SUM, "weight_column": "weights"},
        logits=np.array(_MULTI_DIM_LOGITS, np.int32),
        labels=_MULTI_DIM_LABELS,
        features={"weights": [[1.0, 1.5], [2.0, 2.5]]},
        loss=40.0,
        unreduced_loss=[[[10.0], [0.0]], [[0.0], [12.0]]],
        weights=[[[1.0], [1.5]], [[2.0], [2.5]]],
        metrics={
            "average_loss": 40.0 / 7.0,
            "accuracy": 3.5 / 7.0,
            "precision": 2.0 / 3.0,
            "recall": 2.0 / 4.5,
            "prediction/mean": 3.0 / 7.0,
            "label/mean": 4.5 / 7.0,
            "accuracy_baseline": 4.5 / 7.0,
            "auc": 0.5222,
            "auc_precision_recall": 0.7341,
        },
        full_metrics=True,
        tol=(1e-2, 1e-2),
    ),
    dict(
        id="bin_v1_thresholds",
        kwargs={
            "compat": "v1",
            "loss_reduction": jh.Reduction.SUM,
            "thresholds": [0.25, 0.5, 0.75],
        },
        logits=[[-1.0], [1.0]],
        labels=[[1], [1]],
        features={"x": [[42]]},
        loss=1.62652338,
        metrics=_THRESHOLD_METRICS,
        full_metrics=True,  # 'same dict as bin_v2_thresholds'
        tol=(1e-2, 1e-2),
    ),
    dict(
        id="contrib_bin_regularization",
        kwargs={"compat": "v1", "loss_reduction": V1_REDUCTION["weighted_sum_over_batch_size"]},
        reg=[1.5, 0.5],
        logits=[[45.0], [-41.0]],
        labels=[[1.0], [1.0]],
        features={"x": [[42.0]]},
        # train_summaries={'loss': 22.5, 'regularization_loss': 2.}
        loss=22.5,
        metrics={"regularization_loss": 2.0},
        tol=(1e-6, 1e-6),
    ),
    # ------------------------------------------------------------------ LOGISTIC REGRESSION
    dict(
        id="logreg_train",
        head="LogisticRegressionHead",
        kwargs={},
        logits=np.array([[0], [-1], [1]], np.int32),
        labels=[[0.4], [0.6], [0.8]],
        features={"x": [[42.0]]},
        # CE = [0.6931, 0.9133, 0.5133]
        loss=0.7066,
        loss_tol=(0.0, 0.001),  # assertAlmostEqual(delta=0.001); observed 0.70655680
        metrics={"average_loss": 0.7065568, "prediction/mean": 0.5, "label/mean": 0.6},  # observed
        full_metrics=True,
        tol=(1e-6, 1e-6),
    ),
    dict(
        id="logreg_labels_out_of_range-too_large",
        head="LogisticRegressionHead",
        kwargs={},
        logits=np.array([[0], [-1], [1]], np.int32),
        labels=[[0.4], [1.2], [0.8]],
        features={"x": [[42.0]]},
        error=(ValueError, r"Labels must be in range \[0, 1\]"),
        value_error=True,
    ),
    dict(
        id="logreg_labels_out_of_range-negative",
        head="LogisticRegressionHead",
        kwargs={},
        logits=np.array([[0], [-1], [1]], np.int32),
        labels=[[0.4], [-0.2], [0.8]],
        features={"x": [[42.0]]},
        error=(ValueError, r"Labels must be in range \[0, 1\]"),
        value_error=True,
    ),
    dict(
        id="logreg_predict",
        head="LogisticRegressionHead",
        kwargs={},
        logits=np.array([[0], [-1], [1]], np.int32),
        prediction_keys={"predictions", "logits"},
        predictions={
            "predictions": [[0.5], [0.26894143], [0.7310586]],
            "logits": [[0.0], [-1.0], [1.0]],
        },
        export_keys=["serving_default", "regression", "predict"],
        tol=(1e-6, 1e-6),
    ),
]

VALIDATION_CASES = [
    ("thresholds_0", dict(thresholds=(0.0, 0.5)), r"thresholds not in \(0, 1\)"),
    ("thresholds_1", dict(thresholds=(0.5, 1.0)), r"thresholds not in \(0, 1\)"),
    (
        "invalid_loss_reduction",
        dict(loss_reduction="invalid_loss_reduction"),
        r"Invalid loss_reduction: invalid_loss_reduction",
    ),
    (
        "loss_reduction_none",
        dict(loss_reduction=jh.Reduction.NONE),
        r"Invalid loss_reduction: none",
    ),
    (
        "label_vocabulary_dict",
        dict(label_vocabulary={"a": 1}),
        r"label_vocabulary should be a list or a tuple. Given type: <class 'dict'>",
    ),
    (
        "loss_fn_no_labels",
        dict(loss_fn=lambda logits: logits),
        r"loss_fn must contain argument: labels\. Given arguments: \('logits',\)",
    ),
    (
        "loss_fn_no_logits",
        dict(loss_fn=lambda labels: labels),
        r"loss_fn must contain argument: logits\. Given arguments: \('labels',\)",
    ),
    (
        "loss_fn_unexpected_arg",
        dict(loss_fn=lambda labels, logits, name=None: logits),
        r"loss_fn has unexpected args: \['name'\]",
    ),
]


# ----------------------------------------------------------------------------- helpers
def _select(*fields):
    out = [v for v in VECTORS if all(f in v for f in fields)]
    return pytest.mark.parametrize("vec", out, ids=[v["id"] for v in out])


def _head(vec, **overrides):
    cls = getattr(jh, vec.get("head", "BinaryClassHead"))
    return cls(**{**vec["kwargs"], **overrides})


def _arr(x):
    """Spec values -> numpy (python floats -> float32, ints stay ints, bytes stay bytes)."""
    if x is None:
        return None
    a = np.asarray(x)
    if a.dtype == np.float64:
        a = a.astype(np.float32)
    elif a.dtype == np.int64:
        a = a.astype(np.int32)
    return a


def _inputs(vec):
    features = vec.get("features")
    features = None if features is None else {k: _arr(v) for k, v in features.items()}
    return _arr(vec["logits"]), _arr(vec.get("labels")), features


def _reg(vec):
    reg = vec.get("reg")
    return None if reg is None else [np.float32(r) for r in reg]


def _close(actual, expected, tol, what):
    rtol, atol = tol
    np.testing.assert_allclose(
        np.asarray(actual, np.float64),
        np.asarray(expected, np.float64),
        rtol=rtol,
        atol=atol,
        err_msg=what,
    )


def _call(mode, fn, *args):
    return jax.jit(fn)(*args) if mode == "jit" else fn(*args)


def _jit_labels(head, labels):
    """Strings never enter jit: encode them on the host first."""
    if labels is not None and np.asarray(labels).dtype.kind in "SUO":
        return head.encode_labels(labels)
    return labels


def _metrics(head, vec):
    logits, labels, features = _inputs(vec)
    reg = _reg(vec)
    state = head.init_metrics(reg)
    state = head.update_metrics(state, features, logits, labels, reg)
    return head.compute_metrics(state)


# ----------------------------------------------------------------------------- loss
@pytest.mark.parametrize("mode", MODES)
@_select("loss")
def test_loss(vec, mode):
    head = _head(vec)
    logits, labels, features = _inputs(vec)
    reg = _reg(vec)
    if mode == "jit":
        labels = _jit_labels(head, labels)
    _SEEN_BY_LOSS_FN.clear()
    loss = _call(
        mode,
        lambda lb, lg, ft: head.loss(lb, lg, features=ft, regularization_losses=reg),
        labels,
        logits,
        features,
    )
    assert loss.shape == () and loss.dtype == jnp.float32
    _close(loss, vec["loss"], vec.get("loss_tol", vec["tol"]), f"{vec['id']}: loss")
    if "loss_fn_sees" in vec:
        # TF's loss_fn asserts it gets the processed (float32 [.., 1]) labels and the logits.
        ((seen_labels, seen_logits),) = _SEEN_BY_LOSS_FN
        assert seen_labels.dtype == jnp.float32 and seen_logits.dtype == jnp.float32
        assert seen_labels.shape == (2, 1) and seen_logits.shape == (2, 1)
        if mode == "eager":
            np.testing.assert_array_equal(seen_labels, vec["loss_fn_sees"]["labels"])
            np.testing.assert_array_equal(seen_logits, vec["loss_fn_sees"]["logits"])


@_select("also_named")
def test_loss_named_head_same_numbers(vec):
    # bin_v1_train_summaries: 'loss/some_binary_head' = 41, 'average_loss/some_binary_head' = 20.5.
    head = _head(vec, name=vec["also_named"])
    logits, labels, features = _inputs(vec)
    _close(head.loss(labels, logits, features), vec["loss"], vec["tol"], "named loss")
    _, weights = head.unreduced_loss(labels, logits, features)
    _close(
        head.loss(labels, logits, features) / np.sum(weights),
        vec["v1_average_loss_summary"],
        vec["tol"],
        "named v1 average_loss summary",
    )


@_select("v1_average_loss_summary")
def test_v1_average_loss_summary(vec):
    # v1 TRAIN writes average_loss = training_loss / Σ(weights · ones_like(unreduced_loss))
    # under SUM.
    head = _head(vec)
    logits, labels, features = _inputs(vec)
    loss = head.loss(labels, logits, features)
    unreduced, weights = head.unreduced_loss(labels, logits, features)
    denominator = np.sum(np.broadcast_to(np.asarray(weights), unreduced.shape))
    _close(loss / denominator, vec["v1_average_loss_summary"], vec["tol"], "average_loss summary")


@pytest.mark.parametrize("mode", MODES)
@_select("unreduced_loss")
def test_unreduced_loss(vec, mode):
    head = _head(vec)
    logits, labels, features = _inputs(vec)
    loss, weights = _call(
        mode, lambda lb, lg, ft: head.unreduced_loss(lb, lg, ft), labels, logits, features
    )
    expected = np.asarray(vec["unreduced_loss"], np.float32)
    assert loss.shape == expected.shape and loss.dtype == jnp.float32
    assert weights.dtype == jnp.float32
    # TF returns the Python float 1.0 without a weight column; ours are ones [..., 1].
    assert weights.shape == expected.shape[:-1] + (1,)
    _close(loss, expected, vec["tol"], "unreduced_loss (unweighted)")
    _close(
        weights,
        np.broadcast_to(np.asarray(vec["weights"], np.float32), weights.shape),
        vec["tol"],
        "weights",
    )


# ----------------------------------------------------------------------------- metrics
@_select("metrics")
def test_metrics(vec):
    head = _head(vec)
    got = _metrics(head, vec)
    if vec.get("full_metrics"):
        assert set(got) == set(vec["metrics"])
    else:
        assert set(vec["metrics"]) <= set(got)
    for key, expected in vec["metrics"].items():
        if key == "average_loss" and "average_loss_places" in vec:
            # assertAlmostEqual(expected, average_loss, places=7)
            assert round(abs(float(got[key]) - expected), vec["average_loss_places"]) == 0, (
                f"average_loss {float(got[key])!r} vs {expected!r} (places=7)"
            )
            continue
        assert got[key].shape == () and got[key].dtype == jnp.float32, key
        _close(got[key], expected, vec["tol"], f"{vec['id']}: {key}")


@_select("metric_keys")
def test_metric_keys(vec):
    head = _head(vec)
    assert set(_metrics(head, vec)) == set(vec["metric_keys"])


# ----------------------------------------------------------------------------- predictions & export
def _check_predictions(head, predictions, expected, tol):
    for key, value in expected.items():
        if key in ("classes", "all_classes"):
            ids = predictions["class_ids" if key == "classes" else "all_class_ids"]
            names = head.class_names(np.asarray(ids))
            assert isinstance(names, np.ndarray) and names.dtype.kind == "U", (key, names)
            np.testing.assert_array_equal(names, np.asarray(value, dtype=str), err_msg=key)
            continue
        got = predictions[key]
        expected_arr = np.asarray(value)
        assert got.shape == expected_arr.shape, (key, got.shape, expected_arr.shape)
        if key in ("class_ids", "all_class_ids"):
            assert got.dtype == jnp.int32, (key, got.dtype)  # TF: int64 / int32
            np.testing.assert_array_equal(got, expected_arr, err_msg=key)
        else:
            assert got.dtype == jnp.float32, (key, got.dtype)
            _close(got, expected_arr, tol, key)


@pytest.mark.parametrize("mode", MODES)
@_select("predictions")
def test_predictions(vec, mode):
    head = _head(vec)
    logits, _, _ = _inputs(vec)
    predictions = _call(mode, lambda lg: head.predictions(lg), logits)
    if "prediction_keys" in vec:
        assert set(predictions) == vec["prediction_keys"]
    _check_predictions(head, predictions, vec["predictions"], vec["tol"])


@pytest.mark.parametrize("mode", MODES)
@_select("export_keys")
def test_export_outputs(vec, mode):
    head = _head(vec)
    logits, _, _ = _inputs(vec)
    export = _call(mode, lambda lg: head.export_outputs(lg), logits)
    if mode == "eager":  # jit returns dicts with sorted keys (JAX pytree order)
        assert list(export)[0] == "serving_default"
    assert set(export) == set(vec["export_keys"])
    predictions = head.predictions(logits)
    assert set(export["predict"]) == set(predictions)
    for key, value in predictions.items():
        np.testing.assert_array_equal(export["predict"][key], value, err_msg=f"predict.{key}")
    for path, value in vec.get("export", {}).items():
        signature, field = path.split(".")
        if field == "classes":
            names = head.class_names(np.asarray(export[signature]["class_ids"]))
            assert names.dtype.kind == "U"
            np.testing.assert_array_equal(names, np.asarray(value, dtype=str), err_msg=path)
        else:
            got = export[signature][field]
            assert got.shape == np.shape(value) and got.dtype == jnp.float32, path
            _close(got, value, vec["tol"], path)


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("mode", MODES)
@_select("error")
def test_errors(vec, mode):
    if mode == "jit" and vec.get("value_error"):
        _check_traced_value_error(vec)
        return
    head = _head(vec)
    logits, labels, features = _inputs(vec)
    error, pattern = vec["error"]
    with pytest.raises(error, match=pattern):
        _call(mode, lambda lb, lg, ft: head.loss(lb, lg, features=ft), labels, logits, features)
    # The metrics path validates the same way.
    with pytest.raises(error, match=pattern):
        _call(
            mode,
            lambda lb, lg, ft: head.update_metrics(head.init_metrics(), ft, lg, lb),
            labels,
            logits,
            features,
        )


def _check_traced_value_error(vec):
    """Under jit the values are abstract: the check is a checkify check, thrown at run time."""
    head = _head(vec)
    logits, labels, features = _inputs(vec)
    _, pattern = vec["error"]
    with jh.traced_value_checks():
        err, _ = jax.jit(checkify.checkify(lambda lb, lg, ft: head.loss(lb, lg, features=ft)))(
            labels, logits, features
        )
    with pytest.raises(checkify.JaxRuntimeError, match=pattern):
        err.throw()


@pytest.mark.parametrize(
    "kwargs, pattern", [c[1:] for c in VALIDATION_CASES], ids=[c[0] for c in VALIDATION_CASES]
)
def test_binary_class_head_validation(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        jh.BinaryClassHead(**kwargs)
    with pytest.raises(ValueError, match=pattern):
        jh.binary_classification_head(**kwargs)


def test_every_vector_is_checked():
    """Each vector of the table is exercised by at least one test above."""
    checked = (
        "loss",
        "metrics",
        "metric_keys",
        "predictions",
        "export_keys",
        "error",
        "unreduced_loss",
    )
    for vec in VECTORS:
        assert any(k in vec for k in checked), vec["id"]
        assert re.fullmatch(r"(bin_v[12]|contrib_bin|logreg)_[a-z0-9_]+(-[a-z_]+)?", vec["id"]), (
            vec["id"]
        )
