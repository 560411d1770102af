"""Train / eval steps over a flax ``TrainState`` (linen models or any apply function)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import optax
from flax import linen as nn
from jax.sharding import Mesh

from jaxheads.train._core import (
    RegularizationFn,
    StepOutput,
    _apply_gradients,
    _check_strategy,
    _Config,
    _distribute,
    _eval_core,
    _finish_eval,
    _host_side,
    _linen_logits_fn,
    _loss_and_grads,
    _metrics,
    _resolve_apply,
)


# --------------------------------------------------------------------------- linen / TrainState
def make_train_step(
    model: nn.Module | Callable[..., Any] | None,
    head: Any,
    tx: optax.GradientTransformation | None = None,
    *,
    inputs_key: str | None = None,
    regularization_fn: RegularizationFn | None = None,
    micro_batches: int = 1,
    with_metrics: bool = True,
    apply_kwargs: Mapping[str, Any] | None = None,
    mesh: Mesh | None = None,
    data_axis: str = "data",
    strategy: str = "jit",
    jit: bool = True,
    donate_argnums: int | Sequence[int] = (),
) -> Callable[..., tuple[Any, StepOutput]]:
    """Builds ``step(state, features, labels, rng=None) -> (state, StepOutput)``.

    The step computes logits with the model, the head's regularized training
    loss on the global batch, its gradient, one optimizer update and (by
    default) the head's metric state for the batch.

    Args:
      model: a ``flax.linen`` module; or a function with the flax ``apply``
        convention, ``apply_fn({"params": params}, inputs, **kwargs) -> logits``
        (a plain ``f(params, x)`` fits as ``lambda v, x, **kw: f(v["params"], x)``);
        or ``None`` to use ``state.apply_fn``. Logits are
        ``[batch, …, head.logits_dimension]``, any float dtype.
      head: any jaxheads head.
      tx: the optax transformation; ``None`` uses ``state.apply_gradients``
        (the ``tx`` of a flax ``TrainState``). ``optax.MultiSteps`` works as
        usual (it averages per-step losses; ``micro_batches`` is exact).
      inputs_key: when ``features`` is a dict, the key of the model input; the
        whole dict still reaches the head (weight column). ``None`` gives the
        model ``features`` itself.
      regularization_fn: ``fn(params) -> scalar or list of scalars`` added to
        the loss (TF's ``regularization_losses``) and tracked in the metrics.
      micro_batches: split the (per-device) batch into this many micro-batches
        and accumulate gradients over them in one step (lower memory, same
        loss and gradients as the full batch).
      with_metrics: also return the head's metric state of the batch.
      apply_kwargs: extra keyword arguments of the apply function (e.g.
        ``{"train": True}``). With an ``rng``, ``rngs={"dropout": rng}`` is added.
      mesh: a device mesh; the batch is split over ``data_axis`` and the state
        replicated (place it once with :func:`replicate`). Host-local batches
        become global arrays (:func:`global_batch`).
      data_axis: the mesh axis of the batch.
      strategy: ``"jit"`` (sharded arrays, XLA's partitioner) or
        ``"shard_map"`` (explicit per-device code and ``psum``).
      jit: return the step ``jax.jit``-ed (else the pure function).
      donate_argnums: passed to ``jax.jit`` (``0`` donates the state).

    Returns:
      ``step(state, features, labels, rng=None)``: ``features`` is the model
      input (an array or a dict, see ``inputs_key``), ``labels`` the head's
      labels (string labels are encoded on the host), ``rng`` an optional
      dropout key (folded with the device index under ``shard_map`` and with
      the micro-batch index, so masks differ between shards and micro-batches;
      under ``strategy="jit"`` the masks are those of one device). Returns the
      new state and a :class:`StepOutput`.

    Examples:
      >>> import jax, jax.numpy as jnp, numpy as np
      >>> import flax.linen as nn, optax, jaxheads as jh
      >>> from flax.training.train_state import TrainState
      >>> from jaxheads.flax import LinenHead
      >>> head = jh.BinaryClassHead()
      >>> model = LinenHead(head)
      >>> x, y = jnp.ones((8, 3)), jnp.ones((8, 1))
      >>> state = TrainState.create(apply_fn=model.apply, tx=optax.sgd(0.1),
      ...                           params=model.init(jax.random.key(0), x)["params"])
      >>> step = make_train_step(None, head)
      >>> state, out = step(state, x, y)
      >>> int(state.step), out.loss.dtype
      (1, dtype('float32'))
    """
    _check_strategy(strategy, mesh)
    kw = dict(apply_kwargs or {})

    def core(state: Any, features: Any, labels: Any, rng: Any, *, axis_name: str | None) -> tuple:
        cfg = _Config(head, inputs_key, regularization_fn, micro_batches, axis_name)
        logits_fn = _linen_logits_fn(_resolve_apply(model, state), kw)
        if rng is not None and axis_name is not None:
            rng = jax.random.fold_in(rng, jax.lax.axis_index(axis_name))
        loss, grads, logits, reg, _ = _loss_and_grads(
            cfg, logits_fn, state.params, None, features, labels, rng
        )
        return _apply_gradients(state, grads, tx), loss, logits, reg

    def finish(state: Any, features: Any, labels: Any, rng: Any, outputs: tuple) -> tuple:
        new_state, loss, logits, reg = outputs
        metric_state = _metrics(head, features, logits, labels, reg) if with_metrics else None
        return new_state, StepOutput(loss, metric_state)

    _Config(head, inputs_key, regularization_fn, micro_batches, None)  # validate
    step = _distribute(
        core,
        finish,
        n_replicated=1,
        n_batch=2,
        n_trailing=1,
        sharded_outputs=(False, False, True, False),
        mesh=mesh,
        data_axis=data_axis,
        strategy=strategy,
        jit=jit,
        donate_argnums=donate_argnums,
    )

    def train_step(
        state: Any, features: Any, labels: Any, rng: Any = None
    ) -> tuple[Any, StepOutput]:
        features, labels = _host_side(head, mesh, data_axis, features, labels)
        return step(state, features, labels, rng)

    return train_step


def make_eval_step(
    model: nn.Module | Callable[..., Any] | None,
    head: Any,
    *,
    inputs_key: str | None = None,
    regularization_fn: RegularizationFn | None = None,
    apply_kwargs: Mapping[str, Any] | None = None,
    mesh: Mesh | None = None,
    data_axis: str = "data",
    strategy: str = "jit",
    jit: bool = True,
) -> Callable[..., StepOutput]:
    """Builds ``eval_step(state, features, labels, metric_state=None) -> StepOutput``.

    The returned loss is the head's regularized loss on the global batch; the
    metric state is ``metric_state`` (or a fresh one) merged with this batch's,
    so it folds over an eval set. Arguments are those of :func:`make_train_step`;
    ``state`` is a ``TrainState`` (or any object with ``params``), or the
    params themselves when ``model`` is given.

    Examples:
      >>> import jax, jax.numpy as jnp, numpy as np
      >>> import jaxheads as jh
      >>> from jaxheads.flax import LinenHead
      >>> head = jh.BinaryClassHead()
      >>> model = LinenHead(head)
      >>> x, y = jnp.ones((8, 3)), jnp.ones((8, 1))
      >>> params = model.init(jax.random.key(0), x)["params"]
      >>> evaluate = make_eval_step(model, head)
      >>> out = evaluate(params, x, y)
      >>> out = evaluate(params, x, y, out.metrics)
      >>> float(head.compute_metrics(out.metrics)["label/mean"])
      1.0
    """
    _check_strategy(strategy, mesh)
    kw = dict(apply_kwargs or {})

    def core(state: Any, features: Any, labels: Any, metric_state: Any, *, axis_name: Any) -> Any:
        cfg = _Config(head, inputs_key, regularization_fn, 1, axis_name)
        params = getattr(state, "params", state)
        logits_fn = _linen_logits_fn(_resolve_apply(model, state), kw)
        return _eval_core(cfg, logits_fn, params, None, features, labels)

    step = _distribute(
        core,
        functools.partial(_finish_eval, head),
        n_replicated=1,
        n_batch=2,
        n_trailing=1,
        sharded_outputs=(False, True, False),
        mesh=mesh,
        data_axis=data_axis,
        strategy=strategy,
        jit=jit,
        donate_argnums=(),
    )

    def eval_step(state: Any, features: Any, labels: Any, metric_state: Any = None) -> StepOutput:
        features, labels = _host_side(head, mesh, data_axis, features, labels)
        return step(state, features, labels, metric_state)

    return eval_step
