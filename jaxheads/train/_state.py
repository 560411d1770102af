"""The states a step accepts, and the checks of its trailing arguments (host side)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import jax
import optax
from flax.training.train_state import TrainState

from jaxheads.train._outputs import EvalOutput, StepOutput

PyTree = Any


@runtime_checkable
class TrainStateLike(Protocol):
    """What :func:`~jaxheads.train.make_train_step` needs of a state.

    ``flax.training.train_state.TrainState`` (and its subclasses) fits; so
    does any ``flax.struct`` dataclass with these members. ``replace`` returns
    a copy with the given fields changed.
    """

    params: PyTree
    opt_state: PyTree
    step: Any

    def replace(self, **changes: Any) -> Any: ...


@runtime_checkable
class HasParams(Protocol):
    """An object carrying ``params`` (an eval step also takes the params themselves)."""

    params: PyTree


_CHECKED: set[tuple[type, bool]] = set()


def check_train_state(state: Any, tx: optax.GradientTransformation | None) -> None:
    """``TypeError`` naming what a train step's ``state`` lacks (once per state type)."""
    key = (type(state), tx is None)
    if key in _CHECKED:
        return
    if not isinstance(state, TrainStateLike):
        raise TypeError(
            "make_train_step: `state` must have `params`, `opt_state`, `step` and a "
            "`replace(**changes)` method (a flax TrainState or a flax.struct dataclass); got "
            f"{type(state).__name__}."
        )
    if tx is None and not isinstance(state, TrainState):
        raise TypeError(
            "make_train_step(tx=None) takes the optimizer from a flax TrainState's `tx`; got a "
            f"{type(state).__name__}: pass `tx=` to make_train_step."
        )
    _CHECKED.add(key)


def check_collections(state: Any, collections: Sequence[str]) -> None:
    """``TypeError`` unless each mutable collection is a field of the state dataclass."""
    if not collections:
        return
    fields = (
        {f.name for f in dataclasses.fields(state)} if dataclasses.is_dataclass(state) else set()
    )
    missing = [c for c in collections if c not in fields]
    if missing:
        raise TypeError(
            f"mutable={tuple(collections)!r}: the state ({type(state).__name__}) has no field "
            f"{missing[0]!r}; keep each mutable collection in a field of that name, e.g. "
            f"`class TrainState(flax.training.train_state.TrainState): {missing[0]}: Any`."
        )


def collections_of(state: Any, collections: Sequence[str]) -> dict[str, PyTree]:
    """The state's mutable collections (fields validated by :func:`check_collections`).

    The names are the user's ``mutable=`` argument, checked against the
    dataclass fields on the host: a read of declared fields, not a probe.
    """
    return {name: getattr(state, name) for name in collections}


def check_rng(rng: Any) -> None:
    """``TypeError`` unless a train step's 4th argument is a PRNG key (or ``None``)."""
    if rng is None:
        return
    if isinstance(rng, (EvalOutput, StepOutput)) or not isinstance(rng, jax.Array):
        raise TypeError(
            "a train step's 4th argument is `rng`, a PRNG key (jax.random.key) or None; got "
            f"{type(rng).__name__}. (Metric states go to the eval step: "
            "eval_step(state, features, labels, previous_eval_output).)"
        )
    raw_key = rng.dtype == jax.numpy.uint32 and rng.shape == (2,)
    if not jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key) and not raw_key:
        raise TypeError(
            f"a train step's `rng` must be a PRNG key (jax.random.key(seed)); got an array of "
            f"shape {rng.shape} and dtype {rng.dtype}."
        )


def check_previous(previous: Any) -> None:
    """``TypeError`` unless an eval step's 4th argument is an :class:`EvalOutput` (or ``None``)."""
    if previous is None or isinstance(previous, EvalOutput):
        return
    hint = (
        " (that is a PRNG key: eval steps take no rng; run the model deterministically)"
        if isinstance(previous, jax.Array)
        else ""
    )
    raise TypeError(
        "an eval step's 4th argument is the previous EvalOutput (what the last eval step "
        f"returned) or None; got {type(previous).__name__}{hint}."
    )


def apply_gradients(
    state: Any, grads: PyTree, tx: optax.GradientTransformation | None, **changes: Any
) -> Any:
    """One optimizer update of a :class:`TrainStateLike` (``tx=None``: the TrainState's own)."""
    transform = state.tx if tx is None else tx
    updates, opt_state = transform.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state, **changes)
