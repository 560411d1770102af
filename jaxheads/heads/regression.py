"""The regression family: ``RegressionHead``, ``LogisticRegressionHead``, ``PoissonRegressionHead``.

As in TF, the three share one algorithm: a per-element loss on the logits,
weights that may be per example or per logit, an optional inverse link for
the predictions, and the metrics ``average_loss``, ``prediction/mean`` and
``label/mean``.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxheads import _checks, _validate, losses, metrics
from jaxheads import labels as lb
from jaxheads.heads._metric_state import (
    RegressionHeadMetrics,
    RegressionMetricsConfig,
    init_regularization,
)
from jaxheads.heads._single import Batch, SingleHead, select_predictions
from jaxheads.heads.base import Features
from jaxheads.keys import ExportKeys, MetricKeys, PredictionKeys, SignatureKeys
from jaxheads.reduction import Reduction

__all__ = [
    "RegressionHead",
    "LogisticRegressionHead",
    "PoissonRegressionHead",
    "regression_head",
    "logistic_regression_head",
    "poisson_regression_head",
]


def _check_label_dimension(head: _RegressionFamily) -> None:
    """Validates ``head.label_dimension`` (NumPy/JAX integers too, never bool) and stores an int."""
    label_dimension = _validate.positive_int(
        head.label_dimension, "label_dimension", tf_message="Invalid label_dimension"
    )
    object.__setattr__(head, "label_dimension", label_dimension)


class _RegressionFamily(SingleHead[RegressionHeadMetrics]):
    """Shared behaviour; subclasses define ``label_dimension`` and the hooks below."""

    label_dimension: int
    _allow_per_logit_weights = True
    _state_class = RegressionHeadMetrics

    @property
    def logits_dimension(self) -> int:
        return self.label_dimension

    @property
    def _loss_dim(self) -> int:
        return self.label_dimension

    @abc.abstractmethod
    def _inverse_link(self, logits: jax.Array) -> jax.Array | None:
        """Predictions from logits, or ``None`` when the link is the identity."""

    def _check_label_values(self, labels: jax.Array) -> None:
        """Value checks on float32 labels (none by default)."""

    def _checked(self, given: jax.Array) -> jax.Array:
        lb.check_numeric(given)
        as_float = given.astype(jnp.float32)
        self._check_label_values(as_float)
        return as_float

    def _process_labels(self, labels: Any, logits: jax.Array) -> jax.Array:
        return self._checked(lb.dense_labels(labels, logits.shape, self.label_dimension))

    def encode_labels(self, labels: Any, features: Features = None) -> Any:
        """Host side: numeric labels as float32, value-checked, ready for ``jit``."""
        _checks.check_weight_values(features, self.weight_column)
        given = lb.require(labels)
        return lb.encoded(given, self._checked(lb.host_array(given)), np.float32)

    def class_vocabularies(self) -> dict[str, tuple[str, ...]]:
        """``{}``: regression heads predict no class ids."""
        return {}

    def predictions(
        self, logits: ArrayLike, keys: Sequence[str] | None = None
    ) -> dict[str, jax.Array]:
        """``predictions`` f32 ``[…, d]`` (after the inverse link) and, with a link, ``logits``."""
        logits = self._float_logits(logits)
        linked = self._inverse_link(logits)
        if linked is None:
            predictions = {PredictionKeys.PREDICTIONS: logits}
        else:
            predictions = {
                PredictionKeys.PREDICTIONS: jnp.asarray(linked, jnp.float32),
                PredictionKeys.LOGITS: logits,
            }
        return select_predictions(predictions, keys, PredictionKeys.CLASS_IDS)

    def export_outputs(self, logits: ArrayLike) -> dict[str, dict[str, jax.Array]]:
        """``serving_default``/``regression`` (``value``) and ``predict``."""
        predictions = self.predictions(logits)
        regression = {ExportKeys.VALUE: predictions[PredictionKeys.PREDICTIONS]}
        return {
            SignatureKeys.SERVING_DEFAULT: regression,
            SignatureKeys.REGRESSION: regression,
            SignatureKeys.PREDICT: predictions,
        }

    def _metrics_config(self) -> RegressionMetricsConfig:
        return RegressionMetricsConfig(
            head=type(self).__name__, label_dimension=self.label_dimension
        )

    def init_metrics(self, regularization_losses: Any = None) -> RegressionHeadMetrics:
        """A fresh :class:`RegressionHeadMetrics` (pass ``regularization_losses`` or ``True`` to track them)."""
        return RegressionHeadMetrics(
            regularization_loss=init_regularization(regularization_losses),
            config=self._metrics_config(),
            loss=metrics.Mean.empty(),
            prediction=metrics.Mean.empty(),
            label=metrics.Mean.empty(),
        )

    def _update_state(self, state: RegressionHeadMetrics, batch: Batch) -> RegressionHeadMetrics:
        linked = self._inverse_link(batch.logits)
        predictions = batch.logits if linked is None else linked
        return state.replace(
            loss=state.loss.update(batch.loss, batch.weights),
            prediction=state.prediction.update(predictions, batch.weights),
            label=state.label.update(batch.labels, batch.weights),
        )

    def _metric_values(self, state: RegressionHeadMetrics) -> dict[str, jax.Array]:
        return {
            MetricKeys.LOSS_MEAN: state.loss.compute(),
            MetricKeys.PREDICTION_MEAN: state.prediction.compute(),
            MetricKeys.LABEL_MEAN: state.label.compute(),
        }


@dataclasses.dataclass(frozen=True)
class RegressionHead(_RegressionFamily):
    """Regression with squared error (TF's ``RegressionHead``).

    Shapes: logits ``[D0, …, DN, label_dimension]``; labels the same (or
    ``[D0, …, DN]`` when ``label_dimension == 1``); weights ``[D0, …, DN]``,
    ``[D0, …, DN, 1]`` or per logit ``[D0, …, DN, label_dimension]``.

    The loss is computed on the logits; ``inverse_link_fn`` only shapes the
    predictions and ``prediction/mean``. ``SUM_OVER_BATCH_SIZE`` divides by
    ``D0·…·DN·label_dimension``.

    Examples:
      >>> head = RegressionHead()
      >>> float(head.loss(jnp.array([[43.0], [44.0]]), jnp.array([[45.0], [41.0]])))
      6.5
    """

    label_dimension: int = 1
    weight_column: Any = None
    loss_reduction: Reduction | str = Reduction.SUM_OVER_BATCH_SIZE
    loss_fn: Callable[..., Any] | None = None
    inverse_link_fn: Callable[[jax.Array], jax.Array] | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        _check_label_dimension(self)
        self._validate_common()

    def _builtin_loss(self, labels: jax.Array, logits: jax.Array) -> jax.Array:
        return losses.squared_error(labels, logits)

    def _inverse_link(self, logits: jax.Array) -> jax.Array | None:
        return None if self.inverse_link_fn is None else self.inverse_link_fn(logits)


@dataclasses.dataclass(frozen=True)
class LogisticRegressionHead(_RegressionFamily):
    """Regression of a probability in [0, 1] with sigmoid cross-entropy (TF's ``LogisticRegressionHead``).

    Labels are floats in [0, 1] (``[D0, …, DN, 1]`` or ``[D0, …, DN]``);
    predictions are ``sigmoid(logits)``. Metrics: ``average_loss``,
    ``prediction/mean``, ``label/mean`` (no AUC or accuracy).

    Examples:
      >>> head = LogisticRegressionHead()
      >>> head.predictions(jnp.array([[0.0]]))["predictions"]
      Array([[0.5]], dtype=float32)
    """

    weight_column: Any = None
    loss_reduction: Reduction | str = Reduction.SUM_OVER_BATCH_SIZE
    name: str | None = None
    # Not arguments: TF's LogisticRegressionHead has one label and no loss_fn.
    label_dimension: int = dataclasses.field(default=1, init=False, repr=False)
    loss_fn: None = dataclasses.field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._validate_common()

    def _check_label_values(self, labels: jax.Array) -> None:
        lb.check_range(labels, 2, message="Labels must be in range [0, 1]")

    def _builtin_loss(self, labels: jax.Array, logits: jax.Array) -> jax.Array:
        return losses.sigmoid_cross_entropy(labels, logits)

    def _inverse_link(self, logits: jax.Array) -> jax.Array:
        return jax.nn.sigmoid(logits)


@dataclasses.dataclass(frozen=True)
class PoissonRegressionHead(_RegressionFamily):
    """Poisson regression on log-rates (TF's ``PoissonRegressionHead``).

    The loss is ``log_poisson_loss`` (``exp(x) − z·x``, plus the Stirling
    term when ``compute_full_loss``); predictions are ``exp(logits)``.

    Examples:
      >>> head = PoissonRegressionHead()
      >>> round(float(head.loss(jnp.array([[1.0], [2.0], [3.0]]), jnp.array([[0.0], [-1.0], [1.0]]))), 4)
      1.834
    """

    label_dimension: int = 1
    weight_column: Any = None
    loss_reduction: Reduction | str = Reduction.SUM_OVER_BATCH_SIZE
    compute_full_loss: bool = True
    name: str | None = None
    # Not an argument: TF's PoissonRegressionHead has no loss_fn.
    loss_fn: None = dataclasses.field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        _check_label_dimension(self)
        self._validate_common()

    def _builtin_loss(self, labels: jax.Array, logits: jax.Array) -> jax.Array:
        return losses.log_poisson_loss(labels, logits, self.compute_full_loss)

    def _inverse_link(self, logits: jax.Array) -> jax.Array:
        return jnp.exp(logits)


def regression_head(
    weight_column: Any = None,
    label_dimension: int = 1,
    loss_reduction: Reduction | str = Reduction.SUM_OVER_BATCH_SIZE,
    loss_fn: Callable[..., Any] | None = None,
    inverse_link_fn: Callable[[jax.Array], jax.Array] | None = None,
    name: str | None = None,
) -> RegressionHead:
    """TF1's ``tf.contrib.estimator.regression_head`` (note its argument order)."""
    return RegressionHead(
        label_dimension, weight_column, loss_reduction, loss_fn, inverse_link_fn, name
    )


def logistic_regression_head(
    weight_column: Any = None,
    loss_reduction: Reduction | str = Reduction.SUM_OVER_BATCH_SIZE,
    name: str | None = None,
) -> LogisticRegressionHead:
    """TF1's ``tf.contrib.estimator.logistic_regression_head``; see :class:`LogisticRegressionHead`."""
    return LogisticRegressionHead(weight_column, loss_reduction, name)


def poisson_regression_head(
    weight_column: Any = None,
    label_dimension: int = 1,
    loss_reduction: Reduction | str = Reduction.SUM_OVER_BATCH_SIZE,
    compute_full_loss: bool = True,
    name: str | None = None,
) -> PoissonRegressionHead:
    """TF1's ``tf.contrib.estimator.poisson_regression_head`` (note its argument order)."""
    return PoissonRegressionHead(
        label_dimension, weight_column, loss_reduction, compute_full_loss, name
    )
