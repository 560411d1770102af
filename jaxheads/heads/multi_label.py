"""``MultiLabelHead``: sigmoid cross-entropy averaged over classes, zero or more labels per example.

Labels come in three forms (see :mod:`jaxheads.labels`):

* a multi-hot array ``[D0, …, DN, n_classes]`` (ints, bools or soft floats in
  [0, 1]) — what the loss sees;
* :class:`~jaxheads.SparseLabels`: padded class-id lists ``[D0, …, DN, max_labels]``
  with ``-1`` as padding, the JAX stand-in for TF's ``SparseTensor`` labels
  (jittable; turned into multi-hot inside the head);
* on the host only, with a ``label_vocabulary``: (ragged) nested lists of
  class names, or a :class:`~jaxheads.SparseLabels` of names (``""`` pads).
"""

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
    MultiLabelHeadMetrics,
    MultiLabelMetricsConfig,
    extended_class_values,
    init_regularization,
)
from jaxheads.heads._single import (
    LOSS_FN_ARGS,
    Batch,
    SingleHead,
    classification_outputs,
    select_predictions,
)
from jaxheads.heads.base import Features
from jaxheads.keys import MetricKeys, PredictionKeys, SignatureKeys, class_key, threshold_metrics
from jaxheads.labels import SparseLabels
from jaxheads.reduction import Reduction
from jaxheads.vocabulary import LabelVocabulary, default_class_names, is_string_array

__all__ = ["MultiLabelHead", "SparseLabels", "multi_label_head"]


@dataclasses.dataclass(frozen=True)
class MultiLabelHead(SingleHead[MultiLabelHeadMetrics]):
    """Multi-label classification with sigmoid cross-entropy (TF's ``MultiLabelHead``).

    The loss of an example is the sigmoid cross-entropy averaged over the
    ``n_classes`` logits (``[D0, …, DN, 1]``), then weighted and reduced:
    ``SUM_OVER_BATCH_SIZE`` is ``Σ_b w_b·mean_c(CE_bc) / B``.

    Shapes: logits ``[D0, …, DN, n_classes]``; labels a multi-hot
    ``[D0, …, DN, n_classes]`` array (ints, bools, or floats in [0, 1] —
    soft labels are accepted, as TF), or :class:`SparseLabels` (padded id
    lists ``[D0, …, DN, m]``, ``-1`` pads), or on the host with a
    ``label_vocabulary`` nested lists of class names (encode them with
    :meth:`encode_labels` before ``jit``). A dense array whose last dimension
    is not ``n_classes`` is an error (never read as ids: wrap ids in
    :class:`SparseLabels`). Weights ``[D0, …, DN]`` or ``[D0, …, DN, 1]``;
    per-class weights ``[D0, …, DN, n_classes]`` are rejected, as in TF (use
    ``loss_fn`` for class weighting).

    Metrics: ``average_loss``, ``auc``, ``auc_precision_recall`` (over all
    example × class pairs, weights broadcast), ``regularization_loss`` when
    given, per threshold ``accuracy|precision|recall/positive_threshold_<t>``,
    and per class ``c`` of ``classes_for_class_based_metrics``:
    ``probability_mean/class<c>``, ``auc/class<c>``,
    ``auc_precision_recall/class<c>`` (the vocabulary name replaces
    ``class<c>`` when there is a vocabulary).

    Differences from TF, on purpose: ``features=None`` means no features;
    TF's string prediction ``classes`` (the full class list, tiled — not the
    predicted classes) is ``class_names(predictions["all_class_ids"])`` on the
    host, with ``all_class_ids`` int32 ``[D0, …, DN, n_classes]``; labels reach
    a ``loss_fn`` as float32 multi-hot (TF: int64); a ``loss_fn`` that
    declares ``loss_reduction`` receives it.

    Attributes:
      n_classes: number of classes, > 1.
      weight_column: feature key (or :class:`~jaxheads.NumericColumn`) of the
        per-example weights, or ``None``.
      thresholds: thresholds in (0, 1) for the per-threshold metrics.
      label_vocabulary: ``n_classes`` class names, or ``None``.
      loss_reduction: a :class:`~jaxheads.Reduction`; default ``SUM_OVER_BATCH_SIZE``.
      loss_fn: optional ``loss_fn(labels, logits[, features][, loss_reduction])``
        returning the unweighted, unreduced loss ``[D0, …, DN, 1]``; labels are
        float32 multi-hot ``[D0, …, DN, n_classes]``.
      classes_for_class_based_metrics: class ids (or vocabulary names) that get
        per-class metrics; stored as ids.
      name: appended to every metric key (``auc/<name>``).
      compat: ``"v2"`` (TF 2.x / Keras metrics, the default) or ``"v1"``
        (``tf.contrib.estimator.multi_label_head``: trapezoidal AUCs with
        ε = 1e-6, ``>=`` in threshold accuracy, ε = 1e-7 in threshold
        precision/recall).
      num_thresholds: thresholds of the AUC curves (200, as TF).
      extended_metrics: also keep one :class:`~jaxheads.metrics.LogitHistogram`
        per class (a sigmoid per class; 16,384 logit buckets: 256 KiB of state per class, e.g.
        25 MiB for 100 classes) and report ``roc_auc``, ``roc_auc/lower``,
        ``roc_auc/upper``, ``roc_auc/stderr``, ``average_precision``,
        ``expected_calibration_error``, ``normalized_entropy`` and
        ``calibration_ratio`` per class as ``<key>/<class name>`` (then the
        ``/name`` suffix). TF's keys and values do not change; default ``False``.

    Examples:
      >>> head = MultiLabelHead(n_classes=2)
      >>> logits = jnp.array([[-1.0, 1.0], [-1.5, 1.5]])
      >>> labels = jnp.array([[1, 0], [1, 1]])
      >>> round(float(head.loss(labels, logits)), 4)
      1.1323
      >>> sparse = SparseLabels(jnp.array([[0, -1], [0, 1]]))
      >>> round(float(head.loss(sparse, logits)), 4)
      1.1323
    """

    n_classes: int
    weight_column: Any = None
    thresholds: Sequence[float] | None = None
    label_vocabulary: Sequence[str] | None = None
    loss_reduction: Reduction | str = Reduction.SUM_OVER_BATCH_SIZE
    loss_fn: Callable[..., Any] | None = None
    classes_for_class_based_metrics: Sequence[int | str] | None = None
    name: str | None = None
    compat: str = "v2"
    num_thresholds: int = 200
    extended_metrics: bool = False

    _state_class = MultiLabelHeadMetrics

    def __post_init__(self) -> None:
        n = _validate.scalar(self.n_classes)
        if n is None or isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
            raise ValueError(
                f"n_classes must be > 1 for multi-label classification. Given: {n}"
                + ("" if n is None or isinstance(n, (int, np.integer)) else " (expected an int)")
            )
        object.__setattr__(self, "n_classes", int(n))
        object.__setattr__(self, "thresholds", _checks.check_thresholds(self.thresholds))
        vocabulary = LabelVocabulary.from_argument(
            _validate.label_vocabulary(
                self.label_vocabulary, tf_message="label_vocabulary must be a list or tuple"
            ),
            message="label_vocabulary must be a list or tuple",
        )
        if vocabulary is not None and len(vocabulary) != self.n_classes:
            raise ValueError(
                f"Length of label_vocabulary must be n_classes ({self.n_classes}). "
                f"Given: {len(vocabulary)}"
            )
        object.__setattr__(
            self, "label_vocabulary", None if vocabulary is None else vocabulary.classes
        )
        # TF validates loss_fn before loss_reduction in this head.
        _checks.check_loss_fn_args(self.loss_fn, LOSS_FN_ARGS)
        self._validate_common()
        object.__setattr__(
            self,
            "classes_for_class_based_metrics",
            self._class_ids_for_metrics(self.classes_for_class_based_metrics),
        )
        _compat.check_compat(self.compat)
        num_thresholds = _checks.check_num_thresholds(self.num_thresholds)
        object.__setattr__(self, "num_thresholds", num_thresholds)
        extended = _validate.flag(self.extended_metrics, "extended_metrics")
        object.__setattr__(self, "extended_metrics", extended)

    def _class_ids_for_metrics(self, classes: Any) -> tuple[int, ...]:
        return _validate.class_ids_for_metrics(classes, self.n_classes, self.label_vocabulary)

    @property
    def logits_dimension(self) -> int:
        return self.n_classes

    @property
    def _vocabulary(self) -> LabelVocabulary | None:
        if self.label_vocabulary is None:
            return None
        return LabelVocabulary(tuple(self.label_vocabulary))

    # ---------------------------------------------------------------- labels
    def _sparse_to_multi_hot(self, ids: Any) -> jax.Array:
        if is_string_array(ids):
            ids = lb.names_to_ids(ids, self._vocabulary)
        ids = lb.host_array(ids)
        lb.check_sparse_ids(ids, self.n_classes)
        return lb.ids_to_multi_hot(ids, self.n_classes)

    def _multi_hot(self, labels: Any) -> jax.Array:
        """Any accepted label form → multi-hot (not yet shape-checked against the logits)."""
        labels = lb.require(labels)
        if isinstance(labels, SparseLabels):
            return self._sparse_to_multi_hot(labels.ids)
        if is_string_array(labels):
            return self._sparse_to_multi_hot(lb.pad_label_sets(labels))
        dense = lb.host_array(labels)
        lb.check_numeric(dense)
        lb.check_range(
            dense, 2, message="labels must be an integer indicator Tensor with values in [0, 1]"
        )
        return dense.astype(np.float32)

    def encode_labels(self, labels: Any, features: Features = None) -> Any:
        """Host side: any accepted label form → float32 multi-hot ``[…, n_classes]`` for ``jit``.

        Class names go through ``label_vocabulary`` (an unknown name is a
        ``ValueError``); values are range-checked.
        """
        _checks.check_weight_values(features, self.weight_column)
        return lb.encoded(labels, self._multi_hot(labels), np.float32)

    def _process_labels(self, labels: Any, logits: jax.Array) -> jax.Array:
        return lb.dense_labels(self._multi_hot(labels), logits.shape, self.n_classes)

    def _builtin_loss(self, labels: jax.Array, logits: jax.Array) -> jax.Array:
        return jnp.mean(losses.sigmoid_cross_entropy(labels, logits), axis=-1, keepdims=True)

    # ---------------------------------------------------------------- predictions
    def predictions(
        self, logits: ArrayLike, keys: Sequence[str] | None = None
    ) -> dict[str, jax.Array]:
        """Prediction arrays: ``logits``, ``probabilities`` (sigmoid), ``all_class_ids`` (int32).

        All three have shape ``[D0, …, DN, n_classes]``. TF's string key
        ``classes`` (the full class list, not thresholded) is
        :meth:`class_names` of ``all_class_ids``, on the host.
        """
        logits = self._float_logits(logits)
        predictions = {
            PredictionKeys.LOGITS: logits,
            PredictionKeys.PROBABILITIES: jax.nn.sigmoid(logits),
            PredictionKeys.ALL_CLASS_IDS: jnp.broadcast_to(
                jnp.arange(self.n_classes, dtype=jnp.int32), logits.shape
            ),
        }
        return select_predictions(predictions, keys, PredictionKeys.ALL_CLASS_IDS)

    def class_vocabularies(self) -> dict[str, tuple[str, ...]]:
        """``all_class_ids`` (and the classification signature's ``class_ids``) → the vocabulary."""
        classes = (self._vocabulary or default_class_names(self.n_classes)).classes
        return {PredictionKeys.ALL_CLASS_IDS: classes, PredictionKeys.CLASS_IDS: classes}

    def export_outputs(self, logits: ArrayLike) -> dict[str, dict[str, jax.Array]]:
        """``serving_default``/``classification`` (scores, class ids) and ``predict``."""
        predictions = self.predictions(logits)
        classification = classification_outputs(predictions)
        return {
            SignatureKeys.SERVING_DEFAULT: classification,
            SignatureKeys.CLASSIFICATION: classification,
            SignatureKeys.PREDICT: predictions,
        }

    # ---------------------------------------------------------------- metrics
    def _metrics_config(self) -> MultiLabelMetricsConfig:
        return MultiLabelMetricsConfig(
            n_classes=self.n_classes,
            thresholds=tuple(self.thresholds or ()),
            num_thresholds=self.num_thresholds,
            compat=self.compat,
            classes=tuple(int(c) for c in self.classes_for_class_based_metrics or ()),
            extended=self.extended_metrics,
        )

    def init_metrics(self, regularization_losses: Any = None) -> MultiLabelHeadMetrics:
        """A fresh :class:`MultiLabelHeadMetrics`.

        Pass ``regularization_losses`` (the list, or ``True``) to track the
        ``regularization_loss`` metric, as TF's ``metrics(regularization_losses)``.
        """
        config = self._metrics_config()
        at = inclusive = None
        if config.thresholds:
            at = metrics.ConfusionAtThresholds.empty(thresholds=config.thresholds)
            if config.compat == "v1":
                inclusive = metrics.ConfusionAtThresholds.empty(
                    thresholds=config.thresholds, inclusive=True
                )
        return MultiLabelHeadMetrics(
            regularization_loss=init_regularization(regularization_losses),
            config=config,
            loss=metrics.Mean.empty(),
            curve=metrics.ConfusionCurve.empty(num_thresholds=config.num_thresholds),
            at_thresholds=at,
            at_thresholds_inclusive=inclusive,
            class_probability=tuple(metrics.Mean.empty() for _ in config.classes),
            class_curves=tuple(
                metrics.ConfusionCurve.empty(num_thresholds=config.num_thresholds)
                for _ in config.classes
            ),
            class_histograms=(
                metrics.ClassLogitHistograms.empty(self.n_classes) if config.extended else None
            ),
        )

    def _update_state(self, state: MultiLabelHeadMetrics, batch: Batch) -> MultiLabelHeadMetrics:
        probabilities = jax.nn.sigmoid(batch.logits)
        labels, weights = batch.labels, batch.weights

        def at(confusion: metrics.ConfusionAtThresholds | None) -> Any:
            return None if confusion is None else confusion.update(labels, probabilities, weights)

        columns = [slice(c, c + 1) for c in state.config.classes]
        return state.replace(
            loss=state.loss.update(batch.loss, weights),
            curve=state.curve.update(labels, probabilities, weights),
            at_thresholds=at(state.at_thresholds),
            at_thresholds_inclusive=at(state.at_thresholds_inclusive),
            class_probability=tuple(
                mean.update(probabilities[..., col], weights)
                for mean, col in zip(state.class_probability, columns, strict=True)
            ),
            class_curves=tuple(
                curve.update(labels[..., col], probabilities[..., col], weights)
                for curve, col in zip(state.class_curves, columns, strict=True)
            ),
            class_histograms=(
                None
                if state.class_histograms is None
                else state.class_histograms.update(labels, batch.logits, weights)
            ),
        )

    def curve(self, state: MultiLabelHeadMetrics) -> metrics.ConfusionCurve:
        """The ROC / PR :class:`~jaxheads.metrics.ConfusionCurve` over all (example, class) pairs.

        ``head.curve(state).roc_curve()`` / ``.pr_curve()`` give the curve points.
        """
        self._check_state(state)
        return state.curve

    def _class_name(self, class_id: int) -> str:
        if self.label_vocabulary is None:
            return f"class{class_id}"
        return str(self.label_vocabulary[class_id])

    def _metric_values(self, state: MultiLabelHeadMetrics) -> dict[str, jax.Array]:
        summation = _compat.summation_method(self.compat)
        out = {
            MetricKeys.LOSS_MEAN: state.loss.compute(),
            MetricKeys.AUC: state.curve.roc_auc(summation_method=summation),
            MetricKeys.AUC_PR: state.curve.pr_auc(summation_method=summation),
        }
        if state.at_thresholds is not None:
            epsilon = _compat.threshold_epsilon(self.compat)
            inclusive = state.at_thresholds_inclusive
            accuracy = (state.at_thresholds if inclusive is None else inclusive).accuracy()
            precision = state.at_thresholds.precision(epsilon=epsilon)
            recall = state.at_thresholds.recall(epsilon=epsilon)
            out.update(threshold_metrics(state.config.thresholds, accuracy, precision, recall))
        for class_id, mean, curve in zip(
            state.config.classes, state.class_probability, state.class_curves, strict=True
        ):
            name = self._class_name(class_id)
            out[class_key(MetricKeys.PROBABILITY_MEAN, name)] = mean.compute()
            out[class_key(MetricKeys.AUC, name)] = curve.roc_auc(summation_method=summation)
            out[class_key(MetricKeys.AUC_PR, name)] = curve.pr_auc(summation_method=summation)
        names = tuple(self._class_name(c) for c in range(self.n_classes))
        out.update(extended_class_values(state.class_histograms, names))
        return out


def multi_label_head(
    n_classes: int,
    weight_column: Any = None,
    thresholds: Sequence[float] | None = None,
    label_vocabulary: Sequence[str] | None = None,
    loss_reduction: Reduction | str = Reduction.SUM_OVER_BATCH_SIZE,
    loss_fn: Callable[..., Any] | None = None,
    classes_for_class_based_metrics: Sequence[int | str] | None = None,
    name: str | None = None,
    compat: str = "v2",
) -> MultiLabelHead:
    """TF1's ``tf.contrib.estimator.multi_label_head``; see :class:`MultiLabelHead`.

    Examples:
      >>> multi_label_head(3, classes_for_class_based_metrics=[2]).classes_for_class_based_metrics
      (2,)
    """
    return MultiLabelHead(
        n_classes=n_classes,
        weight_column=weight_column,
        thresholds=thresholds,
        label_vocabulary=label_vocabulary,
        loss_reduction=loss_reduction,
        loss_fn=loss_fn,
        classes_for_class_based_metrics=classes_for_class_based_metrics,
        name=name,
        compat=compat,
    )
