"""jaxheads: TensorFlow Estimator heads for JAX and Flax.

A head turns a model's logits into the training loss, the predictions, the
streaming evaluation metrics and the serving outputs, with the semantics
(and numbers) of ``tf.estimator``'s heads.
"""

from jaxheads import keys, labels, losses, metrics
from jaxheads._checks import traced_value_checks
from jaxheads._loss_terms import LossTerms
from jaxheads.feature_column import NumericColumn, numeric_column
from jaxheads.heads import (
    BinaryClassHead,
    Head,
    HeadSpec,
    LogisticRegressionHead,
    MultiClassHead,
    MultiHead,
    MultiLabelHead,
    PoissonRegressionHead,
    RegressionHead,
    SequentialHeadWrapper,
    SparseLabels,
    binary_classification_head,
    logistic_regression_head,
    multi_class_head,
    multi_head,
    multi_label_head,
    poisson_regression_head,
    regression_head,
)
from jaxheads.modes import ModeKeys
from jaxheads.reduction import Reduction, reduce_weighted_loss
from jaxheads.vocabulary import LabelVocabulary

__version__ = "0.1.0"

__all__ = [
    "BinaryClassHead",
    "Head",
    "HeadSpec",
    "LabelVocabulary",
    "LossTerms",
    "LogisticRegressionHead",
    "ModeKeys",
    "MultiClassHead",
    "MultiHead",
    "MultiLabelHead",
    "SequentialHeadWrapper",
    "SparseLabels",
    "NumericColumn",
    "PoissonRegressionHead",
    "Reduction",
    "RegressionHead",
    "binary_classification_head",
    "logistic_regression_head",
    "keys",
    "labels",
    "losses",
    "metrics",
    "multi_class_head",
    "multi_head",
    "multi_label_head",
    "numeric_column",
    "poisson_regression_head",
    "reduce_weighted_loss",
    "regression_head",
    "traced_value_checks",
]
