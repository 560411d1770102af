"""``SequentialHeadWrapper``: any head on ``[batch, time, …]`` logits, padded steps masked out.

TF's ``SequentialHeadWrapper`` flattens ``[B, T, …]`` to ``[N, …]`` with
``tf.boolean_mask`` (``N`` = number of valid steps) before calling the
wrapped head, so padded steps vanish from the loss and the metrics. Dynamic
shapes do not fit ``jit``, so here the shapes stay ``[B, T, …]``: the mask
goes to the wrapped head's ``mask=`` argument (padded steps get weight 0, and
their logits and labels are replaced by harmless values first, so they cannot
produce NaNs or range errors), and the loss reduction divides by what TF divides by (``SUM_OVER_BATCH_SIZE``:
``N · k``, the number of *valid* loss elements, not ``B · T · k``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxheads import _checks
from jaxheads import labels as lb
from jaxheads._loss_terms import LossTerms
from jaxheads._shapes import expand_trailing, shape_str
from jaxheads.heads._metric_state import HeadMetrics
from jaxheads.heads._single import LossHead, SingleHead
from jaxheads.heads.base import Features, Head, HeadSpec
from jaxheads.keys import PredictionKeys
from jaxheads.modes import ModeKeys
from jaxheads.reduction import Reduction
from jaxheads.vocabulary import is_string_array

__all__ = ["SequentialHeadWrapper"]

SM = TypeVar("SM", bound=HeadMetrics)


def _as_bool(mask: jax.Array) -> jax.Array:
    """The mask as bool: non-zero is a valid step."""
    if mask.dtype == jnp.bool_:
        return mask
    if not (jnp.issubdtype(mask.dtype, jnp.integer) or jnp.issubdtype(mask.dtype, jnp.floating)):
        raise TypeError(f"The sequence mask must be bool or numeric, got dtype {mask.dtype}.")
    return mask != jnp.zeros((), mask.dtype)


def _zero_padded_steps(features: Mapping[str, Any], mask: jax.Array) -> dict[str, Any] | None:
    """Host side: per-step numeric features (``[B, T]`` or ``[B, T, 1]``, e.g. a weight
    column) with 0 at padded steps, where they may hold anything (NaN included); other
    features unchanged. ``None`` when the mask is not concrete."""
    if isinstance(mask, jax.core.Tracer):
        return None
    keep = np.asarray(mask)
    out = dict(features)
    for key, value in features.items():
        if isinstance(value, jax.core.Tracer) or np.ndim(value) not in (2, 3):
            continue
        shape = np.shape(value)
        if shape[:2] != keep.shape or (len(shape) == 3 and shape[2] != 1):
            continue
        array = np.asarray(value)
        if jnp.issubdtype(array.dtype, jnp.number):
            out[key] = np.where(keep.reshape(shape[:2] + (1,) * (len(shape) - 2)), array, 0)
    return out


def _check_feature_columns(feature_columns: Any) -> tuple[str, ...]:
    columns = feature_columns or []
    if isinstance(columns, str):
        columns = [columns]
    elif not isinstance(columns, (list, tuple)):
        raise TypeError(
            "`feature_columns` must be either a string or an iterable of strings got "
            f"{type(feature_columns)} instead."
        )
    for column in columns:
        if not isinstance(column, str):
            raise TypeError(f"Column must a string. Given type: {type(column)}.")
    return tuple(columns)


def _mask_sparse(labels: lb.SparseLabels, mask: jax.Array) -> lb.SparseLabels:
    """Padded steps of SparseLabels → no labels (``-1`` ids, ``""`` names)."""
    ids = labels.ids
    if is_string_array(ids):
        names = np.asarray(ids, dtype=object)
        keep = np.asarray(expand_trailing(mask, names.ndim))
        return lb.SparseLabels(np.where(keep, names, lb.PAD_NAME).astype(str))
    ids = jnp.asarray(ids)
    return lb.SparseLabels(
        jnp.where(expand_trailing(mask, ids.ndim), ids, jnp.full_like(ids, lb.PAD_ID))
    )


@dataclasses.dataclass(frozen=True)
class SequentialHeadWrapper(LossHead[SM]):
    """Wraps a head for sequence models, masking padded steps (TF's ``SequentialHeadWrapper``).

    Shapes: logits ``[B, T, d]`` (or ``[B, T]`` when the head's
    ``logits_dimension`` is 1); labels ``[B, T, …]`` as the wrapped head takes
    them with ``[B, T]`` as its batch shape (e.g. ``[B, T]`` / ``[B, T, 1]``
    ids for :class:`~jaxheads.MultiClassHead`, ``[B, T, n]`` multi-hot or
    ``SparseLabels`` ``[B, T, m]`` for :class:`~jaxheads.MultiLabelHead`);
    ``features[sequence_length_mask]`` a ``[B, T]`` mask (bool, or numbers:
    non-zero = a valid step), e.g. ``jnp.arange(T) < lengths[:, None]``. The
    wrapped head's weight column, if any, is ``[B, T]`` or ``[B, T, 1]`` and is
    multiplied by the mask.

    Padded steps are out of the loss and of every metric, and their logits
    and labels may hold anything (NaN logits, ``-1`` labels). The loss equals
    TF's loss on the flattened valid steps: ``SUM`` = ``Σ w·l``,
    ``SUM_OVER_BATCH_SIZE`` = ``Σ w·l / (N·k)`` with ``N`` valid steps and
    ``k`` loss elements per step, ``MEAN`` = ``Σ w·l / Σ w``,
    ``SUM_BY_NONZERO_WEIGHTS`` = ``Σ w·l / count(w ≠ 0)``. Predictions keep the
    ``[B, T, …]`` shape; ``create_spec`` in ``"predict"`` mode adds the mask to
    them under ``sequence_length_mask``, as TF. Metric keys are the wrapped
    head's.

    Attributes:
      static_head: the single head to wrap (not a :class:`~jaxheads.MultiHead`,
        as TF). The wrapper hands it the mask of valid steps through the
        template's ``mask=`` argument.
      sequence_length_mask: the feature key of the ``[B, T]`` mask.
      feature_columns: feature keys TF would flatten and pass to the wrapped
        head (typically its weight column). Kept for compatibility: features
        are never flattened here, so these are only checked to be present with
        a ``[B, T, …]`` shape; the weight column is masked automatically.

    Examples:
      >>> from jaxheads.heads.multi_class import MultiClassHead
      >>> head = SequentialHeadWrapper(MultiClassHead(3), "mask")
      >>> logits = jnp.array([[[10.0, 0.0, 0.0], [0.0, 10.0, 0.0]]])  # [B=1, T=2, 3]
      >>> labels = jnp.array([[1, -1]])  # the second step is padding
      >>> features = {"mask": jnp.array([[True, False]])}
      >>> round(float(head.loss(labels, logits, features)), 4)  # one valid step
      10.0001
    """

    static_head: SingleHead[SM]
    sequence_length_mask: str = "sequence_length_mask"
    feature_columns: Any = None

    def __post_init__(self) -> None:
        if not isinstance(self.sequence_length_mask, str):
            raise TypeError(
                "`sequence_mask` column must be a string. Given type: "
                f"{type(self.sequence_length_mask)}."
            )
        object.__setattr__(self, "feature_columns", _check_feature_columns(self.feature_columns))
        if isinstance(self.static_head, SequentialHeadWrapper):
            raise ValueError("A SequentialHeadWrapper cannot wrap another SequentialHeadWrapper.")
        if isinstance(self.static_head, Head) and not isinstance(self.static_head, SingleHead):
            raise ValueError(
                "`MultiHead` is not supported with `SequentialHeadWrapper`. (static_head must "
                f"be a single head, got {type(self.static_head).__name__}.)"
            )
        if not isinstance(self.static_head, SingleHead):
            raise TypeError(
                "static_head must be a jaxheads single head, got "
                f"{type(self.static_head).__name__}."
            )

    # ---------------------------------------------------------------- properties
    @property
    def name(self) -> str | None:
        """``'<static head name>_sequential'``, or ``None`` (TF's naming)."""
        return f"{self.static_head.name}_sequential" if self.static_head.name else None

    @property
    def input_sequence_mask_key(self) -> str:
        """The feature key of the sequence mask."""
        return self.sequence_length_mask

    @property
    def logits_dimension(self) -> int:
        return self.static_head.logits_dimension

    @property
    def reduction(self) -> Reduction:
        return self.static_head.reduction

    @property
    def loss_reduction(self) -> Reduction:
        """The wrapped head's loss reduction."""
        return self.static_head.reduction

    # ---------------------------------------------------------------- masking
    def _sequence_logits(self, logits: ArrayLike) -> jax.Array:
        if logits is None:
            raise ValueError("logits must not be None: expected an array [B, T, logits_dimension].")
        logits = jnp.asarray(logits)
        if logits.ndim == 2 and self.logits_dimension == 1:
            logits = logits[..., None]
        if logits.ndim < 3:
            raise ValueError(
                "SequentialHeadWrapper expects logits of shape [B, T, logits_dimension="
                f"{self.logits_dimension}] (or [B, T] when logits_dimension is 1), got "
                f"{shape_str(logits.shape)}."
            )
        return logits

    def _mask(self, features: Features, logits: jax.Array) -> jax.Array:
        key = self.input_sequence_mask_key
        _checks.check_features(features)
        if features is None or key not in features:
            found = None if features is None else list(features.keys())
            raise ValueError(
                f"The provided sequence_length_mask key `{key}` should be included in the "
                f"features dictionary, but was not found. Found keys: {found}."
            )
        raw = features[key]
        if not isinstance(raw, jax.Array) and np.asarray(raw).dtype.kind not in "biuf":
            raise TypeError(
                f"The sequence mask features[{key!r}] must be bool or numeric ([B, T], non-zero "
                f"= a valid step); got dtype {np.asarray(raw).dtype}."
            )
        mask = jnp.asarray(raw)
        if mask.ndim != 2:
            raise ValueError(
                f"Mask is expected to have two dimensions, got {mask.ndim} instead (shape "
                f"{shape_str(mask.shape)}; expected [B, T])."
            )
        if tuple(mask.shape) != tuple(logits.shape[:2]):
            raise ValueError(
                "Tensor shape is incompatible with provided mask: logits shape "
                f"{shape_str(logits.shape)}, mask shape {shape_str(mask.shape)}; "
                "expected logits [B, T, d] for a [B, T] mask."
            )
        for column in self.feature_columns:
            if column not in features:
                raise ValueError(f"`{column}` column expected in features dictionary.")
            shape = jnp.shape(features[column])
            if tuple(shape[:2]) != tuple(mask.shape):
                raise ValueError(
                    "Tensor shape is incompatible with provided mask: feature "
                    f"{column!r} has shape {shape_str(shape)}, mask shape "
                    f"{shape_str(mask.shape)}."
                )
        return _as_bool(mask)

    def _mask_labels(self, labels: Any, mask: jax.Array) -> Any:
        """Padded steps' labels → harmless values (0, a known class name, or no labels)."""
        if labels is None:
            return None
        if isinstance(labels, lb.SparseLabels):
            return _mask_sparse(labels, mask)
        if is_string_array(labels):
            classes = self.static_head.class_vocabularies().get(PredictionKeys.ALL_CLASS_IDS)
            if not classes:
                return labels  # The wrapped head raises its own error for strings.
            if isinstance(mask, jax.core.Tracer):
                raise ValueError(
                    "String labels are encoded on the host: call the head outside jit, or "
                    "encode them first with static_head.encode_labels."
                )
            names = np.asarray(labels, dtype=object)
            return np.where(np.asarray(expand_trailing(mask, names.ndim)), names, classes[0])
        labels = jnp.asarray(labels)
        if labels.ndim < 2:
            raise ValueError(
                f"labels must have shape [B, T, ...] for a [B, T] sequence mask, got "
                f"{shape_str(labels.shape)}."
            )
        return jnp.where(expand_trailing(mask, labels.ndim), labels, jnp.zeros_like(labels))

    def _masked_inputs(
        self, labels: Any, logits: ArrayLike, features: Features
    ) -> tuple[Any, jax.Array, jax.Array]:
        """(labels, logits, mask) with padded steps' labels and logits neutralised."""
        logits = self._sequence_logits(logits)
        mask = self._mask(features, logits)
        logits = jnp.where(expand_trailing(mask, logits.ndim), logits, jnp.zeros_like(logits))
        return self._mask_labels(labels, mask), logits, mask

    # ---------------------------------------------------------------- loss
    def unreduced_loss(
        self, labels: Any, logits: Any, features: Features = None, *, mask: Any = None
    ) -> tuple[jax.Array, jax.Array]:
        """``(loss [B, T, k], weights)``: the unweighted loss and the weights, 0 at padded steps.

        ``mask`` (optional bool ``[B, T]``) is combined with the sequence mask.
        """
        labels, logits, valid = self._masked_inputs(labels, logits, features)
        valid = valid if mask is None else valid & jnp.asarray(mask, jnp.bool_)
        return self.static_head.unreduced_loss(labels, logits, features, mask=valid)

    def loss_terms(self, labels: Any, logits: Any, features: Features = None) -> LossTerms:
        """The unregularized loss as additive :class:`~jaxheads.LossTerms` over the valid steps.

        TF reduces the boolean-masked (flattened) loss: ``SUM_OVER_BATCH_SIZE``
        divides by the number of *valid* loss elements; padded steps weigh 0.
        """
        labels, logits, valid = self._masked_inputs(labels, logits, features)
        return self.static_head.loss_terms(labels, logits, features, mask=valid)

    # ---------------------------------------------------------------- predictions
    def predictions(self, logits: Any, keys: Sequence[str] | None = None) -> dict[str, jax.Array]:
        """The wrapped head's predictions, shaped ``[B, T, …]`` (no masking)."""
        return self.static_head.predictions(self._sequence_logits(logits), keys)

    def export_outputs(self, logits: Any) -> dict[str, dict[str, jax.Array]]:
        """The wrapped head's export outputs, shaped ``[B, T, …]``."""
        return self.static_head.export_outputs(self._sequence_logits(logits))

    def class_vocabularies(self) -> Mapping[str, tuple[str, ...]]:
        """The wrapped head's vocabularies (same prediction keys)."""
        return self.static_head.class_vocabularies()

    def encode_labels(self, labels: Any, features: Features = None) -> Any:
        """Host side: the wrapped head's ``encode_labels``.

        When ``features`` holds the mask, padded steps are replaced first (so
        padding strings need not be in the vocabulary).
        """
        step_features = None
        if features is not None and self.input_sequence_mask_key in features:
            mask = _as_bool(jnp.asarray(features[self.input_sequence_mask_key]))
            labels = self._mask_labels(labels, mask)
            step_features = _zero_padded_steps(features, mask)
        # The wrapped head checks its weight column's values on the valid steps only.
        return self.static_head.encode_labels(labels, step_features)

    # ---------------------------------------------------------------- metrics
    def init_metrics(self, regularization_losses: Any = None) -> SM:
        """The wrapped head's fresh metric state."""
        return self.static_head.init_metrics(regularization_losses)

    def update_metrics(
        self,
        state: SM,
        features: Features,
        logits: Any,
        labels: Any,
        regularization_losses: Sequence[ArrayLike] | None = None,
    ) -> SM:
        """Folds the valid steps of one batch into ``state``; pure and jittable."""
        labels, logits, valid = self._masked_inputs(labels, logits, features)
        return self.static_head.update_metrics(
            state, features, logits, labels, regularization_losses, mask=valid
        )

    def compute_metrics(self, state: SM) -> dict[str, jax.Array]:
        """The wrapped head's metric values (its keys)."""
        return self.static_head.compute_metrics(state)

    # ---------------------------------------------------------------- spec
    def create_spec(
        self,
        mode: str,
        logits: Any,
        labels: Any = None,
        features: Features = None,
        regularization_losses: Sequence[ArrayLike] | None = None,
    ) -> HeadSpec:
        """See :meth:`Head.create_spec`; in ``"predict"`` the mask joins the predictions (as TF)."""
        mode = ModeKeys.validate(mode)
        spec = super().create_spec(mode, logits, labels, features, regularization_losses)
        if mode == ModeKeys.PREDICT and isinstance(features, Mapping):
            key = self.input_sequence_mask_key
            if key in features:
                predictions = dict(spec.predictions)
                predictions[key] = jnp.asarray(features[key])
                spec = dataclasses.replace(spec, predictions=predictions)
        return spec
