"""``LossTerms``: a head's unregularized loss as additive terms.

A head's training loss is ``Σ_i head_weight_i · total_i / denominator_i``
(one term per sub-head: a single head has one, a ``MultiHead`` one per head).
Totals and denominators add up over micro-batches and shards, so summing the
terms first and dividing once gives the loss of the whole (global) batch; a
mean of per-shard losses would be biased.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxheads.losses import times_or_zero
from jaxheads.reduction import safe_divide

__all__ = ["LossTerms"]


@dataclasses.dataclass(frozen=True)
class LossTerms:
    """Additive loss terms of ``k`` sub-heads (a pytree; ``k = 1`` for a single head).

    Attributes:
      totals: float32 ``[k]``, ``Σ w·l`` of each sub-head.
      denominators: float32 ``[k]``, what each total is divided by (the number
        of loss elements, ``Σ w`` or ``count(w ≠ 0)`` depending on the
        reduction; 1 for ``SUM``, whose denominator is never used).
      head_weights: static, one float per term (1.0 for a single head).
      is_sum: static, one bool per term: the term is reduced by ``SUM`` (its
        total is not divided, so summing its denominator across shards or
        micro-batches cannot change the loss).

    Examples:
      >>> a = LossTerms.single(jnp.float32(3.0), jnp.float32(2.0))
      >>> b = LossTerms.single(jnp.float32(5.0), jnp.float32(2.0))
      >>> float((a + b).value())  # (3 + 5) / (2 + 2), not a mean of means
      2.0
      >>> both = LossTerms.concatenate([a, b], head_weights=(1.0, 2.0))
      >>> float(both.value())  # 1 * 3 / 2 + 2 * 5 / 2
      6.5
    """

    totals: jax.Array
    denominators: jax.Array
    head_weights: tuple[float, ...] = (1.0,)
    is_sum: tuple[bool, ...] = (False,)

    def __post_init__(self) -> None:
        k = len(self.head_weights)
        if len(self.is_sum) != k:
            raise ValueError(
                f"LossTerms: is_sum has {len(self.is_sum)} entries, expected one per head "
                f"weight ({k})."
            )

    @classmethod
    def single(
        cls, total: ArrayLike, denominator: ArrayLike | None, head_weight: float = 1.0
    ) -> LossTerms:
        """One term: ``total / denominator`` (``denominator=None`` means ``SUM``: no division)."""
        is_sum = denominator is None
        den = jnp.ones((), jnp.float32) if denominator is None else denominator
        return cls(
            totals=jnp.reshape(jnp.asarray(total, jnp.float32), (1,)),
            denominators=jnp.reshape(jnp.asarray(den, jnp.float32), (1,)),
            head_weights=(float(head_weight),),
            is_sum=(is_sum,),
        )

    @classmethod
    def concatenate(
        cls, terms: Sequence[LossTerms], head_weights: Sequence[float] | None = None
    ) -> LossTerms:
        """The terms of several heads side by side; ``head_weights`` multiplies each part's weights."""
        if not terms:
            raise ValueError("LossTerms.concatenate needs at least one LossTerms, got none.")
        if head_weights is not None and len(head_weights) != len(terms):
            raise ValueError(
                f"LossTerms.concatenate: got {len(terms)} terms but {len(head_weights)} "
                "head_weights."
            )
        scales = [1.0] * len(terms) if head_weights is None else [float(w) for w in head_weights]
        return cls(
            totals=jnp.concatenate([t.totals for t in terms]),
            denominators=jnp.concatenate([t.denominators for t in terms]),
            head_weights=tuple(
                s * w for t, s in zip(terms, scales, strict=True) for w in t.head_weights
            ),
            is_sum=tuple(b for t in terms for b in t.is_sum),
        )

    def _check_compatible(self, other: Any) -> None:
        if not isinstance(other, LossTerms):
            raise TypeError(f"Cannot add LossTerms and {type(other).__name__}.")
        if (self.head_weights, self.is_sum) != (other.head_weights, other.is_sum):
            raise ValueError(
                "Cannot add LossTerms of different heads: head_weights "
                f"{self.head_weights} vs {other.head_weights}, is_sum {self.is_sum} vs "
                f"{other.is_sum}."
            )

    def __add__(self, other: LossTerms) -> LossTerms:
        """Term-wise sum (micro-batches, shards): totals and denominators add."""
        self._check_compatible(other)
        return dataclasses.replace(
            self,
            totals=self.totals + other.totals,
            denominators=self.denominators + other.denominators,
        )

    def psum(self, axis_name: Any) -> LossTerms:
        """Totals and denominators summed over a mapped axis (inside ``shard_map``/``pmap``)."""
        totals, denominators = jax.lax.psum((self.totals, self.denominators), axis_name)
        return dataclasses.replace(self, totals=totals, denominators=denominators)

    def per_head(self) -> jax.Array:
        """float32 ``[k]``: each term's loss ``total / denominator`` (0 where that is 0/0)."""
        divided = safe_divide(self.totals, self.denominators)
        return jnp.where(jnp.asarray(self.is_sum), self.totals, divided)

    def value(self, axis_name: Any = None) -> jax.Array:
        """The float32 scalar loss ``Σ_i head_weight_i · total_i / denominator_i``.

        Args:
          axis_name: inside ``shard_map`` / ``pmap``, the axis (or axes) the
            batch is split over: totals and denominators are summed over it
            before dividing, so the loss is that of the global batch.
        """
        terms = self if axis_name is None else self.psum(axis_name)
        weights = jnp.asarray(self.head_weights, jnp.float32)
        # A zero head weight removes its head even where that head's loss is inf (0·inf = 0).
        return jnp.sum(times_or_zero(weights, terms.per_head()))


jax.tree_util.register_dataclass(
    LossTerms,
    data_fields=["totals", "denominators"],
    meta_fields=["head_weights", "is_sum"],
)
