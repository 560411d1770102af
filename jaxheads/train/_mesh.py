"""Meshes and shardings: where the state and the batch live."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P


def make_mesh(num_devices: int | None = None, data_axis: str = "data") -> Mesh:
    """A 1-D data-parallel mesh over ``num_devices`` devices (default: all, every host).

    Any other mesh works too (``jax.make_mesh`` with ``Explicit`` axes, more
    axes than the data axis): the steps partition over an ``Auto`` copy of it.

    Examples:
      >>> import jax, jax.numpy as jnp, numpy as np
      >>> dict(make_mesh(2).shape)
      {'data': 2}
    """
    devices = jax.devices()
    num_devices = len(devices) if num_devices is None else num_devices
    return jax.make_mesh(
        (num_devices,),
        (data_axis,),
        axis_types=(AxisType.Auto,),
        devices=devices[:num_devices],
    )


def resolve_mesh(mesh: Mesh, data_axis: str) -> Mesh:
    """``mesh`` with every axis ``Auto``, after checking that ``data_axis`` is one of its axes.

    ``jax.make_mesh``'s default ``Explicit`` axes make sharding part of the
    types, which the steps do not need (XLA places the collectives) and which
    the metric updates' scatter-adds on sharded batches do not support.
    """
    if not isinstance(mesh, Mesh):
        raise TypeError(f"mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}.")
    if data_axis not in mesh.axis_names:
        raise ValueError(
            f"data_axis={data_axis!r} is not an axis of the mesh (its axes: "
            f"{tuple(mesh.axis_names)}); pass the batch axis as data_axis=..."
        )
    if all(t == AxisType.Auto for t in mesh.axis_types):
        return mesh
    return Mesh(mesh.devices, mesh.axis_names, axis_types=(AxisType.Auto,) * mesh.devices.ndim)


def data_sharding(mesh: Mesh, data_axis: str = "data") -> NamedSharding:
    """The sharding of a batch: leading axis split over ``data_axis``, the rest replicated."""
    return NamedSharding(resolve_mesh(mesh, data_axis), P(data_axis))


def replicated(mesh: Mesh) -> NamedSharding:
    """Fully replicated on ``mesh`` (made ``Auto``)."""
    auto = Mesh(mesh.devices, mesh.axis_names, axis_types=(AxisType.Auto,) * mesh.devices.ndim)
    return NamedSharding(auto, P())


def num_data_shards(mesh: Mesh, data_axis: str) -> int:
    """How many shards the batch's leading axis is split into."""
    return int(dict(mesh.shape)[data_axis])


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places ``tree`` (a train state, params, …) fully replicated on ``mesh``.

    ``nnx`` modules and optimizers are updated in place (and returned). With
    several processes each must pass the same values (same seed or checkpoint).

    Examples:
      >>> import jax, jax.numpy as jnp, numpy as np
      >>> mesh = make_mesh(2)
      >>> replicate({"w": jnp.ones(3)}, mesh)["w"].sharding.is_fully_replicated
      True
    """
    sharding = replicated(mesh)

    def put(x: Any) -> Any:
        if jax.process_count() == 1:
            return jax.device_put(x, sharding)
        # Many hosts: every process holds the same value (same seed / checkpoint).
        return jax.make_array_from_process_local_data(sharding, np.asarray(x), np.shape(x))

    if isinstance(tree, nnx.Pytree):
        nnx.update(tree, jax.tree.map(put, nnx.state(tree)))
        return tree
    return jax.tree.map(put, tree)
