"""Meshes, shardings and host-local batches for data-parallel steps."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P


# --------------------------------------------------------------------------- meshes
def make_mesh(num_devices: int | None = None, data_axis: str = "data") -> Mesh:
    """A 1-D data-parallel mesh over ``num_devices`` devices (default: all, every host).

    The axis is ``AxisType.Auto`` (XLA's partitioner places the collectives):
    ``jax.make_mesh``'s default in recent JAX, ``Explicit``, makes the
    scatter-adds of the metric updates fail on sharded batches.

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
      >>> import jax, jax.numpy as jnp, numpy as np
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
      >>> import jax, jax.numpy as jnp, numpy as np
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
