"""The heads: one module per head family, sharing :mod:`jaxheads.heads.base`."""

from jaxheads.heads.base import Head, HeadSpec
from jaxheads.heads.binary import BinaryClassHead, binary_classification_head
from jaxheads.heads.regression import (
    LogisticRegressionHead,
    PoissonRegressionHead,
    RegressionHead,
    logistic_regression_head,
    poisson_regression_head,
    regression_head,
)

__all__ = [
    "Head",
    "HeadSpec",
    "BinaryClassHead",
    "binary_classification_head",
    "LogisticRegressionHead",
    "logistic_regression_head",
    "RegressionHead",
    "regression_head",
    "PoissonRegressionHead",
    "poisson_regression_head",
]
