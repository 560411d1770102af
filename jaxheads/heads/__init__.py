"""The heads: the contract (:mod:`~jaxheads.heads.base`), the single-head template, one module per head."""

from jaxheads.heads._metric_state import (
    BinaryHeadMetrics,
    HeadMetrics,
    MultiClassHeadMetrics,
    MultiHeadMetrics,
    MultiLabelHeadMetrics,
    RegressionHeadMetrics,
)
from jaxheads.heads._single import LossHead, SingleHead
from jaxheads.heads.base import Head, HeadSpec
from jaxheads.heads.binary import BinaryClassHead, binary_classification_head
from jaxheads.heads.multi_class import MultiClassHead, multi_class_head
from jaxheads.heads.multi_head import MultiHead, multi_head
from jaxheads.heads.multi_label import MultiLabelHead, multi_label_head
from jaxheads.heads.regression import (
    LogisticRegressionHead,
    PoissonRegressionHead,
    RegressionHead,
    logistic_regression_head,
    poisson_regression_head,
    regression_head,
)
from jaxheads.heads.sequence import SequentialHeadWrapper
from jaxheads.labels import SparseLabels

__all__ = [
    "Head",
    "HeadSpec",
    "HeadMetrics",
    "LossHead",
    "SingleHead",
    "BinaryHeadMetrics",
    "RegressionHeadMetrics",
    "MultiClassHeadMetrics",
    "MultiLabelHeadMetrics",
    "MultiHeadMetrics",
    "BinaryClassHead",
    "binary_classification_head",
    "LogisticRegressionHead",
    "logistic_regression_head",
    "RegressionHead",
    "regression_head",
    "PoissonRegressionHead",
    "poisson_regression_head",
    "MultiClassHead",
    "multi_class_head",
    "MultiLabelHead",
    "multi_label_head",
    "SparseLabels",
    "MultiHead",
    "multi_head",
    "SequentialHeadWrapper",
]
