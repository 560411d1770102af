"""Shape and dtype helpers shared by the metric states (TF/Keras broadcasting rules)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

__all__ = ["as_f32", "broadcast_weights", "flatten", "match_label_rank"]


def as_f32(x: ArrayLike) -> jax.Array:
    """Casts any numeric / bool array (bf16, f16, int, bool …) to float32."""
    return jnp.asarray(x).astype(jnp.float32)


def match_label_rank(labels: jax.Array, predictions: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Keras' ``squeeze_or_expand_to_same_rank`` for labels vs predictions.

    When the ranks differ by one and the longer array's last dimension is 1
    (``[B]`` vs ``[B, 1]``), the shorter one gets a trailing axis. The shapes
    must then be equal.

    Raises:
      ValueError: naming both shapes, when they cannot be matched.
    """
    lr, pr = labels.ndim, predictions.ndim
    if lr == pr + 1 and labels.shape[-1] == 1:
        predictions = jnp.expand_dims(predictions, -1)
    elif pr == lr + 1 and predictions.shape[-1] == 1:
        labels = jnp.expand_dims(labels, -1)
    if labels.shape != predictions.shape:
        raise ValueError(
            "labels and predictions must have the same shape (up to a trailing "
            f"dimension of 1); got labels shape {tuple(labels.shape)} and predictions "
            f"shape {tuple(predictions.shape)}."
        )
    return labels, predictions


def broadcast_weights(
    sample_weight: ArrayLike | None, shape: tuple[int, ...], what: str = "values"
) -> jax.Array | None:
    """Broadcasts ``sample_weight`` to ``shape`` with TF/Keras' rules; float32.

    TF's ``squeeze_or_expand_dimensions`` + ``broadcast_weights``: a scalar
    broadcasts; weights of rank ``r - 1`` get a trailing axis (``[B]`` against
    ``[B, k]`` is one weight per example); weights of rank ``r + 1`` with a
    trailing 1 are squeezed; then every weight dimension must be 1 or equal to
    the target's (``[B, 1]`` against ``[B, k]``). No NumPy-style rank
    promotion: ``[k]`` against ``[B, k, m]`` is an error, as in TF.

    Args:
      sample_weight: ``None`` or a numeric array.
      shape: target shape (of the values / predictions).
      what: name of the target in error messages.

    Returns:
      ``None`` when ``sample_weight`` is ``None``, else a float32 array of ``shape``.

    Raises:
      ValueError: naming both shapes, when TF would reject the pair.
    """
    if sample_weight is None:
        return None
    w = as_f32(sample_weight)
    orig = tuple(w.shape)
    rank = len(shape)
    if w.ndim == 0:
        return jnp.broadcast_to(w, shape)
    if w.ndim == rank - 1:
        w = jnp.expand_dims(w, -1)
    elif w.ndim == rank + 1 and w.shape[-1] == 1:
        w = jnp.squeeze(w, -1)
    if w.ndim != rank or any(d not in (1, s) for d, s in zip(w.shape, shape, strict=True)):
        raise ValueError(
            f"sample_weight shape {orig} cannot be broadcast to {what} shape "
            f"{tuple(shape)} (TF/Keras rules: a scalar, the same shape, one rank less, "
            "or dimensions of 1)."
        )
    return jnp.broadcast_to(w, shape)


def flatten(*arrays: jax.Array | None) -> tuple[jax.Array | None, ...]:
    """Reshapes arrays to 1-D behind one ``optimization_barrier`` (``None`` passes through).

    Performance only, no semantic effect. XLA:CPU (jaxlib 0.10) runs fused
    elementwise + reduce / scatter loops over arrays with a trailing unit
    dimension (``[N, 1]``, the heads' layout) 10-30x slower than over ``[N]``,
    and its simplifier folds a plain reshape back into the ``[N, 1]`` operand.
    The barrier pins the 1-D view, so the metric kernels run on flat buffers.
    Inputs that are already 1-D pass through without a barrier.
    """
    present = [a for a in arrays if a is not None]
    if all(a.ndim <= 1 for a in present):  # already flat: let XLA fuse freely
        return tuple(None if a is None else a.reshape(-1) for a in arrays)
    flat = iter(jax.lax.optimization_barrier(tuple(a.reshape(-1) for a in present)))
    return tuple(None if a is None else next(flat) for a in arrays)
