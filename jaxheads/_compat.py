"""``compat="v1"`` / ``"v2"``: which TF generation's metric rules a head reproduces.

* ``"v2"`` (default): TF 2.x / Keras — interpolated AUCs, ``p > t`` at
  thresholds, no epsilon in precision / recall.
* ``"v1"``: TF1 / ``tf.contrib`` — trapezoidal AUCs (ε = 1e-6), ``p >= t`` in
  threshold accuracy, ε = 1e-7 in threshold precision / recall.
"""

from __future__ import annotations

from typing import Any

__all__ = ["COMPAT", "check_compat", "summation_method", "threshold_epsilon"]

COMPAT = ("v1", "v2")
# TF1's epsilon in precision/recall at thresholds (`tf.compat.v1.metrics.precision_at_thresholds`).
V1_THRESHOLD_EPSILON = 1e-7


def check_compat(compat: Any) -> str:
    """``compat`` if it is ``"v1"`` or ``"v2"``, else ``ValueError``."""
    if compat not in COMPAT:
        raise ValueError(f"compat must be one of {COMPAT}, got {compat!r}.")
    return str(compat)


def summation_method(compat: str) -> str:
    """The AUC summation of ``compat``: ``"trapezoidal"`` (v1) or ``"interpolation"`` (v2)."""
    return "trapezoidal" if compat == "v1" else "interpolation"


def threshold_epsilon(compat: str) -> float:
    """Precision / recall denominator epsilon at thresholds: 1e-7 (v1) or 0 (v2)."""
    return V1_THRESHOLD_EPSILON if compat == "v1" else 0.0
