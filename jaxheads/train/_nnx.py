"""Train / eval steps for ``flax.nnx`` models and ``nnx.Optimizer``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flax import nnx
from jax.sharding import Mesh

from jaxheads.train._core import (
    PyTree,
    RegularizationFn,
    StepOutput,
    _check_strategy,
    _Config,
    _distribute,
    _eval_core,
    _finish_eval,
    _host_side,
    _LogitsFn,
    _loss_and_grads,
    _metrics,
)


# --------------------------------------------------------------------------- nnx
def _nnx_logits_fn(graphdef: Any) -> _LogitsFn:
    def logits_fn(params: PyTree, rest: PyTree, inputs: Any, rng: Any) -> tuple[Any, PyTree]:
        del rng  # nnx models own their rngs.
        model = nnx.merge(graphdef, params, rest)
        logits = model(inputs)
        _, _, rest = nnx.split(model, nnx.Param, ...)
        return logits, rest

    return logits_fn


def make_nnx_train_step(
    head: Any,
    *,
    inputs_key: str | None = None,
    regularization_fn: RegularizationFn | None = None,
    micro_batches: int = 1,
    with_metrics: bool = True,
    mesh: Mesh | None = None,
    data_axis: str = "data",
    strategy: str = "jit",
    jit: bool = True,
    donate: bool = False,
) -> Callable[..., StepOutput]:
    """Builds ``step(model, optimizer, features, labels) -> StepOutput`` for ``flax.nnx``.

    ``model`` is an ``nnx.Module`` returning logits; ``optimizer`` an
    ``nnx.Optimizer(model, tx, wrt=nnx.Param)``. Both are updated in place
    (the jitted core is a pure function of their ``nnx.split`` state; dropout
    uses the model's own ``nnx.Rngs``). ``regularization_fn`` receives the
    ``nnx.State`` of the ``nnx.Param``\\ s. ``donate=True`` donates their
    state buffers. Other arguments are those of :func:`make_train_step`.

    Examples:
      >>> import jax, jax.numpy as jnp, numpy as np
      >>> import optax, jaxheads as jh
      >>> from flax import nnx
      >>> from jaxheads.flax import NnxHead
      >>> head = jh.BinaryClassHead()
      >>> model = NnxHead(head, in_features=3, rngs=nnx.Rngs(0))
      >>> optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
      >>> step = make_nnx_train_step(head)
      >>> out = step(model, optimizer, jnp.ones((8, 3)), jnp.ones((8, 1)))
      >>> int(optimizer.step[...])
      1
    """
    _check_strategy(strategy, mesh)
    _Config(head, inputs_key, regularization_fn, micro_batches, None)  # validate

    def core(graphdef: Any, state: Any, features: Any, labels: Any, *, axis_name: Any) -> tuple:
        cfg = _Config(head, inputs_key, regularization_fn, micro_batches, axis_name)
        model, optimizer = nnx.merge(graphdef, state)
        model_graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        loss, grads, logits, reg, rest = _loss_and_grads(
            cfg, _nnx_logits_fn(model_graphdef), params, rest, features, labels, None
        )
        nnx.update(model, rest)
        optimizer.update(model, grads)
        return nnx.state((model, optimizer)), loss, logits, reg

    def finish(graphdef: Any, state: Any, features: Any, labels: Any, outputs: tuple) -> tuple:
        new_state, loss, logits, reg = outputs
        metric_state = _metrics(head, features, logits, labels, reg) if with_metrics else None
        return new_state, StepOutput(loss, metric_state)

    step = _distribute(
        core,
        finish,
        n_replicated=2,
        n_batch=2,
        n_trailing=0,
        sharded_outputs=(False, False, True, False),
        mesh=mesh,
        data_axis=data_axis,
        strategy=strategy,
        jit=jit,
        donate_argnums=(1,) if donate else (),
        static_argnums=(0,),
    )

    def train_step(
        model: nnx.Module, optimizer: nnx.Optimizer, features: Any, labels: Any
    ) -> StepOutput:
        features, labels = _host_side(head, mesh, data_axis, features, labels)
        graphdef, state = nnx.split((model, optimizer))
        state, out = step(graphdef, state, features, labels)
        nnx.update((model, optimizer), state)
        return out

    return train_step


def make_nnx_eval_step(
    head: Any,
    *,
    inputs_key: str | None = None,
    regularization_fn: RegularizationFn | None = None,
    mesh: Mesh | None = None,
    data_axis: str = "data",
    strategy: str = "jit",
    jit: bool = True,
) -> Callable[..., StepOutput]:
    """Builds ``eval_step(model, features, labels, metric_state=None) -> StepOutput`` for nnx.

    Put the model in eval mode first (``model.eval()``) if it has dropout or
    batch norm. Arguments are those of :func:`make_nnx_train_step`.

    Examples:
      >>> import jax, jax.numpy as jnp, numpy as np
      >>> import jaxheads as jh
      >>> from flax import nnx
      >>> from jaxheads.flax import NnxHead
      >>> head = jh.LogisticRegressionHead()
      >>> model = NnxHead(head, in_features=3, rngs=nnx.Rngs(0))
      >>> out = make_nnx_eval_step(head)(model, jnp.ones((8, 3)), jnp.full((8, 1), 0.5))
      >>> sorted(head.compute_metrics(out.metrics))
      ['average_loss', 'label/mean', 'prediction/mean']
    """
    _check_strategy(strategy, mesh)

    def core(
        graphdef: Any, state: Any, features: Any, labels: Any, metric_state: Any, *, axis_name: Any
    ) -> Any:
        cfg = _Config(head, inputs_key, regularization_fn, 1, axis_name)
        model = nnx.merge(graphdef, state)
        model_graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        return _eval_core(cfg, _nnx_logits_fn(model_graphdef), params, rest, features, labels)

    step = _distribute(
        core,
        functools.partial(_finish_eval, head),
        n_replicated=2,
        n_batch=2,
        n_trailing=1,
        sharded_outputs=(False, True, False),
        mesh=mesh,
        data_axis=data_axis,
        strategy=strategy,
        jit=jit,
        donate_argnums=(),
        static_argnums=(0,),
    )

    def eval_step(
        model: nnx.Module, features: Any, labels: Any, metric_state: Any = None
    ) -> StepOutput:
        features, labels = _host_side(head, mesh, data_axis, features, labels)
        graphdef, state = nnx.split(model)
        return step(graphdef, state, features, labels, metric_state)

    return eval_step
