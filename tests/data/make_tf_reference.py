"""Generate the TensorFlow reference fixtures ``tests/data/tf_reference_*.json``.

TensorFlow is **never** a dependency of jaxheads or of its tests: the fixtures
are checked in, and ``tests/test_tf_reference.py`` only reads them.  To
regenerate them (e.g. after adding a case), build a scratch venv with the
reference implementation and run this script with it::

    python3.11 -m venv /work/tfvenv
    /work/tfvenv/bin/pip install "tensorflow-cpu==2.15.*" "tensorflow-estimator==2.15.*"
    /work/tfvenv/bin/python tests/data/make_tf_reference.py          # writes tests/data/

(TF 2.15.1, tensorflow-estimator 2.15.0, numpy 1.26 were used for the checked-in
files; see each file's ``meta``.)  The output is deterministic: every input
comes from ``numpy.random.default_rng(seed)`` with a fixed per-case seed.

What is run
-----------
* **v2 heads** (``tf.estimator.BinaryClassHead``, ``LogisticRegressionHead``,
  ``RegressionHead``, ``PoissonRegressionHead``, ``MultiClassHead``,
  ``MultiLabelHead``, ``MultiHead``) eagerly.  For every batch of a case:
  ``head.loss(...)`` (regularized training loss), the unweighted unreduced loss
  and the weights (through the heads' private ``_processed_labels`` /
  ``_unweighted_loss_and_weights``, the same code path ``loss`` uses),
  ``head.predictions(logits)`` and the PREDICT-mode export outputs of
  ``head.create_estimator_spec``.  The batches of a case are then streamed
  through *one* metrics dict: ``m = head.metrics(reg)``, then
  ``head.update_metrics(m, ...)`` once per batch, then ``m[k].result()``.
* **v1 canned binary head** (``canned/head.py::_binary_logistic_head_with_
  sigmoid_cross_entropy_loss``) in graph mode under ``tf.compat.v1.Session``,
  with its ``tf.compat.v1.metrics`` eval ops (trapezoidal AUC with epsilons,
  ``>=`` accuracy at thresholds, ...), on inputs of the v2 binary cases, with
  the v1 default SUM, and on three weighted cases with every v1 reduction
  (SUM; SUM_OVER_BATCH_SIZE, the contrib default; MEAN;
  SUM_BY_NONZERO_WEIGHTS).  These are the numbers ``compat="v1"`` must give.

JSON layout (one file per head family)
--------------------------------------
``{"meta": {...}, "cases": [case, ...]}`` where a case is::

    {"id": str, "head": "BinaryClassHead", "kwargs": {...}, "notes": str,
     "batches": [{"logits": ..., "logits_dtype": "float32",
                  "labels": ..., "labels_dtype": "int64" | "float32" | "str",
                  "features": {name: [...]}, "regularization_losses": [..] | null,
                  "expected": {"loss": float,
                               "unreduced_loss": [...],   # unweighted, [D0..DN, k]
                               "weights": [...],          # broadcast to unreduced_loss
                               "predictions": {key: [...]},   # strings decoded to str
                               "export_outputs": {sig: {"type": ..., field: [...]}}}}],
                               # (a signature sharing an earlier one's object is
                               #  {"type", "same_as": sig}; PredictOutput outputs
                               #  equal to the predictions are "=predictions")
     "metrics": {key: float}}       # after streaming every batch

* ``kwargs`` use the TF 2.15 argument names.  ``loss_reduction`` is a string:
  v2 ``'sum'`` / ``'sum_over_batch_size'``; v1 cases use the v1 strings
  (``'weighted_sum'``, ``'weighted_sum_over_batch_size'``, ``'weighted_mean'``,
  ``'weighted_sum_by_nonzero_weights'``).  ``loss_fn`` / ``inverse_link_fn``
  are *names* from the small registries below (the test file has the same
  functions in JAX).  ``weight_column`` is a key of ``features``.
* ``MultiHead``: ``kwargs = {"heads": [{"head": ..., "kwargs": ...}, ...],
  "head_weights": [...]}``; logits / labels are dicts keyed by head name;
  predictions are ``{head_name: {key: value}}`` (TF keys them by the tuple
  ``(head_name, key)``).  ``metrics`` holds the *correctly streamed* values:
  ``loss/<head>`` and ``regularization_loss/<multihead name>`` from TF's
  MultiHead metrics, each head's own metrics streamed through that head's own
  ``metrics()`` dict.  TF 2.15's eager ``MultiHead.update_metrics`` re-creates
  the per-head metrics on every call (spec §2.7, a bug we fix), so its raw
  output - kept as ``metrics_tf_multihead_eager`` - reflects only the last
  batch for those keys.  The two agree for single-batch cases (asserted here).
* Floats are written with the shortest repr that round-trips to the same
  float32, so ``np.asarray(x, np.float32)`` restores TF's exact bits.
* TF's ``all_class_ids`` / ``all_classes`` have shape ``[D0, n]`` (TF tiles over
  the first dimension only); jaxheads deliberately returns ``[D0..DN, n]``.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_estimator  # noqa: E402
from tensorflow_estimator.python.estimator.canned import head as head_v1  # noqa: E402
from tensorflow_estimator.python.estimator.head import base_head  # noqa: E402

tf.get_logger().setLevel("ERROR")

HERE = os.path.dirname(os.path.abspath(__file__))

# --------------------------------------------------------------------------
# Registries of custom functions (mirrored in JAX in tests/test_tf_reference.py)
# --------------------------------------------------------------------------


def _abs_sigmoid_error(labels, logits):
    """Binary: |label - sigmoid(logit)|, [..., 1]."""
    return tf.abs(tf.cast(labels, tf.float32) - tf.sigmoid(logits))


def _abs_error(labels, logits):
    """Regression: |label - logit|, [..., d]."""
    return tf.abs(tf.cast(labels, tf.float32) - logits)


def _one_minus_true_prob(labels, logits):
    """Multi-class: 1 - softmax(logits)[label], [..., 1] (labels are int ids [..., 1])."""
    probs = tf.nn.softmax(logits, axis=-1)
    return 1.0 - tf.gather(
        probs, tf.cast(labels, tf.int32), axis=-1, batch_dims=len(labels.shape) - 1
    )


def _mean_abs_sigmoid_error(labels, logits):
    """Multi-label: mean over classes of |label - sigmoid(logit)|, [..., 1]."""
    return tf.reduce_mean(
        tf.abs(tf.cast(labels, tf.float32) - tf.sigmoid(logits)), axis=-1, keepdims=True
    )


TF_LOSS_FNS = {
    "abs_sigmoid_error": _abs_sigmoid_error,
    "abs_error": _abs_error,
    "one_minus_true_prob": _one_minus_true_prob,
    "mean_abs_sigmoid_error": _mean_abs_sigmoid_error,
}
TF_INVERSE_LINK_FNS = {
    "exp": tf.exp,
    "sigmoid": tf.sigmoid,
    "minus10": lambda logits: logits - 10.0,
}
V1_REDUCTIONS = {
    "weighted_sum": tf.compat.v1.losses.Reduction.SUM,
    "weighted_sum_over_batch_size": tf.compat.v1.losses.Reduction.SUM_OVER_BATCH_SIZE,
    "weighted_mean": tf.compat.v1.losses.Reduction.MEAN,
    "weighted_sum_by_nonzero_weights": tf.compat.v1.losses.Reduction.SUM_BY_NONZERO_WEIGHTS,
}

# --------------------------------------------------------------------------
# Serialisation helpers
# --------------------------------------------------------------------------


def _f32(x: float) -> float:
    """Shortest decimal that round-trips to the same float32."""
    return float(str(np.float32(x)))


def to_json(x):
    """numpy / tf value -> JSON-able nested lists (float32-shortest floats, str)."""
    if isinstance(x, (tf.Tensor, tf.Variable)):
        x = x.numpy()
    if isinstance(x, dict):
        return {str(k): to_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_json(v) for v in x]
    if isinstance(x, (bytes, np.bytes_)):
        return x.decode("utf-8")
    if isinstance(x, str):
        return x
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return _f32(x)
    a = np.asarray(x)
    if a.dtype.kind in "SUO":
        return to_json(a.tolist())
    if a.dtype.kind == "f":
        return to_json(a.astype(np.float32).tolist())
    return a.tolist()


# --------------------------------------------------------------------------
# Input construction
# --------------------------------------------------------------------------


def batch(logits, labels, features=None, reg=None, logits_dtype="float32", labels_dtype=None):
    """One eval batch (inputs only; TF fills in 'expected')."""
    labels_arr = np.asarray(labels)
    if labels_dtype is None:
        if isinstance(labels, dict):
            labels_dtype = None
        elif labels_arr.dtype.kind in "SUO":
            labels_dtype = "str"
        elif labels_arr.dtype.kind in "iub":
            labels_dtype = "int64"
        else:
            labels_dtype = "float32"
    b = {
        "logits": to_json(logits if isinstance(logits, dict) else np.asarray(logits, logits_dtype)),
        "logits_dtype": logits_dtype,
        "labels": to_json(labels if isinstance(labels, dict) else labels_arr),
        "labels_dtype": labels_dtype,
        "features": {k: to_json(np.asarray(v, np.float32)) for k, v in (features or {}).items()},
        "regularization_losses": None if reg is None else [_f32(r) for r in reg],
    }
    return b


def _logits(rng, shape, scale=2.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _weights(rng, shape, zero_frac=0.2):
    w = rng.uniform(0.0, 2.0, size=shape).astype(np.float32)
    w[rng.uniform(size=shape) < zero_frac] = 0.0
    return w


def _hard(rng, shape, p=0.5):
    return (rng.uniform(size=shape) < p).astype(np.int64)


def _soft(rng, shape):
    return rng.uniform(0.0, 1.0, size=shape).astype(np.float32)


def _with_extremes(rng, shape, big):
    """Mix of moderate logits and +-big (and exact 0) logits."""
    x = _logits(rng, shape)
    flat = x.reshape(-1)
    n = flat.size
    idx = rng.permutation(n)
    flat[idx[: n // 3]] = big
    flat[idx[n // 3 : 2 * n // 3]] = -big
    flat[idx[-1]] = 0.0
    return flat.reshape(shape)


# --------------------------------------------------------------------------
# Case definitions
# --------------------------------------------------------------------------


_RED_SHORT = {"sum_over_batch_size": "sobs", "sum": "sum"}


def binary_cases():
    cases = []

    def add(id, kwargs, batches, notes=""):
        cases.append(
            dict(id=id, head="BinaryClassHead", kwargs=kwargs, batches=batches, notes=notes)
        )

    B = 8
    for red in ("sum_over_batch_size", "sum"):
        for weighted in (False, True):
            rng = np.random.default_rng(100 + 2 * (red == "sum") + weighted)
            kw = {"loss_reduction": red}
            feats = {}
            if weighted:
                kw["weight_column"] = "w"
                feats = {"w": _weights(rng, (B, 1))}
            add(
                f"bin_{_RED_SHORT[red]}_{'weighted' if weighted else 'unweighted'}",
                kw,
                [batch(_logits(rng, (B, 1)), _hard(rng, (B, 1)), feats)],
            )
    rng = np.random.default_rng(110)
    add(
        "bin_rank1_labels_weights",
        {"weight_column": "w", "loss_reduction": "sum"},
        [batch(_logits(rng, (8, 1)), _hard(rng, (8,)), {"w": _weights(rng, (8,))})],
        "labels [B] and weights [B] with logits [B, 1]",
    )
    rng = np.random.default_rng(111)
    add(
        "bin_multi_dim_2x3",
        {"weight_column": "w"},
        [batch(_logits(rng, (2, 3, 1)), _hard(rng, (2, 3, 1)), {"w": _weights(rng, (2, 3))})],
        "logits [2,3,1], labels [2,3,1], weights [2,3]; TF all_class_ids is [2, 2] (D0 only)",
    )
    rng = np.random.default_rng(112)
    add(
        "bin_multi_dim_rank_minus_one_labels",
        {"weight_column": "w", "loss_reduction": "sum"},
        [batch(_logits(rng, (2, 3, 1)), _hard(rng, (2, 3)), {"w": _weights(rng, (2, 3, 1))})],
        "logits [2,3,1], labels [2,3], weights [2,3,1]",
    )
    rng = np.random.default_rng(113)
    add(
        "bin_thresholds",
        {"thresholds": [0.1, 0.25, 0.5, 0.75, 0.9]},
        [batch(_logits(rng, (8, 1)), _hard(rng, (8, 1)))],
    )
    rng = np.random.default_rng(114)
    add(
        "bin_thresholds_ties",
        {"thresholds": [0.5], "weight_column": "w"},
        [
            batch(
                np.array([[0.0], [0.0], [1.0], [-1.0], [0.0], [2.0], [0.0], [-3.0]], np.float32),
                np.array([[1], [0], [1], [0], [1], [0], [1], [1]]),
                {
                    "w": np.array(
                        [[1.0], [2.0], [0.5], [1.0], [0.0], [1.5], [3.0], [0.5]], np.float32
                    )
                },
            )
        ],
        "logit exactly 0: class_id 0, logistic 0.5 (not > 0.5 threshold in v2; >= 0.5 in v1)",
    )
    rng = np.random.default_rng(115)
    labels = np.array(["pos", "neg"], dtype=object)[_hard(rng, (8, 1))]
    add(
        "bin_vocab",
        {"label_vocabulary": ["neg", "pos"], "weight_column": "w"},
        [batch(_logits(rng, (8, 1)), labels.astype(str), {"w": _weights(rng, (8, 1))})],
    )
    rng = np.random.default_rng(116)
    add(
        "bin_regularization",
        {},
        [batch(_logits(rng, (8, 1)), _hard(rng, (8, 1)), reg=[0.75, 0.125])],
    )
    rng = np.random.default_rng(117)
    add(
        "bin_soft_labels",
        {"weight_column": "w"},
        [batch(_logits(rng, (8, 1)), _soft(rng, (8, 1)), {"w": _weights(rng, (8, 1))})],
        "soft labels: accuracy compares float labels exactly (0 unless a label is 0/1)",
    )
    rng = np.random.default_rng(118)
    add(
        "bin_large_logits_50",
        {"thresholds": [0.5]},
        [batch(_with_extremes(rng, (8, 1), 50.0), _hard(rng, (8, 1)))],
    )
    rng = np.random.default_rng(119)
    add(
        "bin_large_logits_1e4",
        {"weight_column": "w", "loss_reduction": "sum"},
        [batch(_with_extremes(rng, (8, 1), 1e4), _hard(rng, (8, 1)), {"w": _weights(rng, (8, 1))})],
        "+-1e4 logits: TF's loss is finite (a wrong-sign logit costs |logit|)",
    )
    rng = np.random.default_rng(120)
    add(
        "bin_int_logits",
        {},
        [
            batch(
                np.array([[45], [-41], [44], [0]], np.int32),
                np.array([[1], [1], [0], [0]]),
                logits_dtype="int32",
            )
        ],
        "int32 logits are cast to float32",
    )
    rng = np.random.default_rng(121)
    add(
        "bin_custom_loss_fn",
        {"loss_fn": "abs_sigmoid_error", "weight_column": "w"},
        [batch(_logits(rng, (8, 1)), _soft(rng, (8, 1)), {"w": _weights(rng, (8, 1))})],
    )
    rng = np.random.default_rng(122)
    add(
        "bin_streaming_named",
        {"weight_column": "w", "thresholds": [0.3, 0.5], "name": "my_head"},
        [
            batch(
                _logits(rng, (8, 1)), _hard(rng, (8, 1)), {"w": _weights(rng, (8, 1))}, reg=[0.5]
            ),
            batch(
                _logits(rng, (4, 1)), _hard(rng, (4, 1)), {"w": _weights(rng, (4, 1))}, reg=[1.25]
            ),
            batch(
                _logits(rng, (8, 1)), _hard(rng, (8, 1)), {"w": _weights(rng, (8, 1))}, reg=[0.0]
            ),
        ],
        "three batches of different sizes through one metrics dict",
    )
    rng = np.random.default_rng(123)
    add(
        "bin_streaming_multi_dim_soft",
        {"weight_column": "w", "thresholds": [0.5], "loss_reduction": "sum"},
        [
            batch(_logits(rng, (2, 3, 1)), _soft(rng, (2, 3, 1)), {"w": _weights(rng, (2, 3))}),
            batch(
                _logits(rng, (2, 3, 1)),
                _hard(rng, (2, 3, 1)).astype(np.float32),
                {"w": _weights(rng, (2, 3))},
            ),
        ],
    )
    rng = np.random.default_rng(124)
    add(
        "bin_streaming_auc_large",
        {"weight_column": "w"},
        [
            batch(_logits(rng, (64, 1), 1.5), _hard(rng, (64, 1)), {"w": _weights(rng, (64, 1))}),
            batch(_logits(rng, (64, 1), 1.5), _hard(rng, (64, 1)), {"w": _weights(rng, (64, 1))}),
        ],
        "more points for AUC / AUC-PR",
    )
    return cases


def binary_v1_cases():
    """Inputs reused from v2 cases; run with the v1 canned head per reduction."""
    v2 = {c["id"]: c for c in binary_cases()}
    picks = [
        "bin_sobs_weighted",
        "bin_rank1_labels_weights",
        "bin_multi_dim_2x3",
        "bin_thresholds",
        "bin_thresholds_ties",
        "bin_vocab",
        "bin_regularization",
        "bin_soft_labels",
        "bin_large_logits_1e4",
        "bin_streaming_named",
        "bin_streaming_auc_large",
    ]
    # Every v1 reduction where the weights make them differ (zero weights included);
    # the v1 default SUM elsewhere, plus the contrib default SOBS with regularization.
    all_reductions = ("bin_sobs_weighted", "bin_multi_dim_2x3", "bin_streaming_named")
    cases = []
    for cid in picks:
        src = v2[cid]
        if cid in all_reductions:
            reds = list(V1_REDUCTIONS)
        elif cid == "bin_regularization":
            reds = ["weighted_sum", "weighted_sum_over_batch_size"]
        else:
            reds = ["weighted_sum"]
        for red in reds:
            kw = {k: v for k, v in src["kwargs"].items() if k != "loss_reduction"}
            kw["loss_reduction"] = red
            cases.append(
                dict(
                    id=f"v1_{cid}__{red}",
                    head="BinaryClassHead",
                    compat="v1",
                    kwargs=kw,
                    batches=json.loads(json.dumps(src["batches"])),
                    notes="TF1 canned _binary_logistic_head_with_sigmoid_cross_entropy_loss, "
                    "graph mode, tf.compat.v1.metrics. " + src.get("notes", ""),
                )
            )
    return cases


def logistic_cases():
    cases = []

    def add(id, kwargs, batches, notes=""):
        cases.append(
            dict(id=id, head="LogisticRegressionHead", kwargs=kwargs, batches=batches, notes=notes)
        )

    for red in ("sum_over_batch_size", "sum"):
        for weighted in (False, True):
            rng = np.random.default_rng(200 + 2 * (red == "sum") + weighted)
            kw = {"loss_reduction": red}
            feats = {}
            if weighted:
                kw["weight_column"] = "w"
                feats = {"w": _weights(rng, (8, 1))}
            add(
                f"logreg_{_RED_SHORT[red]}_{'weighted' if weighted else 'unweighted'}",
                kw,
                [batch(_logits(rng, (8, 1)), _soft(rng, (8, 1)), feats)],
            )
    rng = np.random.default_rng(210)
    add(
        "logreg_rank1_labels_weights",
        {"weight_column": "w"},
        [batch(_logits(rng, (8, 1)), _soft(rng, (8,)), {"w": _weights(rng, (8,))})],
    )
    rng = np.random.default_rng(211)
    add(
        "logreg_multi_dim_2x3",
        {"weight_column": "w", "loss_reduction": "sum"},
        [batch(_logits(rng, (2, 3, 1)), _soft(rng, (2, 3, 1)), {"w": _weights(rng, (2, 3))})],
    )
    rng = np.random.default_rng(212)
    add(
        "logreg_hard_labels_regularization",
        {},
        [batch(_logits(rng, (8, 1)), _hard(rng, (8, 1)).astype(np.float32), reg=[0.5, 0.25])],
    )
    rng = np.random.default_rng(213)
    add(
        "logreg_large_logits_50", {}, [batch(_with_extremes(rng, (8, 1), 50.0), _soft(rng, (8, 1)))]
    )
    rng = np.random.default_rng(214)
    add(
        "logreg_large_logits_1e4",
        {"weight_column": "w"},
        [batch(_with_extremes(rng, (8, 1), 1e4), _soft(rng, (8, 1)), {"w": _weights(rng, (8, 1))})],
        "+-1e4 logits with soft labels: finite loss ~ 1e4 * |label - [logit>0]|",
    )
    rng = np.random.default_rng(215)
    add(
        "logreg_streaming_named",
        {"weight_column": "w", "name": "lr"},
        [
            batch(
                _logits(rng, (4, 1)), _soft(rng, (4, 1)), {"w": _weights(rng, (4, 1))}, reg=[0.5]
            ),
            batch(
                _logits(rng, (8, 1)), _soft(rng, (8, 1)), {"w": _weights(rng, (8, 1))}, reg=[1.5]
            ),
            batch(
                _logits(rng, (4, 1)), _soft(rng, (4, 1)), {"w": _weights(rng, (4, 1))}, reg=[0.0]
            ),
        ],
    )
    return cases


def regression_cases():
    cases = []

    def add(id, kwargs, batches, notes="", head="RegressionHead"):
        cases.append(dict(id=id, head=head, kwargs=kwargs, batches=batches, notes=notes))

    for red in ("sum_over_batch_size", "sum"):
        for weighted in (False, True):
            rng = np.random.default_rng(300 + 2 * (red == "sum") + weighted)
            kw = {"loss_reduction": red}
            feats = {}
            if weighted:
                kw["weight_column"] = "w"
                feats = {"w": _weights(rng, (8, 1))}
            add(
                f"reg_{_RED_SHORT[red]}_{'weighted' if weighted else 'unweighted'}",
                kw,
                [batch(_logits(rng, (8, 1), 5.0), _logits(rng, (8, 1), 5.0), feats)],
            )
    rng = np.random.default_rng(310)
    add(
        "reg_rank1_labels_weights",
        {"weight_column": "w"},
        [batch(_logits(rng, (8, 1)), _logits(rng, (8,)), {"w": _weights(rng, (8,))})],
    )
    rng = np.random.default_rng(311)
    add(
        "reg_label_dim3_per_logit_weights",
        {"label_dimension": 3, "weight_column": "w"},
        [batch(_logits(rng, (4, 3)), _logits(rng, (4, 3)), {"w": _weights(rng, (4, 3))})],
        "per-logit weights [B, 3]",
    )
    rng = np.random.default_rng(312)
    add(
        "reg_label_dim3_example_weights_sum",
        {"label_dimension": 3, "weight_column": "w", "loss_reduction": "sum"},
        [batch(_logits(rng, (4, 3)), _logits(rng, (4, 3)), {"w": _weights(rng, (4, 1))})],
    )
    rng = np.random.default_rng(313)
    add(
        "reg_multi_dim_2x3_dim2",
        {"label_dimension": 2, "weight_column": "w"},
        [batch(_logits(rng, (2, 3, 2)), _logits(rng, (2, 3, 2)), {"w": _weights(rng, (2, 3))})],
    )
    rng = np.random.default_rng(314)
    add(
        "reg_regularization_inverse_link_exp",
        {"inverse_link_fn": "exp"},
        [batch(_logits(rng, (8, 1)), _logits(rng, (8, 1)), reg=[1.5, 0.5])],
    )
    rng = np.random.default_rng(315)
    add(
        "reg_inverse_link_minus10_custom_loss",
        {"inverse_link_fn": "minus10", "loss_fn": "abs_error", "weight_column": "w"},
        [
            batch(
                _logits(rng, (8, 1), 10.0), _logits(rng, (8, 1), 10.0), {"w": _weights(rng, (8, 1))}
            )
        ],
    )
    rng = np.random.default_rng(316)
    add(
        "reg_large_values",
        {"loss_reduction": "sum"},
        [batch(_with_extremes(rng, (8, 1), 1e3), _logits(rng, (8, 1)))],
        "squared error of 1e3-sized residuals",
    )
    rng = np.random.default_rng(317)
    add(
        "reg_streaming_named",
        {"weight_column": "w", "label_dimension": 2, "name": "r"},
        [
            batch(
                _logits(rng, (4, 2)), _logits(rng, (4, 2)), {"w": _weights(rng, (4, 1))}, reg=[0.5]
            ),
            batch(
                _logits(rng, (8, 2)), _logits(rng, (8, 2)), {"w": _weights(rng, (8, 1))}, reg=[2.0]
            ),
        ],
    )
    # Poisson.
    for full in (True, False):
        rng = np.random.default_rng(330 + full)
        add(
            f"poisson_compute_full_loss_{full}",
            {"compute_full_loss": full, "weight_column": "w"},
            [
                batch(
                    _logits(rng, (8, 1), 1.0),
                    rng.poisson(2.0, size=(8, 1)).astype(np.float32),
                    {"w": _weights(rng, (8, 1))},
                )
            ],
            "labels include 0, 1 and >1 (Stirling term only where z > 1)",
            head="PoissonRegressionHead",
        )
    rng = np.random.default_rng(332)
    add(
        "poisson_label_dim2_sum_rank_multi_dim",
        {"label_dimension": 2, "loss_reduction": "sum"},
        [batch(_logits(rng, (2, 3, 2), 1.0), rng.poisson(3.0, size=(2, 3, 2)).astype(np.float32))],
        head="PoissonRegressionHead",
    )
    rng = np.random.default_rng(333)
    add(
        "poisson_streaming_named_regularization",
        {"name": "p"},
        [
            batch(
                _logits(rng, (4, 1), 1.0),
                rng.poisson(1.5, size=(4, 1)).astype(np.float32),
                reg=[0.5],
            ),
            batch(
                _logits(rng, (4, 1), 1.0),
                rng.poisson(1.5, size=(4, 1)).astype(np.float32),
                reg=[0.25],
            ),
        ],
        head="PoissonRegressionHead",
    )
    return cases


def multi_class_cases():
    cases = []

    def add(id, kwargs, batches, notes=""):
        cases.append(
            dict(id=id, head="MultiClassHead", kwargs=kwargs, batches=batches, notes=notes)
        )

    for red in ("sum_over_batch_size", "sum"):
        for weighted in (False, True):
            rng = np.random.default_rng(400 + 2 * (red == "sum") + weighted)
            kw = {"n_classes": 3, "loss_reduction": red}
            feats = {}
            if weighted:
                kw["weight_column"] = "w"
                feats = {"w": _weights(rng, (8, 1))}
            add(
                f"mc_{_RED_SHORT[red]}_{'weighted' if weighted else 'unweighted'}",
                kw,
                [batch(_logits(rng, (8, 3)), rng.integers(0, 3, size=(8, 1)), feats)],
            )
    rng = np.random.default_rng(410)
    add(
        "mc_rank1_labels_weights",
        {"n_classes": 4, "weight_column": "w"},
        [batch(_logits(rng, (8, 4)), rng.integers(0, 4, size=(8,)), {"w": _weights(rng, (8,))})],
    )
    rng = np.random.default_rng(411)
    add(
        "mc_multi_dim_2x3",
        {"n_classes": 3, "weight_column": "w", "loss_reduction": "sum"},
        [
            batch(
                _logits(rng, (2, 3, 3)),
                rng.integers(0, 3, size=(2, 3, 1)),
                {"w": _weights(rng, (2, 3))},
            )
        ],
    )
    rng = np.random.default_rng(412)
    vocab = ["aang", "iroh", "zuko"]
    add(
        "mc_vocab_regularization",
        {"n_classes": 3, "label_vocabulary": vocab},
        [
            batch(
                _logits(rng, (8, 3)),
                np.array(vocab)[rng.integers(0, 3, size=(8, 1))],
                reg=[0.5, 1.0],
            )
        ],
    )
    rng = np.random.default_rng(413)
    add(
        "mc_large_logits",
        {"n_classes": 3},
        [batch(_with_extremes(rng, (8, 3), 1e4), rng.integers(0, 3, size=(8, 1)))],
    )
    rng = np.random.default_rng(414)
    add(
        "mc_custom_loss_fn",
        {"n_classes": 3, "loss_fn": "one_minus_true_prob"},
        [batch(_logits(rng, (8, 3)), rng.integers(0, 3, size=(8, 1)))],
    )
    rng = np.random.default_rng(415)
    add(
        "mc_streaming_named",
        {"n_classes": 4, "weight_column": "w", "name": "mc"},
        [
            batch(
                _logits(rng, (4, 4)), rng.integers(0, 4, size=(4, 1)), {"w": _weights(rng, (4, 1))}
            ),
            batch(
                _logits(rng, (8, 4)), rng.integers(0, 4, size=(8, 1)), {"w": _weights(rng, (8, 1))}
            ),
        ],
    )
    return cases


def multi_label_cases():
    cases = []

    def add(id, kwargs, batches, notes=""):
        cases.append(
            dict(id=id, head="MultiLabelHead", kwargs=kwargs, batches=batches, notes=notes)
        )

    for red in ("sum_over_batch_size", "sum"):
        for weighted in (False, True):
            rng = np.random.default_rng(500 + 2 * (red == "sum") + weighted)
            kw = {"n_classes": 3, "loss_reduction": red}
            feats = {}
            if weighted:
                kw["weight_column"] = "w"
                feats = {"w": _weights(rng, (8, 1))}
            add(
                f"ml_{_RED_SHORT[red]}_{'weighted' if weighted else 'unweighted'}",
                kw,
                [batch(_logits(rng, (8, 3)), _hard(rng, (8, 3)), feats)],
            )
    rng = np.random.default_rng(510)
    add(
        "ml_rank1_weights_thresholds",
        {"n_classes": 2, "weight_column": "w", "thresholds": [0.25, 0.5, 0.75]},
        [batch(_logits(rng, (8, 2)), _hard(rng, (8, 2)), {"w": _weights(rng, (8,))})],
    )
    rng = np.random.default_rng(511)
    add(
        "ml_multi_dim_2x3",
        {"n_classes": 3, "weight_column": "w"},
        [batch(_logits(rng, (2, 3, 3)), _hard(rng, (2, 3, 3)), {"w": _weights(rng, (2, 3))})],
    )
    rng = np.random.default_rng(512)
    add(
        "ml_class_based_metrics_ids",
        {"n_classes": 4, "classes_for_class_based_metrics": [0, 2]},
        [batch(_logits(rng, (8, 4)), _hard(rng, (8, 4)))],
    )
    rng = np.random.default_rng(513)
    add(
        "ml_vocab_class_based_metrics_strings_regularization",
        {
            "n_classes": 3,
            "label_vocabulary": ["a", "b", "c"],
            "classes_for_class_based_metrics": ["c", "a"],
            "weight_column": "w",
        },
        [batch(_logits(rng, (8, 3)), _hard(rng, (8, 3)), {"w": _weights(rng, (8, 1))}, reg=[0.5])],
        "dense multi-hot labels with a vocabulary (vocabulary only names classes)",
    )
    rng = np.random.default_rng(514)
    add(
        "ml_soft_labels",
        {"n_classes": 3, "thresholds": [0.5]},
        [batch(_logits(rng, (8, 3)), _soft(rng, (8, 3)))],
        "float labels in [0, 1] are accepted silently by TF 2.15",
    )
    rng = np.random.default_rng(515)
    add(
        "ml_large_logits",
        {"n_classes": 3, "thresholds": [0.5]},
        [batch(_with_extremes(rng, (8, 3), 1e4), _hard(rng, (8, 3)))],
    )
    rng = np.random.default_rng(516)
    add(
        "ml_custom_loss_fn",
        {"n_classes": 3, "loss_fn": "mean_abs_sigmoid_error"},
        [batch(_logits(rng, (8, 3)), _hard(rng, (8, 3)))],
    )
    rng = np.random.default_rng(517)
    add(
        "ml_streaming_named",
        {
            "n_classes": 3,
            "weight_column": "w",
            "thresholds": [0.5],
            "name": "ml",
            "classes_for_class_based_metrics": [1],
        },
        [
            batch(
                _logits(rng, (4, 3)), _hard(rng, (4, 3)), {"w": _weights(rng, (4, 1))}, reg=[0.5]
            ),
            batch(
                _logits(rng, (8, 3)), _hard(rng, (8, 3)), {"w": _weights(rng, (8, 1))}, reg=[1.0]
            ),
        ],
    )
    return cases


def multi_head_cases():
    cases = []

    def add(id, kwargs, batches, notes=""):
        cases.append(dict(id=id, head="MultiHead", kwargs=kwargs, batches=batches, notes=notes))

    ml2 = {"head": "MultiLabelHead", "kwargs": {"n_classes": 2, "name": "head1"}}
    ml3 = {"head": "MultiLabelHead", "kwargs": {"n_classes": 3, "name": "head2"}}
    rng = np.random.default_rng(600)
    add(
        "mh_two_multilabel_head_weights",
        {"heads": [ml2, ml3], "head_weights": [1.0, 2.0]},
        [
            batch(
                {"head1": _logits(rng, (4, 2)), "head2": _logits(rng, (4, 3))},
                {"head1": _hard(rng, (4, 2)), "head2": _hard(rng, (4, 3))},
                labels_dtype={"head1": "int64", "head2": "int64"},
            )
        ],
    )
    bin_a = {
        "head": "BinaryClassHead",
        "kwargs": {"name": "a", "weight_column": "w", "thresholds": [0.5]},
    }
    reg_b = {"head": "RegressionHead", "kwargs": {"name": "b", "label_dimension": 2}}
    mc_c = {"head": "MultiClassHead", "kwargs": {"name": "c", "n_classes": 3, "weight_column": "w"}}
    rng = np.random.default_rng(601)
    add(
        "mh_binary_regression_multiclass_regularization",
        {"heads": [bin_a, reg_b, mc_c]},
        [
            batch(
                {"a": _logits(rng, (8, 1)), "b": _logits(rng, (8, 2)), "c": _logits(rng, (8, 3))},
                {
                    "a": _hard(rng, (8, 1)),
                    "b": _logits(rng, (8, 2)),
                    "c": rng.integers(0, 3, size=(8, 1)),
                },
                {"w": _weights(rng, (8, 1))},
                reg=[0.5, 0.25],
                labels_dtype={"a": "int64", "b": "float32", "c": "int64"},
            )
        ],
    )
    rng = np.random.default_rng(602)
    add(
        "mh_streaming_sum",
        {
            "heads": [
                {
                    "head": "BinaryClassHead",
                    "kwargs": {"name": "a", "weight_column": "w", "loss_reduction": "sum"},
                },
                {"head": "RegressionHead", "kwargs": {"name": "b", "loss_reduction": "sum"}},
            ],
            "head_weights": [0.5, 3.0],
        },
        [
            batch(
                {"a": _logits(rng, (4, 1)), "b": _logits(rng, (4, 1))},
                {"a": _hard(rng, (4, 1)), "b": _logits(rng, (4, 1))},
                {"w": _weights(rng, (4, 1))},
                reg=[0.5],
                labels_dtype={"a": "int64", "b": "float32"},
            ),
            batch(
                {"a": _logits(rng, (4, 1)), "b": _logits(rng, (4, 1))},
                {"a": _hard(rng, (4, 1)), "b": _logits(rng, (4, 1))},
                {"w": _weights(rng, (4, 1))},
                reg=[1.0],
                labels_dtype={"a": "int64", "b": "float32"},
            ),
        ],
        "two batches: TF's eager per-head metrics only reflect the last batch "
        "(metrics_tf_multihead_eager); 'metrics' holds the correctly streamed values",
    )
    return cases


# --------------------------------------------------------------------------
# Running TF v2
# --------------------------------------------------------------------------


def _np_dtype(name):
    return {"float32": np.float32, "int32": np.int32, "int64": np.int64, "str": str}[name]


def tf_value(x, dtype):
    if dtype == "str":
        return tf.constant(np.asarray(x, dtype=object).astype(bytes))
    return tf.constant(np.asarray(x, dtype=_np_dtype(dtype)))


def build_tf_head(spec):
    name = spec["head"]
    kw = dict(spec.get("kwargs", {}))
    if name == "MultiHead":
        heads = [build_tf_head(h) for h in kw["heads"]]
        return tf.estimator.MultiHead(heads, head_weights=kw.get("head_weights"))
    if "loss_fn" in kw:
        kw["loss_fn"] = TF_LOSS_FNS[kw["loss_fn"]]
    if "inverse_link_fn" in kw:
        kw["inverse_link_fn"] = TF_INVERSE_LINK_FNS[kw["inverse_link_fn"]]
    return getattr(tf.estimator, name)(**kw)


def batch_inputs(b):
    if isinstance(b["logits"], dict):
        logits = {k: tf_value(v, b["logits_dtype"]) for k, v in b["logits"].items()}
        labels = {k: tf_value(v, b["labels_dtype"][k]) for k, v in b["labels"].items()}
    else:
        logits = tf_value(b["logits"], b["logits_dtype"])
        labels = tf_value(b["labels"], b["labels_dtype"])
    features = {k: tf.constant(np.asarray(v, np.float32)) for k, v in b["features"].items()}
    reg = b["regularization_losses"]
    reg = None if reg is None else [tf.constant(np.float32(r)) for r in reg]
    return logits, labels, features, reg


def tf_unreduced(head, logits, labels, features):
    """Unweighted unreduced loss and weights broadcast to its shape (v2 private API)."""
    logits = base_head.check_logits_final_dim(logits, head.logits_dimension)
    processed = head._processed_labels(logits, labels)
    unweighted, weights = head._unweighted_loss_and_weights(logits, processed, features)
    unweighted = np.asarray(unweighted.numpy(), np.float32)
    weights = np.broadcast_to(np.asarray(weights, np.float32), unweighted.shape)
    return unweighted, weights


def export_json(export_outputs, predictions_json=None):
    """ExportOutput objects -> JSON.

    Two compressions (resolved by the test loader): a signature holding the same
    object as an earlier one is ``{"type": ..., "same_as": <earlier sig>}``, and
    PredictOutput outputs equal to the head's predictions are ``"=predictions"``.
    """
    out = {}
    seen = []
    for sig, eo in export_outputs.items():
        rec = {"type": type(eo).__name__}
        same = [s for s, o in seen if o is eo]
        seen.append((sig, eo))
        if same:
            rec["same_as"] = same[0]
            out[sig] = rec
            continue
        if isinstance(eo, tf.estimator.export.ClassificationOutput):
            rec["scores"] = to_json(eo.scores)
            rec["classes"] = to_json(eo.classes)
        elif isinstance(eo, tf.estimator.export.RegressionOutput):
            rec["value"] = to_json(eo.value)
        elif isinstance(eo, tf.estimator.export.PredictOutput):
            rec["outputs"] = {k: to_json(v) for k, v in eo.outputs.items()}
            if rec["outputs"] == predictions_json:
                rec["outputs"] = "=predictions"
        else:
            raise TypeError(type(eo))
        out[sig] = rec
    return out


def predictions_json(preds):
    out = {}
    for k, v in preds.items():
        if isinstance(k, tuple):  # MultiHead
            out.setdefault(k[0], {})[k[1]] = to_json(v)
        else:
            out[k] = to_json(v)
    return out


def metrics_json(metrics):
    return {k: _f32(m.result().numpy()) for k, m in metrics.items()}


def run_v2_case(case):
    head = build_tf_head(case)
    is_multi = case["head"] == "MultiHead"
    batches = case["batches"]
    has_reg = batches[0]["regularization_losses"] is not None
    first_reg = batch_inputs(batches[0])[3]
    metrics = head.metrics(regularization_losses=first_reg if has_reg else None)
    sub_metrics = None
    if is_multi:
        sub_metrics = [h.metrics() for h in head._heads]
    for b in batches:
        logits, labels, features, reg = batch_inputs(b)
        exp = {}
        exp["loss"] = _f32(
            head.loss(labels, logits, features=features, regularization_losses=reg).numpy()
        )
        if is_multi:
            exp["unreduced_loss"], exp["weights"] = {}, {}
            for h in head._heads:
                u, w = tf_unreduced(h, logits[h.name], labels[h.name], features)
                exp["unreduced_loss"][h.name] = to_json(u)
                exp["weights"][h.name] = to_json(w)
            exp["head_losses"] = {
                h.name: _f32(h.loss(labels[h.name], logits[h.name], features=features).numpy())
                for h in head._heads
            }
        else:
            u, w = tf_unreduced(head, logits, labels, features)
            exp["unreduced_loss"], exp["weights"] = to_json(u), to_json(w)
        exp["predictions"] = predictions_json(head.predictions(logits))
        spec = head.create_estimator_spec(
            features=features, mode=tf.estimator.ModeKeys.PREDICT, logits=logits
        )
        exp["export_outputs"] = export_json(spec.export_outputs, exp["predictions"])
        b["expected"] = exp
        head.update_metrics(metrics, features, logits, labels, regularization_losses=reg)
        if is_multi:
            for h, m in zip(head._heads, sub_metrics, strict=True):
                h.update_metrics(m, features, logits[h.name], labels[h.name])
    raw = metrics_json(metrics)
    if not is_multi:
        case["metrics"] = raw
        return case
    fixed = {
        k: v
        for k, v in raw.items()
        if k.startswith("loss/") or k.startswith("regularization_loss/")
    }
    for m in sub_metrics:
        fixed.update(metrics_json(m))
    assert set(fixed) == set(raw), (sorted(fixed), sorted(raw))
    if len(batches) == 1:
        for k in raw:
            assert np.isclose(raw[k], fixed[k], rtol=1e-6, atol=1e-7), (k, raw[k], fixed[k])
    case["metrics"] = fixed
    case["metrics_tf_multihead_eager"] = raw
    return case


# --------------------------------------------------------------------------
# Running TF v1 (canned binary head, graph mode)
# --------------------------------------------------------------------------


def run_v1_binary_case(case):
    kw = dict(case["kwargs"])
    reduction = V1_REDUCTIONS[kw.pop("loss_reduction")]
    if "loss_fn" in kw:
        kw["loss_fn"] = TF_LOSS_FNS[kw["loss_fn"]]
    batches = case["batches"]
    b0 = batches[0]
    with tf.Graph().as_default():
        head = head_v1._binary_logistic_head_with_sigmoid_cross_entropy_loss(
            loss_reduction=reduction, **kw
        )
        logits_rank = np.asarray(b0["logits"]).ndim
        labels_rank = np.asarray(b0["labels"]).ndim
        logits_ph = tf.compat.v1.placeholder(tf.float32, [None] * logits_rank)
        ldt = {"str": tf.string, "int64": tf.int64, "float32": tf.float32}[b0["labels_dtype"]]
        labels_ph = tf.compat.v1.placeholder(ldt, [None] * labels_rank)
        feat_ph = {
            k: tf.compat.v1.placeholder(tf.float32, [None] * np.asarray(v).ndim)
            for k, v in b0["features"].items()
        }
        reg = b0["regularization_losses"]
        reg_ph = None if reg is None else [tf.compat.v1.placeholder(tf.float32, []) for _ in reg]
        spec = head.create_estimator_spec(
            features=feat_ph,
            mode=tf.estimator.ModeKeys.EVAL,
            logits=logits_ph,
            labels=labels_ph,
            regularization_losses=reg_ph,
        )
        loss_spec = head.create_loss(
            features=feat_ph, mode=tf.estimator.ModeKeys.EVAL, logits=logits_ph, labels=labels_ph
        )
        value_ops = {k: v[0] for k, v in spec.eval_metric_ops.items()}
        update_ops = {k: v[1] for k, v in spec.eval_metric_ops.items()}
        weights_t = loss_spec.weights
        with tf.compat.v1.Session() as sess:
            sess.run(
                [
                    tf.compat.v1.global_variables_initializer(),
                    tf.compat.v1.local_variables_initializer(),
                    tf.compat.v1.tables_initializer(),
                ]
            )
            for b in batches:
                feed = {logits_ph: np.asarray(b["logits"], _np_dtype(b["logits_dtype"]))}
                if b["labels_dtype"] == "str":
                    feed[labels_ph] = np.asarray(b["labels"], dtype=object).astype(bytes)
                else:
                    feed[labels_ph] = np.asarray(b["labels"], _np_dtype(b["labels_dtype"]))
                for k, ph in feat_ph.items():
                    feed[ph] = np.asarray(b["features"][k], np.float32)
                if reg_ph is not None:
                    for ph, r in zip(reg_ph, b["regularization_losses"], strict=True):
                        feed[ph] = np.float32(r)
                fetch = [spec.loss, loss_spec.unreduced_loss]
                if isinstance(weights_t, tf.Tensor):
                    fetch.append(weights_t)
                res = sess.run(fetch, feed)
                unred = np.asarray(res[1], np.float32)
                w = res[2] if len(res) > 2 else 1.0
                b["expected"] = {
                    "loss": _f32(res[0]),
                    "unreduced_loss": to_json(unred),
                    "weights": to_json(np.broadcast_to(np.asarray(w, np.float32), unred.shape)),
                }
                sess.run(update_ops, feed)
            values = sess.run(value_ops)
    case["metrics"] = {k: _f32(v) for k, v in values.items()}
    return case


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def main(out_dir=HERE):
    meta = {
        "generator": "tests/data/make_tf_reference.py",
        "tensorflow": tf.__version__,
        "tensorflow_estimator": getattr(tensorflow_estimator, "__version__", "2.15.0"),
        "numpy": np.__version__,
        "python": sys.version.split()[0],
    }
    families = {
        "binary": [run_v2_case(c) for c in binary_cases()],
        "binary_v1": [run_v1_binary_case(c) for c in binary_v1_cases()],
        "logistic_regression": [run_v2_case(c) for c in logistic_cases()],
        "regression": [run_v2_case(c) for c in regression_cases()],
        "multi_class": [run_v2_case(c) for c in multi_class_cases()],
        "multi_label": [run_v2_case(c) for c in multi_label_cases()],
        "multi_head": [run_v2_case(c) for c in multi_head_cases()],
    }
    total = 0
    for fam, cases in families.items():
        path = os.path.join(out_dir, f"tf_reference_{fam}.json")
        with open(path, "w") as f:
            json.dump({"meta": dict(meta, family=fam), "cases": cases}, f, separators=(",", ":"))
            f.write("\n")
        size = os.path.getsize(path)
        total += size
        print(f"{path}: {len(cases)} cases, {size / 1024:.1f} KiB")
    print(f"total {total / 1024:.1f} KiB")


if __name__ == "__main__":
    main(*sys.argv[1:])
