"""``BinaryClassHead``: sigmoid cross-entropy on one logit per example."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxheads import _checks, losses, metrics
from jaxheads.heads import _labels
from jaxheads.heads._single import (
    SingleHead,
    classification_outputs,
    update_regularization_metric,
    wants_regularization_metric,
)
from jaxheads.heads.base import Features
from jaxheads.reduction import Reduction
from jaxheads.vocabulary import LabelVocabulary, default_class_names

__all__ = ["BinaryClassHead", "binary_classification_head"]

_COMPAT = ("v1", "v2")
# TF1's epsilon in precision/recall at thresholds (`tf.compat.v1.metrics.precision_at_thresholds`).
_V1_THRESHOLD_EPSILON = 1e-7


@dataclasses.dataclass(frozen=True)
class BinaryClassHead(SingleHead):
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

    def __post_init__(self) -> None:
        vocabulary = LabelVocabulary.from_argument(self.label_vocabulary)
        object.__setattr__(
            self, "label_vocabulary", None if vocabulary is None else vocabulary.classes
        )
        object.__setattr__(self, "thresholds", _checks.check_thresholds(self.thresholds))
        self._validate_common()
        if self.compat not in _COMPAT:
            raise ValueError(f"compat must be one of {_COMPAT}, got {self.compat!r}.")
        if not isinstance(self.num_thresholds, int) or self.num_thresholds < 2:
            raise ValueError(f"num_thresholds must be an int > 1, got {self.num_thresholds!r}.")

    @property
    def logits_dimension(self) -> int:
        return 1

    @property
    def _vocabulary(self) -> LabelVocabulary | None:
        return None if self.label_vocabulary is None else LabelVocabulary(self.label_vocabulary)

    # ---------------------------------------------------------------- labels
    def encode_labels(self, labels: Any, features: Features = None) -> np.ndarray:
        """Host side: labels as float32 class ids in [0, 1], ready for ``jit``.

        String labels are looked up in ``label_vocabulary`` (an unknown string
        is a ``ValueError``); numeric labels are range-checked.
        """
        encoded = np.asarray(_labels.encode_string_labels(labels, self._vocabulary))
        _labels.check_numeric(jnp.asarray(encoded))
        encoded = encoded.astype(np.float32)
        _labels.check_range(encoded, 2)
        return encoded

    def _process_labels(self, labels: Any, logits: jax.Array) -> jax.Array:
        labels = _labels.encode_string_labels(labels, self._vocabulary)
        labels = _checks.dense_labels(labels, logits.shape, 1)
        _labels.check_numeric(labels)
        labels = labels.astype(jnp.float32)
        _labels.check_range(labels, 2)
        return labels

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
            "logits": logits,
            "logistic": logistic,
            "probabilities": jnp.concatenate([jax.nn.sigmoid(-logits), logistic], axis=-1),
            "class_ids": (logits > 0).astype(jnp.int32),
            "all_class_ids": jnp.broadcast_to(
                jnp.arange(2, dtype=jnp.int32), logits.shape[:-1] + (2,)
            ),
        }
        return self._select_predictions(predictions, keys, host_keys=("classes", "all_classes"))

    def class_vocabularies(self) -> dict[str, tuple[str, ...]]:
        """``class_ids`` / ``all_class_ids`` → the vocabulary (or ``("0", "1")``)."""
        classes = (self._vocabulary or default_class_names(2)).classes
        return {"class_ids": classes, "all_class_ids": classes}

    def export_outputs(self, logits: ArrayLike) -> dict[str, dict[str, jax.Array]]:
        """``serving_default``/``classification`` (scores, class ids), ``regression``, ``predict``."""
        predictions = self.predictions(logits)
        classification = classification_outputs(predictions)
        return {
            "serving_default": classification,
            "classification": classification,
            "regression": {"value": predictions["logistic"]},
            "predict": predictions,
        }

    # ---------------------------------------------------------------- metrics
    def init_metrics(self, regularization_losses: Any = None) -> dict[str, Any]:
        """A fresh metric state: a dict (a pytree) of additive metric states.

        ``"binary"`` is one :class:`~jaxheads.metrics.BinaryClassifierMetrics`
        (every count from one bucketing per batch). Pass
        ``regularization_losses`` (the list, or ``True``) to track the
        ``regularization_loss`` metric, as TF's ``metrics(regularization_losses)``.
        """
        state: dict[str, Any] = {
            "binary": metrics.BinaryClassifierMetrics.empty(
                num_thresholds=self.num_thresholds, thresholds=self.thresholds
            )
        }
        if wants_regularization_metric(regularization_losses):
            state["regularization_loss"] = metrics.Mean.empty()
        return state

    def update_metrics(
        self,
        state: dict[str, Any],
        features: Features,
        logits: ArrayLike,
        labels: Any,
        regularization_losses: Sequence[ArrayLike] | None = None,
    ) -> dict[str, Any]:
        """Folds one batch into ``state``; pure and jittable (string labels: host only)."""
        logits, labels, loss, weights = self._loss_parts(labels, logits, features)
        new = dict(state)
        new["binary"] = state["binary"].update(
            labels,
            jax.nn.sigmoid(logits),
            weights,
            class_ids=(logits > 0).astype(jnp.float32),
            loss=loss,
        )
        update_regularization_metric(state, new, regularization_losses)
        return new

    def curve(self, state: dict[str, Any]) -> metrics.ConfusionCurve:
        """The ROC / PR :class:`~jaxheads.metrics.ConfusionCurve` of a metric state.

        ``head.curve(state).roc_curve()`` / ``.pr_curve()`` give the curve points.
        """
        return state["binary"].curve()

    def compute_metrics(self, state: dict[str, Any]) -> dict[str, jax.Array]:
        """Metric values with TF's keys (``/name`` appended when the head has a name)."""
        v1 = self.compat == "v1"
        summation = "trapezoidal" if v1 else "interpolation"
        counts = state["binary"]
        label_mean = counts.mean("label").compute()
        curve = counts.curve()
        class_ids = counts.class_ids()
        out = {
            "average_loss": counts.mean("loss").compute(),
            # TF's Accuracy(labels, class_ids): exact matches, so soft labels never count.
            "accuracy": class_ids.accuracy()[0],
            "precision": class_ids.precision()[0],
            "recall": class_ids.recall()[0],
            "prediction/mean": counts.mean("prediction").compute(),
            "label/mean": label_mean,
            "accuracy_baseline": jnp.maximum(label_mean, 1.0 - label_mean),
            "auc": curve.roc_auc(summation_method=summation),
            "auc_precision_recall": curve.pr_auc(summation_method=summation),
        }
        if "regularization_loss" in state:
            out["regularization_loss"] = state["regularization_loss"].compute()
        if self.thresholds:
            epsilon = _V1_THRESHOLD_EPSILON if v1 else 0.0
            at = counts.at_thresholds(epsilon=epsilon)
            # TF1's accuracy_at_threshold counts p >= t as positive; TF2's BinaryAccuracy p > t.
            accuracy = counts.at_thresholds(inclusive=v1).accuracy()
            precision, recall = at.precision(), at.recall()
            for i, t in enumerate(self.thresholds):
                out[f"accuracy/positive_threshold_{t:g}"] = accuracy[i]
                out[f"precision/positive_threshold_{t:g}"] = precision[i]
                out[f"recall/positive_threshold_{t:g}"] = recall[i]
        return {self._metric_key(k): v for k, v in out.items()}


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
