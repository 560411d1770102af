"""Shape helpers shared by the heads and the metrics: ``[…]`` vs ``[…, 1]``, flat views.

Every place that reconciles an array of shape ``[D0, …, DN]`` with one of
shape ``[D0, …, DN, 1]`` goes through :func:`match_trailing_one` (or
:func:`expand_trailing` for broadcasting masks), and every kernel that wants
flat buffers goes through :func:`flat_views`.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

__all__ = ["expand_trailing", "flat_views", "match_trailing_one", "shape_str"]


def shape_str(shape: Sequence[int]) -> str:
    """``[2, 3]``: a shape as TF prints it in error messages."""
    return "[" + ", ".join(str(d) for d in shape) + "]"


def match_trailing_one(x: jax.Array, ndim: int) -> jax.Array:
    """Adds or drops one trailing unit axis so that ``x`` gets rank ``ndim``, when that works.

    ``[B]`` against rank 2 becomes ``[B, 1]``; ``[B, 1]`` against rank 1
    becomes ``[B]``; any other ``x`` is returned unchanged (the caller checks
    the final shape and names both in its error).

    Examples:
      >>> match_trailing_one(jnp.zeros((3,)), 2).shape, match_trailing_one(jnp.zeros((3, 1)), 1).shape
      ((3, 1), (3,))
    """
    if x.ndim == ndim - 1:
        return jnp.expand_dims(x, -1)
    if x.ndim == ndim + 1 and x.shape[-1] == 1:
        return jnp.squeeze(x, -1)
    return x


def expand_trailing(x: jax.Array, ndim: int) -> jax.Array:
    """``x`` with trailing unit axes up to rank ``ndim`` (a ``[B, T]`` mask against ``[B, T, k]``)."""
    return x.reshape(x.shape + (1,) * (ndim - x.ndim))


def flat_views(*arrays: jax.Array | None) -> tuple[jax.Array | None, ...]:
    """Reshapes arrays to 1-D behind one ``optimization_barrier`` (``None`` passes through).

    Performance only, no semantic effect. XLA:CPU (jaxlib 0.10) runs fused
    elementwise + reduce / scatter loops over arrays with a trailing unit
    dimension (``[N, 1]``, the heads' layout) 10-30x slower than over ``[N]``,
    and its simplifier folds a plain reshape back into the ``[N, 1]`` operand.
    The barrier pins the 1-D view, so the kernels run on flat buffers. Inputs
    that are already 1-D pass through without a barrier.
    """
    present = [a for a in arrays if a is not None]
    if all(a.ndim <= 1 for a in present):  # already flat: let XLA fuse freely
        return tuple(None if a is None else a.reshape(-1) for a in arrays)
    flat = iter(jax.lax.optimization_barrier(tuple(a.reshape(-1) for a in present)))
    return tuple(None if a is None else next(flat) for a in arrays)
