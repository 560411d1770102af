"""Optax train / eval steps for any head, on one device, a mesh, or many hosts.

:func:`make_train_step` and :func:`make_eval_step` build pure, jittable step
functions over a ``flax.training.train_state.TrainState`` (or any
:class:`TrainStateLike`), with the model's mutable collections
(``batch_stats``) kept in the state; :func:`make_nnx_train_step` and
:func:`make_nnx_eval_step` do the same for a ``flax.nnx`` module (dropout,
batch norm) and ``nnx.Optimizer``. The factories share their argument order
``(model, head, …)`` and keywords (``donate=``). A train step returns a
:class:`StepOutput` (loss, metric state); an eval step an :class:`EvalOutput`
that folds over batches (``out.results(head)`` adds Estimator's ``loss``).

The loss is always normalised over the **global** batch, from the head's
additive ``LossTerms`` (never a mean of per-shard means):

* ``mesh=...`` (default ``strategy="jit"``): the step is ``jax.jit``-ed with
  the batch sharded along ``data_axis`` and the state replicated; XLA inserts
  the cross-device sums (and batch statistics are global).
* ``strategy="shard_map"``: each device runs the model, the loss terms and
  their gradient on its shard; denominators and gradients are ``psum``-ed.
  Models may scan or loop (``nn.RNN``, ``fori_loop``).
* ``micro_batches=k``: gradient accumulation over ``k`` micro-batches in one
  step, equal to the full-batch step.

Labels are encoded and checked on the host (``head.encode_labels``) before
tracing. Batches are host-local: under ``jax.distributed`` each process
passes its own rows; when hosts hold different numbers of rows, or the rows do
not split over the devices, every host pads and the step masks the padding out
of the loss, the gradients and the metrics (exact for every reduction). A
host whose batch fails its checks makes every host raise instead of hanging.
"""

from jaxheads.train._grads import RegularizationFn
from jaxheads.train._host import global_batch, pad_batch
from jaxheads.train._linen import make_eval_step, make_train_step
from jaxheads.train._mesh import data_sharding, make_mesh, replicate
from jaxheads.train._nnx import make_nnx_eval_step, make_nnx_train_step
from jaxheads.train._outputs import EvalOutput, StepOutput
from jaxheads.train._state import TrainStateLike

__all__ = [
    "EvalOutput",
    "RegularizationFn",
    "StepOutput",
    "TrainStateLike",
    "data_sharding",
    "global_batch",
    "make_eval_step",
    "make_mesh",
    "make_nnx_eval_step",
    "make_nnx_train_step",
    "make_train_step",
    "pad_batch",
    "replicate",
]
