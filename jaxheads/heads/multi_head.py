"""``MultiHead``: several named heads on one model, trained on a weighted sum of their losses."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxheads import _checks, metrics
from jaxheads._loss_terms import LossTerms
from jaxheads.heads._regularization import add_n as sum_regularization_losses
from jaxheads.heads._regularization import wants_metric as wants_regularization_metric
from jaxheads.heads._single import update_regularization_metric
from jaxheads.heads.base import Features, Head, HeadSpec
from jaxheads.modes import ModeKeys
from jaxheads.reduction import Reduction

__all__ = ["MultiHead", "multi_head"]

_DEFAULT_SERVING_KEY = "serving_default"
_PREDICT_SERVING_KEY = "predict"


@dataclasses.dataclass(frozen=True)
class MultiHead(Head[Any]):
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
      heads: the heads, each with a distinct, non-empty ``name``.
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

    heads: Sequence[Head]
    head_weights: Sequence[float] | None = None

    def __post_init__(self) -> None:
        heads = self.heads
        if not heads:
            raise ValueError(f"Must specify heads. Given: {heads}")
        if isinstance(heads, (Head, Mapping)) or not isinstance(heads, Sequence):
            raise TypeError(f"heads must be a list or tuple of heads, got {type(heads).__name__}.")
        head_weights = self.head_weights
        if head_weights:
            if len(head_weights) != len(heads):
                raise ValueError(
                    "heads and head_weights must have the same size. "
                    f"Given len(heads): {len(heads)}. Given len(head_weights): {len(head_weights)}."
                )
            head_weights = tuple(float(w) for w in head_weights)
        else:
            head_weights = None
        for head in heads:
            if not isinstance(head, Head):
                raise TypeError(
                    f"Every element of heads must be a head, got {type(head).__name__}."
                )
            if head.name is None:
                raise ValueError(f"All given heads must have name specified. Given: {head}")
        names = [head.name for head in heads]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(
                f"Every head of a MultiHead needs a distinct name: got names {names}, with "
                f"{duplicates} used more than once (their predictions and metrics would collide)."
            )
        object.__setattr__(self, "heads", tuple(heads))
        object.__setattr__(self, "head_weights", head_weights)

    # ---------------------------------------------------------------- properties
    @property
    def name(self) -> str:  # type: ignore[override]
        """The head names joined with ``_`` (``head1_head2``)."""
        return "_".join(head.name for head in self.heads)

    @property
    def logits_dimension(self) -> int:
        return sum(head.logits_dimension for head in self.heads)

    @property
    def loss_reduction(self) -> Reduction:  # type: ignore[override]
        """The heads' common reduction; ``ValueError`` when they differ."""
        reductions = [head.loss_reduction for head in self.heads]
        if len(set(reductions)) > 1:
            raise ValueError(
                "The loss_reduction must be the same for different heads. "
                f"Given: {[str(r) for r in reductions]}"
            )
        return reductions[0]

    @property
    def weight_column(self) -> None:  # type: ignore[override]
        return None

    @property
    def loss_fn(self) -> None:  # type: ignore[override]
        return None

    @property
    def _names(self) -> list[str]:
        return [head.name for head in self.heads]

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
                f"{_checks.shape_str(logits.shape)}; expected [D0, ..., DN, {sum(dims)}]."
            )
        if logits.shape[-1] != sum(dims):
            raise ValueError(
                f"Could not split logits of shape {list(logits.shape)} among the heads with "
                f"individual logits dimensions: {dims}. The last dimension of the logits tensor "
                f"should equal {sum(dims)} but is {logits.shape[-1]}."
            )
        out, start = {}, 0
        for head, dim in zip(self.heads, dims, strict=True):
            out[head.name] = logits[..., start : start + dim]
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
    def _weighted(self, i: int, value: jax.Array) -> jax.Array:
        if self.head_weights is None:
            return value
        return value * jnp.float32(self.head_weights[i])

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
        logits = self._split_logits(logits)
        labels = self._check_labels(labels)
        return {
            head.name: head.loss(
                labels[head.name], logits[head.name], features, mode, axis_name=axis_name
            )
            for head in self.heads
        }

    def loss(
        self,
        labels: Mapping[str, Any],
        logits: Any,
        features: Features = None,
        mode: str | None = None,
        regularization_losses: Sequence[ArrayLike] | None = None,
        *,
        axis_name: Any = None,
    ) -> jax.Array:
        """``Σ_i head_weight_i · head_i.loss(…) + Σ regularization_losses`` (float32 scalar).

        Args:
          labels: dict keyed by head name.
          logits: dict keyed by head name, or an array ``[D0, …, DN, logits_dimension]``.
          features: dict of arrays shared by the heads, or ``None``.
          mode: accepted for TF compatibility.
          regularization_losses: list of scalars, added once to the merged loss.
          axis_name: see :meth:`Head.loss`; passed to every head.
        """
        per_head = self.head_losses(labels, logits, features, mode, axis_name=axis_name)
        total = sum(
            (self._weighted(i, per_head[head.name]) for i, head in enumerate(self.heads)),
            start=jnp.zeros((), jnp.float32),
        )
        regularization = sum_regularization_losses(regularization_losses)
        return total if regularization is None else total + regularization

    def loss_terms(self, labels: Any, logits: Any, features: Features = None) -> LossTerms:
        """Every head's :class:`~jaxheads.LossTerms`, side by side, weighted by ``head_weights``."""
        logits = self._split_logits(logits)
        labels = self._check_labels(labels)
        terms = [
            head.loss_terms(labels[head.name], logits[head.name], features) for head in self.heads
        ]
        return LossTerms.concatenate(terms, self.head_weights)

    def unreduced_loss(  # type: ignore[override]
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
        for i, head in enumerate(self.heads):
            loss, weight = head.unreduced_loss(labels[head.name], logits[head.name], features)
            losses[head.name] = self._weighted(i, loss)
            weights[head.name] = self._weighted(i, weight)
        return losses, weights

    # ---------------------------------------------------------------- predictions
    def predictions(  # type: ignore[override]
        self, logits: Any, keys: Sequence[tuple[str, str]] | None = None
    ) -> dict[tuple[str, str], jax.Array]:
        """Every head's predictions, keyed by ``(head_name, key)``.

        ``keys`` (a list of such tuples) restricts the output.
        """
        logits = self._split_logits(logits)
        predictions = {
            (head.name, key): value
            for head in self.heads
            for key, value in head.predictions(logits[head.name]).items()
        }
        if keys is None:
            return predictions
        for key in keys:
            if key not in predictions:
                raise ValueError(
                    "Prediction key must be one of the (head_name, key) tuples "
                    f"{sorted(predictions)}, "
                    f"given: {key!r}."
                )
        return {key: predictions[key] for key in keys}

    def export_outputs(self, logits: Any) -> dict[str, dict[str, jax.Array]]:
        """TF's merged signatures: ``serving_default``, ``'<head>'``, ``'<head>/<k>'``, ``predict``.

        ``serving_default`` is the first head's default output; ``predict``
        merges every head's predictions under ``'<head>/<key>'``.
        """
        logits = self._split_logits(logits)
        per_head = [head.export_outputs(logits[head.name]) for head in self.heads]
        first, first_name = per_head[0], self.heads[0].name
        if len(first) == 1:
            default = next(iter(first.values()))
        elif _DEFAULT_SERVING_KEY in first:
            default = first[_DEFAULT_SERVING_KEY]
        else:
            raise ValueError(
                f"{first_name} did not specify default export_outputs. Given: {sorted(first)} "
                f"Suggested fix: include key {_DEFAULT_SERVING_KEY} in export_outputs."
            )
        outputs: dict[str, dict[str, jax.Array]] = {_DEFAULT_SERVING_KEY: default}
        merged_predict: dict[str, jax.Array] = {}
        for head, head_outputs in zip(self.heads, per_head, strict=True):
            for key, value in head_outputs.items():
                name = head.name if key == _DEFAULT_SERVING_KEY else f"{head.name}/{key}"
                outputs[name] = value
                if key == _PREDICT_SERVING_KEY:
                    for pred_key, pred in value.items():
                        merged_predict[f"{head.name}/{pred_key}"] = pred
        outputs[_PREDICT_SERVING_KEY] = merged_predict
        return outputs

    def class_vocabularies(self) -> dict[str, tuple[str, ...]]:
        """Each head's vocabularies under ``'<head>/<key>'`` (the ``predict`` output keys)."""
        return {
            f"{head.name}/{key}": classes
            for head in self.heads
            for key, classes in head.class_vocabularies().items()
        }

    def encode_labels(self, labels: Any, features: Features = None) -> dict[str, Any]:
        """Host side: each head's :meth:`encode_labels` on its labels (other keys pass through)."""
        labels = self._check_labels(labels)
        out = dict(labels)
        for head in self.heads:
            out[head.name] = head.encode_labels(labels[head.name], features)
        return out

    def _head(self, head_name: str) -> Head:
        for head in self.heads:
            if head.name == head_name:
                return head
        raise KeyError(f"No head named {head_name!r}; heads: {self._names}.")

    # ---------------------------------------------------------------- metrics
    def _loss_key(self, head: Head) -> str:
        return f"loss/{head.name}"

    def init_metrics(self, regularization_losses: Any = None) -> dict[str, Any]:
        """A fresh metric state: ``{"heads": {name: head state}, "loss": {name: Mean}, …}``.

        Every head's state is created here, once, so it streams across
        updates (the TF 2 eager bug is not reproduced). Pass
        ``regularization_losses`` (the list, or ``True``) to track
        ``regularization_loss/<name>``.
        """
        state: dict[str, Any] = {
            "heads": {head.name: head.init_metrics() for head in self.heads},
            "loss": {head.name: metrics.Mean.empty() for head in self.heads},
        }
        if wants_regularization_metric(regularization_losses):
            state["regularization_loss"] = metrics.Mean.empty()
        return state

    def update_metrics(
        self,
        state: dict[str, Any],
        features: Features,
        logits: Any,
        labels: Mapping[str, Any],
        regularization_losses: Sequence[ArrayLike] | None = None,
    ) -> dict[str, Any]:
        """Folds one batch into every head's state and the ``loss/<head>`` means; pure."""
        logits = self._split_logits(logits)
        labels = self._check_labels(labels)
        heads_state = dict(state["heads"])
        loss_state = dict(state["loss"])
        for head in self.heads:
            head_logits, head_labels = logits[head.name], labels[head.name]
            loss_state[head.name] = state["loss"][head.name].update(
                head.loss(head_labels, head_logits, features)
            )
            heads_state[head.name] = head.update_metrics(
                state["heads"][head.name], features, head_logits, head_labels
            )
        new = dict(state)
        new["heads"] = heads_state
        new["loss"] = loss_state
        update_regularization_metric(state, new, regularization_losses)
        return new

    def compute_metrics(self, state: dict[str, Any]) -> dict[str, jax.Array]:
        """``loss/<head>``, every head's metrics, and ``regularization_loss/<name>`` if tracked."""
        out: dict[str, jax.Array] = {}
        for head in self.heads:
            out[self._loss_key(head)] = state["loss"][head.name].compute()
        for head in self.heads:
            out.update(head.compute_metrics(state["heads"][head.name]))
        if "regularization_loss" in state:
            out[f"regularization_loss/{self.name}"] = state["regularization_loss"].compute()
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


def multi_head(heads: Sequence[Head], head_weights: Sequence[float] | None = None) -> MultiHead:
    """TF1's ``tf.contrib.estimator.multi_head``; see :class:`MultiHead`.

    Examples:
      >>> from jaxheads.heads.regression import RegressionHead
      >>> multi_head([RegressionHead(name="a"), RegressionHead(2, name="b")]).logits_dimension
      3
    """
    return MultiHead(heads, head_weights)
