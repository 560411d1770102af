"""The loss and gradient strategies: one pass, micro-batches, per-device shards.

Every strategy works from the head's additive :class:`~jaxheads.LossTerms`:
totals and denominators are summed over micro-batches and devices before
dividing, so the loss and its gradient are those of the whole global batch
(never a mean of per-shard means). Padding rows (a ``mask``) drop out of the
terms row by row, so they are exact for every reduction.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxheads._loss_terms import LossTerms
from jaxheads.heads.base import Head
from jaxheads.train._host import Batch, head_features

PyTree = Any
# (params, model_state, inputs, rng) -> (logits, new model_state)
LogitsFn = Callable[[PyTree, PyTree, Any, Any], tuple[Any, PyTree]]
RegularizationFn = Callable[[PyTree], ArrayLike | Sequence[ArrayLike]]


@dataclasses.dataclass(frozen=True)
class Config:
    """What the strategies need besides the model: the head and the step options."""

    head: Head[Any]
    inputs_key: str | None
    regularization_fn: RegularizationFn | None
    micro_batches: int = 1

    def __post_init__(self) -> None:
        k = self.micro_batches
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"micro_batches must be a positive int, got {k!r}.")
        object.__setattr__(self, "micro_batches", int(k))

    def inputs(self, features: Any) -> Any:
        """The model input: ``features[inputs_key]``, or ``features`` itself."""
        return features if self.inputs_key is None else features[self.inputs_key]


class Gradients(NamedTuple):
    """What a gradient strategy returns (global-batch values, replicated)."""

    loss: jax.Array
    grads: PyTree
    logits: Any
    regularization: list[jax.Array] | None
    model_state: PyTree


def regularization(fn: RegularizationFn | None, params: PyTree) -> list[jax.Array] | None:
    """``fn(params)`` as a list of float32 scalars (``None`` without ``fn``)."""
    if fn is None:
        return None
    value = fn(params)
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    return [jnp.asarray(v, jnp.float32) for v in values]


def _add_n(values: list[jax.Array] | None) -> jax.Array:
    return jnp.sum(jnp.stack(values)) if values else jnp.zeros((), jnp.float32)


def batch_terms(head: Head[Any], batch: Batch, logits: Any) -> LossTerms:
    """The head's loss terms of the real rows of ``batch`` (padding masked out)."""
    features = head_features(batch.features)
    if batch.mask is None:
        return head.loss_terms(batch.labels, logits, features)

    def one_row(labels: Any, row_logits: Any, row_features: Any) -> LossTerms:
        add_axis = (labels, row_logits, row_features)
        labels, row_logits, row_features = jax.tree.map(lambda x: x[None], add_axis)
        return head.loss_terms(labels, row_logits, row_features)

    rows = jax.vmap(one_row)(batch.labels, logits, features)
    keep = batch.mask[:, None]
    return jax.tree.map(lambda x: jnp.sum(jnp.where(keep, x, 0.0), axis=0), rows)


def _with_denominators(terms: LossTerms, denominators: jax.Array) -> jax.Array:
    """``terms.value()`` with other (global) denominators: linear in the totals."""
    return dataclasses.replace(terms, denominators=denominators).value()


def _split(tree: Any, k: int) -> Any:
    def split(x: Any) -> Any:
        x = jnp.asarray(x)
        if x.ndim == 0 or x.shape[0] % k:
            raise ValueError(
                f"micro_batches={k} must divide the (per-device) batch size; got a leaf of "
                f"shape {x.shape}."
            )
        return x.reshape((k, x.shape[0] // k) + x.shape[1:])

    return jax.tree.map(split, tree)


def _merge(tree: Any) -> Any:
    return jax.tree.map(lambda x: x.reshape((x.shape[0] * x.shape[1],) + x.shape[2:]), tree)


def loss_and_grads(
    cfg: Config,
    logits_fn: LogitsFn,
    params: PyTree,
    model_state: PyTree,
    batch: Batch,
    rng: jax.Array | None,
    axis_name: str | None,
) -> Gradients:
    """The regularized loss of the global batch and its gradient.

    Without ``axis_name`` the arrays are global (one device, or sharded under
    ``jit``); with it this runs per device inside ``shard_map`` (unchecked
    replication): the local gradient of ``Σ w·l / global denominator`` is
    ``psum``-ed once.
    """
    if cfg.micro_batches == 1:
        out = _one_pass(cfg, logits_fn, params, model_state, batch, rng, axis_name)
    else:
        out = _micro_batches(cfg, logits_fn, params, model_state, batch, rng, axis_name)
    if cfg.regularization_fn is None:
        return out

    def reg_objective(p: PyTree) -> tuple[jax.Array, list[jax.Array] | None]:
        values = regularization(cfg.regularization_fn, p)
        return _add_n(values), values

    (reg_total, reg), reg_grads = jax.value_and_grad(reg_objective, has_aux=True)(params)
    grads = jax.tree.map(jnp.add, out.grads, reg_grads)
    return out._replace(loss=out.loss + reg_total, grads=grads, regularization=reg)


def _one_pass(
    cfg: Config,
    logits_fn: LogitsFn,
    params: PyTree,
    model_state: PyTree,
    batch: Batch,
    rng: Any,
    axis_name: str | None,
) -> Gradients:
    def objective(p: PyTree) -> tuple[jax.Array, tuple[LossTerms, Any, PyTree]]:
        logits, new_state = logits_fn(p, model_state, cfg.inputs(batch.features), rng)
        terms = batch_terms(cfg.head, batch, logits)
        if axis_name is None:
            return terms.value(), (terms, logits, new_state)
        denominators = jax.lax.psum(jax.lax.stop_gradient(terms.denominators), axis_name)
        return _with_denominators(terms, denominators), (terms, logits, new_state)

    (value, (terms, logits, new_state)), grads = jax.value_and_grad(objective, has_aux=True)(params)
    if axis_name is not None:
        grads = jax.lax.psum(grads, axis_name)
        value = terms.value(axis_name)
    return Gradients(value, grads, logits, None, new_state)


def _global_denominators(
    cfg: Config,
    logits_fn: LogitsFn,
    params: PyTree,
    model_state: PyTree,
    batch: Batch,
    rng: Any,
    axis_name: str | None,
) -> LossTerms:
    """Zero terms whose denominators are the global batch's.

    Denominators depend on labels, weights and shapes, never on logit values
    (true of every reduction), so the head evaluated on zero logits gives
    them before the first micro-batch's gradient needs them.
    """
    k = cfg.micro_batches
    micro = jax.tree.map(lambda x: x[: x.shape[0] // k], cfg.inputs(batch.features))
    shapes = jax.eval_shape(lambda: logits_fn(params, model_state, micro, rng)[0])
    zeros = jax.tree.map(lambda s: jnp.zeros((s.shape[0] * k,) + s.shape[1:], s.dtype), shapes)
    terms = batch_terms(cfg.head, batch, zeros)
    denominators = terms.denominators
    if axis_name is not None:
        denominators = jax.lax.psum(denominators, axis_name)
    return dataclasses.replace(
        terms, totals=jnp.zeros_like(terms.totals), denominators=denominators
    )


def _micro_batches(
    cfg: Config,
    logits_fn: LogitsFn,
    params: PyTree,
    model_state: PyTree,
    batch: Batch,
    rng: Any,
    axis_name: str | None,
) -> Gradients:
    """Gradient accumulation: a scan over micro-batches, divided once by the global terms."""
    k = cfg.micro_batches
    micro = _split(batch, k)
    zero = _global_denominators(cfg, logits_fn, params, model_state, batch, rng, axis_name)

    def body(carry: tuple, xs: tuple) -> tuple[tuple, Any]:
        grads_acc, terms_acc, state = carry
        i, part = xs
        key = None if rng is None else jax.random.fold_in(rng, i)

        def objective(p: PyTree) -> tuple[jax.Array, tuple[LossTerms, Any, PyTree]]:
            logits, new_state = logits_fn(p, state, cfg.inputs(part.features), key)
            terms = batch_terms(cfg.head, part, logits)
            return _with_denominators(terms, zero.denominators), (terms, logits, new_state)

        (_, (terms, logits, state)), grads = jax.value_and_grad(objective, has_aux=True)(params)
        grads_acc = jax.tree.map(jnp.add, grads_acc, grads)
        totals = terms_acc.totals + terms.totals
        return (grads_acc, dataclasses.replace(terms_acc, totals=totals), state), logits

    init = (jax.tree.map(jnp.zeros_like, params), zero, model_state)
    (grads, terms, new_state), logits = jax.lax.scan(body, init, (jnp.arange(k), micro))
    if axis_name is not None:
        grads = jax.lax.psum(grads, axis_name)
        terms = dataclasses.replace(terms, totals=jax.lax.psum(terms.totals, axis_name))
    return Gradients(terms.value(), grads, _merge(logits), None, new_state)


def eval_loss(
    cfg: Config, params: PyTree, logits: Any, batch: Batch, axis_name: str | None
) -> tuple[jax.Array, list[jax.Array] | None]:
    """The regularized loss of the global batch in evaluation, and the regularization."""
    reg = regularization(cfg.regularization_fn, params)
    return batch_terms(cfg.head, batch, logits).value(axis_name) + _add_n(reg), reg


def metric_state(head: Head[Any], batch: Batch, logits: Any, reg: Any) -> Any:
    """The head's metric state of the real rows of a global batch (outside ``shard_map``).

    Computed on global arrays, so it is exact for every head, including the
    metrics that are means over updates (``regularization_loss``).
    """
    logits = jax.lax.stop_gradient(logits)
    features, labels = batch.features, batch.labels
    if batch.mask is not None:
        rows = jnp.nonzero(batch.mask, size=batch.n_valid)[0]
        features, labels, logits = jax.tree.map(lambda x: x[rows], (features, labels, logits))
    fresh = head.init_metrics(reg)
    return head.update_metrics(fresh, head_features(features), logits, labels, reg)
