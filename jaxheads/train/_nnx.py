"""Train / eval steps for ``flax.nnx`` models and ``nnx.Optimizer``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from flax import nnx
from jax.sharding import Mesh

from jaxheads.heads.base import Head
from jaxheads.train._grads import (
    Config,
    LogitsFn,
    PyTree,
    RegularizationFn,
    eval_loss,
    loss_and_grads,
)
from jaxheads.train._host import Batch, prepare_batch, refuse_padding_for_batch_statistics
from jaxheads.train._outputs import EvalOutput, StepOutput, eval_finish, train_finish
from jaxheads.train._place import CoreOutput, check_strategy, distribute, same_on_every_device
from jaxheads.train._state import check_previous

# call(module, inputs) -> logits
NnxCall = Callable[[Any, Any], Any]


def _default_call(module: Any, inputs: Any) -> Any:
    return module(inputs)


def _logits_fn(graphdef: Any, call: NnxCall) -> LogitsFn:
    """(params, rest, inputs, _) -> (logits, rest after the call: batch stats, rng counts)."""

    def logits_fn(params: PyTree, rest: PyTree, inputs: Any, rng: Any) -> tuple[Any, PyTree]:
        del rng  # nnx models own their rngs (nnx.Rngs).
        # A fresh copy: the variables belong to this trace level (they are mutated).
        module = nnx.merge(graphdef, params, rest, copy=True)
        logits = call(module, inputs)
        parts: tuple[Any, ...] = nnx.split(module, nnx.Param, ...)
        return logits, parts[2]

    return logits_fn


def _is_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _per_device_keys(rest: PyTree, axis_name: str) -> PyTree:
    """The model's rng keys folded with the device index: other dropout masks per shard."""
    index = jax.lax.axis_index(axis_name)
    return jax.tree.map(lambda x: jax.random.fold_in(x, index) if _is_key(x) else x, rest)


def _restore_keys(new: PyTree, old: PyTree) -> PyTree:
    return jax.tree.map(lambda n, o: o if _is_key(o) else n, new, old)


def make_nnx_train_step(
    model: NnxCall | None,
    head: Head[Any],
    *,
    inputs_key: str | None = None,
    regularization_fn: RegularizationFn | None = None,
    micro_batches: int = 1,
    with_metrics: bool = True,
    mesh: Mesh | None = None,
    data_axis: str = "data",
    strategy: str = "jit",
    jit: bool = True,
    check_labels: bool = True,
    donate: bool = False,
) -> Callable[..., StepOutput]:
    """Builds ``step(module, optimizer, features, labels) -> StepOutput`` for ``flax.nnx``.

    ``module`` is an ``nnx.Module`` returning logits; ``optimizer`` an
    ``nnx.Optimizer(module, tx, wrt=nnx.Param)``. Both are updated in place:
    the parameters, and every other state the call changes (``nnx.BatchNorm``
    statistics, the ``nnx.Rngs`` counts that ``nnx.Dropout`` draws from).
    The jitted core is a pure function of their ``nnx.split`` state.

    Args:
      model: ``call(module, inputs) -> logits``, for modules whose call takes
        more than the inputs or returns more than logits; ``None`` calls
        ``module(inputs)``. (The same position as :func:`make_train_step`'s
        ``model``; the module itself comes with each call.)
      head: any :class:`~jaxheads.heads.base.Head`.
      regularization_fn: receives the ``nnx.State`` of the ``nnx.Param``\\ s.
      donate: donate the module's and the optimizer's buffers to the step.
      inputs_key, micro_batches, with_metrics, mesh, data_axis, strategy, jit, check_labels:
        as in :func:`make_train_step` (under ``shard_map``, build
        ``nnx.BatchNorm(..., axis_name=data_axis)`` for global statistics;
        dropout keys are folded with the device index).

    Examples:
      >>> import jax, jax.numpy as jnp, numpy as np
      >>> import optax, jaxheads as jh
      >>> from flax import nnx
      >>> from jaxheads.flax import NnxHead
      >>> head = jh.BinaryClassHead()
      >>> module = NnxHead(head, in_features=3, rngs=nnx.Rngs(0))
      >>> optimizer = nnx.Optimizer(module, optax.sgd(0.1), wrt=nnx.Param)
      >>> step = make_nnx_train_step(None, head)
      >>> out = step(module, optimizer, jnp.ones((8, 3)), jnp.ones((8, 1)))
      >>> int(optimizer.step[...])
      1
    """
    mesh = check_strategy(strategy, mesh, data_axis)
    cfg = Config(head, inputs_key, regularization_fn, micro_batches)
    call = _default_call if model is None else model

    def core(graphdef: Any, state: Any, batch: Batch, _: None, axis_name: str | None) -> CoreOutput:
        module, optimizer = nnx.merge(graphdef, state)
        parts: tuple[Any, ...] = nnx.split(module, nnx.Param, ...)
        module_graphdef, params, rest = parts[0], parts[1], parts[2]
        local = rest if axis_name is None else _per_device_keys(rest, axis_name)
        logits_fn = _logits_fn(module_graphdef, call)
        out = loss_and_grads(cfg, logits_fn, params, local, batch, None, axis_name)
        new_rest = _restore_keys(out.model_state, rest)
        if axis_name is not None:
            new_rest = same_on_every_device(new_rest, axis_name)
        nnx.update(module, new_rest)
        optimizer.update(module, out.grads)
        return CoreOutput(nnx.state((module, optimizer)), out.loss, out.logits, out.regularization)

    step = distribute(
        core,
        train_finish(head, with_metrics),
        mesh=mesh,
        data_axis=data_axis,
        strategy=strategy,
        jit=jit,
        donate=donate,
    )

    def train_step(
        module: nnx.Module, optimizer: nnx.Optimizer, features: Any, labels: Any
    ) -> StepOutput:
        if not isinstance(module, nnx.Module) or not isinstance(optimizer, nnx.Optimizer):
            raise TypeError(
                "an nnx train step takes (module, optimizer, features, labels) with an "
                f"nnx.Module and an nnx.Optimizer; got {type(module).__name__}, "
                f"{type(optimizer).__name__}."
            )
        batch = prepare_batch(head, features, labels, mesh, data_axis, check_labels, micro_batches)
        if jax.tree.leaves(nnx.state(module, nnx.BatchStat)):
            refuse_padding_for_batch_statistics(batch, ("batch_stats",))
        graphdef, state = nnx.split((module, optimizer))
        state, out = step(graphdef, state, batch, None)
        nnx.update((module, optimizer), state)
        return out

    return train_step


def make_nnx_eval_step(
    model: NnxCall | None,
    head: Head[Any],
    *,
    inputs_key: str | None = None,
    regularization_fn: RegularizationFn | None = None,
    mesh: Mesh | None = None,
    data_axis: str = "data",
    strategy: str = "jit",
    jit: bool = True,
    check_labels: bool = True,
) -> Callable[..., EvalOutput]:
    """Builds ``eval_step(module, features, labels, previous=None) -> EvalOutput`` for nnx.

    Put the module in eval mode first (``module.eval()``: dropout off, batch
    norm on its running statistics); the module is not changed. Arguments
    and the output are those of :func:`make_nnx_train_step` and
    :func:`make_eval_step`.

    Examples:
      >>> import jax, jax.numpy as jnp, numpy as np
      >>> import jaxheads as jh
      >>> from flax import nnx
      >>> from jaxheads.flax import NnxHead
      >>> head = jh.LogisticRegressionHead()
      >>> module = NnxHead(head, in_features=3, rngs=nnx.Rngs(0))
      >>> out = make_nnx_eval_step(None, head)(module, jnp.ones((8, 3)), jnp.full((8, 1), 0.5))
      >>> sorted(out.results(head))
      ['average_loss', 'label/mean', 'loss', 'prediction/mean']
    """
    mesh = check_strategy(strategy, mesh, data_axis)
    cfg = Config(head, inputs_key, regularization_fn)
    call = _default_call if model is None else model

    def core(graphdef: Any, state: Any, batch: Batch, _: Any, axis_name: str | None) -> CoreOutput:
        module = nnx.merge(graphdef, state, copy=True)
        logits = call(module, cfg.inputs(batch.features))
        loss, reg = eval_loss(cfg, nnx.state(module, nnx.Param), logits, batch, axis_name)
        return CoreOutput(None, loss, logits, reg)

    step = distribute(
        core,
        eval_finish(head),
        mesh=mesh,
        data_axis=data_axis,
        strategy=strategy,
        jit=jit,
        donate=False,
    )

    def eval_step(
        module: nnx.Module, features: Any, labels: Any, previous: Any = None
    ) -> EvalOutput:
        check_previous(previous)
        graphdef, state = nnx.split(module)
        return step(
            graphdef,
            state,
            prepare_batch(head, features, labels, mesh, data_axis, check_labels),
            previous,
        )

    return eval_step
