"""Label processing shared by the heads: host-side string encoding and range checks."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxheads import _checks
from jaxheads.vocabulary import LabelVocabulary, is_string_array


def _preview(bad: np.ndarray) -> str:
    flat = np.asarray(bad).reshape(-1)
    shown = ", ".join(str(v) for v in flat[:5])
    return f"[{shown}{', ...' if flat.size > 5 else ''}]"


def encode_string_labels(labels: Any, vocabulary: LabelVocabulary | None) -> np.ndarray | Any:
    """Host side: strings → int32 ids through ``vocabulary``; other labels pass through."""
    if not is_string_array(labels):
        return labels
    if vocabulary is None:
        raise TypeError(
            "labels are strings but the head has no label_vocabulary: pass numeric labels, or "
            "give the head a label_vocabulary to map the strings to class ids."
        )
    return vocabulary.encode(labels)


def check_numeric(labels: jax.Array, what: str = "labels") -> None:
    dtype = labels.dtype
    if not (
        jnp.issubdtype(dtype, jnp.floating)
        or jnp.issubdtype(dtype, jnp.integer)
        or dtype == jnp.bool_
    ):
        raise TypeError(f"{what} must be numeric (bool, int or float), got dtype {dtype}.")


def check_range(labels: jax.Array, n_classes: int, message: str | None = None) -> None:
    """TF's ``check_label_range``: ``0 <= labels <= n_classes - 1`` (values checked when known)."""
    upper = n_classes - 1
    _checks.check_values(
        labels,
        lambda x: x <= upper,
        lambda bad: (
            (message or f"Labels must be <= {n_classes} - 1")
            + f": got {_preview(bad)}, expected values in [0, {upper}]."
        ),
    )
    _checks.check_values(
        labels,
        lambda x: x >= 0,
        lambda bad: (
            (message or "Labels must be >= 0")
            + f": got {_preview(bad)}, expected values in [0, {upper}]."
        ),
    )
