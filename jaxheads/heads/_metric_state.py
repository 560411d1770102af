"""Typed metric states of the heads, and the checks that keep a state with its head.

A head's metric state is a pytree of additive metric states (the array
fields) plus a static ``config`` (thresholds, curve size, compat, classes …).
Because ``config`` is static, states of different configurations have
different tree structures: :func:`jaxheads.metrics.merge` refuses them, and a
head's ``update_metrics`` / ``compute_metrics`` refuse a state whose type or
``config`` is not the one the head would make (:func:`check_state`), naming
what differs. Whether ``regularization_loss`` is tracked shows in the state
(``regularization_loss`` is ``None`` or a :class:`~jaxheads.metrics.Mean`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
from jax.typing import ArrayLike

from jaxheads import metrics
from jaxheads._tree_diff import config_difference
from jaxheads.heads import _regularization
from jaxheads.keys import MetricKeys, class_key, summary_key

__all__ = [
    "BinaryHeadMetrics",
    "BinaryMetricsConfig",
    "HeadMetrics",
    "MultiClassHeadMetrics",
    "MultiClassMetricsConfig",
    "MultiHeadMetrics",
    "MultiHeadMetricsConfig",
    "MultiLabelHeadMetrics",
    "MultiLabelMetricsConfig",
    "RegressionHeadMetrics",
    "RegressionMetricsConfig",
    "check_state",
    "extended_class_values",
    "finish",
    "init_regularization",
    "update_regularization",
]


# Metadata of a static field: part of the tree structure, not a leaf.
_STATIC = {"pytree_node": False}


# ---------------------------------------------------------------------- configurations
@dataclasses.dataclass(frozen=True)
class BinaryMetricsConfig:
    """Static metric configuration of a ``BinaryClassHead``."""

    thresholds: tuple[float, ...]
    num_thresholds: int
    compat: str
    extended: bool = False


@dataclasses.dataclass(frozen=True)
class RegressionMetricsConfig:
    """Static metric configuration of a regression-family head (``head``: its class name)."""

    head: str
    label_dimension: int


@dataclasses.dataclass(frozen=True)
class MultiClassMetricsConfig:
    """Static metric configuration of a ``MultiClassHead``."""

    n_classes: int
    one_hot_labels: bool
    extended: bool = False


@dataclasses.dataclass(frozen=True)
class MultiLabelMetricsConfig:
    """Static metric configuration of a ``MultiLabelHead`` (``classes``: per-class metric ids)."""

    n_classes: int
    thresholds: tuple[float, ...]
    num_thresholds: int
    compat: str
    classes: tuple[int, ...]
    extended: bool = False


@dataclasses.dataclass(frozen=True)
class MultiHeadMetricsConfig:
    """Static metric configuration of a ``MultiHead``: its heads' names, in order."""

    head_names: tuple[str, ...]


# ---------------------------------------------------------------------- states
class HeadMetrics(metrics.MetricState):
    """Base of the heads' metric states.

    Attributes:
      regularization_loss: the mean of ``add_n(regularization_losses)``, or
        ``None`` when the state does not track it.
      config: static: the configuration of the head that made the state.
    """

    regularization_loss: metrics.Mean | None
    config: Any = dataclasses.field(metadata=_STATIC)


class BinaryHeadMetrics(HeadMetrics):
    """Metric state of a ``BinaryClassHead``: one joint bucketing of every count."""

    counts: metrics.BinaryClassifierMetrics
    config: BinaryMetricsConfig = dataclasses.field(metadata=_STATIC)


class RegressionHeadMetrics(HeadMetrics):
    """Metric state of the regression family: weighted means of loss, prediction, label."""

    loss: metrics.Mean
    prediction: metrics.Mean
    label: metrics.Mean
    config: RegressionMetricsConfig = dataclasses.field(metadata=_STATIC)


class MultiClassHeadMetrics(HeadMetrics):
    """Metric state of a ``MultiClassHead``: mean loss and accuracy."""

    loss: metrics.Mean
    accuracy: metrics.Accuracy
    class_histograms: metrics.ClassLogitHistograms | None  # extended_metrics=True only
    config: MultiClassMetricsConfig = dataclasses.field(metadata=_STATIC)


class MultiLabelHeadMetrics(HeadMetrics):
    """Metric state of a ``MultiLabelHead``.

    ``at_thresholds`` / ``at_thresholds_inclusive`` are ``None`` without
    thresholds (the inclusive one only exists for ``compat="v1"``);
    ``class_probability`` and ``class_curves`` hold one state per class of
    ``config.classes``.
    """

    loss: metrics.Mean
    curve: metrics.ConfusionCurve
    at_thresholds: metrics.ConfusionAtThresholds | None
    at_thresholds_inclusive: metrics.ConfusionAtThresholds | None
    class_probability: tuple[metrics.Mean, ...]
    class_curves: tuple[metrics.ConfusionCurve, ...]
    class_histograms: metrics.ClassLogitHistograms | None  # extended_metrics=True only
    config: MultiLabelMetricsConfig = dataclasses.field(metadata=_STATIC)


class MultiHeadMetrics(HeadMetrics):
    """Metric state of a ``MultiHead``: every head's own state and its ``loss/<head>`` mean."""

    heads: dict[str, Any]
    losses: dict[str, metrics.Mean]
    config: MultiHeadMetricsConfig = dataclasses.field(metadata=_STATIC)


# ---------------------------------------------------------------------- shared steps
def check_state(state: Any, expected: type[HeadMetrics], config: Any, head: str) -> None:
    """Raises ``ValueError`` unless ``state`` is an ``expected`` with this ``config``.

    Args:
      state: the metric state given to ``update_metrics`` / ``compute_metrics``.
      expected: the head's state class.
      config: the configuration the head would give a fresh state.
      head: the head's class name, for the message.
    """
    if not isinstance(state, expected) or type(state) is not expected:
        raise ValueError(
            f"{head} expects its own metric state ({expected.__name__}, from "
            f"head.init_metrics()), got {type(state).__name__}."
        )
    difference = config_difference(state.config, config)
    if difference:
        raise ValueError(
            f"The metric state was made by a head of another configuration than this {head}: "
            f"{difference} (state vs head). Create the state with this head's init_metrics()."
        )


def init_regularization(regularization_losses: Any) -> metrics.Mean | None:
    """A fresh ``regularization_loss`` mean when it is to be tracked, else ``None``."""
    return metrics.Mean.empty() if _regularization.wants_metric(regularization_losses) else None


def update_regularization(
    tracked: metrics.Mean | None, regularization_losses: Sequence[ArrayLike] | None
) -> metrics.Mean | None:
    """Folds ``add_n(regularization_losses)`` into the tracked mean, if any were given."""
    value = _regularization.add_n(regularization_losses)
    if value is None:
        return tracked
    if tracked is None:
        raise ValueError(
            "regularization_losses were given but the metric state does not track them: "
            "create it with init_metrics(regularization_losses=True)."
        )
    return tracked.update(value)


def extended_class_values(
    histograms: metrics.ClassLogitHistograms | None, class_names: Sequence[str]
) -> dict[str, jax.Array]:
    """``<extended key>/<class name>`` for every class (empty without histograms)."""
    if histograms is None:
        return {}
    out = {}
    for name, table in zip(class_names, histograms.compute(), strict=True):
        out.update({class_key(key, name): value for key, value in table.items()})
    return out


def finish(
    values: dict[str, jax.Array], regularization: metrics.Mean | None, name: str | None
) -> dict[str, jax.Array]:
    """Adds ``regularization_loss`` when tracked, then the ``/name`` suffix to every key."""
    if regularization is not None:
        values[MetricKeys.LOSS_REGULARIZATION] = regularization.compute()
    return {summary_key(key, name): value for key, value in values.items()}
