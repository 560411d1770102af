"""``BinaryClassHead``: sigmoid cross-entropy on one logit per example."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxheads import _checks, _compat, _validate, losses, metrics
from jaxheads import labels as lb
from jaxheads.heads._metric_state import (
    BinaryHeadMetrics,
    BinaryMetricsConfig,
    init_regularization,
)
from jaxheads.heads._single import Batch, SingleHead, classification_outputs, select_predictions
from jaxheads.heads.base import Features
from jaxheads.keys import ExportKeys, PredictionKeys, SignatureKeys
from jaxheads.metrics._histogram import DEFAULT_BUCKETS
from jaxheads.reduction import Reduction
from jaxheads.vocabulary import LabelVocabulary, default_class_names

__all__ = ["EXTENDED_LOGIT_BUCKETS", "BinaryClassHead", "binary_classification_head"]

#: Buckets of the logit histogram behind ``extended_metrics=True`` (grid [-16, 16]).
EXTENDED_LOGIT_BUCKETS = DEFAULT_BUCKETS


@dataclasses.dataclass(frozen=True)
class BinaryClassHead(SingleHead[BinaryHeadMetrics]):
    """Binary classification with sigmoid cross-entropy (TF's ``BinaryClassHead``).

    Shapes: logits ``[D0, …, DN, 1]``; labels ``[D0, …, DN, 1]`` or
    ``[D0, …, DN]`` — numbers in [0, 1] (soft labels allowed), or strings from
    ``label_vocabulary`` (encoded on the host; inside ``jit`` pass
    :meth:`encode_labels`'s output); weights (``features[weight_column]``)
    ``[D0, …, DN]`` or ``[D0, …, DN, 1]``.

    Differences from TF, on purpose: ``features=None`` means no features;
    ``all_class_ids`` is ``[D0, …, DN, 2]`` (TF tiles over ``D0`` only);
    ``class_ids`` are int32; string predictions (``classes``) come from
    :meth:`class_names` on the host; a ``loss_fn`` that declares
    ``loss_reduction`` receives it (TF documents that but never passes it).

    Attributes:
      weight_column: feature key (or :class:`~jaxheads.NumericColumn`) of the
        per-example weights, or ``None``.
      thresholds: extra thresholds in (0, 1) for the
        ``accuracy|precision|recall/positive_threshold_<t>`` metrics.
      label_vocabulary: two class names (negative, positive), or ``None``.
      loss_reduction: a :class:`~jaxheads.Reduction`; default ``SUM_OVER_BATCH_SIZE``.
      loss_fn: optional ``loss_fn(labels, logits[, features][, loss_reduction])``
        returning the unweighted, unreduced loss ``[D0, …, DN, 1]``.
      name: appended to every metric key (``accuracy/<name>``).
      compat: ``"v2"`` (TF 2.x / Keras metrics, the default) or ``"v1"`` (TF1 /
        contrib metrics: trapezoidal AUCs with ε = 1e-6, ``>=`` in threshold
        accuracy, ε = 1e-7 in threshold precision/recall).
      num_thresholds: thresholds of the AUC curves (200, as TF).
      extended_metrics: also keep a :class:`~jaxheads.metrics.LogitHistogram`
        (16,384 logit buckets on [-16, 16], 256 KiB of state) and report
        ``roc_auc``, ``roc_auc/lower``, ``roc_auc/upper``, ``roc_auc/stderr``,
        ``average_precision``, ``expected_calibration_error``,
        ``normalized_entropy`` and ``calibration_ratio`` (each with the ``/name``
        suffix) beside TF's keys, whose values do not change. Default ``False``:
        exactly TF's metrics.

    Examples:
      >>> head = BinaryClassHead()
      >>> float(head.loss(labels=jnp.array([[1.0], [1.0]]), logits=jnp.array([[45.0], [-41.0]])))
      20.5
    """

    weight_column: Any = None
    thresholds: Sequence[float] | None = None
    label_vocabulary: Sequence[str] | None = None
    loss_reduction: Reduction | str = Reduction.SUM_OVER_BATCH_SIZE
    loss_fn: Callable[..., Any] | None = None
    name: str | None = None
    compat: str = "v2"
    num_thresholds: int = 200
    extended_metrics: bool = False

    _state_class = BinaryHeadMetrics

    def __post_init__(self) -> None:
        vocabulary = LabelVocabulary.from_argument(
            _validate.label_vocabulary(self.label_vocabulary, n_classes=2)
        )
        object.__setattr__(
            self, "label_vocabulary", None if vocabulary is None else vocabulary.classes
        )
        object.__setattr__(self, "thresholds", _checks.check_thresholds(self.thresholds))
        self._validate_common()
        _compat.check_compat(self.compat)
        num_thresholds = _checks.check_num_thresholds(self.num_thresholds)
        object.__setattr__(self, "num_thresholds", num_thresholds)
        extended = _validate.flag(self.extended_metrics, "extended_metrics")
        object.__setattr__(self, "extended_metrics", extended)

    @property
    def logits_dimension(self) -> int:
        return 1

    @property
    def _vocabulary(self) -> LabelVocabulary:
        if self.label_vocabulary is None:
            return default_class_names(2)
        return LabelVocabulary(tuple(self.label_vocabulary))

    # ---------------------------------------------------------------- labels
    def _ids(self, given: Any) -> Any:
        no_vocabulary = TypeError(
            "labels are strings but the head has no label_vocabulary: pass numeric labels, or "
            "give the head a label_vocabulary to map the strings to class ids."
        )
        vocabulary = None if self.label_vocabulary is None else self._vocabulary
        return lb.encode_strings(given, vocabulary, no_vocabulary)

    def encode_labels(self, labels: Any, features: Features = None) -> Any:
        """Host side: labels as float32 class ids in [0, 1], ready for ``jit``.

        String labels are looked up in ``label_vocabulary`` (an unknown string
        is a ``ValueError``); numeric labels are range-checked. NumPy in, NumPy
        out; a ``jax.Array`` is checked without leaving its device (see
        :func:`jaxheads.labels.host_array`).
        """
        _checks.check_weight_values(features, self.weight_column)
        ids = self._ids(labels)
        return lb.encoded(ids, _check_label_values(lb.host_array(ids)), np.float32)

    def _process_labels(self, labels: Any, logits: jax.Array) -> jax.Array:
        dense = lb.dense_labels(self._ids(labels), logits.shape, 1)
        return _check_label_values(dense)

    def _builtin_loss(self, labels: jax.Array, logits: jax.Array) -> jax.Array:
        return losses.sigmoid_cross_entropy(labels, logits)

    # ---------------------------------------------------------------- predictions
    def predictions(
        self, logits: ArrayLike, keys: Sequence[str] | None = None
    ) -> dict[str, jax.Array]:
        """Prediction arrays, TF's keys (the string keys come from :meth:`class_names`).

        Returns a dict with ``logits`` f32 ``[…, 1]``, ``logistic`` (sigmoid)
        f32 ``[…, 1]``, ``probabilities`` f32 ``[…, 2]``, ``class_ids`` int32
        ``[…, 1]`` (1 iff logit > 0; a logit of exactly 0 is class 0, as TF)
        and ``all_class_ids`` int32 ``[…, 2]``; ``keys`` restricts it.
        """
        logits = self._float_logits(logits)
        logistic = jax.nn.sigmoid(logits)
        predictions = {
            PredictionKeys.LOGITS: logits,
            PredictionKeys.LOGISTIC: logistic,
            PredictionKeys.PROBABILITIES: jnp.concatenate(
                [jax.nn.sigmoid(-logits), logistic], axis=-1
            ),
            PredictionKeys.CLASS_IDS: (logits > 0).astype(jnp.int32),
            PredictionKeys.ALL_CLASS_IDS: jnp.broadcast_to(
                jnp.arange(2, dtype=jnp.int32), logits.shape[:-1] + (2,)
            ),
        }
        return select_predictions(predictions, keys, PredictionKeys.CLASS_IDS)

    def class_vocabularies(self) -> dict[str, tuple[str, ...]]:
        """``class_ids`` / ``all_class_ids`` → the vocabulary (or ``("0", "1")``)."""
        classes = self._vocabulary.classes
        return {PredictionKeys.CLASS_IDS: classes, PredictionKeys.ALL_CLASS_IDS: classes}

    def export_outputs(self, logits: ArrayLike) -> dict[str, dict[str, jax.Array]]:
        """``serving_default``/``classification`` (scores, class ids), ``regression``, ``predict``."""
        predictions = self.predictions(logits)
        classification = classification_outputs(predictions)
        return {
            SignatureKeys.SERVING_DEFAULT: classification,
            SignatureKeys.CLASSIFICATION: classification,
            SignatureKeys.REGRESSION: {ExportKeys.VALUE: predictions[PredictionKeys.LOGISTIC]},
            SignatureKeys.PREDICT: predictions,
        }

    # ---------------------------------------------------------------- metrics
    def _metrics_config(self) -> BinaryMetricsConfig:
        return BinaryMetricsConfig(
            thresholds=tuple(self.thresholds or ()),
            num_thresholds=self.num_thresholds,
            compat=self.compat,
            extended=self.extended_metrics,
        )

    def init_metrics(self, regularization_losses: Any = None) -> BinaryHeadMetrics:
        """A fresh :class:`BinaryHeadMetrics`: every count from one bucketing per batch.

        Pass ``regularization_losses`` (the list, or ``True``) to track the
        ``regularization_loss`` metric, as TF's ``metrics(regularization_losses)``.
        """
        config = self._metrics_config()
        counts = metrics.BinaryClassifierMetrics.empty(
            num_thresholds=config.num_thresholds,
            thresholds=config.thresholds,
            logit_buckets=EXTENDED_LOGIT_BUCKETS if config.extended else 0,
        )
        return BinaryHeadMetrics(
            regularization_loss=init_regularization(regularization_losses),
            config=config,
            counts=counts,
        )

    def _update_state(self, state: BinaryHeadMetrics, batch: Batch) -> BinaryHeadMetrics:
        # The built-in loss is recomputed by the kernel from the same exp as the
        # probability (XLA drops the batch's copy); a custom loss_fn's is passed.
        counts = state.counts.update_logits(
            batch.labels,
            batch.logits,
            self._metric_weights(batch),
            loss=None if self.loss_fn is None else batch.loss,
        )
        return state.replace(counts=counts)

    def curve(self, state: BinaryHeadMetrics) -> metrics.ConfusionCurve:
        """The ROC / PR :class:`~jaxheads.metrics.ConfusionCurve` of a metric state.

        ``head.curve(state).roc_curve()`` / ``.pr_curve()`` give the curve points.
        """
        self._check_state(state)
        return state.counts.curve()

    def _metric_values(self, state: BinaryHeadMetrics) -> dict[str, jax.Array]:
        return state.counts.compute(self.compat)


def _check_label_values(given: jax.Array) -> jax.Array:
    """Numeric labels in [0, 1], as float32."""
    lb.check_numeric(given)
    as_float = given.astype(jnp.float32)
    lb.check_range(as_float, 2)
    return as_float


def binary_classification_head(
    weight_column: Any = None,
    thresholds: Sequence[float] | None = None,
    label_vocabulary: Sequence[str] | None = None,
    loss_reduction: Reduction | str = Reduction.SUM_OVER_BATCH_SIZE,
    loss_fn: Callable[..., Any] | None = None,
    name: str | None = None,
    compat: str = "v2",
) -> BinaryClassHead:
    """TF1's ``tf.contrib.estimator.binary_classification_head``; see :class:`BinaryClassHead`.

    Examples:
      >>> binary_classification_head(thresholds=[0.25]).thresholds
      (0.25,)
    """
    return BinaryClassHead(
        weight_column=weight_column,
        thresholds=thresholds,
        label_vocabulary=label_vocabulary,
        loss_reduction=loss_reduction,
        loss_fn=loss_fn,
        name=name,
        compat=compat,
    )
