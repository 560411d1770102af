"""The template of the single heads (binary, multi-class, multi-label, the regression family).

A single head is a frozen dataclass (hashable, so it can be a static argument
of ``jax.jit``) that subclasses :class:`SingleHead` and supplies:

* the fields ``name``, ``weight_column``, ``loss_reduction``, ``loss_fn``;
* ``logits_dimension``;
* ``_process_labels(labels, logits)`` — checks and reshapes labels (jittable);
* ``_builtin_loss(labels, logits)`` — the unweighted per-element loss;
* ``predictions``, ``export_outputs``, ``encode_labels``, ``class_vocabularies``;
* its typed metric state: ``_metrics_config()``, ``init_metrics``,
  ``_update_state(state, batch)`` and ``_metric_values(state)``.

The template turns these into the rest of the :class:`~jaxheads.heads.base.Head`
contract: the weights, ``unreduced_loss``, ``loss_terms`` and the three
metric methods, each with an optional ``mask`` (elements where it is
``False`` are out of the loss and the metrics; what
:class:`~jaxheads.SequentialHeadWrapper` uses for padded steps).
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxheads import _checks, _validate
from jaxheads._loss_terms import LossTerms
from jaxheads._shapes import expand_trailing, shape_str
from jaxheads.heads._metric_state import (
    HeadMetrics,
    check_state,
    finish,
    update_regularization,
)
from jaxheads.heads.base import Features, Head
from jaxheads.keys import ExportKeys, PredictionKeys
from jaxheads.reduction import Reduction, weighted_loss_terms

__all__ = [
    "LOSS_FN_ARGS",
    "Batch",
    "LossHead",
    "SingleHead",
    "classification_outputs",
    "select_predictions",
]

# Parameters a custom loss_fn may declare (TF 2's set).
LOSS_FN_ARGS = frozenset({"labels", "logits", "features", "loss_reduction"})

S = TypeVar("S")
SM = TypeVar("SM", bound=HeadMetrics)


@dataclasses.dataclass(frozen=True)
class Batch:
    """One batch as a single head sees it (all float32 but the labels).

    Attributes:
      logits: ``[D0, …, DN, logits_dimension]``.
      labels: processed labels, ``[D0, …, DN, k]`` (the head's label form).
      loss: unweighted per-element loss ``[D0, …, DN, loss_dim]``.
      weights: ``[D0, …, DN, 1]`` (or per logit), 0 where masked out.
      num_elements: the ``SUM_OVER_BATCH_SIZE`` denominator under a mask
        (valid elements only), else ``None`` (``loss.size``).
    """

    logits: jax.Array
    labels: jax.Array
    loss: jax.Array
    weights: jax.Array
    num_elements: jax.Array | None


def classification_outputs(predictions: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """The ``classification`` signature: class scores and the class ids they belong to."""
    return {
        ExportKeys.SCORES: predictions[PredictionKeys.PROBABILITIES],
        ExportKeys.CLASS_IDS: predictions[PredictionKeys.ALL_CLASS_IDS],
    }


def select_predictions(
    predictions: dict[str, jax.Array], keys: Sequence[str] | str | None, class_ids_key: str
) -> dict[str, jax.Array]:
    """``predictions`` restricted to ``keys`` (all of them for ``None``).

    Raises:
      ValueError: for a string-valued key (made on the host by ``class_names``
        from ``class_ids_key``) or an unknown key.
    """
    if keys is None:
        return predictions
    if isinstance(keys, str):
        keys = [keys]
    for key in keys:
        if key in PredictionKeys.HOST_ONLY:
            ids_key = (
                PredictionKeys.ALL_CLASS_IDS if key == PredictionKeys.ALL_CLASSES else class_ids_key
            )
            raise ValueError(
                f"Prediction key {key!r} holds strings, which JAX arrays cannot: call "
                f"head.class_names(predictions[{ids_key!r}]) on the host instead."
            )
        if key not in predictions:
            raise ValueError(
                f"Prediction key must be in PredictionKeys, given: {key}. Valid prediction "
                f"keys include {sorted(predictions)}."
            )
    return {key: predictions[key] for key in keys}


class LossHead(Head[S]):
    """A head whose loss is one weighted reduction of a per-element loss.

    The single heads and :class:`~jaxheads.SequentialHeadWrapper`; what a
    :class:`~jaxheads.MultiHead` combines. Adds TF's ``loss_reduction`` and
    ``create_loss`` (:meth:`unreduced_loss`) to the contract.
    """

    @property
    @abc.abstractmethod
    def reduction(self) -> Reduction:
        """The (validated) loss reduction."""

    @abc.abstractmethod
    def unreduced_loss(
        self, labels: Any, logits: Any, features: Features = None, *, mask: Any = None
    ) -> tuple[jax.Array, jax.Array]:
        """The unweighted per-element loss and the weights (TF's ``create_loss``)."""


class SingleHead(LossHead[SM]):
    """Template of the single heads (see the module docstring for what a subclass supplies)."""

    # Dataclass fields of every single head.
    name: str | None
    weight_column: Any
    loss_reduction: Reduction | str
    loss_fn: Callable[..., Any] | None

    # Whether weights may have the shape of the logits (regression heads).
    _allow_per_logit_weights: ClassVar[bool] = False
    # The class of the head's metric state.
    _state_class: ClassVar[type]

    def _validate_common(self) -> None:
        """Normalises ``loss_reduction`` and checks ``loss_fn`` (call from ``__post_init__``)."""
        object.__setattr__(self, "loss_reduction", _validate.loss_reduction(self.loss_reduction))
        _checks.check_loss_fn_args(self.loss_fn, LOSS_FN_ARGS)
        object.__setattr__(self, "name", _validate.name(self.name))
        object.__setattr__(self, "weight_column", _validate.weight_column(self.weight_column))

    @property
    def reduction(self) -> Reduction:
        """The loss reduction, validated (``"auto"`` is ``SUM_OVER_BATCH_SIZE``)."""
        return Reduction.validate(self.loss_reduction)

    @property
    def _loss_dim(self) -> int:
        """The size of the per-element loss's last dimension (1 but for regression)."""
        return 1

    # ---------------------------------------------------------------- hooks
    @abc.abstractmethod
    def _process_labels(self, labels: Any, logits: jax.Array) -> jax.Array:
        """Checked labels, shaped ``[D0, …, DN, k]``, as the loss expects them."""

    @abc.abstractmethod
    def _builtin_loss(self, labels: jax.Array, logits: jax.Array) -> jax.Array:
        """The unweighted per-element loss, shaped ``[D0, …, DN, loss_dim]``."""

    @abc.abstractmethod
    def _metrics_config(self) -> Any:
        """The static configuration a fresh metric state of this head carries."""

    @abc.abstractmethod
    def _update_state(self, state: SM, batch: Batch) -> SM:
        """``state`` with one (checked) batch folded in; regularization is done by the caller."""

    @abc.abstractmethod
    def _metric_values(self, state: SM) -> dict[str, jax.Array]:
        """Metric values with unsuffixed keys, without ``regularization_loss``."""

    # ---------------------------------------------------------------- batch
    def _float_logits(self, logits: ArrayLike) -> jax.Array:
        return _checks.float_logits(logits, self.logits_dimension)

    def weights(self, features: Features, logits: ArrayLike) -> jax.Array:
        """float32 weights ``[D0, …, DN, 1]`` (or per logit) from the weight column; ones without."""
        shape = tuple(jnp.shape(logits))
        return _checks.weights_from_features(
            features, self.weight_column, shape, self._allow_per_logit_weights
        )

    def _metric_weights(self, batch: Batch) -> jax.Array | None:
        """The batch's weights for the metric kernels; ``None`` when every weight is 1.

        Without a weight column and without a mask each weight is 1, and the
        kernels then count with int32 scatters alone (exact, and the cheapest
        update: no digit split of the weights).
        """
        if self.weight_column is None and batch.num_elements is None:
            return None
        return batch.weights

    def _per_element_loss(
        self, labels: jax.Array, logits: jax.Array, features: Features
    ) -> jax.Array:
        if self.loss_fn is None:
            return self._builtin_loss(labels, logits)
        params = _checks.loss_fn_params(self.loss_fn)
        kwargs: dict[str, Any] = {"labels": labels, "logits": logits}
        if "features" in params:
            kwargs["features"] = features
        if "loss_reduction" in params:
            kwargs["loss_reduction"] = self.loss_reduction
        loss = jnp.asarray(self.loss_fn(**kwargs))
        expected = tuple(logits.shape[:-1]) + (self._loss_dim,)
        if loss.shape != expected:
            raise ValueError(
                f"loss_fn must return Tensor of shape [D0, D1, ... DN, {self._loss_dim}]. "
                f"logits_shape: {shape_str(logits.shape)} loss_shape: "
                f"{shape_str(loss.shape)}: expected loss_shape "
                f"{shape_str(expected)} (the unreduced, unweighted loss)."
            )
        return loss.astype(jnp.float32)

    def _batch(
        self, labels: Any, logits: ArrayLike, features: Features, mask: ArrayLike | None
    ) -> Batch:
        """Checks and prepares one batch; ``mask`` (bool ``[D0, …, DN]``) zeroes weights."""
        float_logits = self._float_logits(logits)
        processed = self._process_labels(labels, float_logits)
        loss = self._per_element_loss(processed, float_logits, features)
        weights = self.weights(features, float_logits)
        if mask is None:
            return Batch(float_logits, processed, loss, weights, None)
        valid = jnp.asarray(mask, jnp.bool_)
        if valid.shape != float_logits.shape[:-1]:
            raise ValueError(
                f"mask must have the logits' batch shape {shape_str(float_logits.shape[:-1])}, "
                f"got {shape_str(valid.shape)}."
            )
        # `where`, not a product: a NaN weight at a masked element must not leak.
        weights = jnp.where(expand_trailing(valid, weights.ndim), weights, 0.0)
        num_elements = jnp.sum(valid.astype(jnp.float32)) * loss.shape[-1]
        return Batch(float_logits, processed, loss, weights, num_elements)

    # ---------------------------------------------------------------- loss
    def unreduced_loss(
        self, labels: Any, logits: ArrayLike, features: Features = None, *, mask: Any = None
    ) -> tuple[jax.Array, jax.Array]:
        """The unweighted per-element loss and the weights, as TF's ``create_loss``.

        Args:
          labels: labels, see the head's class docstring for shapes and dtypes.
          logits: ``[D0, …, DN, logits_dimension]``, any float or int dtype.
          features: dict of arrays holding the weight column, or ``None``.
          mask: optional bool ``[D0, …, DN]``: elements where it is ``False``
            get weight 0.

        Returns:
          ``(loss, weights)``: float32 ``[D0, …, DN, k]`` unweighted loss and
          float32 weights ``[D0, …, DN, 1]`` (ones without a weight column; or
          ``[…, k]`` per-logit weights for regression heads). The training
          loss is ``reduce(loss · weights)``.
        """
        batch = self._batch(labels, logits, features, mask)
        return batch.loss, batch.weights

    def loss_terms(
        self, labels: Any, logits: Any, features: Features = None, *, mask: Any = None
    ) -> LossTerms:
        """The unregularized loss as additive :class:`~jaxheads.LossTerms` (one term).

        With ``mask``, masked elements are out of the sums and of the
        ``SUM_OVER_BATCH_SIZE`` denominator (which counts valid elements only).
        """
        batch = self._batch(labels, logits, features, mask)
        return LossTerms.single(
            *weighted_loss_terms(batch.loss, batch.weights, self.loss_reduction, batch.num_elements)
        )

    # ---------------------------------------------------------------- metrics
    def _check_state(self, state: Any) -> None:
        check_state(state, self._state_class, self._metrics_config(), type(self).__name__)

    def update_metrics(
        self,
        state: SM,
        features: Features,
        logits: Any,
        labels: Any,
        regularization_losses: Sequence[ArrayLike] | None = None,
        *,
        mask: Any = None,
    ) -> SM:
        """Folds one batch into ``state``; pure and jittable (string labels: host only).

        ``mask`` (optional bool ``[D0, …, DN]``) leaves out the elements where
        it is ``False``.

        Raises:
          ValueError: when ``state`` comes from a head of another configuration.
        """
        self._check_state(state)
        state = self._update_state(state, self._batch(labels, logits, features, mask))
        tracked = update_regularization(state.regularization_loss, regularization_losses)
        return state.replace(regularization_loss=tracked)

    def compute_metrics(self, state: SM) -> dict[str, jax.Array]:
        """Metric values with TF's keys (``/name`` appended when the head has a name).

        Raises:
          ValueError: when ``state`` comes from a head of another configuration.
        """
        self._check_state(state)
        return finish(self._metric_values(state), state.regularization_loss, self.name)
