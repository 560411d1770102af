"""Estimator modes, as TF's ``tf.estimator.ModeKeys``."""

from __future__ import annotations

__all__ = ["ModeKeys"]


class ModeKeys:
    """The three modes of :meth:`Head.create_spec`.

    ``PREDICT`` is ``"predict"``; TF's own value ``"infer"`` is accepted too.
    """

    TRAIN = "train"
    EVAL = "eval"
    PREDICT = "predict"

    @classmethod
    def validate(cls, mode: str) -> str:
        canonical = {
            "train": cls.TRAIN,
            "eval": cls.EVAL,
            "predict": cls.PREDICT,
            "infer": cls.PREDICT,
        }
        key = mode.lower() if isinstance(mode, str) else None
        if key not in canonical:
            raise ValueError(
                f"Invalid mode: {mode!r}. Expected one of 'train', 'eval', 'predict' "
                "(ModeKeys.TRAIN, ModeKeys.EVAL, ModeKeys.PREDICT)."
            )
        return canonical[key]
