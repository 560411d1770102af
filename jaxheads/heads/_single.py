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
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxheads import _checks
from jaxheads._loss_terms import LossTerms
from jaxheads.heads import _regularization
from jaxheads.heads.base import Features, Head
from jaxheads.reduction import Reduction, weighted_loss_terms

__all__ = ["SingleHead"]

# Parameters a custom loss_fn may declare (TF 2's set).
LOSS_FN_ARGS = frozenset({"labels", "logits", "features", "loss_reduction"})


sum_regularization_losses = _regularization.add_n


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


class SingleHead(Head[Any]):
    """Template of the single heads. See the module docstring for the subclass contract."""

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

    def loss_terms(self, labels: Any, logits: Any, features: Features = None) -> LossTerms:
        """The unregularized loss as additive :class:`~jaxheads.LossTerms` (one term)."""
        _, _, loss, weights = self._loss_parts(labels, logits, features)
        return LossTerms.single(*weighted_loss_terms(loss, weights, self.loss_reduction))

    # ---------------------------------------------------------------- metrics
    def _metric_key(self, key: str) -> str:
        """TF's ``_summary_key``: the head's name is appended, ``accuracy/my_head``."""
        return f"{key}/{self.name}" if self.name else key

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
