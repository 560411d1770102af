"""Pieces of ``MultiHead``: checking its heads, merging their serving signatures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax

from jaxheads.heads._single import LossHead
from jaxheads.heads.base import Head
from jaxheads.keys import SignatureKeys

__all__ = ["check_heads", "merge_export_outputs"]


def check_heads(heads: Any) -> tuple[LossHead[Any], ...]:
    """The heads as a tuple; ``TypeError``/``ValueError`` on anything TF's MultiHead refuses."""
    if not heads:
        raise ValueError(f"Must specify heads. Given: {heads}")
    if isinstance(heads, (Head, Mapping)) or not isinstance(heads, Sequence):
        raise TypeError(f"heads must be a list or tuple of heads, got {type(heads).__name__}.")
    for head in heads:
        if not isinstance(head, LossHead):
            raise TypeError(
                "Every element of heads must be a head (a single head or a "
                f"SequentialHeadWrapper), got {type(head).__name__}."
            )
        if head.name is None:
            raise ValueError(f"All given heads must have name specified. Given: {head}")
    names = [head.name for head in heads]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(
            f"Every head of a MultiHead needs a distinct name: got names {names}, with "
            f"{duplicates} used more than once (their predictions and metrics would collide)."
        )
    return tuple(heads)


def merge_export_outputs(
    names: Sequence[str], per_head: Sequence[dict[str, dict[str, jax.Array]]]
) -> dict[str, dict[str, jax.Array]]:
    """TF's merged signatures of several heads (see ``MultiHead.export_outputs``)."""
    first, first_name = per_head[0], names[0]
    default_key = SignatureKeys.SERVING_DEFAULT
    if len(first) == 1:
        default = next(iter(first.values()))
    elif default_key in first:
        default = first[default_key]
    else:
        raise ValueError(
            f"{first_name} did not specify default export_outputs. Given: {sorted(first)} "
            f"Suggested fix: include key {default_key} in export_outputs."
        )
    outputs: dict[str, dict[str, jax.Array]] = {default_key: default}
    merged_predict: dict[str, jax.Array] = {}
    for name, head_outputs in zip(names, per_head, strict=True):
        for key, value in head_outputs.items():
            outputs[name if key == default_key else f"{name}/{key}"] = value
            if key == SignatureKeys.PREDICT:
                for pred_key, pred in value.items():
                    merged_predict[f"{name}/{pred_key}"] = pred
    outputs[SignatureKeys.PREDICT] = merged_predict
    return outputs
