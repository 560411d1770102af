"""The additive metric-state base class, and merging / all-reducing pytrees of states."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, TypeVar, dataclass_transform

import jax
import jax.numpy as jnp
from flax import struct

from jaxheads._tree_diff import describe_mismatch
from jaxheads.metrics._exact_sum import ExactSum, fold_axis0

__all__ = ["MetricState", "all_reduce", "merge"]

S = TypeVar("S", bound="MetricState")


def _is_exact(x: Any) -> bool:
    return isinstance(x, ExactSum)


def _merge_leaf(a: Any, b: Any) -> Any:
    if isinstance(a, ExactSum):
        return a.merge(b)
    return a + b


def _register_typed_node(cls: type) -> None:
    """Registers a dataclass as a pytree node whose tree structure includes its type.

    ``jax.tree_util.register_dataclass`` (what ``flax.struct`` uses) gives tree
    structures that compare equal across *different* classes with the same
    fields and static values (jaxlib 0.10: ``Precision`` vs ``Recall`` at the
    same thresholds, ``Mean`` vs ``Accuracy``), while their hashes differ. The
    C++ ``jax.jit`` cache then occasionally matches a call on one class to the
    executable traced for its twin, and rebuilds the output as the twin's type:
    ``Recall.update(...).compute()`` returned the precision. A custom node
    compares its registered type, so a twin is a cache miss.
    """
    fields = dataclasses.fields(cls)
    data = tuple(f.name for f in fields if f.metadata.get("pytree_node", True))
    meta = tuple(f.name for f in fields if not f.metadata.get("pytree_node", True))

    def flatten_with_keys(x: Any) -> tuple[list[tuple[Any, Any]], tuple[Any, ...]]:
        children = [(jax.tree_util.GetAttrKey(n), x.__dict__[n]) for n in data]
        return children, tuple(x.__dict__[n] for n in meta)

    def flatten(x: Any) -> tuple[list[Any], tuple[Any, ...]]:
        return [x.__dict__[n] for n in data], tuple(x.__dict__[n] for n in meta)

    def unflatten(aux: tuple[Any, ...], children: Any) -> Any:
        return cls(**dict(zip(data, children, strict=True)), **dict(zip(meta, aux, strict=True)))

    jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten, flatten)


@dataclass_transform(field_specifiers=(struct.field, dataclasses.field))
class MetricState:
    """Base of every metric state: a pytree of additive accumulators.

    Array fields are :class:`ExactSum` accumulators (the pytree leaves); the
    configuration is static (``pytree_node=False``) and part of the tree
    structure, so states of different configurations never merge silently.
    Every subclass provides ``empty(**config)``, a pure ``update(...)`` and
    ``compute()``; ``merge`` (field-wise exact addition) is shared.

    Every subclass is made a frozen dataclass and registered as a pytree node
    of its own type (fields marked ``struct.field(pytree_node=False)`` are
    static), so two state classes never share a tree structure.
    """

    __dataclass_fields__: ClassVar[dict[str, Any]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        dataclasses.dataclass(frozen=True)(cls)
        _register_typed_node(cls)

    def replace(self: S, **changes: Any) -> S:
        """A copy with the given fields replaced."""
        return dataclasses.replace(self, **changes)

    def merge(self: S, other: S) -> S:
        """Adds two states of the same type and configuration (associative, commutative).

        Raises:
          ValueError: when the types or static configurations differ.
        """
        _check_same_structure(self, other)
        return jax.tree_util.tree_map(_merge_leaf, self, other, is_leaf=_is_exact)


def merge(tree_a: Any, tree_b: Any) -> Any:
    """Merges two pytrees (e.g. dicts) of metric states of the same structure.

    Args:
      tree_a: a metric state, or any pytree of them (a head's metric dict).
      tree_b: a pytree with the same structure and configurations.

    Returns:
      The field-wise exact sum (same structure).

    Examples:
      >>> from jaxheads.metrics import Mean
      >>> a = {"m": Mean.empty().update(jnp.array([1.0, 2.0]))}
      >>> b = {"m": Mean.empty().update(jnp.array([6.0]))}
      >>> float(merge(a, b)["m"].compute())
      3.0

    Raises:
      ValueError: naming the first field whose type or static configuration
        (thresholds, curve size, compat …) differs between the two trees.
    """
    _check_same_structure(tree_a, tree_b)
    return jax.tree_util.tree_map(_merge_leaf, tree_a, tree_b, is_leaf=_is_exact)


def _check_same_structure(tree_a: Any, tree_b: Any) -> None:
    """``ValueError`` saying where two trees of states differ (type, keys, static config)."""
    ta: Any = jax.tree_util.tree_structure(tree_a)
    tb: Any = jax.tree_util.tree_structure(tree_b)
    if ta != tb:
        where = describe_mismatch(tree_a, tree_b) or f"{ta} vs {tb}"
        raise ValueError(
            f"Cannot merge metric states of different types or static configurations: {where}."
        )


def _all_gather(x: jax.Array, axis_name: Any) -> jax.Array:
    """``all_gather`` whose result is typed device-invariant when JAX supports it.

    Under ``shard_map`` (with its replication checks) and ``pmap`` the result
    must be known to be replicated for ``out_specs=P()``; ``vmap`` with an
    axis name (and older JAX) only has the plain, "varying" gather.
    """
    try:
        return jax.lax.all_gather(x, axis_name, to="invarying")  # type: ignore[call-arg,unused-ignore]
    except (TypeError, ValueError, NotImplementedError):
        return jax.lax.all_gather(x, axis_name)


def _all_reduce_exact(x: ExactSum, axis_name: Any) -> ExactSum:
    stacked = jnp.stack([x.hi, x.lo])
    gathered = _all_gather(stacked, axis_name)  # [n, 2, ...]
    return fold_axis0(ExactSum(hi=gathered[:, 0], lo=gathered[:, 1]))


def all_reduce(tree: Any, axis_name: Any) -> Any:
    """Sums a pytree of metric states across a named mapped axis, exactly.

    Use inside ``shard_map`` / ``pmap`` (any collective context with
    ``axis_name``). Each :class:`ExactSum` accumulator is ``all_gather``-ed as
    its ``(hi, lo)`` pair and folded with double-float additions in a fixed
    pairwise order (not a lossy ``psum`` of ``hi``), so counts stay exact past
    2^24 and every device gets bit-identical results. Plain array leaves, if
    any, are ``psum``-ed.

    Args:
      tree: a metric state or pytree of states (per-device partial states).
      axis_name: the mapped axis name (or tuple of names).

    Returns:
      The global state, replicated over ``axis_name``.

    Examples:
      >>> from jax.sharding import PartitionSpec as P
      >>> from jaxheads.metrics import Mean
      >>> mesh = jax.make_mesh((1,), ("batch",), (jax.sharding.AxisType.Auto,),
      ...                      devices=jax.devices()[:1])
      >>> def step(x):
      ...     return all_reduce(Mean.empty().update(x), "batch")
      >>> f = jax.jit(jax.shard_map(step, mesh=mesh, in_specs=P("batch"), out_specs=P()))
      >>> float(f(jnp.arange(4.0)).compute())
      1.5
    """

    def reduce_leaf(x: Any) -> Any:
        if isinstance(x, ExactSum):
            return _all_reduce_exact(x, axis_name)
        return jax.lax.psum(x, axis_name)

    return jax.tree_util.tree_map(reduce_leaf, tree, is_leaf=_is_exact)
