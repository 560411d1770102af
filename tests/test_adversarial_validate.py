"""Constructor-argument validators: one rule for Python, NumPy and JAX values (issue 9).

Every failing case matches the argument's name and what it got.
"""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxheads import _validate as v
from jaxheads.reduction import Reduction


def _forms(values, dtype):
    """The same sequence as a list, a tuple, a NumPy array and a JAX array."""
    return [list(values), tuple(values), np.array(values, dtype), jnp.array(values, dtype)]


@pytest.mark.parametrize("value", _forms([0.25, 0.5], np.float32))
def test_thresholds_accept_every_container(value):
    assert v.thresholds(value) == (0.25, 0.5)


@pytest.mark.parametrize(
    "value, match",
    [
        ([0.0, 0.5], r"thresholds not in \(0, 1\)"),
        ([0.5, 1.0], r"thresholds must be in \(0, 1\) range\. Given: 1\.0"),
        (np.array([0.5, np.nan]), r"thresholds must be in \(0, 1\) range\. Given: nan"),
        (jnp.array([np.inf]), r"thresholds .*Given: inf"),
        ([0.5, True], r"thresholds must hold numbers .*True"),
        (["0.5"], r"thresholds must hold numbers .*'0\.5'"),
        (0.5, r"thresholds must be a list, tuple or 1-d array .*0\.5"),
        (np.array([[0.5]]), r"thresholds must be a 1-d sequence .*shape \(1, 1\)"),
        ({0.5}, r"thresholds must be a list, tuple or 1-d array .*set"),
    ],
)
def test_thresholds_errors_name_the_argument(value, match):
    with pytest.raises(ValueError, match=match):
        v.thresholds(value)


def test_no_thresholds():
    assert v.thresholds(None) == () == v.thresholds([]) == v.thresholds(np.array([]))


@pytest.mark.parametrize(
    "value", [3, np.int64(3), np.int32(3), np.uint8(3), np.array(3), jnp.array(3, jnp.int32)]
)
def test_positive_int_accepts_numpy_and_jax_integers(value):
    result = v.positive_int(value, "label_dimension")
    assert result == 3 and type(result) is int


@pytest.mark.parametrize(
    "value", [True, np.bool_(True), 0, -1, 2.0, np.float32(2), "2", None, jnp.array([2])]
)
def test_positive_int_refuses_bool_floats_and_non_positive(value):
    with pytest.raises(
        ValueError, match=r"Invalid label_dimension\. label_dimension must be an int >= 1 .*got"
    ):
        v.positive_int(value, "label_dimension", tf_message="Invalid label_dimension")


def test_positive_int_minimum_in_message():
    with pytest.raises(
        ValueError, match=r"num_thresholds must be an int >= 2 .*got 1 \(type int\)"
    ):
        v.positive_int(1, "num_thresholds", minimum=2)


@pytest.mark.parametrize("value", _forms([2, 0], np.int32))
def test_class_ids_every_container(value):
    assert v.class_ids_for_metrics(value, 3) == (2, 0)


@pytest.mark.parametrize(
    "value, match",
    [
        ([2, -1], r"All classes_for_class_based_metrics must be in range \[0, 2\]\. Given: -1"),
        (np.array([3]), r"must be in range \[0, 2\]\. Given: 3"),
        ([True], r"must be in range \[0, 2\]\. Given: True"),
        ([1.0], r"must be in range \[0, 2\]\. Given: 1\.0"),
        (5, r"classes_for_class_based_metrics must be a list"),
    ],
)
def test_class_ids_errors(value, match):
    with pytest.raises(ValueError, match=match):
        v.class_ids_for_metrics(value, 3)


def test_class_names_through_vocabulary():
    vocab = ("a", "b", "c")
    assert v.class_ids_for_metrics(np.array(["c", "a"]), 3, vocab) == (2, 0)
    assert v.class_ids_for_metrics([b"b"], 3, vocab) == (1,)
    with pytest.raises(ValueError, match=r"'z' is not in list"):
        v.class_ids_for_metrics(["c", "z"], 3, vocab)
    with pytest.raises(ValueError, match=r"label_vocabulary must be provided"):
        v.class_ids_for_metrics(["c"], 3)


@pytest.mark.parametrize("value", _forms([1.0, 2.5], np.float32))
def test_head_weights_every_container(value):
    assert v.head_weights(value, 2) == (1.0, 2.5)


@pytest.mark.parametrize(
    "value, match",
    [
        (
            [1.0],
            r"heads and head_weights must have the same size\. Given len\(heads\): 2\. Given len\(head_weights\): 1\.",
        ),
        (np.array([1.0, np.nan]), r"head_weights must hold finite numbers.*nan"),
        ([1.0, float("inf")], r"head_weights must hold finite numbers.*inf"),
        ([1.0, "2"], r"head_weights must hold finite numbers.*'2'"),
        ([1.0, True], r"head_weights must hold finite numbers.*True"),
        (np.ones((2, 1)), r"head_weights must be a 1-d sequence"),
    ],
)
def test_head_weights_errors(value, match):
    with pytest.raises(ValueError, match=match):
        v.head_weights(value, 2)


def test_head_weights_none_and_numpy_truthiness():
    assert v.head_weights(None, 2) is None
    # An array must not hit NumPy's "truth value is ambiguous".
    assert v.head_weights(np.array([0.0, 0.0]), 2) == (0.0, 0.0)


@pytest.mark.parametrize(
    "value", [["no", "yes"], ("no", "yes"), np.array(["no", "yes"]), [b"no", b"yes"]]
)
def test_vocabulary_forms(value):
    assert v.label_vocabulary(value, 2) == ("no", "yes")


@pytest.mark.parametrize(
    "value, n, match",
    [
        (["a"], 2, r"label_vocabulary must have exactly n_classes=2 distinct strings; got 1"),
        (["a", "b", "c"], 2, r"label_vocabulary must have exactly n_classes=2 .*got 3"),
        (["a", "a"], 2, r"label_vocabulary has duplicate entries"),
        (["a", 1], 2, r"label_vocabulary must hold strings .*1 \(type int\)"),
        ({"a": 1}, 2, r"label_vocabulary should be a list or a tuple\. Given type: <class 'dict'>"),
        ("ab", 2, r"label_vocabulary should be a list or a tuple\. Given type: <class 'str'>"),
        (np.array([["a", "b"]]), 2, r"label_vocabulary must be a 1-d sequence"),
    ],
)
def test_vocabulary_errors(value, n, match):
    with pytest.raises(ValueError, match=match):
        v.label_vocabulary(value, n)


def test_name_rules():
    assert v.name(None) is None
    assert v.name(np.str_("h")) == "h"
    with pytest.raises(TypeError, match=r"name must be a string or None; got 3"):
        v.name(3)
    with pytest.raises(ValueError, match=r"name must be a non-empty string"):
        v.name("")


@pytest.mark.parametrize("value", ["sum", np.str_("sum"), Reduction.SUM, "weighted_sum"])
def test_loss_reduction_forms(value):
    assert v.loss_reduction(value) is Reduction.SUM


@pytest.mark.parametrize("value", ["none", np.array("none"), 1, None])
def test_loss_reduction_errors(value):
    with pytest.raises(ValueError, match=r"Invalid loss_reduction"):
        v.loss_reduction(value)


@pytest.mark.parametrize("value", [0.999999999, 1e-50, np.float64(1 - 1e-12)])
def test_thresholds_that_round_to_0_or_1_in_float32_are_refused(value):
    """0.999999999 would silently become a threshold of 1.0 (key "threshold_1", recall 0)."""
    with pytest.raises(ValueError, match=r"thresholds must be in \(0, 1\) range after rounding"):
        v.thresholds([0.5, value])


@pytest.mark.parametrize(
    "value, message",
    [
        ([], r"thresholds must not be empty"),
        ([0.5, np.inf], r"thresholds must be finite numbers; got inf"),
        (np.array([np.nan]), r"thresholds must be finite numbers; got nan"),
        (["0.5"], r"thresholds must be finite numbers; got '0\.5'"),
        ("0.5", r"thresholds must be a list, tuple or 1-d array of finite numbers"),
        ([0.5, True], r"thresholds must be finite numbers; got True"),
        (np.zeros((1, 1)), r"thresholds must be a 1-d sequence of finite numbers"),
    ],
)
def test_metric_state_thresholds_are_validated_with_one_rule(value, message):
    """Metric states take any finite thresholds (not only (0, 1)), checked by _validate."""
    from jaxheads import metrics

    with pytest.raises(ValueError, match=message):
        metrics.ConfusionAtThresholds.empty(value)
    assert metrics.ConfusionAtThresholds.empty(np.float32(-2.0)).thresholds == (-2.0,)
