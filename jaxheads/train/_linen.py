"""Train / eval steps over a flax ``TrainState`` (linen models or any apply function)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import optax
from flax import linen as nn
from flax.training.train_state import TrainState
from jax.sharding import Mesh

from jaxheads.heads.base import Head
from jaxheads.train import _state
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

ApplyFn = Callable[..., Any]


def _apply_fn(model: nn.Module | ApplyFn | None, state: Any) -> ApplyFn:
    if model is not None:
        return model.apply if isinstance(model, nn.Module) else model
    if not isinstance(state, TrainState):
        raise TypeError(
            "model=None takes the apply function of a flax TrainState (`state.apply_fn`); got a "
            f"{type(state).__name__}: pass the model to the step factory."
        )
    return state.apply_fn


def _logits_fn(apply_fn: ApplyFn, kwargs: Mapping[str, Any], mutable: Sequence[str]) -> LogitsFn:
    """(params, collections, inputs, rng) -> (logits, updated collections)."""

    def logits_fn(params: PyTree, collections: PyTree, inputs: Any, rng: Any) -> tuple[Any, PyTree]:
        call = dict(kwargs)
        if rng is not None:
            call["rngs"] = {"dropout": rng}
        variables = {"params": params, **collections}
        if not mutable:
            return apply_fn(variables, inputs, **call), collections
        logits, updated = apply_fn(variables, inputs, mutable=list(mutable), **call)
        return logits, {name: updated[name] for name in mutable}

    return logits_fn


def make_train_step(
    model: nn.Module | ApplyFn | None,
    head: Head[Any],
    tx: optax.GradientTransformation | None = None,
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
    apply_kwargs: Mapping[str, Any] | None = None,
    mutable: Sequence[str] = (),
) -> Callable[..., tuple[Any, StepOutput]]:
    """Builds ``step(state, features, labels, rng=None) -> (state, StepOutput)``.

    The step computes logits with the model, the head's regularized training
    loss on the global batch, its gradient, one optimizer update and (by
    default) the head's metric state for the batch.

    Args:
      model: a ``flax.linen`` module; or a function with the flax ``apply``
        convention, ``apply_fn(variables, inputs, **kwargs) -> logits``
        (a plain ``f(params, x)`` fits as ``lambda v, x, **kw: f(v["params"], x)``);
        or ``None`` to use ``state.apply_fn`` (a flax ``TrainState``). Logits
        are ``[batch, …, head.logits_dimension]``, any float dtype.
      head: any :class:`~jaxheads.heads.base.Head`.
      tx: the optax transformation; ``None`` uses the ``tx`` of a flax
        ``TrainState``. ``optax.MultiSteps`` works as usual.
      inputs_key: when ``features`` is a dict, the key of the model input; the
        whole dict still reaches the head (weight columns). ``None`` gives the
        model ``features`` itself.
      regularization_fn: ``fn(params) -> scalar or list of scalars`` added to
        the loss (TF's ``regularization_losses``) and tracked in the metrics.
      micro_batches: split the (per-device) batch into this many micro-batches
        and accumulate gradients over them (lower memory; the same loss and
        gradients as the full batch; batch statistics are then per micro-batch).
      with_metrics: also return the head's metric state of the batch.
      mesh: a device mesh (any: ``jax.make_mesh``'s ``Explicit`` axes are used
        as ``Auto``); the batch is split over ``data_axis`` and the state
        replicated (place it once with :func:`replicate`). Each process passes
        its host-local rows; sizes may differ between hosts, or not split over
        the devices: rows are padded and masked out of the loss, gradients and
        metrics (a model with ``mutable`` collections refuses such a batch with a
        ValueError on every host: its batch statistics would see the padded rows).
      data_axis: the mesh axis of the batch.
      strategy: ``"jit"`` (sharded arrays, XLA's partitioner) or
        ``"shard_map"`` (explicit per-device code and ``psum``; give
        ``BatchNorm`` ``axis_name=data_axis`` there for global statistics).
      jit: return the step ``jax.jit``-ed (else the pure function).
      check_labels: encode and check the label values on the host with
        ``head.encode_labels`` before each step (a ``ValueError`` naming the
        labels instead of a silently wrong loss). It costs one host pass over
        the labels (tens of µs); ``False`` skips it for numeric labels your
        pipeline has validated (string labels are always encoded).
      donate: donate the state's buffers to the step.
      apply_kwargs: extra keyword arguments of the apply function (e.g.
        ``{"train": True}``). With an ``rng``, ``rngs={"dropout": rng}`` is added.
      mutable: the model's mutable collections (e.g. ``("batch_stats",)``),
        each a field of the state of the same name (a ``TrainState`` subclass
        with ``batch_stats: Any``); the step returns them updated.

    Returns:
      ``step(state, features, labels, rng=None)``: ``state`` a
      :class:`TrainStateLike`; ``features`` the model input (an array or a
      dict, see ``inputs_key``); ``labels`` the head's labels, encoded and
      checked on the host by ``head.encode_labels``; ``rng`` an optional
      dropout key (folded with the device index under ``shard_map`` and with
      the micro-batch index). Returns the new state and a :class:`StepOutput`.

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
    mesh = check_strategy(strategy, mesh, data_axis)
    cfg = Config(head, inputs_key, regularization_fn, micro_batches)
    kwargs, collections = dict(apply_kwargs or {}), tuple(mutable)

    def core(_: None, state: Any, batch: Batch, rng: Any, axis_name: str | None) -> CoreOutput:
        logits_fn = _logits_fn(_apply_fn(model, state), kwargs, collections)
        if rng is not None and axis_name is not None:
            rng = jax.random.fold_in(rng, jax.lax.axis_index(axis_name))
        model_state = _state.collections_of(state, collections)
        out = loss_and_grads(cfg, logits_fn, state.params, model_state, batch, rng, axis_name)
        new_model_state = out.model_state
        if axis_name is not None:
            new_model_state = same_on_every_device(new_model_state, axis_name)
        new_state = _state.apply_gradients(state, out.grads, tx, **new_model_state)
        return CoreOutput(new_state, out.loss, out.logits, out.regularization)

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
        state: Any, features: Any, labels: Any, rng: Any = None
    ) -> tuple[Any, StepOutput]:
        _state.check_train_state(state, tx)
        _state.check_collections(state, collections)
        _state.check_rng(rng)
        batch = prepare_batch(head, features, labels, mesh, data_axis, check_labels, micro_batches)
        refuse_padding_for_batch_statistics(batch, collections)
        return step(None, state, batch, rng)

    return train_step


def make_eval_step(
    model: nn.Module | ApplyFn | None,
    head: Head[Any],
    *,
    inputs_key: str | None = None,
    regularization_fn: RegularizationFn | None = None,
    mesh: Mesh | None = None,
    data_axis: str = "data",
    strategy: str = "jit",
    jit: bool = True,
    check_labels: bool = True,
    apply_kwargs: Mapping[str, Any] | None = None,
    mutable: Sequence[str] = (),
) -> Callable[..., EvalOutput]:
    """Builds ``eval_step(state, features, labels, previous=None) -> EvalOutput``.

    The output holds this batch's regularized loss and the head's metric state
    merged over every batch so far: pass it back as ``previous`` to fold an
    eval set, and read ``out.results(head)`` (the head's metrics plus
    Estimator's ``loss``, the mean of the batch losses). Arguments are those
    of :func:`make_train_step`; ``state`` is a ``TrainState`` (or any object
    with ``params``), or the params themselves when ``model`` is given;
    ``mutable`` names the collections read from the state (e.g.
    ``("batch_stats",)``; run the model in inference mode through
    ``apply_kwargs``, e.g. ``{"train": False}``). Batches of any size work:
    rows that do not split over the mesh are padded and masked out.

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
      >>> out = evaluate(params, x, y, out)
      >>> results = out.results(head)
      >>> float(results["label/mean"]), bool(results["loss"] > 0)
      (1.0, True)
    """
    mesh = check_strategy(strategy, mesh, data_axis)
    cfg = Config(head, inputs_key, regularization_fn)
    kwargs, collections = dict(apply_kwargs or {}), tuple(mutable)

    def core(_: None, state: Any, batch: Batch, previous: Any, axis_name: str | None) -> CoreOutput:
        params = state.params if isinstance(state, _state.HasParams) else state
        model_state = _state.collections_of(state, collections)
        logits_fn = _logits_fn(_apply_fn(model, state), kwargs, ())
        logits, _ = logits_fn(params, model_state, cfg.inputs(batch.features), None)
        loss, reg = eval_loss(cfg, params, logits, batch, axis_name)
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

    def eval_step(state: Any, features: Any, labels: Any, previous: Any = None) -> EvalOutput:
        _state.check_collections(state, collections)
        _state.check_previous(previous)
        return step(
            None,
            state,
            prepare_batch(head, features, labels, mesh, data_axis, check_labels),
            previous,
        )

    return eval_step
