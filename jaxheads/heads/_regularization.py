"""Regularization losses: ``add_n`` for the loss, and whether a metric state tracks them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxheads._shapes import shape_str

__all__ = ["add_n", "wants_metric"]


def add_n(regularization_losses: Sequence[ArrayLike] | None) -> jax.Array | None:
    """``add_n(regularization_losses)`` in float32, or ``None`` when there are none.

    Raises:
      TypeError: when ``regularization_losses`` is not a list or tuple.
      ValueError: when an entry is not a scalar.
    """
    if regularization_losses is None:
        return None
    if not isinstance(regularization_losses, (list, tuple)):
        raise TypeError(
            "regularization_losses must be a list or tuple of scalars, got "
            f"{type(regularization_losses)}."
        )
    if not regularization_losses:
        return None
    values = [jnp.asarray(r, jnp.float32) for r in regularization_losses]
    for i, v in enumerate(values):
        if v.shape != ():
            raise ValueError(
                f"regularization_losses[{i}] must be a scalar, got shape {shape_str(v.shape)}."
            )
    return jnp.sum(jnp.stack(values))


def wants_metric(regularization_losses: Any) -> bool:
    """Whether ``init_metrics(regularization_losses)`` should track ``regularization_loss``."""
    return regularization_losses is not None and regularization_losses is not False
