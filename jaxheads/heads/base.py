"""The machinery every head shares: weights, loss reduction, metric keys, specs.

A concrete head is a frozen dataclass (hashable, so it can be a static
argument of ``jax.jit``) that subclasses :class:`Head` and supplies:

* ``logits_dimension``;
* ``_process_labels(labels, logits)`` — checks and reshapes labels;
* ``_builtin_loss(labels, logits)`` — the unweighted per-element loss;
* ``predictions``, ``init_metrics``, ``update_metrics``, ``compute_metrics``,
  ``export_outputs``.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxheads import _checks
from jaxheads.modes import ModeKeys
from jaxheads.reduction import Reduction, divide_loss_terms, weighted_loss_terms

__all__ = ["Head", "HeadSpec"]

Features = Mapping[str, Any] | None

# Parameters a custom loss_fn may declare (TF 2's set).
LOSS_FN_ARGS = frozenset({"labels", "logits", "features", "loss_reduction"})


@dataclasses.dataclass(frozen=True)
class HeadSpec:
    """What a head returns for one mode (the JAX counterpart of an ``EstimatorSpec``).

    A pytree: it can be returned from a jitted function (``mode`` is static).

    Attributes:
      mode: ``"train"``, ``"eval"`` or ``"predict"``.
      predictions: dict of prediction arrays (every mode).
      loss: float32 scalar training loss (train and eval), else ``None``.
      metrics: the metric state after one update on this batch (eval), else
        ``None``; call ``head.compute_metrics`` on it, or merge it with others.
      export_outputs: signature name → dict of arrays (predict), else ``None``.
    """

    mode: str
    predictions: dict[str, jax.Array]
    loss: jax.Array | None = None
    metrics: Any = None
    export_outputs: dict[str, dict[str, jax.Array]] | None = None


jax.tree_util.register_dataclass(
    HeadSpec,
    data_fields=["predictions", "loss", "metrics", "export_outputs"],
    meta_fields=["mode"],
)


def sum_regularization_losses(
    regularization_losses: Sequence[ArrayLike] | None,
) -> jax.Array | None:
    """``add_n(regularization_losses)`` in float32, or ``None`` when there are none."""
    if regularization_losses is None:
        return None
    if isinstance(regularization_losses, (jax.Array,)) or not isinstance(
        regularization_losses, (list, tuple)
    ):
        raise TypeError(
            "regularization_losses must be a list or tuple of scalars, got "
            f"{type(regularization_losses)}."
        )
    if not regularization_losses:
        return None
    values = [jnp.asarray(r, jnp.float32) for r in regularization_losses]
    for i, v in enumerate(values):
        if v.shape != ():
            raise ValueError(
                f"regularization_losses[{i}] must be a scalar, got shape {_checks.shape_str(v.shape)}."
            )
    return jnp.sum(jnp.stack(values))


def wants_regularization_metric(regularization_losses: Any) -> bool:
    """Whether ``init_metrics(regularization_losses)`` should track ``regularization_loss``."""
    return regularization_losses is not None and regularization_losses is not False


def update_regularization_metric(
    state: dict[str, Any], new: dict[str, Any], regularization_losses: Sequence[ArrayLike] | None
) -> None:
    """Folds ``add_n(regularization_losses)`` into ``new["regularization_loss"]``, if given."""
    regularization = sum_regularization_losses(regularization_losses)
    if regularization is None:
        return
    if "regularization_loss" not in state:
        raise ValueError(
            "regularization_losses were given but the metric state does not track them: "
            "create it with init_metrics(regularization_losses=True)."
        )
    new["regularization_loss"] = state["regularization_loss"].update(regularization)


def classification_outputs(predictions: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """The ``classification`` signature: class scores and the class ids they belong to."""
    return {"scores": predictions["probabilities"], "class_ids": predictions["all_class_ids"]}


class Head(abc.ABC):
    """Base class of the heads. See the module docstring for the subclass contract."""

    # Subclasses are dataclasses with (at least) these fields.
    name: str | None
    weight_column: Any
    loss_reduction: Reduction
    loss_fn: Any

    # Whether weights may have the shape of the logits (regression heads).
    _allow_per_logit_weights = False

    @property
    @abc.abstractmethod
    def logits_dimension(self) -> int:
        """The size of the logits' last dimension."""

    # ---------------------------------------------------------------- validation
    def _validate_common(self) -> None:
        """Normalises ``loss_reduction`` and checks ``loss_fn`` (call from ``__post_init__``)."""
        object.__setattr__(self, "loss_reduction", Reduction.validate(self.loss_reduction))
        _checks.check_loss_fn_args(self.loss_fn, LOSS_FN_ARGS)
        if self.name is not None and not isinstance(self.name, str):
            raise TypeError(f"name must be a string or None, got {type(self.name)}.")

    @property
    def _expected_loss_dim(self) -> int:
        return 1

    # ---------------------------------------------------------------- loss
    @abc.abstractmethod
    def _process_labels(self, labels: Any, logits: jax.Array) -> jax.Array:
        """Checked labels, shaped ``[D0, …, DN, k]``, as the loss expects them."""

    @abc.abstractmethod
    def _builtin_loss(self, labels: jax.Array, logits: jax.Array) -> jax.Array:
        """The unweighted per-element loss, shaped ``[D0, …, DN, expected_loss_dim]``."""

    def _float_logits(self, logits: ArrayLike) -> jax.Array:
        return _checks.float_logits(logits, self.logits_dimension)

    def _weights(self, features: Features, logits: jax.Array) -> jax.Array:
        return _checks.weights_from_features(
            features, self.weight_column, logits.shape, self._allow_per_logit_weights
        )

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
        expected = tuple(logits.shape[:-1]) + (self._expected_loss_dim,)
        if loss.shape != expected:
            raise ValueError(
                f"loss_fn must return Tensor of shape [D0, D1, ... DN, {self._expected_loss_dim}]. "
                f"logits_shape: {_checks.shape_str(logits.shape)} loss_shape: "
                f"{_checks.shape_str(loss.shape)}: expected loss_shape "
                f"{_checks.shape_str(expected)} (the unreduced, unweighted loss)."
            )
        return loss.astype(jnp.float32)

    def _loss_parts(
        self, labels: Any, logits: ArrayLike, features: Features
    ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        """(float32 logits, processed labels, unweighted loss, weights)."""
        logits = self._float_logits(logits)
        labels = self._process_labels(labels, logits)
        loss = self._per_element_loss(labels, logits, features)
        weights = self._weights(features, logits)
        return logits, labels, loss, weights

    def unreduced_loss(
        self, labels: Any, logits: ArrayLike, features: Features = None
    ) -> tuple[jax.Array, jax.Array]:
        """The unweighted per-element loss and the weights, as TF's ``create_loss``.

        Args:
          labels: labels, see the head's class docstring for shapes and dtypes.
          logits: ``[D0, …, DN, logits_dimension]``, any float or int dtype.
          features: dict of arrays holding the weight column, or ``None``.

        Returns:
          ``(loss, weights)``: float32 ``[D0, …, DN, k]`` unweighted loss and
          float32 weights ``[D0, …, DN, 1]`` (ones without a weight column; or
          ``[…, k]`` per-logit weights for regression heads). The training
          loss is ``reduce(loss · weights)``.
        """
        _, _, loss, weights = self._loss_parts(labels, logits, features)
        return loss, weights

    def loss_terms(
        self, labels: Any, logits: ArrayLike, features: Features = None
    ) -> tuple[jax.Array, jax.Array | None]:
        """The unregularized loss as additive float32 terms ``(Σ w·l, denominator)``.

        ``loss == total / denominator`` (``total`` alone for ``SUM``, whose
        denominator is ``None``). Both terms add up over shards and
        micro-batches: sum them and divide once to get the whole batch's loss
        (a mean of per-shard losses would be biased).
        """
        _, _, loss, weights = self._loss_parts(labels, logits, features)
        return weighted_loss_terms(loss, weights, self.loss_reduction)

    def loss(
        self,
        labels: Any,
        logits: ArrayLike,
        features: Features = None,
        mode: str | None = None,
        regularization_losses: Sequence[ArrayLike] | None = None,
        *,
        axis_name: Any = None,
    ) -> jax.Array:
        """The scalar float32 training loss: the reduced weighted loss plus regularization.

        Args:
          labels: labels, see the head's class docstring.
          logits: ``[D0, …, DN, logits_dimension]``.
          features: dict of arrays holding the weight column, or ``None``.
          mode: accepted for TF compatibility; the loss is the same in every mode.
          regularization_losses: list of scalars, added after the reduction.
          axis_name: inside ``shard_map``/``pmap``, the axis the batch is split
            over: sums and denominators are then global.
        """
        del mode
        total = divide_loss_terms(*self.loss_terms(labels, logits, features), axis_name)
        regularization = sum_regularization_losses(regularization_losses)
        return total if regularization is None else total + regularization

    # ---------------------------------------------------------------- metrics
    def _metric_key(self, key: str) -> str:
        """TF's ``_summary_key``: the head's name is appended, ``accuracy/my_head``."""
        return f"{key}/{self.name}" if self.name else key

    @abc.abstractmethod
    def init_metrics(self, regularization_losses: Any = None) -> dict[str, Any]:
        """A fresh metric state; pass ``regularization_losses`` (or ``True``) to track them."""

    @abc.abstractmethod
    def update_metrics(
        self,
        state: dict[str, Any],
        features: Features,
        logits: ArrayLike,
        labels: Any,
        regularization_losses: Sequence[ArrayLike] | None = None,
    ) -> dict[str, Any]:
        """Folds one batch into ``state`` (pure; jittable)."""

    @abc.abstractmethod
    def compute_metrics(self, state: dict[str, Any]) -> dict[str, jax.Array]:
        """The metric values, keyed as TF keys them (with the ``/name`` suffix)."""

    # ---------------------------------------------------------------- predictions
    @abc.abstractmethod
    def predictions(
        self, logits: ArrayLike, keys: Sequence[str] | None = None
    ) -> dict[str, jax.Array]:
        """Named prediction arrays."""

    @abc.abstractmethod
    def export_outputs(self, logits: ArrayLike) -> dict[str, dict[str, jax.Array]]:
        """Serving signatures: name → dict of arrays, ``serving_default`` first."""

    def _select_predictions(
        self,
        predictions: dict[str, jax.Array],
        keys: Sequence[str] | None,
        host_keys: Sequence[str] = (),
    ) -> dict[str, jax.Array]:
        if keys is None:
            return predictions
        if isinstance(keys, str):
            keys = [keys]
        for key in keys:
            if key in host_keys:
                raise ValueError(
                    f"Prediction key {key!r} holds strings, which JAX arrays cannot: call "
                    f"head.class_names(predictions[{key.replace('classes', 'class_ids')!r}]) "
                    "on the host instead."
                )
            if key not in predictions:
                raise ValueError(
                    f"Prediction key must be in PredictionKeys, given: {key}. Valid prediction "
                    f"keys include {sorted(predictions)}."
                )
        return {key: predictions[key] for key in keys}

    # ---------------------------------------------------------------- spec
    def create_spec(
        self,
        mode: str,
        logits: ArrayLike,
        labels: Any = None,
        features: Features = None,
        regularization_losses: Sequence[ArrayLike] | None = None,
    ) -> HeadSpec:
        """Everything a train / eval / predict step needs from this head at once.

        The JAX counterpart of ``create_estimator_spec``: there is no train op
        (use :mod:`jaxheads.train` or differentiate ``loss``).

        * ``"predict"``: predictions and export outputs.
        * ``"train"``: predictions and the regularized loss.
        * ``"eval"``: predictions, the loss, and a fresh metric state updated
          with this batch.
        """
        mode = ModeKeys.validate(mode)
        predictions = self.predictions(logits)
        if mode == ModeKeys.PREDICT:
            return HeadSpec(mode, predictions, export_outputs=self.export_outputs(logits))
        if labels is None:
            _checks.dense_labels(None, (), 1)  # Raises TF's "You must provide a labels Tensor".
        loss = self.loss(labels, logits, features, mode, regularization_losses)
        if mode == ModeKeys.TRAIN:
            return HeadSpec(mode, predictions, loss=loss)
        state = self.update_metrics(
            self.init_metrics(regularization_losses),
            features,
            logits,
            labels,
            regularization_losses,
        )
        return HeadSpec(mode, predictions, loss=loss, metrics=state)
