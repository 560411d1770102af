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

from jaxheads import _checks, losses, metrics
from jaxheads.heads import _labels
from jaxheads.heads._single import (
    SingleHead,
    update_regularization_metric,
    wants_regularization_metric,
)
from jaxheads.heads.base import Features
from jaxheads.reduction import Reduction

__all__ = [
    "RegressionHead",
    "LogisticRegressionHead",
    "PoissonRegressionHead",
    "regression_head",
    "logistic_regression_head",
    "poisson_regression_head",
]


class _RegressionFamily(SingleHead):
    """Shared behaviour; subclasses define ``label_dimension`` and the hooks below."""

    label_dimension: int
    _allow_per_logit_weights = True

    @property
    def logits_dimension(self) -> int:
        return self.label_dimension

    @property
    def _expected_loss_dim(self) -> int:
        return self.label_dimension

    @abc.abstractmethod
    def _inverse_link(self, logits: jax.Array) -> jax.Array | None:
        """Predictions from logits, or ``None`` when the link is the identity."""

    def _check_label_values(self, labels: jax.Array) -> None:
        """Value checks on float32 labels (none by default)."""

    def _process_labels(self, labels: Any, logits: jax.Array) -> jax.Array:
        labels = _checks.dense_labels(labels, logits.shape, self.label_dimension)
        _labels.check_numeric(labels)
        labels = labels.astype(jnp.float32)
        self._check_label_values(labels)
        return labels

    def predictions(
        self, logits: ArrayLike, keys: Sequence[str] | None = None
    ) -> dict[str, jax.Array]:
        """``predictions`` f32 ``[…, d]`` (after the inverse link) and, with a link, ``logits``."""
        logits = self._float_logits(logits)
        linked = self._inverse_link(logits)
        if linked is None:
            predictions = {"predictions": logits}
        else:
            predictions = {"predictions": jnp.asarray(linked, jnp.float32), "logits": logits}
        return self._select_predictions(predictions, keys)

    def encode_labels(self, labels: Any, features: Features = None) -> np.ndarray:
        """Host side: numeric labels as float32, value-checked, ready for ``jit``."""
        encoded = jnp.asarray(labels)
        _labels.check_numeric(encoded)
        encoded = encoded.astype(jnp.float32)
        self._check_label_values(encoded)
        return np.asarray(encoded)

    def class_vocabularies(self) -> dict[str, tuple[str, ...]]:
        """``{}``: regression heads predict no class ids."""
        return {}

    def export_outputs(self, logits: ArrayLike) -> dict[str, dict[str, jax.Array]]:
        """``serving_default``/``regression`` (``value``) and ``predict``."""
        predictions = self.predictions(logits)
        regression = {"value": predictions["predictions"]}
        return {"serving_default": regression, "regression": regression, "predict": predictions}

    def init_metrics(self, regularization_losses: Any = None) -> dict[str, Any]:
        """A fresh metric state; pass ``regularization_losses`` (or ``True``) to track them."""
        state: dict[str, Any] = {
            "average_loss": metrics.Mean.empty(),
            "prediction/mean": metrics.Mean.empty(),
            "label/mean": metrics.Mean.empty(),
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
        """Folds one batch into ``state``; pure and jittable."""
        logits, labels, loss, weights = self._loss_parts(labels, logits, features)
        linked = self._inverse_link(logits)
        predictions = logits if linked is None else linked
        new = dict(state)
        new["average_loss"] = state["average_loss"].update(loss, weights)
        new["prediction/mean"] = state["prediction/mean"].update(predictions, weights)
        new["label/mean"] = state["label/mean"].update(labels, weights)
        update_regularization_metric(state, new, regularization_losses)
        return new

    def compute_metrics(self, state: dict[str, Any]) -> dict[str, jax.Array]:
        """``average_loss``, ``prediction/mean``, ``label/mean`` (+ ``regularization_loss``)."""
        return {self._metric_key(k): s.compute() for k, s in state.items()}


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
        if not isinstance(self.label_dimension, int) or self.label_dimension < 1:
            raise ValueError(
                f"Invalid label_dimension {self.label_dimension}: expected an int >= 1."
            )
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

    def __post_init__(self) -> None:
        self._validate_common()

    @property
    def label_dimension(self) -> int:  # type: ignore[override]
        return 1

    @property
    def loss_fn(self) -> None:  # type: ignore[override]
        return None

    def _check_label_values(self, labels: jax.Array) -> None:
        _labels.check_range(labels, 2, message="Labels must be in range [0, 1]")

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

    def __post_init__(self) -> None:
        if not isinstance(self.label_dimension, int) or self.label_dimension < 1:
            raise ValueError(
                f"Invalid label_dimension {self.label_dimension}: expected an int >= 1."
            )
        self._validate_common()

    @property
    def loss_fn(self) -> None:  # type: ignore[override]
        return None

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
