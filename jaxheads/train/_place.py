"""Placing a step: ``jax.jit`` over sharded arrays, or per device with ``shard_map``.

Every step has the same shape: ``fn(static, state, batch, extra)``, where
``static`` is hashable (an nnx graph definition, or ``None``), ``state`` is
replicated, ``batch`` (a :class:`~jaxheads.train._host.Batch`) is split along
the data axis and ``extra`` (an rng, a previous eval output) is replicated.
``core`` runs per device under ``shard_map`` and returns a :class:`CoreOutput`;
``finish`` (the metric update) always sees global arrays.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxheads.train._host import Batch
from jaxheads.train._mesh import data_sharding, replicated, resolve_mesh

STRATEGIES = ("jit", "shard_map")


class CoreOutput(NamedTuple):
    """What a step's per-device part returns."""

    state: Any  # the new state (replicated), or None for an eval step
    loss: Any  # the global batch's float32 loss (replicated); a spec in out_specs
    logits: Any  # split along the data axis: one global array outside shard_map
    regularization: Any  # list of scalars or None (replicated)


# core(static, state, batch, extra, *, axis_name) -> CoreOutput
Core = Callable[..., CoreOutput]
# finish(static, state, batch, extra, core_output) -> the step's result
Finish = Callable[[Any, Any, Batch, Any, CoreOutput], Any]


def check_strategy(strategy: str, mesh: Mesh | None, data_axis: str) -> Mesh | None:
    """Validates the placement options; returns the mesh with ``Auto`` axes."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}.")
    if strategy == "shard_map" and mesh is None:
        raise ValueError("strategy='shard_map' needs a `mesh`.")
    return None if mesh is None else resolve_mesh(mesh, data_axis)


def same_on_every_device(tree: Any, axis_name: str) -> Any:
    """Float leaves averaged over ``axis_name`` (per-device model state, e.g.
    batch statistics without ``axis_name``), so a replicated output is true."""

    def mean(x: Any) -> Any:
        if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jnp.floating):
            return jax.lax.pmean(x, axis_name)
        return x

    return jax.tree.map(mean, tree)


def distribute(
    core: Core,
    finish: Finish,
    *,
    mesh: Mesh | None,
    data_axis: str,
    strategy: str,
    jit: bool,
    donate: bool,
) -> Callable[[Any, Any, Batch, Any], Any]:
    """``finish(*args, core(*args, axis_name))``, placed for the strategy."""
    per_device = mesh is not None and strategy == "shard_map"

    def fn(static: Any, state: Any, batch: Batch, extra: Any) -> Any:
        if per_device:
            outputs = jax.shard_map(
                functools.partial(core, static, axis_name=data_axis),
                mesh=mesh,
                in_specs=(P(), P(data_axis), P()),
                out_specs=CoreOutput(state=P(), loss=P(), logits=P(data_axis), regularization=P()),
                # User models may scan or loop (nn.RNN, fori_loop) over replicated and
                # per-device values alike; the replication of the outputs is ours to keep.
                check_vma=False,
            )(state, batch, extra)
        else:
            outputs = core(static, state, batch, extra, axis_name=None)
        return finish(static, state, batch, extra, outputs)

    if not jit:
        return fn
    kwargs: dict[str, Any] = {"static_argnums": (0,), "donate_argnums": (1,) if donate else ()}
    if mesh is not None:
        repl: NamedSharding = replicated(mesh)
        kwargs["in_shardings"] = (repl, data_sharding(mesh, data_axis), repl)
        kwargs["out_shardings"] = repl
    return jax.jit(fn, **kwargs)
