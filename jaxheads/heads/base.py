"""The head contract: the abstract :class:`Head`, :class:`HeadSpec` and ``create_spec``.

Everything outside ``jaxheads.heads`` (training steps, the Flax wrappers,
export) knows a head only through the members declared here; nothing probes
a head with ``hasattr``/``getattr``. The single heads share a template
(:mod:`jaxheads.heads._single`); :class:`~jaxheads.MultiHead` and
:class:`~jaxheads.SequentialHeadWrapper` implement the contract by
composition. See ``docs/architecture.md``.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Generic, TypeVar

import jax
import numpy as np
from jax.typing import ArrayLike

from jaxheads._loss_terms import LossTerms
from jaxheads.heads import _regularization
from jaxheads.keys import PredictionKeys
from jaxheads.modes import ModeKeys
from jaxheads.vocabulary import LabelVocabulary

__all__ = ["Features", "Head", "HeadSpec", "LossTerms"]

Features = Mapping[str, Any] | None
# A head's metric state: a typed pytree (see jaxheads.heads._metric_state).
S = TypeVar("S")


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
    predictions: dict[Any, jax.Array]
    loss: jax.Array | None = None
    metrics: Any = None
    export_outputs: dict[str, dict[str, jax.Array]] | None = None


jax.tree_util.register_dataclass(
    HeadSpec,
    data_fields=["predictions", "loss", "metrics", "export_outputs"],
    meta_fields=["mode"],
)


class Head(abc.ABC, Generic[S]):
    """The contract every head implements (``S`` is the type of its metric state).

    Heads are immutable, hashable configuration objects (static arguments of
    ``jax.jit``); every array method is pure and jittable. Host-side methods
    (:meth:`encode_labels`, :meth:`class_names`) work on NumPy values.
    """

    @property
    @abc.abstractmethod
    def name(self) -> str | None:
        """The head's name (suffix of its metric keys), or ``None``."""

    @property
    @abc.abstractmethod
    def logits_dimension(self) -> int:
        """The size of the logits' last dimension."""

    # ---------------------------------------------------------------- loss
    @abc.abstractmethod
    def loss_terms(self, labels: Any, logits: Any, features: Features = None) -> LossTerms:
        """The unregularized loss as additive :class:`~jaxheads.LossTerms` (jittable).

        ``loss_terms(...).value() == loss(...)`` without regularization; the
        terms add up over micro-batches and shards (``a + b``,
        ``.value(axis_name)``), so a sum of parts divided once is the loss of
        the whole batch.
        """

    def loss(
        self,
        labels: Any,
        logits: Any,
        features: Features = None,
        mode: str | None = None,
        regularization_losses: Sequence[ArrayLike] | None = None,
        *,
        axis_name: Any = None,
    ) -> jax.Array:
        """The scalar float32 training loss: ``loss_terms(...).value(axis_name) + add_n(reg)``.

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
        total = self.loss_terms(labels, logits, features).value(axis_name)
        regularization = _regularization.add_n(regularization_losses)
        return total if regularization is None else total + regularization

    # ---------------------------------------------------------------- predictions
    @abc.abstractmethod
    def predictions(self, logits: Any, keys: Sequence[Any] | None = None) -> dict[Any, jax.Array]:
        """Named prediction arrays (``str`` keys; ``(head, key)`` tuples for a ``MultiHead``)."""

    @abc.abstractmethod
    def export_outputs(self, logits: Any) -> dict[str, dict[str, jax.Array]]:
        """Serving signatures: name → dict of arrays, ``serving_default`` first."""

    # ---------------------------------------------------------------- metrics
    @abc.abstractmethod
    def init_metrics(self, regularization_losses: Any = None) -> S:
        """A fresh typed metric state; pass ``regularization_losses`` (or ``True``) to track them."""

    @abc.abstractmethod
    def update_metrics(
        self,
        state: S,
        features: Features,
        logits: Any,
        labels: Any,
        regularization_losses: Sequence[ArrayLike] | None = None,
    ) -> S:
        """Folds one batch into ``state`` (pure; jittable).

        Raises:
          ValueError: when ``state`` was made by a head of another configuration.
        """

    @abc.abstractmethod
    def compute_metrics(self, state: S) -> dict[str, jax.Array]:
        """The metric values, keyed as TF keys them (with the ``/name`` suffix).

        Raises:
          ValueError: when ``state`` was made by a head of another configuration.
        """

    # ---------------------------------------------------------------- labels (host side)
    @abc.abstractmethod
    def encode_labels(self, labels: Any, features: Features = None) -> Any:
        """Host side: labels as arrays ready for ``jit`` (a dict for a ``MultiHead``).

        Strings go through the vocabulary; values are checked whenever they
        are concrete (``ValueError`` naming ``labels``).
        """

    @abc.abstractmethod
    def class_vocabularies(self) -> Mapping[str, tuple[str, ...]]:
        """The class names of every prediction output that holds class ids.

        Keyed by that output's key as it appears in :meth:`predictions` and in
        the ``predict`` signature of :meth:`export_outputs` (``"class_ids"``,
        ``"all_class_ids"``; ``"<head>/class_ids"`` … for a ``MultiHead``).
        Heads without classes return ``{}``.
        """

    def class_names(self, class_ids: ArrayLike, key: str = PredictionKeys.CLASS_IDS) -> np.ndarray:
        """Host side: class ids (any shape) → ``str`` class names, for prediction output ``key``.

        ``class_names(predictions["class_ids"])`` is TF's ``classes``.

        Raises:
          ValueError: when ``key`` holds no class ids, or on out-of-range ids.
        """
        vocabularies = self.class_vocabularies()
        if key not in vocabularies:
            raise ValueError(
                f"class_names: key {key!r} is not a class-id output of {type(self).__name__}; "
                f"expected one of {sorted(vocabularies)}."
            )
        return LabelVocabulary(vocabularies[key]).decode(np.asarray(class_ids))

    # ---------------------------------------------------------------- spec
    def create_spec(
        self,
        mode: str,
        logits: Any,
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
            raise ValueError(
                "You must provide a labels Tensor. Given: None. Suggested troubleshooting steps: "
                "Check that your data contains your label feature. Check that your input_fn "
                "properly parses and returns labels."
            )
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
