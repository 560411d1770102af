"""``MultiHead``: several named heads on one model, trained on a weighted sum of their losses."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxheads import _validate, metrics
from jaxheads._loss_terms import LossTerms
from jaxheads._shapes import shape_str
from jaxheads.heads._metric_state import (
    MultiHeadMetrics,
    MultiHeadMetricsConfig,
    check_state,
    init_regularization,
    update_regularization,
)
from jaxheads.heads._multi_parts import check_heads, merge_export_outputs
from jaxheads.heads._single import LossHead
from jaxheads.heads.base import Features, Head, HeadSpec
from jaxheads.keys import MetricKeys, summary_key
from jaxheads.modes import ModeKeys
from jaxheads.reduction import Reduction

__all__ = ["MultiHead", "multi_head"]


@dataclasses.dataclass(frozen=True)
class MultiHead(Head[MultiHeadMetrics]):
    """Several named heads trained together (TF's ``MultiHead``).

    Logits are a dict keyed by head name, or one array
    ``[D0, …, DN, Σ logits_dimension]`` split along the last axis in head
    order. Labels are a dict keyed by head name (extra keys are ignored, as
    TF); ``features`` are shared by every head (each reads its own weight
    column).

    * ``loss`` = ``Σ_i head_weight_i · head_i.loss(…)`` (each head's reduced
      loss, without regularization) ``+ Σ regularization_losses``.
    * ``predictions`` are keyed by ``(head_name, key)`` tuples (valid pytree
      dict keys), as TF.
    * Metrics: every head's own metrics (keys suffixed with the head's name),
      ``loss/<head>`` (the mean over updates of that head's training loss,
      before the head weight) and ``regularization_loss/<multi-head name>``
      when regularization losses are tracked.
    * Export outputs: ``serving_default`` is the first head's default output;
      each head's signature ``k`` appears as ``'<head>'`` (for its
      ``serving_default``) or ``'<head>/<k>'``; ``predict`` merges every head's
      predictions under ``'<head>/<key>'``.

    Differences from TF, on purpose: the per-head metrics stream across
    updates (TF 2's eager ``update_metrics`` re-creates them on every call, so
    they only reflect the last batch); the "Could not split logits" message
    gives the expected and actual sizes the right way round; heads must have
    distinct names (TF silently overwrites one head's predictions and
    metrics with another's); ``features=None`` means no features.

    Attributes:
      heads: the heads (single heads or sequential wrappers), each with a
        distinct, non-empty ``name``.
      head_weights: one float per head, or ``None`` (all 1).

    Examples:
      >>> from jaxheads.heads.multi_label import MultiLabelHead
      >>> head = MultiHead(
      ...     [MultiLabelHead(2, name="head1"), MultiLabelHead(3, name="head2")],
      ...     head_weights=[1.0, 2.0])
      >>> logits = {"head1": jnp.array([[-10.0, 10.0], [-15.0, 10.0]]),
      ...           "head2": jnp.array([[20.0, -20.0, 20.0], [-30.0, 20.0, -20.0]])}
      >>> labels = {"head1": jnp.array([[1, 0], [1, 1]]),
      ...           "head2": jnp.array([[0, 1, 0], [1, 1, 0]])}
      >>> round(float(head.loss(labels, logits)), 3)  # 1 * 8.75 + 2 * 15
      38.75
    """

    heads: Sequence[LossHead[Any]]
    head_weights: Sequence[float] | None = None

    def __post_init__(self) -> None:
        heads = check_heads(self.heads)
        head_weights = self.head_weights
        if isinstance(head_weights, (list, tuple)) and not head_weights:
            head_weights = None  # TF: an empty list means no weights
        head_weights = _validate.head_weights(head_weights, len(heads))
        object.__setattr__(self, "heads", heads)
        object.__setattr__(self, "head_weights", head_weights)

    # ---------------------------------------------------------------- properties
    @property
    def name(self) -> str:
        """The head names joined with ``_`` (``head1_head2``)."""
        return "_".join(self._names)

    @property
    def logits_dimension(self) -> int:
        return sum(head.logits_dimension for head in self.heads)

    @property
    def loss_reduction(self) -> Reduction:
        """The heads' common reduction; ``ValueError`` when they differ."""
        reductions = [head.reduction for head in self.heads]
        if len(set(reductions)) > 1:
            raise ValueError(
                "The loss_reduction must be the same for different heads. "
                f"Given: {[str(r) for r in reductions]}"
            )
        return reductions[0]

    @property
    def _names(self) -> list[str]:
        return [str(head.name) for head in self.heads]

    def _weight(self, i: int) -> float:
        return 1.0 if self.head_weights is None else self.head_weights[i]

    # ---------------------------------------------------------------- splitting
    def _split_logits(self, logits: Any) -> dict[str, Any]:
        """A dict keyed by head name: the given dict, or the array split along its last axis."""
        if isinstance(logits, Mapping):
            missing = [n for n in self._names if n not in logits]
            if missing:
                raise ValueError(
                    f"logits has missing values for head(s): {missing} (logits keys: "
                    f"{sorted(map(str, logits))})."
                )
            return {n: logits[n] for n in self._names}
        if logits is None:
            raise ValueError(
                "logits must not be None: expected a dict keyed by head name, or an array "
                f"[D0, ..., DN, {self.logits_dimension}]."
            )
        logits = jnp.asarray(logits)
        dims = [head.logits_dimension for head in self.heads]
        if logits.ndim < 2:
            raise ValueError(
                f"logits must have rank at least 2.  Received rank {logits.ndim}, shape "
                f"{shape_str(logits.shape)}; expected [D0, ..., DN, {sum(dims)}]."
            )
        if logits.shape[-1] != sum(dims):
            raise ValueError(
                f"Could not split logits of shape {list(logits.shape)} among the heads with "
                f"individual logits dimensions: {dims}. The last dimension of the logits tensor "
                f"should equal {sum(dims)} but is {logits.shape[-1]}."
            )
        out, start = {}, 0
        for name, dim in zip(self._names, dims, strict=True):
            out[name] = logits[..., start : start + dim]
            start += dim
        return out

    def _check_labels(self, labels: Any) -> Mapping[str, Any]:
        if not isinstance(labels, Mapping):
            raise ValueError(f"labels must be a dict. Given: {labels}")
        missing = [n for n in self._names if n not in labels]
        if missing:
            raise ValueError(
                f"labels has missing values for head(s): {missing} (labels keys: "
                f"{sorted(map(str, labels))})."
            )
        return labels

    # ---------------------------------------------------------------- loss
    def loss_terms(self, labels: Any, logits: Any, features: Features = None) -> LossTerms:
        """Every head's :class:`~jaxheads.LossTerms`, side by side, weighted by ``head_weights``.

        ``value()`` is ``Σ_i head_weight_i · loss_i``; the terms add up over
        micro-batches and shards like a single head's.
        """
        logits = self._split_logits(logits)
        labels = self._check_labels(labels)
        terms = [
            head.loss_terms(labels[name], logits[name], features)
            for name, head in zip(self._names, self.heads, strict=True)
        ]
        return LossTerms.concatenate(terms, self.head_weights)

    def head_losses(
        self,
        labels: Mapping[str, Any],
        logits: Any,
        features: Features = None,
        mode: str | None = None,
        *,
        axis_name: Any = None,
    ) -> dict[str, jax.Array]:
        """Each head's reduced training loss (before the head weight), keyed by head name."""
        del mode
        terms = self.loss_terms(labels, logits, features)
        if axis_name is not None:
            terms = terms.psum(axis_name)
        per_head = terms.per_head()
        return {name: per_head[i] for i, name in enumerate(self._names)}

    def unreduced_loss(
        self, labels: Mapping[str, Any], logits: Any, features: Features = None
    ) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
        """Per-head unweighted losses and weights, as contrib ``multi_head``'s ``create_loss``.

        Returns:
          ``(losses, weights)``: two dicts keyed by head name. As in contrib,
          *both* the loss and the weights of head ``i`` are multiplied by its
          head weight (so ``loss · weights`` carries the head weight squared;
          use :meth:`loss` for the training loss).
        """
        logits = self._split_logits(logits)
        labels = self._check_labels(labels)
        losses: dict[str, jax.Array] = {}
        weights: dict[str, jax.Array] = {}
        for i, (name, head) in enumerate(zip(self._names, self.heads, strict=True)):
            loss, weight = head.unreduced_loss(labels[name], logits[name], features)
            scale = self._weight(i)
            losses[name] = loss if self.head_weights is None else loss * jnp.float32(scale)
            weights[name] = weight if self.head_weights is None else weight * jnp.float32(scale)
        return losses, weights

    # ---------------------------------------------------------------- predictions
    def predictions(
        self, logits: Any, keys: Sequence[Any] | None = None
    ) -> dict[tuple[str, str], jax.Array]:
        """Every head's predictions, keyed by ``(head_name, key)``.

        ``keys`` (a list of such tuples) restricts the output.
        """
        logits = self._split_logits(logits)
        predictions = {
            (name, key): value
            for name, head in zip(self._names, self.heads, strict=True)
            for key, value in head.predictions(logits[name]).items()
        }
        if keys is None:
            return predictions
        for key in keys:
            if key not in predictions:
                raise ValueError(
                    "Prediction key must be one of the (head_name, key) tuples "
                    f"{sorted(predictions)}, given: {key!r}."
                )
        return {key: predictions[key] for key in keys}

    def export_outputs(self, logits: Any) -> dict[str, dict[str, jax.Array]]:
        """TF's merged signatures: ``serving_default``, ``'<head>'``, ``'<head>/<k>'``, ``predict``.

        ``serving_default`` is the first head's default output; ``predict``
        merges every head's predictions under ``'<head>/<key>'``.
        """
        logits = self._split_logits(logits)
        per_head = [
            head.export_outputs(logits[name])
            for name, head in zip(self._names, self.heads, strict=True)
        ]
        return merge_export_outputs(self._names, per_head)

    # ---------------------------------------------------------------- labels (host side)
    def class_vocabularies(self) -> dict[str, tuple[str, ...]]:
        """Each head's vocabularies under ``'<head>/<key>'`` (the ``predict`` output keys).

        In the per-head signatures (``'<head>'``, ``'<head>/<k>'``) an output
        ``class_ids`` has the vocabulary of ``'<head>/class_ids'``.
        """
        return {
            f"{name}/{key}": classes
            for name, head in zip(self._names, self.heads, strict=True)
            for key, classes in head.class_vocabularies().items()
        }

    def encode_labels(self, labels: Any, features: Features = None) -> dict[str, Any]:
        """Host side: each head's :meth:`encode_labels` on its labels (other keys pass through)."""
        labels = self._check_labels(labels)
        out = dict(labels)
        for name, head in zip(self._names, self.heads, strict=True):
            out[name] = head.encode_labels(labels[name], features)
        return out

    # ---------------------------------------------------------------- metrics
    def _metrics_config(self) -> MultiHeadMetricsConfig:
        return MultiHeadMetricsConfig(head_names=tuple(self._names))

    def init_metrics(self, regularization_losses: Any = None) -> MultiHeadMetrics:
        """A fresh :class:`MultiHeadMetrics`: every head's state and a ``loss/<head>`` mean.

        Every head's state is created here, once, so it streams across
        updates (the TF 2 eager bug is not reproduced). Pass
        ``regularization_losses`` (the list, or ``True``) to track
        ``regularization_loss/<name>``.
        """
        return MultiHeadMetrics(
            regularization_loss=init_regularization(regularization_losses),
            config=self._metrics_config(),
            heads={n: head.init_metrics() for n, head in zip(self._names, self.heads, strict=True)},
            losses={name: metrics.Mean.empty() for name in self._names},
        )

    def update_metrics(
        self,
        state: MultiHeadMetrics,
        features: Features,
        logits: Any,
        labels: Any,
        regularization_losses: Sequence[ArrayLike] | None = None,
    ) -> MultiHeadMetrics:
        """Folds one batch into every head's state and the ``loss/<head>`` means; pure."""
        check_state(state, MultiHeadMetrics, self._metrics_config(), "MultiHead")
        logits = self._split_logits(logits)
        labels = self._check_labels(labels)
        heads_state = dict(state.heads)
        losses = dict(state.losses)
        for name, head in zip(self._names, self.heads, strict=True):
            head_loss = head.loss_terms(labels[name], logits[name], features).value()
            losses[name] = state.losses[name].update(head_loss)
            heads_state[name] = head.update_metrics(
                state.heads[name], features, logits[name], labels[name]
            )
        return state.replace(
            heads=heads_state,
            losses=losses,
            regularization_loss=update_regularization(
                state.regularization_loss, regularization_losses
            ),
        )

    def compute_metrics(self, state: MultiHeadMetrics) -> dict[str, jax.Array]:
        """``loss/<head>``, every head's metrics, and ``regularization_loss/<name>`` if tracked."""
        check_state(state, MultiHeadMetrics, self._metrics_config(), "MultiHead")
        out = {summary_key(MetricKeys.LOSS, n): state.losses[n].compute() for n in self._names}
        for name, head in zip(self._names, self.heads, strict=True):
            out.update(head.compute_metrics(state.heads[name]))
        if state.regularization_loss is not None:
            key = summary_key(MetricKeys.LOSS_REGULARIZATION, self.name)
            out[key] = state.regularization_loss.compute()
        return out

    # ---------------------------------------------------------------- spec
    def create_spec(
        self,
        mode: str,
        logits: Any,
        labels: Any = None,
        features: Features = None,
        regularization_losses: Sequence[ArrayLike] | None = None,
    ) -> HeadSpec:
        """See :meth:`Head.create_spec`; in ``"train"`` the heads must share one loss reduction."""
        mode = ModeKeys.validate(mode)
        if mode != ModeKeys.PREDICT:
            if labels is None:
                raise ValueError(
                    "You must provide a labels Tensor. Given: None. MultiHead needs labels as a "
                    f"dict keyed by head name ({self._names}) in {mode!r} mode."
                )
            if mode == ModeKeys.TRAIN:
                _ = self.loss_reduction  # Raises when the heads' reductions differ, as TF.
        return super().create_spec(mode, logits, labels, features, regularization_losses)


def multi_head(
    heads: Sequence[LossHead[Any]], head_weights: Sequence[float] | None = None
) -> MultiHead:
    """TF1's ``tf.contrib.estimator.multi_head``; see :class:`MultiHead`.

    Examples:
      >>> from jaxheads.heads.regression import RegressionHead
      >>> multi_head([RegressionHead(name="a"), RegressionHead(2, name="b")]).logits_dimension
      3
    """
    return MultiHead(heads, head_weights)
