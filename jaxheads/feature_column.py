"""The one feature column a head understands: a numeric weight column."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

__all__ = ["NumericColumn", "numeric_column"]


@dataclasses.dataclass(frozen=True)
class NumericColumn:
    """A numeric feature used as the weight column (TF's ``numeric_column``).

    Attributes:
      key: the feature key.
      normalizer_fn: optional function applied to the float32 feature, e.g.
        ``lambda x: x + 1.0``; must be jittable.
    """

    key: str
    normalizer_fn: Callable[[Any], Any] | None = None


def numeric_column(key: str, normalizer_fn: Callable[[Any], Any] | None = None) -> NumericColumn:
    """Builds a :class:`NumericColumn` (TF's ``tf.feature_column.numeric_column``).

    Examples:
      >>> numeric_column("w").key
      'w'
    """
    return NumericColumn(key, normalizer_fn)
