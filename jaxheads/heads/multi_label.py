"""``MultiLabelHead``: sigmoid cross-entropy averaged over classes, zero or more labels per example.

Labels come in three forms:

* a multi-hot array ``[D0, …, DN, n_classes]`` (ints, bools or soft floats in
  [0, 1]) — what the loss sees;
* :class:`SparseLabels`: padded class-id lists ``[D0, …, DN, max_labels]``
  with ``-1`` as padding, the JAX stand-in for TF's ``SparseTensor`` labels
  (jittable; turned into multi-hot inside the head);
* on the host only, with a ``label_vocabulary``: (ragged) nested lists of
  class names, or a :class:`SparseLabels` of names (``""`` pads).
"""

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
    LOSS_FN_ARGS,
    SingleHead,
    classification_outputs,
    update_regularization_metric,
    wants_regularization_metric,
)
from jaxheads.heads.base import Features
from jaxheads.reduction import Reduction
from jaxheads.vocabulary import LabelVocabulary, default_class_names, is_string_array

__all__ = ["MultiLabelHead", "SparseLabels", "multi_label_head"]

_COMPAT = ("v1", "v2")
# TF1's epsilon in precision/recall at thresholds (`tf.compat.v1.metrics.precision_at_thresholds`).
_V1_THRESHOLD_EPSILON = 1e-7
# Padding of SparseLabels: -1 for ids, "" for class names (host only).
PAD_ID = -1
PAD_NAME = ""


@dataclasses.dataclass(frozen=True)
class SparseLabels:
    """Label sets as padded class-id lists: the JAX stand-in for TF's ``SparseTensor`` labels.

    ``ids`` has shape ``[D0, …, DN, max_labels]``: row ``[d0, …, dN, :]``
    lists the classes of one example, padded with ``-1`` (order and
    duplicates do not matter). It is a pytree, so it passes through ``jit``
    and ``vmap``; :class:`MultiLabelHead` turns it into a multi-hot
    ``[D0, …, DN, n_classes]`` array. On the host, ``ids`` may instead hold
    class names (a NumPy ``str`` array, ``""`` as padding) for a head with a
    ``label_vocabulary``.

    Build one from ragged lists with :meth:`from_lists`.

    Attributes:
      ids: int array ``[D0, …, DN, max_labels]``, values in ``[0, n_classes)``
        or ``-1`` (padding); or, host only, class names.

    Examples:
      >>> SparseLabels.from_lists([[0], [0, 1], []]).ids.tolist()
      [[0, -1], [0, 1], [-1, -1]]
    """

    ids: Any

    @classmethod
    def from_lists(cls, lists: Any, max_labels: int | None = None) -> SparseLabels:
        """Host side: (nested) ragged lists of class ids or names → padded :class:`SparseLabels`.

        The innermost lists are the label sets (possibly empty); the nesting
        above them is the batch shape ``[D0, …, DN]``. Ids are padded with
        ``-1`` (int32), names with ``""``.

        Args:
          lists: e.g. ``[[0, 2], [1], []]`` or ``[["cat"], ["cat", "dog"]]``.
          max_labels: pad to this many labels (default: the longest set).

        Raises:
          ValueError: on ragged batch dimensions, or a set longer than ``max_labels``.
        """
        return cls(_pad_label_sets(lists, max_labels))


jax.tree_util.register_dataclass(SparseLabels, data_fields=["ids"], meta_fields=[])


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, bytes, int, np.integer, np.str_, np.bytes_)) or (
        isinstance(value, np.ndarray) and value.ndim == 0
    )


def _label_sets(x: Any) -> tuple[tuple[int, ...], list[list[Any]]]:
    """(batch shape, flat list of label sets) of nested ragged lists."""
    if isinstance(x, (np.ndarray, jax.Array)):
        x = np.asarray(x).tolist()
    if not isinstance(x, (list, tuple)):
        raise ValueError(
            f"label sets must be (nested) lists of class ids or names, got {type(x).__name__}."
        )
    if all(_is_scalar(v) for v in x):
        return (), [list(x)]
    shape: tuple[int, ...] | None = None
    flat: list[list[Any]] = []
    for v in x:
        s, f = _label_sets(v)
        if shape is not None and s != shape:
            raise ValueError(
                "label sets are ragged above the innermost level: batch shapes "
                f"{_checks.shape_str(shape)} and {_checks.shape_str(s)}; only the innermost "
                "lists (the label sets) may differ in length."
            )
        shape = s
        flat.extend(f)
    return (len(x),) + (shape or ()), flat


def _pad_label_sets(lists: Any, max_labels: int | None = None) -> np.ndarray:
    batch_shape, sets = _label_sets(lists)
    longest = max((len(s) for s in sets), default=0)
    width = longest if max_labels is None else max_labels
    if longest > width:
        raise ValueError(f"a label set has {longest} labels, more than max_labels={max_labels}.")
    is_str = any(isinstance(v, (str, bytes, np.str_, np.bytes_)) for s in sets for v in s)
    if is_str:
        out = np.full((len(sets), width), PAD_NAME, dtype=object)
        for i, s in enumerate(sets):
            out[i, : len(s)] = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in s]
        out = out.astype(str)
    else:
        out = np.full((len(sets), width), PAD_ID, dtype=np.int32)
        for i, s in enumerate(sets):
            out[i, : len(s)] = s
    return out.reshape(batch_shape + (width,))


def _ids_to_multi_hot(ids: Any, n_classes: int) -> jax.Array:
    """Padded ids ``[…, m]`` → float32 multi-hot ``[…, n_classes]`` (jittable)."""
    ids = jnp.asarray(ids)
    classes = jnp.arange(n_classes, dtype=ids.dtype).reshape((1,) * ids.ndim + (n_classes,))
    hits = jnp.expand_dims(ids, -1) == classes  # [..., m, n]
    return jnp.any(hits, axis=-2).astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class MultiLabelHead(SingleHead):
    """Multi-label classification with sigmoid cross-entropy (TF's ``MultiLabelHead``).

    The loss of an example is the sigmoid cross-entropy averaged over the
    ``n_classes`` logits (``[D0, …, DN, 1]``), then weighted and reduced:
    ``SUM_OVER_BATCH_SIZE`` is ``Σ_b w_b·mean_c(CE_bc) / B``.

    Shapes: logits ``[D0, …, DN, n_classes]``; labels a multi-hot
    ``[D0, …, DN, n_classes]`` array (ints, bools, or floats in [0, 1] —
    soft labels are accepted, as TF), or :class:`SparseLabels` (padded id
    lists ``[D0, …, DN, m]``, ``-1`` pads), or on the host with a
    ``label_vocabulary`` nested lists of class names (encode them with
    :meth:`encode_labels` before ``jit``). A dense array whose last dimension
    is not ``n_classes`` is an error (never read as ids: wrap ids in
    :class:`SparseLabels`). Weights ``[D0, …, DN]`` or ``[D0, …, DN, 1]``;
    per-class weights ``[D0, …, DN, n_classes]`` are rejected, as in TF (use
    ``loss_fn`` for class weighting).

    Metrics: ``average_loss``, ``auc``, ``auc_precision_recall`` (over all
    example × class pairs, weights broadcast), ``regularization_loss`` when
    given, per threshold ``accuracy|precision|recall/positive_threshold_<t>``,
    and per class ``c`` of ``classes_for_class_based_metrics``:
    ``probability_mean/class<c>``, ``auc/class<c>``,
    ``auc_precision_recall/class<c>`` (the vocabulary name replaces
    ``class<c>`` when there is a vocabulary).

    Differences from TF, on purpose: ``features=None`` means no features;
    TF's string prediction ``classes`` (the full class list, tiled — not the
    predicted classes) is ``class_names(predictions["all_class_ids"])`` on the
    host, with ``all_class_ids`` int32 ``[D0, …, DN, n_classes]``; labels reach
    a ``loss_fn`` as float32 multi-hot (TF: int64); a ``loss_fn`` that
    declares ``loss_reduction`` receives it.

    Attributes:
      n_classes: number of classes, > 1.
      weight_column: feature key (or :class:`~jaxheads.NumericColumn`) of the
        per-example weights, or ``None``.
      thresholds: thresholds in (0, 1) for the per-threshold metrics.
      label_vocabulary: ``n_classes`` class names, or ``None``.
      loss_reduction: a :class:`~jaxheads.Reduction`; default ``SUM_OVER_BATCH_SIZE``.
      loss_fn: optional ``loss_fn(labels, logits[, features][, loss_reduction])``
        returning the unweighted, unreduced loss ``[D0, …, DN, 1]``; labels are
        float32 multi-hot ``[D0, …, DN, n_classes]``.
      classes_for_class_based_metrics: class ids (or vocabulary names) that get
        per-class metrics; stored as ids.
      name: appended to every metric key (``auc/<name>``).
      compat: ``"v2"`` (TF 2.x / Keras metrics, the default) or ``"v1"``
        (``tf.contrib.estimator.multi_label_head``: trapezoidal AUCs with
        ε = 1e-6, ``>=`` in threshold accuracy, ε = 1e-7 in threshold
        precision/recall).
      num_thresholds: thresholds of the AUC curves (200, as TF).

    Examples:
      >>> head = MultiLabelHead(n_classes=2)
      >>> logits = jnp.array([[-1.0, 1.0], [-1.5, 1.5]])
      >>> labels = jnp.array([[1, 0], [1, 1]])
      >>> round(float(head.loss(labels, logits)), 4)
      1.1323
      >>> sparse = SparseLabels(jnp.array([[0, -1], [0, 1]]))
      >>> round(float(head.loss(sparse, logits)), 4)
      1.1323
    """

    n_classes: int
    weight_column: Any = None
    thresholds: Sequence[float] | None = None
    label_vocabulary: Sequence[str] | None = None
    loss_reduction: Reduction | str = Reduction.SUM_OVER_BATCH_SIZE
    loss_fn: Callable[..., Any] | None = None
    classes_for_class_based_metrics: Sequence[int | str] | None = None
    name: str | None = None
    compat: str = "v2"
    num_thresholds: int = 200

    def __post_init__(self) -> None:
        n = self.n_classes
        if n is None or isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
            raise ValueError(
                f"n_classes must be > 1 for multi-label classification. Given: {n}"
                + ("" if n is None or isinstance(n, (int, np.integer)) else " (expected an int)")
            )
        object.__setattr__(self, "n_classes", int(n))
        thresholds = tuple(float(t) for t in self.thresholds) if self.thresholds else ()
        for t in thresholds:
            if t <= 0.0 or t >= 1.0:
                raise ValueError(f"thresholds must be in (0, 1) range. Given: {t}")
        object.__setattr__(self, "thresholds", thresholds)
        vocabulary = LabelVocabulary.from_argument(
            self.label_vocabulary, message="label_vocabulary must be a list or tuple"
        )
        if vocabulary is not None and len(vocabulary) != self.n_classes:
            raise ValueError(
                f"Length of label_vocabulary must be n_classes ({self.n_classes}). "
                f"Given: {len(vocabulary)}"
            )
        object.__setattr__(
            self, "label_vocabulary", None if vocabulary is None else vocabulary.classes
        )
        # TF validates loss_fn before loss_reduction in this head.
        _checks.check_loss_fn_args(self.loss_fn, LOSS_FN_ARGS)
        self._validate_common()
        object.__setattr__(
            self,
            "classes_for_class_based_metrics",
            self._class_ids_for_metrics(self.classes_for_class_based_metrics),
        )
        if self.compat not in _COMPAT:
            raise ValueError(f"compat must be one of {_COMPAT}, got {self.compat!r}.")
        if not isinstance(self.num_thresholds, int) or self.num_thresholds < 2:
            raise ValueError(f"num_thresholds must be an int > 1, got {self.num_thresholds!r}.")

    def _class_ids_for_metrics(self, classes: Any) -> tuple[int, ...]:
        if not classes:
            return ()
        classes = list(classes)
        if isinstance(classes[0], (str, bytes)):
            if not self.label_vocabulary:
                raise ValueError(
                    "label_vocabulary must be provided when classes_for_class_based_metrics "
                    "are strings."
                )
            vocab = list(self.label_vocabulary)
            # list.index raises Python's own "'z' is not in list", as TF.
            return tuple(
                vocab.index(c.decode("utf-8") if isinstance(c, bytes) else c) for c in classes
            )
        for class_id in classes:
            if (
                isinstance(class_id, bool)
                or not isinstance(class_id, (int, np.integer))
                or class_id < 0
                or class_id >= self.n_classes
            ):
                raise ValueError(
                    "All classes_for_class_based_metrics must be in range "
                    f"[0, {self.n_classes - 1}]. Given: {class_id}"
                )
        return tuple(int(c) for c in classes)

    @property
    def logits_dimension(self) -> int:
        return self.n_classes

    @property
    def _vocabulary(self) -> LabelVocabulary | None:
        return None if self.label_vocabulary is None else LabelVocabulary(self.label_vocabulary)

    # ---------------------------------------------------------------- labels
    def _string_ids(self, names: Any) -> np.ndarray:
        """Host: padded class names (``""`` pads) → padded int32 ids (``-1`` pads)."""
        vocabulary = self._vocabulary
        if vocabulary is None:
            raise ValueError(
                "Labels dtype should be integer. Instead got string labels: class names need "
                "a label_vocabulary (or pass multi-hot arrays / SparseLabels of ids)."
            )
        names = np.asarray(names, dtype=object)
        pad = names == PAD_NAME
        ids = vocabulary.encode(np.where(pad, vocabulary.classes[0], names))
        return np.where(pad, PAD_ID, ids).astype(np.int32)

    def _sparse_to_multi_hot(self, ids: Any) -> jax.Array:
        if is_string_array(ids):
            ids = self._string_ids(ids)
        ids = jnp.asarray(ids)
        if not jnp.issubdtype(ids.dtype, jnp.integer):
            raise ValueError(
                f"Labels dtype should be integer. Instead got {ids.dtype}. (SparseLabels hold "
                "class ids padded with -1.)"
            )
        n = self.n_classes
        _checks.check_values(
            ids,
            lambda x: ((x >= 0) & (x < n)) | (x == PAD_ID),
            lambda bad: (
                f"labels must be an integer SparseTensor with values in [0, {n}): got "
                f"{_labels._preview(bad)} (SparseLabels ids must be in [0, {n}), or -1 for "
                "padding)."
            ),
        )
        return _ids_to_multi_hot(ids, n)

    def _multi_hot(self, labels: Any) -> jax.Array:
        """Any accepted label form → multi-hot (not yet shape-checked against the logits)."""
        if labels is None:
            _checks.dense_labels(
                None, (), self.n_classes
            )  # TF's "You must provide a labels Tensor".
        if isinstance(labels, SparseLabels):
            return self._sparse_to_multi_hot(labels.ids)
        if is_string_array(labels):
            return self._sparse_to_multi_hot(self._string_ids(_pad_label_sets(labels)))
        labels = jnp.asarray(labels)
        _labels.check_numeric(labels)
        _labels.check_range(
            labels, 2, message="labels must be an integer indicator Tensor with values in [0, 1]"
        )
        return labels.astype(jnp.float32)

    def encode_labels(self, labels: Any, features: Features = None) -> np.ndarray:
        """Host side: any accepted label form → float32 multi-hot ``[…, n_classes]`` for ``jit``.

        Class names go through ``label_vocabulary`` (an unknown name is a
        ``ValueError``); values are range-checked.
        """
        return np.asarray(self._multi_hot(labels), np.float32)

    def _process_labels(self, labels: Any, logits: jax.Array) -> jax.Array:
        multi_hot = self._multi_hot(labels)
        return _checks.dense_labels(multi_hot, logits.shape, self.n_classes)

    def _builtin_loss(self, labels: jax.Array, logits: jax.Array) -> jax.Array:
        return jnp.mean(losses.sigmoid_cross_entropy(labels, logits), axis=-1, keepdims=True)

    # ---------------------------------------------------------------- predictions
    def predictions(
        self, logits: ArrayLike, keys: Sequence[str] | None = None
    ) -> dict[str, jax.Array]:
        """Prediction arrays: ``logits``, ``probabilities`` (sigmoid), ``all_class_ids`` (int32).

        All three have shape ``[D0, …, DN, n_classes]``. TF's string key
        ``classes`` (the full class list, not thresholded) is
        :meth:`class_names` of ``all_class_ids``, on the host.
        """
        logits = self._float_logits(logits)
        predictions = {
            "logits": logits,
            "probabilities": jax.nn.sigmoid(logits),
            "all_class_ids": jnp.broadcast_to(
                jnp.arange(self.n_classes, dtype=jnp.int32), logits.shape
            ),
        }
        if keys is not None:
            for key in [keys] if isinstance(keys, str) else keys:
                if key in ("classes", "all_classes"):
                    raise ValueError(
                        f"Prediction key {key!r} holds strings, which JAX arrays cannot: call "
                        "head.class_names(predictions['all_class_ids']) on the host instead."
                    )
        return self._select_predictions(predictions, keys)

    def class_vocabularies(self) -> dict[str, tuple[str, ...]]:
        """``all_class_ids`` (and the classification signature's ``class_ids``) → the vocabulary."""
        classes = (self._vocabulary or default_class_names(self.n_classes)).classes
        return {"all_class_ids": classes, "class_ids": classes}

    def export_outputs(self, logits: ArrayLike) -> dict[str, dict[str, jax.Array]]:
        """``serving_default``/``classification`` (scores, class ids) and ``predict``."""
        predictions = self.predictions(logits)
        classification = classification_outputs(predictions)
        return {
            "serving_default": classification,
            "classification": classification,
            "predict": predictions,
        }

    # ---------------------------------------------------------------- metrics
    def _class_key(self, class_id: int) -> str:
        return (
            f"class{class_id}" if self.label_vocabulary is None else self.label_vocabulary[class_id]
        )

    def init_metrics(self, regularization_losses: Any = None) -> dict[str, Any]:
        """A fresh metric state (a dict of additive metric states; a pytree).

        Pass ``regularization_losses`` (the list, or ``True``) to track the
        ``regularization_loss`` metric, as TF's ``metrics(regularization_losses)``.
        """
        state: dict[str, Any] = {
            "average_loss": metrics.Mean.empty(),
            "curve": metrics.ConfusionCurve.empty(num_thresholds=self.num_thresholds),
        }
        if self.thresholds:
            state["thresholds"] = metrics.ConfusionAtThresholds.empty(thresholds=self.thresholds)
            if self.compat == "v1":
                state["thresholds_inclusive"] = metrics.ConfusionAtThresholds.empty(
                    thresholds=self.thresholds, inclusive=True
                )
        for class_id in self.classes_for_class_based_metrics:
            state[f"probability_mean/{class_id}"] = metrics.Mean.empty()
            state[f"curve/{class_id}"] = metrics.ConfusionCurve.empty(
                num_thresholds=self.num_thresholds
            )
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
        """Folds one batch into ``state``; pure and jittable (class names: host only)."""
        logits, labels, loss, weights = self._loss_parts(labels, logits, features)
        probabilities = jax.nn.sigmoid(logits)
        new = dict(state)
        new["average_loss"] = state["average_loss"].update(loss, weights)
        new["curve"] = state["curve"].update(labels, probabilities, weights)
        for key in ("thresholds", "thresholds_inclusive"):
            if key in state:
                new[key] = state[key].update(labels, probabilities, weights)
        for class_id in self.classes_for_class_based_metrics:
            column = slice(class_id, class_id + 1)
            class_probabilities = probabilities[..., column]
            new[f"probability_mean/{class_id}"] = state[f"probability_mean/{class_id}"].update(
                class_probabilities, weights
            )
            new[f"curve/{class_id}"] = state[f"curve/{class_id}"].update(
                labels[..., column], class_probabilities, weights
            )
        update_regularization_metric(state, new, regularization_losses)
        return new

    def curve(self, state: dict[str, Any]) -> metrics.ConfusionCurve:
        """The ROC / PR :class:`~jaxheads.metrics.ConfusionCurve` over all (example, class) pairs.

        ``head.curve(state).roc_curve()`` / ``.pr_curve()`` give the curve points.
        """
        return state["curve"]

    def compute_metrics(self, state: dict[str, Any]) -> dict[str, jax.Array]:
        """Metric values with TF's keys (``/name`` appended when the head has a name)."""
        v1 = self.compat == "v1"
        summation = "trapezoidal" if v1 else "interpolation"
        curve = state["curve"]
        out = {
            "average_loss": state["average_loss"].compute(),
            "auc": curve.roc_auc(summation_method=summation),
            "auc_precision_recall": curve.pr_auc(summation_method=summation),
        }
        if "regularization_loss" in state:
            out["regularization_loss"] = state["regularization_loss"].compute()
        if self.thresholds:
            at = state["thresholds"]
            epsilon = _V1_THRESHOLD_EPSILON if v1 else 0.0
            accuracy = (state["thresholds_inclusive"] if v1 else at).accuracy()
            precision = at.precision(epsilon=epsilon)
            recall = at.recall(epsilon=epsilon)
            for i, t in enumerate(self.thresholds):
                out[f"accuracy/positive_threshold_{t:g}"] = accuracy[i]
                out[f"precision/positive_threshold_{t:g}"] = precision[i]
                out[f"recall/positive_threshold_{t:g}"] = recall[i]
        for class_id in self.classes_for_class_based_metrics:
            name = self._class_key(class_id)
            class_curve = state[f"curve/{class_id}"]
            out[f"probability_mean/{name}"] = state[f"probability_mean/{class_id}"].compute()
            out[f"auc/{name}"] = class_curve.roc_auc(summation_method=summation)
            out[f"auc_precision_recall/{name}"] = class_curve.pr_auc(summation_method=summation)
        return {self._metric_key(k): v for k, v in out.items()}


def multi_label_head(
    n_classes: int,
    weight_column: Any = None,
    thresholds: Sequence[float] | None = None,
    label_vocabulary: Sequence[str] | None = None,
    loss_reduction: Reduction | str = Reduction.SUM_OVER_BATCH_SIZE,
    loss_fn: Callable[..., Any] | None = None,
    classes_for_class_based_metrics: Sequence[int | str] | None = None,
    name: str | None = None,
    compat: str = "v2",
) -> MultiLabelHead:
    """TF1's ``tf.contrib.estimator.multi_label_head``; see :class:`MultiLabelHead`.

    Examples:
      >>> multi_label_head(3, classes_for_class_based_metrics=[2]).classes_for_class_based_metrics
      (2,)
    """
    return MultiLabelHead(
        n_classes=n_classes,
        weight_column=weight_column,
        thresholds=thresholds,
        label_vocabulary=label_vocabulary,
        loss_reduction=loss_reduction,
        loss_fn=loss_fn,
        classes_for_class_based_metrics=classes_for_class_based_metrics,
        name=name,
        compat=compat,
    )
