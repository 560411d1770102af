"""Every key string of the heads, in one place (as TF's ``metric_keys.py`` / ``prediction_keys.py``).

Metric keys get ``"/" + name`` appended when the head has a name
(:func:`summary_key`).

Examples:
  >>> MetricKeys.AUC, threshold_key(MetricKeys.ACCURACY, 0.5)
  ('auc', 'accuracy/positive_threshold_0.5')
  >>> summary_key(MetricKeys.LOSS_MEAN, "head1")
  'average_loss/head1'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

__all__ = [
    "ExportKeys",
    "MetricKeys",
    "PredictionKeys",
    "SignatureKeys",
    "class_key",
    "summary_key",
    "threshold_key",
    "threshold_metrics",
]


class MetricKeys:
    """Metric keys (TF's ``metric_keys.MetricKeys``)."""

    LOSS: Final = "loss"
    LOSS_MEAN: Final = "average_loss"
    LOSS_REGULARIZATION: Final = "regularization_loss"
    ACCURACY: Final = "accuracy"
    PRECISION: Final = "precision"
    RECALL: Final = "recall"
    ACCURACY_BASELINE: Final = "accuracy_baseline"
    AUC: Final = "auc"
    AUC_PR: Final = "auc_precision_recall"
    LABEL_MEAN: Final = "label/mean"
    PREDICTION_MEAN: Final = "prediction/mean"
    PROBABILITY_MEAN: Final = "probability_mean"
    # extended_metrics=True (LogitHistogram; not in TF).
    ROC_AUC: Final = "roc_auc"
    ROC_AUC_LOWER: Final = "roc_auc/lower"
    ROC_AUC_UPPER: Final = "roc_auc/upper"
    ROC_AUC_STDERR: Final = "roc_auc/stderr"
    AVERAGE_PRECISION: Final = "average_precision"
    EXPECTED_CALIBRATION_ERROR: Final = "expected_calibration_error"
    NORMALIZED_ENTROPY: Final = "normalized_entropy"
    CALIBRATION_RATIO: Final = "calibration_ratio"
    EXTENDED: Final = (
        ROC_AUC,
        ROC_AUC_LOWER,
        ROC_AUC_UPPER,
        ROC_AUC_STDERR,
        AVERAGE_PRECISION,
        EXPECTED_CALIBRATION_ERROR,
        NORMALIZED_ENTROPY,
        CALIBRATION_RATIO,
    )


class PredictionKeys:
    """Prediction keys (TF's ``prediction_keys.PredictionKeys``)."""

    CLASSES: Final = "classes"
    CLASS_IDS: Final = "class_ids"
    ALL_CLASSES: Final = "all_classes"
    ALL_CLASS_IDS: Final = "all_class_ids"
    LOGISTIC: Final = "logistic"
    LOGITS: Final = "logits"
    PREDICTIONS: Final = "predictions"
    PROBABILITIES: Final = "probabilities"
    # String-valued keys: made on the host by ``head.class_names``, never in a jax dict.
    HOST_ONLY: Final = (CLASSES, ALL_CLASSES)


class SignatureKeys:
    """Serving signature names of ``export_outputs``."""

    SERVING_DEFAULT: Final = "serving_default"
    CLASSIFICATION: Final = "classification"
    REGRESSION: Final = "regression"
    PREDICT: Final = "predict"


class ExportKeys:
    """Output names inside the classification / regression signatures."""

    SCORES: Final = "scores"
    CLASS_IDS: Final = "class_ids"
    CLASSES: Final = "classes"
    VALUE: Final = "value"


def summary_key(key: str, name: str | None) -> str:
    """TF's ``_summary_key``: ``key/name`` when the head has a name, else ``key``."""
    return f"{key}/{name}" if name else key


def threshold_key(metric: str, threshold: float) -> str:
    """``<metric>/positive_threshold_<t>`` with ``t`` formatted by ``%g`` (TF's keys)."""
    return f"{metric}/positive_threshold_{threshold:g}"


def threshold_metrics(
    thresholds: Sequence[float], accuracy: Any, precision: Any, recall: Any
) -> dict[str, Any]:
    """TF's ``accuracy|precision|recall/positive_threshold_<t>`` entries, one value per threshold.

    ``accuracy``, ``precision`` and ``recall`` are indexable by threshold
    position (``[T]`` arrays or sequences).

    Examples:
      >>> threshold_metrics([0.5], [0.9], [0.8], [0.7])
      {'accuracy/positive_threshold_0.5': 0.9, 'precision/positive_threshold_0.5': 0.8, 'recall/positive_threshold_0.5': 0.7}
    """
    out: dict[str, Any] = {}
    for i, t in enumerate(thresholds):
        out[threshold_key(MetricKeys.ACCURACY, t)] = accuracy[i]
        out[threshold_key(MetricKeys.PRECISION, t)] = precision[i]
        out[threshold_key(MetricKeys.RECALL, t)] = recall[i]
    return out


def class_key(metric: str, class_name: str) -> str:
    """``<metric>/<class name>`` (``class<c>`` without a vocabulary), for per-class metrics."""
    return f"{metric}/{class_name}"
