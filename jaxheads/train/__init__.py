"""Optax train / eval steps for any head, on one device, a mesh, or many hosts.

:func:`make_train_step` and :func:`make_eval_step` build pure, jittable step
functions over a ``flax.training.train_state.TrainState`` (or any state with
``params``, ``opt_state`` and ``step``); :func:`make_nnx_train_step` and
:func:`make_nnx_eval_step` do the same for a ``flax.nnx`` model and
``nnx.Optimizer``. A step returns the training loss and the head's metric
state for the batch (a pytree of additive states: merge it across steps with
``jaxheads.metrics.merge`` and read it with ``head.compute_metrics``).

The loss is always normalised over the **global** batch:

* ``mesh=...`` (default ``strategy="jit"``): the step is ``jax.jit``-ed with
  the batch sharded along ``data_axis`` (``NamedSharding``) and the state
  replicated; XLA inserts the cross-device sums, so the numbers are those of
  one device on the whole batch.
* ``strategy="shard_map"``: each device runs the model, the loss and the
  gradients on its shard inside ``jax.shard_map``; the weighted loss sums, the
  denominators and the gradients are ``psum``-ed over ``data_axis`` *before*
  dividing (never a mean of per-shard means). The logits leave the per-device
  code as one global array and the metric states are updated on it, so they
  are exact for every head (also for means over updates, such as
  ``regularization_loss``, that per-device states summed with
  ``jaxheads.metrics.all_reduce`` would count once per device).
* ``micro_batches=k``: the batch is split in ``k`` micro-batches scanned one
  after another (gradient accumulation in one step); the loss sums, the
  denominators and the gradients of the sums accumulate and are divided once,
  so the result equals the full-batch step. (A head whose loss is a weighted
  sum of several reductions, a ``MultiHead``, takes a second forward pass:
  ``head.loss`` of the whole batch's logits gives the logit gradients, which
  are then back-propagated micro-batch by micro-batch.)

Batches may be host-local: with a mesh, the step turns each leaf into a global
array with ``jax.make_array_from_process_local_data`` (see :func:`global_batch`),
so the same code runs under ``jax.distributed`` on many hosts.
"""

from jaxheads.train._core import StepOutput, loss_terms
from jaxheads.train._linen import make_eval_step, make_train_step
from jaxheads.train._mesh import data_sharding, global_batch, make_mesh, replicate
from jaxheads.train._nnx import make_nnx_eval_step, make_nnx_train_step

__all__ = [
    "StepOutput",
    "data_sharding",
    "global_batch",
    "loss_terms",
    "make_eval_step",
    "make_mesh",
    "make_nnx_eval_step",
    "make_nnx_train_step",
    "make_train_step",
    "replicate",
]
