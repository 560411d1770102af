"""What the steps return: named outputs, never positional tuples."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxheads import metrics as jh_metrics
from jaxheads.heads.base import Head
from jaxheads.train._grads import metric_state
from jaxheads.train._host import Batch
from jaxheads.train._place import CoreOutput

LOSS_KEY = "loss"


class StepOutput(NamedTuple):
    """What a train step returns besides the new state.

    Attributes:
      loss: float32 scalar, the head's regularized training loss on the global
        batch (padding rows excluded).
      metrics: the head's metric state of the global batch (a typed pytree of
        additive states; read it with ``head.compute_metrics``), or ``None``
        when the step was built with ``with_metrics=False``.
    """

    loss: jax.Array
    metrics: Any


class EvalOutput(NamedTuple):
    """An evaluation folded over batches: pass it back as the next eval step's 4th argument.

    Attributes:
      loss: float32 scalar, the regularized loss of the last batch.
      metrics: the head's metric state merged over every batch so far.
      loss_sum: float32 scalar, the sum of the batches' losses.
      batches: float32 scalar, the number of batches folded in.

    :meth:`results` gives the head's metric values plus Estimator's ``loss``
    key: the mean over eval batches of the batch losses (as
    ``Estimator.evaluate`` reports it).
    """

    loss: jax.Array
    metrics: Any
    loss_sum: jax.Array
    batches: jax.Array

    def results(self, head: Head[Any]) -> dict[str, jax.Array]:
        """``head.compute_metrics(metrics)`` plus ``"loss"`` (mean of the batch losses)."""
        values = dict(head.compute_metrics(self.metrics))
        values[LOSS_KEY] = self.loss_sum / jnp.maximum(self.batches, 1.0)
        return values


def fold_eval(previous: EvalOutput | None, loss: jax.Array, metrics: Any) -> EvalOutput:
    """This batch's loss and metric state folded into ``previous`` (jittable)."""
    if previous is None:
        return EvalOutput(loss, metrics, loss, jnp.ones((), jnp.float32))
    merged = jh_metrics.merge(previous.metrics, metrics)
    return EvalOutput(loss, merged, previous.loss_sum + loss, previous.batches + 1.0)


# finish(static, state, batch, extra, core output): the global-array tail of a step.
Finish = Callable[[Any, Any, Batch, Any, CoreOutput], Any]


def train_finish(head: Head[Any], with_metrics: bool) -> Finish:
    """A train step's tail (linen and nnx alike): the new state and its :class:`StepOutput`."""

    def finish(_: Any, state: Any, batch: Batch, __: Any, out: CoreOutput) -> tuple:
        del state
        metrics = (
            metric_state(head, batch, out.logits, out.regularization) if with_metrics else None
        )
        return out.state, StepOutput(out.loss, metrics)

    return finish


def eval_finish(head: Head[Any]) -> Finish:
    """An eval step's tail: this batch's metrics folded into ``previous`` (the extra input)."""

    def finish(_: Any, state: Any, batch: Batch, previous: Any, out: CoreOutput) -> EvalOutput:
        del state
        metrics = metric_state(head, batch, out.logits, out.regularization)
        return fold_eval(previous, out.loss, metrics)

    return finish
