"""Host-side label vocabularies: strings never enter ``jit``.

A head with a ``label_vocabulary`` encodes string labels to integer ids on
the host (NumPy) before they reach JAX, and decodes predicted ids back to
class names for serving.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

__all__ = ["LabelVocabulary", "is_string_array"]


def _to_str(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def is_string_array(labels: Any) -> bool:
    """True for str/bytes labels: NumPy ``U``/``S``/object arrays, or (nested) lists of them."""
    if isinstance(labels, (str, bytes)):
        return True
    if isinstance(labels, np.ndarray):
        if labels.dtype.kind in "US":
            return True
        return (
            labels.dtype.kind == "O"
            and labels.size > 0
            and isinstance(labels.reshape(-1)[0], (str, bytes))
        )
    if isinstance(labels, (list, tuple)):
        flat = labels
        while isinstance(flat, (list, tuple)) and len(flat) > 0:
            flat = flat[0]
        return isinstance(flat, (str, bytes))
    return False


@dataclasses.dataclass(frozen=True)
class LabelVocabulary:
    """An ordered tuple of class names; index ``i`` is class id ``i``.

    Examples:
      >>> vocab = LabelVocabulary(("aang", "iroh"))
      >>> vocab.encode([["iroh"], ["aang"]]).tolist()
      [[1], [0]]
      >>> vocab.decode(np.array([[1], [0]])).tolist()
      [['iroh'], ['aang']]
    """

    classes: tuple[str, ...]

    @classmethod
    def from_argument(
        cls, label_vocabulary: Any, message: str = "label_vocabulary should be a list or a tuple"
    ) -> LabelVocabulary | None:
        """Validates a head's ``label_vocabulary`` argument (``None``, a list or a tuple)."""
        if label_vocabulary is None:
            return None
        if not isinstance(label_vocabulary, (list, tuple)):
            raise ValueError(f"{message}. Given type: {type(label_vocabulary)}")
        classes = tuple(_to_str(c) for c in label_vocabulary)
        if len(set(classes)) != len(classes):
            raise ValueError(f"label_vocabulary has duplicate entries: {list(classes)}.")
        return cls(classes)

    def __len__(self) -> int:
        return len(self.classes)

    def encode(self, labels: Any) -> np.ndarray:
        """Maps string labels (any shape) to int32 ids; unknown strings raise ``ValueError``."""
        array = np.asarray(labels, dtype=object)
        index = {c: i for i, c in enumerate(self.classes)}
        flat = [_to_str(v) for v in array.reshape(-1)]
        unknown = sorted({v for v in flat if v not in index})
        if unknown:
            raise ValueError(
                f"Labels {unknown} are not in label_vocabulary {list(self.classes)}: every "
                "string label must be one of the vocabulary's entries."
            )
        return np.array([index[v] for v in flat], dtype=np.int32).reshape(array.shape)

    def decode(self, ids: Any) -> np.ndarray:
        """Maps integer ids (any shape) to a NumPy ``str`` array of class names."""
        ids = np.asarray(ids)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self.classes)):
            raise ValueError(
                f"class ids must be in [0, {len(self.classes)}), got values in "
                f"[{ids.min()}, {ids.max()}]."
            )
        names: np.ndarray = np.asarray(self.classes, dtype=str)[ids]
        return names


def default_class_names(n_classes: int) -> LabelVocabulary:
    """``"0"``, ``"1"``, … — the names TF gives classes when there is no vocabulary."""
    return LabelVocabulary(tuple(str(i) for i in range(n_classes)))
