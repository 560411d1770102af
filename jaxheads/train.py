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

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from jax.typing import ArrayLike

from jaxheads import metrics as jh_metrics
from jaxheads.modes import ModeKeys
from jaxheads.reduction import Reduction, divide_loss_terms, safe_divide

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

PyTree = Any
# (params, model_state, inputs, rng) -> (logits, new model_state)
_LogitsFn = Callable[[PyTree, PyTree, Any, Any], tuple[Any, PyTree]]
RegularizationFn = Callable[[PyTree], ArrayLike | Sequence[ArrayLike]]
_STRATEGIES = ("jit", "shard_map")
# (loss, grads, logits, regularization losses, new model state)
_Grads = tuple[jax.Array, PyTree, Any, Any, PyTree]


class StepOutput(NamedTuple):
    """What a step returns besides the new state.

    Attributes:
      loss: float32 scalar, the head's regularized training loss on the global
        batch.
      metrics: the head's metric state (a pytree of additive states) updated
        with the global batch (merged into the given state for eval steps), or
        ``None`` when the step was built with ``with_metrics=False``.
    """

    loss: jax.Array
    metrics: Any


# --------------------------------------------------------------------------- meshes
def make_mesh(num_devices: int | None = None, data_axis: str = "data") -> Mesh:
    """A 1-D data-parallel mesh over ``num_devices`` devices (default: all, every host).

    The axis is ``AxisType.Auto`` (XLA's partitioner places the collectives):
    ``jax.make_mesh``'s default in recent JAX, ``Explicit``, makes the
    scatter-adds of the metric updates fail on sharded batches.

    Examples:
      >>> dict(make_mesh(2).shape)
      {'data': 2}
    """
    devices = jax.devices()
    num_devices = len(devices) if num_devices is None else num_devices
    return jax.make_mesh(
        (num_devices,),
        (data_axis,),
        axis_types=(jax.sharding.AxisType.Auto,),
        devices=devices[:num_devices],
    )


def data_sharding(mesh: Mesh, data_axis: str = "data") -> NamedSharding:
    """The sharding of a batch: leading axis split over ``data_axis``, the rest replicated."""
    return NamedSharding(mesh, P(data_axis))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places ``tree`` (a train state, params, …) fully replicated on ``mesh``.

    ``nnx`` modules and optimizers are updated in place (and returned). With
    several processes each must pass the same values (same seed or checkpoint).

    Examples:
      >>> mesh = make_mesh(2)
      >>> replicate({"w": jnp.ones(3)}, mesh)["w"].sharding.is_fully_replicated
      True
    """
    sharding = NamedSharding(mesh, P())

    def put(x: Any) -> Any:
        if jax.process_count() == 1:
            return jax.device_put(x, sharding)
        # Many hosts: every process holds the same value (same seed / checkpoint).
        return jax.make_array_from_process_local_data(sharding, np.asarray(x), np.shape(x))

    if isinstance(tree, nnx.Pytree):
        nnx.update(tree, jax.tree.map(put, nnx.state(tree)))
        return tree
    return jax.tree.map(put, tree)


def global_batch(batch: Any, mesh: Mesh, data_axis: str = "data") -> Any:
    """Host-local batch leaves -> global arrays sharded along ``data_axis``.

    Each process passes its own slice of the global batch (leading axis); the
    result is one global ``jax.Array`` per leaf whose leading size is the sum
    over processes (``jax.make_array_from_process_local_data``). On a single
    process this is simply the batch, sharded. Leaves that already carry the
    target sharding are returned unchanged; ``None`` leaves stay ``None``.

    Args:
      batch: pytree of host-local arrays ``[local_batch, ...]``.
      mesh: the device mesh (spanning every process).
      data_axis: mesh axis the leading dimension is split over.

    Returns:
      The same pytree of global arrays ``[global_batch, ...]``.

    Examples:
      >>> mesh = make_mesh(2)
      >>> x = global_batch({"x": np.ones((4, 3), np.float32)}, mesh)["x"]
      >>> x.shape, len(x.addressable_shards)
      ((4, 3), 2)
    """
    sharding = data_sharding(mesh, data_axis)

    def to_global(x: Any) -> jax.Array:
        if isinstance(x, jax.Array) and x.sharding == sharding:
            return x
        return jax.make_array_from_process_local_data(sharding, np.asarray(x))

    return jax.tree.map(to_global, batch)


# --------------------------------------------------------------------------- loss pieces
def loss_terms(
    head: Any, labels: Any, logits: Any, features: Mapping[str, Any] | None = None
) -> tuple[jax.Array, jax.Array | None]:
    """The head's training loss as ``(weighted sum, denominator)``, float32 scalars.

    ``head.loss(...) == safe_divide(total, denominator)`` before
    regularization, and ``total`` alone for ``Reduction.SUM`` (denominator
    ``None``). Both terms are additive: summing them over shards or
    micro-batches and dividing once gives the loss of the whole batch, where a
    mean of per-shard losses would be biased. Works for every head but a
    ``MultiHead`` (whose loss is a weighted sum of its heads' losses).

    Examples:
      >>> import jaxheads as jh
      >>> head = jh.BinaryClassHead(loss_reduction="mean", weight_column="w")
      >>> total, den = loss_terms(head, jnp.array([[1.0]]), jnp.array([[0.0]]),
      ...                         {"w": jnp.array([2.0])})
      >>> round(float(total), 4), float(den)
      (1.3863, 2.0)
    """
    if not _has_loss_terms(head):
        raise ValueError(
            f"{type(head).__name__}'s loss is not one weighted reduction (a MultiHead sums "
            "its heads' losses); use `head.loss`."
        )
    return head.loss_terms(labels, logits, features)


def _regularization(fn: RegularizationFn | None, params: PyTree) -> list[jax.Array] | None:
    if fn is None:
        return None
    value = fn(params)
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    return [jnp.asarray(v, jnp.float32) for v in values]


def _sum_or_zero(values: list[jax.Array] | None) -> jax.Array:
    if not values:
        return jnp.zeros((), jnp.float32)
    return jnp.sum(jnp.stack(values))


def _head_features(features: Any) -> Mapping[str, Any] | None:
    return features if isinstance(features, Mapping) else None


def _model_inputs(features: Any, inputs_key: str | None) -> Any:
    return features if inputs_key is None else features[inputs_key]


def _encode_host_labels(head: Any, labels: Any) -> Any:
    """String labels (numpy str/bytes arrays, lists of str) -> ids, on the host."""
    if isinstance(labels, jax.Array) or not hasattr(head, "encode_labels"):
        return labels

    def is_text(leaf: Any) -> bool:
        return not isinstance(leaf, jax.Array) and np.asarray(leaf).dtype.kind in "USO"

    if any(is_text(leaf) for leaf in jax.tree.leaves(labels)):
        return head.encode_labels(labels)
    return labels


def _split_micro(tree: Any, k: int) -> Any:
    def split(x: Any) -> Any:
        x = jnp.asarray(x)
        if x.ndim == 0 or x.shape[0] % k:
            raise ValueError(
                f"micro_batches={k} must divide the (per-device) batch size; got a leaf of "
                f"shape {x.shape}."
            )
        return x.reshape((k, x.shape[0] // k) + x.shape[1:])

    return jax.tree.map(split, tree)


def _merge_micro(tree: Any) -> Any:
    return jax.tree.map(lambda x: x.reshape((x.shape[0] * x.shape[1],) + x.shape[2:]), tree)


@dataclasses.dataclass(frozen=True)
class _Config:
    head: Any
    inputs_key: str | None
    regularization_fn: RegularizationFn | None
    micro_batches: int
    axis_name: str | None

    def __post_init__(self) -> None:
        if not isinstance(self.micro_batches, int) or self.micro_batches < 1:
            raise ValueError(f"micro_batches must be a positive int, got {self.micro_batches!r}.")


def _metrics(head: Any, features: Any, logits: Any, labels: Any, reg: Any) -> Any:
    """The head's metric state of one global batch (outside any ``shard_map``).

    Computed on global arrays, so it is exact for every head, including
    metrics that are a mean over updates (``regularization_loss``, a
    MultiHead's ``loss/<head>``), which per-device states summed with
    ``jaxheads.metrics.all_reduce`` would count once per device.
    """
    logits = jax.lax.stop_gradient(logits)
    return head.update_metrics(
        head.init_metrics(reg), _head_features(features), logits, labels, reg
    )


def _has_loss_terms(head: Any) -> bool:
    """Whether the loss is one weighted reduction (every head but a MultiHead)."""
    return getattr(head, "heads", None) is None and hasattr(head, "loss_terms")


def _is_sum(head: Any) -> bool:
    reduction = getattr(head, "loss_reduction", None)
    return reduction is not None and Reduction.validate(reduction) is Reduction.SUM


def _head_loss_takes_axis_name(head: Any) -> bool:
    try:
        return "axis_name" in inspect.signature(head.loss).parameters
    except (TypeError, ValueError):
        return False


def _loss_and_grads(
    cfg: _Config,
    logits_fn: _LogitsFn,
    params: PyTree,
    model_state: PyTree,
    features: Any,
    labels: Any,
    rng: jax.Array | None,
) -> _Grads:
    """(loss, grads, logits, regularization losses, new model state) on the global batch."""
    head = cfg.head
    loss_is_global = cfg.axis_name is None or _head_loss_takes_axis_name(head)
    if cfg.micro_batches == 1 and loss_is_global:
        return _loss_and_grads_direct(cfg, logits_fn, params, model_state, features, labels, rng)
    if _has_loss_terms(head) or not loss_is_global:
        return _loss_and_grads_terms(cfg, logits_fn, params, model_state, features, labels, rng)
    return _loss_and_grads_two_pass(cfg, logits_fn, params, model_state, features, labels, rng)


def _loss_and_grads_direct(
    cfg: _Config,
    logits_fn: _LogitsFn,
    params: PyTree,
    model_state: PyTree,
    features: Any,
    labels: Any,
    rng: jax.Array | None,
) -> _Grads:
    """One ``head.loss`` on the whole (possibly sharded) batch."""
    head = cfg.head
    inputs = _model_inputs(features, cfg.inputs_key)
    kwargs = {} if cfg.axis_name is None else {"axis_name": cfg.axis_name}

    def objective(p: PyTree) -> tuple[jax.Array, tuple[Any, PyTree, Any]]:
        logits, new_state = logits_fn(p, model_state, inputs, rng)
        reg = _regularization(cfg.regularization_fn, p)
        loss = head.loss(labels, logits, _head_features(features), ModeKeys.TRAIN, reg, **kwargs)
        return loss, (logits, new_state, reg)

    (loss, (logits, new_state, reg)), grads = jax.value_and_grad(objective, has_aux=True)(params)
    return loss, grads, logits, reg, new_state


def _loss_and_grads_terms(
    cfg: _Config,
    logits_fn: _LogitsFn,
    params: PyTree,
    model_state: PyTree,
    features: Any,
    labels: Any,
    rng: jax.Array | None,
) -> _Grads:
    """Accumulates ``(Σ w·l, denominator)`` and the gradient of ``Σ w·l`` over
    micro-batches and shards, then divides once by the global denominator."""
    head = cfg.head
    k = cfg.micro_batches
    axis = cfg.axis_name
    # Inside shard_map, make the params device-varying so that the gradient of
    # the local sum stays local; it is psum-ed once below.
    local_params = params if axis is None else jax.lax.pcast(params, axis, to="varying")

    def terms(p: PyTree, ms: PyTree, feats: Any, labs: Any, key: Any) -> tuple[jax.Array, Any]:
        logits, ms = logits_fn(p, ms, _model_inputs(feats, cfg.inputs_key), key)
        total, den = loss_terms(head, labs, logits, _head_features(feats))
        return total, (den, logits, ms)

    grad_terms = jax.value_and_grad(terms, has_aux=True)
    if k == 1:
        (total, (den, logits, model_state)), grads = grad_terms(
            local_params, model_state, features, labels, rng
        )
    else:

        def body(carry: tuple, xs: tuple) -> tuple[tuple, Any]:
            g_acc, t_acc, d_acc, ms = carry
            i, feats, labs = xs
            key = None if rng is None else jax.random.fold_in(rng, i)
            (t, (d, lg, ms)), g = grad_terms(local_params, ms, feats, labs, key)
            g_acc = jax.tree.map(jnp.add, g_acc, g)
            d_acc = None if d is None else d_acc + d
            return (g_acc, t_acc + t, d_acc, ms), lg

        zeros = jax.tree.map(jnp.zeros_like, local_params)
        if axis is not None:
            scalar_zero = jax.lax.pcast(jnp.zeros((), jnp.float32), axis, to="varying")
        else:
            scalar_zero = jnp.zeros((), jnp.float32)
        xs = (jnp.arange(k), _split_micro(features, k), _split_micro(labels, k))
        den0 = None if _is_sum(head) else scalar_zero
        (grads, total, den, model_state), logits = jax.lax.scan(
            body, (zeros, scalar_zero, den0, model_state), xs
        )
        logits = _merge_micro(logits)
    if axis is not None:
        grads, total, den = jax.lax.psum((grads, total, den), axis)
    loss = divide_loss_terms(total, den)
    if den is not None:
        grads = jax.tree.map(lambda g: safe_divide(g, den.astype(g.dtype)).astype(g.dtype), grads)
    reg = None
    if cfg.regularization_fn is not None:

        def reg_objective(p: PyTree) -> tuple[jax.Array, list[jax.Array] | None]:
            values = _regularization(cfg.regularization_fn, p)
            return _sum_or_zero(values), values

        (reg_total, reg), reg_grads = jax.value_and_grad(reg_objective, has_aux=True)(params)
        loss = loss + reg_total
        grads = jax.tree.map(jnp.add, grads, reg_grads)
    return loss, grads, logits, reg, model_state


def _loss_and_grads_two_pass(
    cfg: _Config,
    logits_fn: _LogitsFn,
    params: PyTree,
    model_state: PyTree,
    features: Any,
    labels: Any,
    rng: jax.Array | None,
) -> _Grads:
    """Micro-batches for any head (e.g. a MultiHead, a sum of ratios).

    Pass 1 runs the model forward on every micro-batch and keeps only the
    logits; ``head.loss`` on the whole batch gives the exact loss and its
    gradient w.r.t. the logits; pass 2 back-propagates each micro-batch's
    slice of that gradient through the model (one extra forward pass).
    """
    head = cfg.head
    k = cfg.micro_batches
    axis = cfg.axis_name
    local_params = params if axis is None else jax.lax.pcast(params, axis, to="varying")
    micro_features = _split_micro(features, k)
    index = jnp.arange(k)

    def key_of(i: jax.Array) -> Any:
        return None if rng is None else jax.random.fold_in(rng, i)

    def forward(ms: PyTree, xs: tuple) -> tuple[PyTree, tuple]:
        i, feats = xs
        logits, new_ms = logits_fn(
            local_params, ms, _model_inputs(feats, cfg.inputs_key), key_of(i)
        )
        return new_ms, (logits, ms)

    final_state, (micro_logits, micro_states) = jax.lax.scan(
        forward, model_state, (index, micro_features)
    )
    logits = _merge_micro(micro_logits)
    kwargs = {} if axis is None else {"axis_name": axis}

    def objective(p: PyTree, lg: Any) -> tuple[jax.Array, Any]:
        reg = _regularization(cfg.regularization_fn, p)
        loss = head.loss(labels, lg, _head_features(features), ModeKeys.TRAIN, reg, **kwargs)
        return loss, reg

    (loss, reg), (grads_reg, grads_logits) = jax.value_and_grad(
        objective, argnums=(0, 1), has_aux=True
    )(params, logits)

    def backward(acc: PyTree, xs: tuple) -> tuple[PyTree, None]:
        i, feats, ms, cotangent = xs
        inputs = _model_inputs(feats, cfg.inputs_key)
        _, vjp = jax.vjp(lambda p: logits_fn(p, ms, inputs, key_of(i))[0], local_params)
        return jax.tree.map(jnp.add, acc, vjp(cotangent)[0]), None

    zeros = jax.tree.map(jnp.zeros_like, local_params)
    xs = (index, micro_features, micro_states, _split_micro(grads_logits, k))
    grads, _ = jax.lax.scan(backward, zeros, xs)
    if axis is not None:
        grads = jax.lax.psum(grads, axis)
    grads = jax.tree.map(jnp.add, grads, grads_reg)
    return loss, grads, logits, reg, final_state


def _eval_core(
    cfg: _Config,
    logits_fn: _LogitsFn,
    params: PyTree,
    model_state: PyTree,
    features: Any,
    labels: Any,
) -> tuple[jax.Array, Any, Any]:
    """(loss, logits, regularization losses) on the global batch."""
    head = cfg.head
    logits, _ = logits_fn(params, model_state, _model_inputs(features, cfg.inputs_key), None)
    reg = _regularization(cfg.regularization_fn, params)
    if cfg.axis_name is None or _head_loss_takes_axis_name(head):
        kwargs = {} if cfg.axis_name is None else {"axis_name": cfg.axis_name}
        loss = head.loss(labels, logits, _head_features(features), ModeKeys.EVAL, reg, **kwargs)
    else:
        terms = loss_terms(head, labels, logits, _head_features(features))
        loss = divide_loss_terms(*jax.lax.psum(terms, cfg.axis_name)) + _sum_or_zero(reg)
    return loss, logits, reg


# --------------------------------------------------------------------------- models
def _linen_logits_fn(apply_fn: Callable[..., Any], apply_kwargs: Mapping[str, Any]) -> _LogitsFn:
    def logits_fn(params: PyTree, model_state: PyTree, inputs: Any, rng: Any) -> tuple[Any, PyTree]:
        kwargs = dict(apply_kwargs)
        if rng is not None:
            kwargs["rngs"] = {"dropout": rng}
        return apply_fn({"params": params}, inputs, **kwargs), model_state

    return logits_fn


def _resolve_apply(model: Any, state: Any) -> Callable[..., Any]:
    if model is None:
        apply_fn = getattr(state, "apply_fn", None)
        if apply_fn is None:
            raise ValueError("model=None needs a state with an `apply_fn` (a flax TrainState).")
        return apply_fn
    return model.apply if isinstance(model, nn.Module) else model


def _apply_gradients(state: Any, grads: PyTree, tx: optax.GradientTransformation | None) -> Any:
    if tx is None:
        return state.apply_gradients(grads=grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state)


# --------------------------------------------------------------------------- wrapping
def _check_strategy(strategy: str, mesh: Mesh | None) -> None:
    if strategy not in _STRATEGIES:
        raise ValueError(f"strategy must be one of {_STRATEGIES}, got {strategy!r}.")
    if strategy == "shard_map" and mesh is None:
        raise ValueError("strategy='shard_map' needs a `mesh`.")


def _distribute(
    core: Callable[..., tuple],
    finish: Callable[..., Any],
    *,
    n_replicated: int,
    n_batch: int,
    n_trailing: int,
    sharded_outputs: tuple[bool, ...],
    mesh: Mesh | None,
    data_axis: str,
    strategy: str,
    jit: bool,
    donate_argnums: int | Sequence[int],
    static_argnums: tuple[int, ...] = (),
) -> Callable[..., Any]:
    """``finish(*args, core(*args, axis_name=...))``, placed for the strategy.

    ``args`` are the replicated arguments (state), the batch arguments (split
    along ``data_axis``) and the trailing ones (rng, metric state;
    replicated). Under ``shard_map`` only ``core`` runs per device; its
    outputs flagged in ``sharded_outputs`` (the logits) come out as global
    arrays split along ``data_axis``, the others must be replicated. ``finish``
    (the metric update) always sees global arrays.
    """
    n_static = len(static_argnums)
    per_device = mesh is not None and strategy == "shard_map"
    in_specs = (P(),) * (n_replicated - n_static) + (P(data_axis),) * n_batch + (P(),) * n_trailing
    out_specs = tuple(P(data_axis) if sharded else P() for sharded in sharded_outputs)

    def fn(*args: Any) -> Any:
        if per_device:
            static, dynamic = args[:n_static], args[n_static:]
            outputs = jax.shard_map(
                functools.partial(core, *static, axis_name=data_axis),
                mesh=mesh,
                in_specs=in_specs,
                out_specs=out_specs,
            )(*dynamic)
        else:
            outputs = core(*args, axis_name=None)
        return finish(*args, outputs)

    if not jit:
        return fn
    kwargs: dict[str, Any] = {"donate_argnums": donate_argnums, "static_argnums": static_argnums}
    if mesh is not None and strategy == "jit":
        repl, data = NamedSharding(mesh, P()), data_sharding(mesh, data_axis)
        shardings = (repl,) * (n_replicated - n_static) + (data,) * n_batch + (repl,) * n_trailing
        kwargs["in_shardings"] = shardings
        kwargs["out_shardings"] = repl
    return jax.jit(fn, **kwargs)


def _finish_eval(head: Any, *args: Any) -> StepOutput:
    """Metric update of an eval step: ``args`` ends with metric_state and (loss, logits, reg)."""
    features, labels, metric_state, (loss, logits, reg) = args[-4:]
    state = _metrics(head, features, logits, labels, reg)
    if metric_state is not None:
        state = jh_metrics.merge(metric_state, state)
    return StepOutput(loss, state)


def _host_side(head: Any, mesh: Mesh | None, data_axis: str, features: Any, labels: Any) -> tuple:
    labels = _encode_host_labels(head, labels)
    if mesh is not None:
        features, labels = global_batch((features, labels), mesh, data_axis)
    return features, labels


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
