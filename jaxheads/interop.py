"""Interop with the JAX ecosystem: clu metrics and orbax checkpoints of metric states.

Both are optional extras (``pip install "jaxheads[clu]"``, ``"jaxheads[orbax]"``);
nothing here is imported by ``import jaxheads``.

* :func:`clu_metric` turns any head into a ``clu.metrics.Metric`` class whose
  ``from_model_output`` / ``merge`` / ``compute`` are the head's
  ``update_metrics`` / exact ``merge`` / ``compute_metrics``, so a head's
  metrics sit in a ``clu.metrics.Collection`` next to clu's own.
* :func:`save_metric_state` / :func:`restore_metric_state` write a metric state
  with orbax and read it back with ``head.init_metrics()`` as the target: the
  restored object is the head's own typed state, ready for ``compute_metrics``
  or further ``update_metrics`` and ``merge``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Any, ClassVar

import jax
from jax.typing import ArrayLike

from jaxheads.heads.base import Head
from jaxheads.metrics import MetricState

__all__ = ["clu_metric", "restore_metric_state", "save_metric_state"]


def _clu_metric_base() -> type:
    try:
        from clu import metrics as clu_metrics
    except ImportError as err:  # pragma: no cover - exercised without the extra
        raise ImportError(
            'jaxheads.interop.clu_metric needs clu: pip install "jaxheads[clu]"'
        ) from err
    return clu_metrics.Metric


@functools.cache
def clu_metric(head: Head[Any], *, regularization: bool = False) -> type:
    """A ``clu.metrics.Metric`` class for ``head``'s metrics (one class per head).

    The metric wraps the head's metric state (field ``state``): a pytree that
    crosses ``jit``, ``merge`` is the state's exact merge (associative and
    commutative), ``compute()`` returns the head's dict of metrics, and
    ``reduce()`` folds a leading device axis (clu's cross-device pattern).

    ``from_model_output`` takes clu's keyword arguments: ``logits``,
    ``labels`` (encoded: see ``head.encode_labels``), and optionally
    ``features`` (weight columns) and ``regularization_losses``; other
    keywords (the other metrics' outputs in a ``Collection``) are ignored.

    Args:
      head: any jaxheads head (hashable: the class is cached per head).
      regularization: track ``regularization_loss`` (then every
        ``from_model_output`` call must pass ``regularization_losses``), so
        that ``empty()`` and the updates share one structure.

    Returns:
      A subclass of ``clu.metrics.Metric`` (and of
      :class:`jaxheads.metrics.MetricState`).

    Raises:
      ImportError: when clu is not installed.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jaxheads as jh
      >>> head = jh.BinaryClassHead()
      >>> Metric = clu_metric(head)
      >>> m = Metric.from_model_output(logits=jnp.array([[2.0], [-1.0]]),
      ...                              labels=jnp.array([[1.0], [0.0]]))
      >>> m = m.merge(Metric.from_model_output(logits=jnp.array([[0.5]]),
      ...                                      labels=jnp.array([[0.0]])))
      >>> float(m.compute()["accuracy"])
      0.6666666...
    """
    base = _clu_metric_base()
    init_losses: Sequence[ArrayLike] | None = [0.0] if regularization else None

    class HeadMetric(MetricState, base):  # type: ignore[misc, valid-type]
        """clu metric of a jaxheads head (see :func:`jaxheads.interop.clu_metric`)."""

        head: ClassVar[Head[Any]]
        state: Any

        @classmethod
        def empty(cls) -> HeadMetric:
            return cls(state=cls.head.init_metrics(init_losses))

        @classmethod
        def from_model_output(
            cls,
            *,
            logits: Any,
            labels: Any,
            features: Any = None,
            regularization_losses: Sequence[ArrayLike] | None = None,
            **_: Any,
        ) -> HeadMetric:
            state = cls.head.init_metrics(init_losses)
            return cls(
                state=cls.head.update_metrics(
                    state, features, logits, labels, regularization_losses
                )
            )

        def compute(self) -> dict[str, jax.Array]:
            return self.head.compute_metrics(self.state)

    HeadMetric.head = head
    label = head.name or type(head).__name__
    HeadMetric.__name__ = HeadMetric.__qualname__ = f"HeadMetric[{label}]"
    return HeadMetric


def _orbax() -> Any:
    try:
        import orbax.checkpoint as ocp
    except ImportError as err:  # pragma: no cover - exercised without the extra
        raise ImportError(
            'jaxheads.interop needs orbax for checkpoints: pip install "jaxheads[orbax]"'
        ) from err
    return ocp


def save_metric_state(path: str | os.PathLike[str], state: Any) -> None:
    """Writes a metric state (a head's, or any pytree of metric states) with orbax.

    Args:
      path: a directory that does not exist yet (orbax refuses to overwrite).
      state: e.g. ``head.update_metrics(...)``'s result, on any devices.

    Raises:
      ImportError: when orbax-checkpoint is not installed.
    """
    ocp = _orbax()
    with ocp.PyTreeCheckpointer() as checkpointer:
        checkpointer.save(os.fspath(path), args=ocp.args.PyTreeSave(state))


def restore_metric_state(
    path: str | os.PathLike[str],
    head: Head[Any],
    regularization_losses: Sequence[ArrayLike] | None = None,
) -> Any:
    """Reads a state written by :func:`save_metric_state` as ``head``'s own state.

    The target is ``head.init_metrics(regularization_losses)``: the restored
    object has the head's state type and static configuration, so
    ``head.compute_metrics`` takes it directly, and it keeps folding batches and
    merging exactly.

    Args:
      path: the directory written by :func:`save_metric_state`.
      head: a head of the same configuration as the one that made the state.
      regularization_losses: as given to ``init_metrics`` when the state was
        made (any non-empty list when it tracks ``regularization_loss``).

    Returns:
      The head's metric state.

    Raises:
      ImportError: when orbax-checkpoint is not installed.
      ValueError: when the checkpoint does not hold a state of this head's
        structure (another head type or configuration), naming ``path``.
    """
    ocp = _orbax()
    target = head.init_metrics(regularization_losses)
    # Restore onto the target's arrays (their shapes, dtypes and devices).
    restore_args = ocp.checkpoint_utils.construct_restore_args(target)
    args = ocp.args.PyTreeRestore(item=target, restore_args=restore_args)
    try:
        with ocp.PyTreeCheckpointer() as checkpointer:
            return checkpointer.restore(os.fspath(path), args=args)
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(
            f"restore_metric_state: {os.fspath(path)!r} does not hold a metric state of "
            f"{type(head).__name__} with this configuration ({err})"
        ) from err
