"""Exact accumulation in float32: a double-float ``(hi, lo)`` pair.

float32 stops counting at 2^24 (16,777,216): ``2**24 + 1`` rounds back to
``2**24``, so a plain float32 running count of examples silently saturates in
a pod-scale evaluation. :class:`ExactSum` keeps each accumulator as an
unevaluated sum ``hi + lo`` of two float32 numbers (a "double-float", 48
significant bits), renormalised with Knuth's branch-free TwoSum on every add
and merge. Integer-valued sums (counts, integer weights) stay exact up to
2^48 ≈ 2.8·10^14; other sums carry a relative error of about 2^-47. It needs
neither ``jax_enable_x64`` nor a wider type: only float32 additions, which
XLA does not reassociate (no fast-math), so the compensation survives ``jit``.

References: D. E. Knuth, TAOCP vol. 2, §4.2.2 (TwoSum); T. J. Dekker (1971),
"A floating-point technique for extending the available precision".
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.typing import ArrayLike

__all__ = ["ExactSum", "fast_two_sum", "two_sum"]


def _error_or_zero(s: jax.Array, e: jax.Array) -> jax.Array:
    """The rounding error ``e``, or 0 when ``s`` is not finite.

    With an infinite sum the error terms are ``inf - inf = nan``; zeroing them
    keeps ``inf`` in, ``inf`` out (TF's ``Mean`` of an infinite loss is ``inf``,
    not NaN). A NaN sum stays NaN through ``s``.
    """
    return jnp.where(jnp.isfinite(s), e, jnp.zeros_like(e))


def two_sum(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Knuth's TwoSum: ``s = fl(a + b)`` and the exact rounding error ``e``.

    ``s + e == a + b`` exactly (barring overflow), for any order of magnitude
    of ``a`` and ``b``. Six flops, no branches.

    Args:
      a: float array.
      b: float array of the same dtype, broadcastable with ``a``.

    Returns:
      ``(s, e)`` with ``s = fl(a + b)`` and ``e = (a + b) - s`` exactly
      (``e = 0`` when ``s`` is infinite or NaN).

    Examples:
      >>> s, e = two_sum(jnp.float32(2.0**24), jnp.float32(1.0))
      >>> float(s), float(e)
      (16777216.0, 1.0)
    """
    s = a + b
    bb = s - a
    e = (a - (s - bb)) + (b - bb)
    return s, _error_or_zero(s, e)


def fast_two_sum(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Dekker's FastTwoSum: like :func:`two_sum`, valid when ``|a| >= |b|`` (or a == 0).

    Args:
      a: float array, the larger in magnitude.
      b: float array of the same dtype.

    Returns:
      ``(s, e)`` with ``s = fl(a + b)`` and ``s + e == a + b`` exactly.

    Examples:
      >>> s, e = fast_two_sum(jnp.float32(2.0**24), jnp.float32(1.0))
      >>> float(s), float(e)
      (16777216.0, 1.0)
    """
    s = a + b
    e = b - (s - a)
    return s, _error_or_zero(s, e)


def _split_exact(x: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Host-side: float64 / int values -> a normalised float32 (hi, lo) pair."""
    x64 = np.asarray(x, dtype=np.float64)
    hi = x64.astype(np.float32)
    lo = (x64 - hi.astype(np.float64)).astype(np.float32)
    return hi, lo


class ExactSum(struct.PyTreeNode):
    """A float32 double-float accumulator: the value is ``hi + lo`` (unevaluated).

    Both fields are float32 arrays of the same shape (any shape: a scalar
    total, or a vector of bucket counts). ``|lo| <= ulp(hi) / 2`` after every
    operation, so ``hi`` alone is the value rounded to float32.

    Attributes:
      hi: float32 array, the leading part.
      lo: float32 array of the same shape, the trailing part.

    Examples:
      >>> acc = ExactSum.zeros(())
      >>> for _ in range(3):
      ...     acc = acc.add(jnp.float32(2.0**24))
      >>> acc = acc.add(jnp.float32(1.0))
      >>> int(acc.to_numpy())  # 3 * 2**24 + 1, not representable in float32
      50331649
      >>> float(acc.value())  # rounded to float32
      50331648.0
    """

    hi: jax.Array
    lo: jax.Array

    @classmethod
    def zeros(cls, shape: Sequence[int] | int = ()) -> ExactSum:
        """A zero accumulator of the given shape (float32)."""
        z = jnp.zeros(shape, jnp.float32)
        return cls(hi=z, lo=z)

    @classmethod
    def from_value(cls, x: ArrayLike) -> ExactSum:
        """An accumulator holding ``x``.

        A host value (Python number, NumPy array — e.g. a static example
        count) is split exactly into ``(hi, lo)`` (exact for integers below
        2^48); a traced or device array is cast to float32.
        """
        if isinstance(x, (int, float, np.ndarray, np.generic)):
            hi, lo = _split_exact(x)
            return cls(hi=jnp.asarray(hi), lo=jnp.asarray(lo))
        x32 = jnp.asarray(x).astype(jnp.float32)
        return cls(hi=x32, lo=jnp.zeros_like(x32))

    def add(self, x: ArrayLike) -> ExactSum:
        """Adds a float32 array ``x`` (broadcast to this shape); exact, renormalised.

        Args:
          x: array broadcastable to ``hi.shape``; cast to float32.

        Returns:
          A new :class:`ExactSum` with value ``self + x`` (error ≲ 2^-47 relative,
          exact for integer values below 2^48).
        """
        x32 = jnp.asarray(x).astype(jnp.float32)
        s, e = two_sum(self.hi, x32)
        hi, lo = fast_two_sum(s, e + self.lo)
        return ExactSum(hi=hi, lo=lo)

    def merge(self, other: ExactSum) -> ExactSum:
        """Adds two double-float accumulators (Dekker/QD "accurate" addition).

        Associative and commutative up to the 2^-47 rounding of non-integer
        sums; exactly so for integer-valued sums below 2^48.
        """
        s, e = two_sum(self.hi, other.hi)
        t, f = two_sum(self.lo, other.lo)
        s, e = fast_two_sum(s, e + t)
        hi, lo = fast_two_sum(s, e + f)
        return ExactSum(hi=hi, lo=lo)

    def negate(self) -> ExactSum:
        """``-self`` (exact)."""
        return ExactSum(hi=-self.hi, lo=-self.lo)

    def value(self) -> jax.Array:
        """The value rounded to float32 (same shape as ``hi``)."""
        return self.hi + self.lo

    def to_numpy(self) -> np.ndarray:
        """Host-side float64 value ``hi + lo`` (exact: 48 bits fit in 53)."""
        return np.asarray(self.hi, np.float64) + np.asarray(self.lo, np.float64)

    def reshape(self, shape: Sequence[int]) -> ExactSum:
        """Both parts reshaped to ``shape`` (exact)."""
        return ExactSum(hi=self.hi.reshape(tuple(shape)), lo=self.lo.reshape(tuple(shape)))

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the accumulator."""
        return tuple(self.hi.shape)


def reverse_cumsum(x: ExactSum, axis: int = -1) -> ExactSum:
    """Exact reverse cumulative sum along ``axis``: ``out[i] = Σ_{j >= i} x[j]``.

    A sequential ``lax.scan`` with double-float addition: O(T) work, compiles
    in constant time (a parallel ``associative_scan`` compiles ~30× slower
    and is no faster on CPU at the sizes used here).
    """
    axis = axis % x.hi.ndim
    hi, lo = jnp.moveaxis(x.hi, axis, 0), jnp.moveaxis(x.lo, axis, 0)

    def body(
        carry: tuple[jax.Array, jax.Array], item: tuple[jax.Array, jax.Array]
    ) -> tuple[tuple[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
        r = ExactSum(*carry).merge(ExactSum(*item))
        return (r.hi, r.lo), (r.hi, r.lo)

    zero = jnp.zeros(hi.shape[1:], jnp.float32)
    _, (out_hi, out_lo) = jax.lax.scan(body, (zero, zero), (hi, lo), reverse=True)
    return ExactSum(hi=jnp.moveaxis(out_hi, 0, axis), lo=jnp.moveaxis(out_lo, 0, axis))


def fold_axis0(x: ExactSum) -> ExactSum:
    """Exactly sums an :class:`ExactSum` over its leading axis (pairwise tree).

    log2(n) vectorised merges; the order is fixed by the data layout, so every
    device folding the same gathered stack gets bit-identical results.
    """
    hi, lo = x.hi, x.lo
    while hi.shape[0] > 1:
        n = hi.shape[0]
        if n % 2:
            pad = [(0, 1)] + [(0, 0)] * (hi.ndim - 1)
            hi = jnp.pad(hi, pad)
            lo = jnp.pad(lo, pad)
        r = ExactSum(hi[0::2], lo[0::2]).merge(ExactSum(hi[1::2], lo[1::2]))
        hi, lo = r.hi, r.lo
    return ExactSum(hi=hi[0], lo=lo[0])
