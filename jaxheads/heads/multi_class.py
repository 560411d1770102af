"""``MultiClassHead``: softmax cross-entropy over ``n_classes`` logits, one label per example."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxheads import _checks, _validate, losses, metrics
from jaxheads import labels as lb
from jaxheads._shapes import shape_str
from jaxheads.heads._metric_state import (
    MultiClassHeadMetrics,
    MultiClassMetricsConfig,
    extended_class_values,
    init_regularization,
)
from jaxheads.heads._single import Batch, SingleHead, classification_outputs, select_predictions
from jaxheads.heads.base import Features
from jaxheads.keys import MetricKeys, PredictionKeys, SignatureKeys
from jaxheads.reduction import Reduction
from jaxheads.vocabulary import LabelVocabulary, default_class_names

__all__ = ["MultiClassHead", "multi_class_head"]


def _one_hot_mistake_message(n_classes: int, shape: tuple[int, ...]) -> str:
    return (
        f"Mismatched label shape. Expected labels dimension=1.  Received {shape[-1]} (labels "
        f"shape {shape_str(shape)}). MultiClassHead(n_classes={n_classes}) expects "
        "integer class ids of shape [D0, ..., DN, 1] or [D0, ..., DN], but these labels look "
        f"one-hot encoded ([D0, ..., DN, n_classes={n_classes}]): pass "
        "jnp.argmax(labels, axis=-1), or create the head with one_hot_labels=True."
    )


@dataclasses.dataclass(frozen=True)
class MultiClassHead(SingleHead[MultiClassHeadMetrics]):
    """Multi-class classification with softmax cross-entropy (TF's ``MultiClassHead``).

    Shapes: logits ``[D0, …, DN, n_classes]``; labels integer class ids
    ``[D0, …, DN, 1]`` or ``[D0, …, DN]`` in ``[0, n_classes)`` — or, with a
    ``label_vocabulary``, class names (encoded on the host; inside ``jit`` pass
    :meth:`encode_labels`'s output); weights ``[D0, …, DN]`` or
    ``[D0, …, DN, 1]``. One-hot labels are an error that says so, unless
    ``one_hot_labels=True`` (an addition: labels ``[D0, …, DN, n_classes]``,
    float targets such as soft or smoothed labels, loss
    ``−Σ_c y_c·log softmax(x)_c``, accuracy against ``argmax(labels)``).

    Loss: ``sparse_softmax_cross_entropy`` (``−log_softmax(x)[label]``),
    ``[D0, …, DN, 1]``, then weighted and reduced. Metrics: ``average_loss``,
    ``accuracy`` (``+ regularization_loss`` when given).

    Differences from TF, on purpose: ``features=None`` means no features;
    ``class_ids`` are int32; ``all_class_ids`` is ``[D0, …, DN, n_classes]``
    (TF tiles over ``D0`` only); string predictions (``classes``,
    ``all_classes``) come from :meth:`class_names` on the host; with a
    vocabulary, already-encoded integer ids are accepted too (TF insists on
    strings); a ``loss_fn`` that declares ``loss_reduction`` receives it.

    Attributes:
      n_classes: number of classes, > 2 (use :class:`~jaxheads.BinaryClassHead` for 2).
      weight_column: feature key (or :class:`~jaxheads.NumericColumn`) of the
        per-example weights, or ``None``.
      label_vocabulary: ``n_classes`` class names, or ``None``.
      loss_reduction: a :class:`~jaxheads.Reduction`; default ``SUM_OVER_BATCH_SIZE``.
      loss_fn: optional ``loss_fn(labels, logits[, features][, loss_reduction])``
        returning the unweighted, unreduced loss ``[D0, …, DN, 1]``; labels are
        int32 ids ``[D0, …, DN, 1]`` (float32 ``[…, n_classes]`` in one-hot mode).
      name: appended to every metric key (``accuracy/<name>``).
      one_hot_labels: take labels as one-hot / probability vectors
        ``[D0, …, DN, n_classes]`` instead of ids.
      extended_metrics: also keep one :class:`~jaxheads.metrics.LogitHistogram`
        per class (one-vs-rest: class k against the rest, scored by its softmax log-odds; 16,384 logit buckets: 256 KiB of state per class, e.g.
        25 MiB for 100 classes) and report ``roc_auc``, ``roc_auc/lower``,
        ``roc_auc/upper``, ``roc_auc/stderr``, ``average_precision``,
        ``expected_calibration_error``, ``normalized_entropy`` and
        ``calibration_ratio`` per class as ``<key>/<class name>`` (then the
        ``/name`` suffix). TF's keys and values do not change; default ``False``.

    Examples:
      >>> head = MultiClassHead(n_classes=3)
      >>> logits = jnp.array([[10.0, 0.0, 0.0], [0.0, 10.0, 0.0]])
      >>> round(float(head.loss(jnp.array([[1], [1]]), logits)), 4)
      5.0001
      >>> head.predictions(logits)["class_ids"].tolist()
      [[0], [1]]
    """

    n_classes: int
    weight_column: Any = None
    label_vocabulary: Sequence[str] | None = None
    loss_reduction: Reduction | str = Reduction.SUM_OVER_BATCH_SIZE
    loss_fn: Callable[..., Any] | None = None
    name: str | None = None
    one_hot_labels: bool = False
    extended_metrics: bool = False

    _state_class = MultiClassHeadMetrics

    def __post_init__(self) -> None:
        n = _validate.scalar(self.n_classes)
        if n is None:
            raise ValueError("n_classes cannot be None")
        vocabulary = LabelVocabulary.from_argument(
            _validate.label_vocabulary(self.label_vocabulary)
        )
        if vocabulary is not None and len(vocabulary) != n:
            raise ValueError(
                '"label_vocabulary" does not have "n_classes" items. '
                f"len(label_vocabulary)={len(vocabulary)}, n_classes={n}, "
                f"label_vocabulary={list(vocabulary.classes)}"
            )
        object.__setattr__(
            self, "label_vocabulary", None if vocabulary is None else vocabulary.classes
        )
        self._validate_common()
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
            raise ValueError(f"n_classes must be an int > 2, got {n!r}.")
        if n <= 2:
            raise ValueError(f"n_classes must be > 2: {n}. (For two classes use BinaryClassHead.)")
        object.__setattr__(self, "n_classes", int(n))
        if self.one_hot_labels and self.label_vocabulary is not None:
            raise ValueError(
                "one_hot_labels=True cannot be combined with a label_vocabulary: one-hot "
                "labels are numeric vectors, not class names."
            )
        extended = _validate.flag(self.extended_metrics, "extended_metrics")
        object.__setattr__(self, "extended_metrics", extended)

    @property
    def logits_dimension(self) -> int:
        return self.n_classes

    @property
    def _vocabulary(self) -> LabelVocabulary:
        if self.label_vocabulary is None:
            return default_class_names(self.n_classes)
        return LabelVocabulary(tuple(self.label_vocabulary))

    # ---------------------------------------------------------------- labels
    def _check_not_sparse(self, labels: Any) -> None:
        if isinstance(labels, lb.SparseLabels):
            k = self.n_classes if self.one_hot_labels else 1
            raise ValueError(
                "SparseTensor labels are not supported. Labels must be a Tensor of shape "
                f"[D0, D1, ..., DN, {k}], e.g. [batch_size, {k}]. (Got SparseLabels: "
                "MultiClassHead takes one class id per example; SparseLabels are for "
                "MultiLabelHead.)"
            )

    def _encode(self, labels: Any) -> Any:
        """Host: class names → int32 ids (other labels pass through)."""
        no_vocabulary = ValueError(
            "Labels dtype should be integer. Instead got string labels (a label_vocabulary "
            "is needed to map class names to ids)."
        )
        vocabulary = None if self.label_vocabulary is None else self._vocabulary
        return lb.encode_strings(labels, vocabulary, no_vocabulary)

    def _check_ids(self, labels: jax.Array) -> jax.Array:
        if not jnp.issubdtype(labels.dtype, jnp.integer):
            raise ValueError(
                f"Labels dtype should be integer. Instead got {labels.dtype}. (MultiClassHead "
                "takes integer class ids in [0, n_classes); cast float ids with "
                ".astype(jnp.int32).)"
            )
        lb.check_range(labels, self.n_classes)
        return labels.astype(jnp.int32)

    def _check_one_hot(self, labels: jax.Array) -> jax.Array:
        lb.check_numeric(labels)
        labels = labels.astype(jnp.float32)
        lb.check_range(
            labels, 2, message="one-hot labels must have values in [0, 1] (one_hot_labels=True)"
        )
        return labels

    def encode_labels(self, labels: Any, features: Features = None) -> Any:
        """Host side: labels ready for ``jit``.

        Class names go through ``label_vocabulary`` (an unknown name is a
        ``ValueError``) to int32 ids; ids are range-checked. With
        ``one_hot_labels`` the float32 vectors are checked and returned.
        """
        _checks.check_weight_values(features, self.weight_column)
        self._check_not_sparse(labels)
        given = self._encode(lb.require(labels))
        labels = lb.host_array(given)
        if self.one_hot_labels:
            return lb.encoded(given, self._check_one_hot(labels), np.float32)
        return lb.encoded(given, self._check_ids(labels), np.int32)

    def _process_labels(self, labels: Any, logits: jax.Array) -> jax.Array:
        self._check_not_sparse(labels)
        if self.one_hot_labels:
            return self._check_one_hot(lb.dense_labels(labels, logits.shape, self.n_classes))
        labels = self._encode(labels)
        if labels is not None:
            labels = jnp.asarray(labels)
            if labels.ndim == len(logits.shape) and labels.shape[-1] == self.n_classes:
                raise ValueError(_one_hot_mistake_message(self.n_classes, tuple(labels.shape)))
        return self._check_ids(lb.dense_labels(labels, logits.shape, 1))

    def _builtin_loss(self, labels: jax.Array, logits: jax.Array) -> jax.Array:
        if self.one_hot_labels:
            return losses.softmax_cross_entropy(labels, logits)
        return losses.sparse_softmax_cross_entropy(labels, logits)

    # ---------------------------------------------------------------- predictions
    def predictions(
        self, logits: ArrayLike, keys: Sequence[str] | None = None
    ) -> dict[str, jax.Array]:
        """Prediction arrays, TF's keys (the string keys come from :meth:`class_names`).

        Returns a dict with ``logits`` f32 ``[…, n]``, ``probabilities``
        (softmax) f32 ``[…, n]``, ``class_ids`` int32 ``[…, 1]`` (argmax; a tie
        goes to the lowest index, as TF) and ``all_class_ids`` int32
        ``[…, n]``; ``keys`` restricts it.
        """
        logits = self._float_logits(logits)
        predictions = {
            PredictionKeys.LOGITS: logits,
            PredictionKeys.PROBABILITIES: losses.softmax(logits),  # defined at +inf (no NaN)
            PredictionKeys.CLASS_IDS: jnp.argmax(logits, axis=-1, keepdims=True).astype(jnp.int32),
            PredictionKeys.ALL_CLASS_IDS: jnp.broadcast_to(
                jnp.arange(self.n_classes, dtype=jnp.int32), logits.shape
            ),
        }
        return select_predictions(predictions, keys, PredictionKeys.CLASS_IDS)

    def class_vocabularies(self) -> dict[str, tuple[str, ...]]:
        """``class_ids`` / ``all_class_ids`` → the vocabulary (or ``("0", "1", …)``)."""
        classes = self._vocabulary.classes
        return {PredictionKeys.CLASS_IDS: classes, PredictionKeys.ALL_CLASS_IDS: classes}

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
    def _metrics_config(self) -> MultiClassMetricsConfig:
        return MultiClassMetricsConfig(
            n_classes=self.n_classes,
            one_hot_labels=bool(self.one_hot_labels),
            extended=self.extended_metrics,
        )

    def init_metrics(self, regularization_losses: Any = None) -> MultiClassHeadMetrics:
        """A fresh :class:`MultiClassHeadMetrics` (``average_loss``, ``accuracy``).

        Pass ``regularization_losses`` (the list, or ``True``) to track the
        ``regularization_loss`` metric, as TF's ``metrics(regularization_losses)``.
        """
        return MultiClassHeadMetrics(
            regularization_loss=init_regularization(regularization_losses),
            config=self._metrics_config(),
            loss=metrics.Mean.empty(),
            accuracy=metrics.Accuracy.empty(),
            class_histograms=(
                metrics.ClassLogitHistograms.empty(self.n_classes)
                if self.extended_metrics
                else None
            ),
        )

    def _update_state(self, state: MultiClassHeadMetrics, batch: Batch) -> MultiClassHeadMetrics:
        class_ids = jnp.argmax(batch.logits, axis=-1, keepdims=True)
        label_ids = batch.labels
        if self.one_hot_labels:
            label_ids = jnp.argmax(batch.labels, axis=-1, keepdims=True)
        histograms = state.class_histograms
        if histograms is not None:
            per_class = batch.labels
            if not self.one_hot_labels:
                per_class = jax.nn.one_hot(label_ids[..., 0], self.n_classes, dtype=jnp.float32)
            histograms = histograms.update(
                per_class, metrics.one_vs_rest_logits(batch.logits), batch.weights
            )
        return state.replace(
            loss=state.loss.update(batch.loss, batch.weights),
            accuracy=state.accuracy.update(label_ids, class_ids, batch.weights),
            class_histograms=histograms,
        )

    def _metric_values(self, state: MultiClassHeadMetrics) -> dict[str, jax.Array]:
        names = self._vocabulary.classes if self.label_vocabulary else None
        names = names or tuple(f"class{k}" for k in range(self.n_classes))
        return {
            MetricKeys.LOSS_MEAN: state.loss.compute(),
            MetricKeys.ACCURACY: state.accuracy.compute(),
            **extended_class_values(state.class_histograms, names),
        }


def multi_class_head(
    n_classes: int,
    weight_column: Any = None,
    label_vocabulary: Sequence[str] | None = None,
    loss_reduction: Reduction | str = Reduction.SUM_OVER_BATCH_SIZE,
    loss_fn: Callable[..., Any] | None = None,
    name: str | None = None,
) -> MultiClassHead:
    """TF1's ``tf.contrib.estimator.multi_class_head``; see :class:`MultiClassHead`.

    Examples:
      >>> multi_class_head(4).logits_dimension
      4
    """
    return MultiClassHead(
        n_classes=n_classes,
        weight_column=weight_column,
        label_vocabulary=label_vocabulary,
        loss_reduction=loss_reduction,
        loss_fn=loss_fn,
        name=name,
    )
