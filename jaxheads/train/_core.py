"""The loss / gradient / metric machinery shared by the linen and nnx steps."""

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
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from jax.typing import ArrayLike

from jaxheads import metrics as jh_metrics
from jaxheads.modes import ModeKeys
from jaxheads.reduction import Reduction, divide_loss_terms, safe_divide
from jaxheads.train._mesh import (
    data_sharding,
    global_batch,
)

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
      >>> import jax, jax.numpy as jnp, numpy as np
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
