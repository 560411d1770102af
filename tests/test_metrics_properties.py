"""Hypothesis properties: merge algebra, streaming == one batch, AUC range, and a NumPy reference.

Every example has the same shapes (3 batches of N), so each jitted check
compiles once and hypothesis only pays for execution.
"""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from jaxheads import metrics

N = 24
T = 11  # for T = 11 Keras' bucket rule and "p > t" agree on every threshold (see below)
THRESHOLDS = (0.1, 0.5, 0.3, 0.9)
METHODS = ("interpolation", "minoring", "majoring", "trapezoidal")
SETTINGS = settings(max_examples=30, deadline=None)

_grid = np.float32(np.arange(T) / (T - 1))
_score = st.one_of(
    st.floats(-0.25, 1.25, width=32),
    st.sampled_from([float(x) for x in _grid] + [0.3, 0.5, 0.9, 0.0, 1.0]),
)


@st.composite
def batches(draw, integer_weights: bool = True):
    labels = draw(arrays(np.float32, (3, N), elements=st.sampled_from([0.0, 1.0, 1.0, 0.5])))
    scores = draw(arrays(np.float32, (3, N), elements=_score))
    if integer_weights:
        weights = draw(arrays(np.float32, (3, N), elements=st.sampled_from([0.0, 1.0, 2.0, 3.0])))
    else:
        # No subnormal weights: XLA on CPU (as TF) flushes subnormal float32 inputs and
        # results to zero, so a weight below 2**-126 counts as 0 in every jitted
        # computation, while the float64 reference counts it (26 of 200 seeds failed on
        # that). Nor weights below 2**-100: the products score * weight in Mean would
        # then be subnormal for scores above 2**-26 and flushed as well (a mean of 0
        # for 1/144). Scores below 2**-26 add less than the 1e-6 tolerance. The AUCs
        # work down to 2**-126 (test_pr_auc_is_scale_free).
        elements = st.floats(0.0, 4.0, width=32).map(lambda w: w if w >= 2.0**-100 else 0.0)
        weights = draw(arrays(np.float32, (3, N), elements=elements))
    return labels, scores, weights


def _fresh():
    return {
        "curve": metrics.ConfusionCurve.empty(T),
        "at": metrics.ConfusionAtThresholds.empty(THRESHOLDS),
        "at_incl": metrics.ConfusionAtThresholds.empty(THRESHOLDS, inclusive=True),
        "mean": metrics.Mean.empty(),
        "acc": metrics.Accuracy.empty(),
    }


def _update(states, y, p, w):
    return {
        "curve": states["curve"].update(y, p, w),
        "at": states["at"].update(y, p, w),
        "at_incl": states["at_incl"].update(y, p, w),
        "mean": states["mean"].update(p, w),
        "acc": states["acc"].update(y, (p > 0.5).astype(jnp.float32), w),
    }


@jax.jit
def _all_ways(y, p, w):
    """The same data folded in, merged in every order, and as one batch."""
    parts = [_update(_fresh(), y[i], p[i], w[i]) for i in range(3)]
    a, b, c = parts
    folded = _fresh()
    for i in range(3):
        folded = _update(folded, y[i], p[i], w[i])
    return {
        "folded": folded,
        "ab_c": metrics.merge(metrics.merge(a, b), c),
        "a_bc": metrics.merge(a, metrics.merge(b, c)),
        "ba": metrics.merge(b, a),
        "ab": metrics.merge(a, b),
        "c_ab": metrics.merge(c, metrics.merge(a, b)),
        "big": _update(_fresh(), y.reshape(-1), p.reshape(-1), w.reshape(-1)),
    }


def _values(tree):
    return [
        x.to_numpy()
        for x in jax.tree_util.tree_leaves(tree, is_leaf=lambda x: isinstance(x, metrics.ExactSum))
    ]


@SETTINGS
@given(batches(integer_weights=True))
def test_merge_algebra_is_exact_for_integer_weights(data):
    out = _all_ways(*data)
    # Every integer-valued sum (the counts) is exact in any merge order. The sum of
    # the scores in Mean is not integer-valued: each batch's compensated sum carries a
    # non-zero low word, and double-float merges are associative to 2^-47 only.
    counts = ("curve", "at", "at_incl", "acc")
    ref = _values({k: out["folded"][k] for k in counts})
    for key in ("ab_c", "a_bc", "c_ab"):
        for x, r in zip(_values({k: out[key][k] for k in counts}), ref, strict=True):
            np.testing.assert_array_equal(x, r)
        for x, r in zip(_values(out[key]["mean"]), _values(out["folded"]["mean"]), strict=True):
            # Near 0 the low word would be subnormal and is flushed: float32 there.
            np.testing.assert_allclose(x, r, rtol=2.0**-46, atol=2.0**-126)
    for x, r in zip(_values(out["ab"]), _values(out["ba"]), strict=True):
        np.testing.assert_array_equal(x, r)  # TwoSum is commutative bit for bit
    # One big batch: every integer-valued sum (counts) is identical; the mean of
    # the scores is a float32 batch sum, equal to rounding.
    big = out["big"]
    for key in ("curve", "at", "at_incl", "acc"):
        for x, r in zip(_values(big[key]), _values(out["folded"][key]), strict=True):
            np.testing.assert_array_equal(x, r)
    np.testing.assert_allclose(
        big["mean"].total.to_numpy(), out["folded"]["mean"].total.to_numpy(), rtol=1e-6
    )


@SETTINGS
@given(batches(integer_weights=False))
def test_merge_algebra_float_weights(data):
    out = _all_ways(*data)
    ref = _values(out["folded"])
    for key in ("ab_c", "a_bc", "c_ab"):  # double-float: associative to ~2^-47
        for x, r in zip(_values(out[key]), ref, strict=True):
            np.testing.assert_allclose(x, r, rtol=1e-12, atol=1e-12)
    for x, r in zip(_values(out["big"]), ref, strict=True):  # one float32 batch sum
        np.testing.assert_allclose(x, r, rtol=1e-6, atol=1e-5)
    for x, r in zip(_values(out["ab"]), _values(out["ba"]), strict=True):
        np.testing.assert_array_equal(x, r)  # TwoSum is commutative bit for bit


# ---------------------------------------------------------------------------- NumPy reference
def _div(a, b):
    return np.where(b == 0, 0.0, a / np.where(b == 0, 1.0, b))


def ref_counts(y, p, w, thresholds, inclusive=False):
    """Weighted tp, fp, tn, fn of "p > t" (or >=) by brute force, in float64."""
    y, p, w = (np.asarray(a, np.float64).reshape(-1) for a in (y, p, w))
    t = np.asarray(thresholds, np.float64)
    above = (p[:, None] >= t[None, :]) if inclusive else (p[:, None] > t[None, :])
    pos = (y != 0).astype(np.float64)
    tp = (w * pos) @ above
    fp = (w * (1 - pos)) @ above
    return tp, fp, np.sum(w * (1 - pos)) - fp, np.sum(w * pos) - tp


def ref_auc(tp, fp, tn, fn, curve, method):
    """Keras' AUC formulas (and TF1's trapezoid) in float64."""
    if method == "trapezoidal":
        eps = 1e-6
        rec = (tp + eps) / (tp + fn + eps)
        x, y = (
            (fp / (fp + tn + eps), rec) if curve == "ROC" else (rec, (tp + eps) / (tp + fp + eps))
        )
        return np.sum((x[:-1] - x[1:]) * (y[:-1] + y[1:]) / 2)
    if curve == "PR" and method == "interpolation":
        p = tp + fp
        dtp, dp = tp[:-1] - tp[1:], p[:-1] - p[1:]
        slope = _div(dtp, np.maximum(dp, 0))
        intercept = tp[1:] - slope * p[1:]
        both = (p[:-1] > 0) & (p[1:] > 0)
        ratio = np.where(both, _div(p[:-1], np.maximum(p[1:], 0)), 1.0)
        return np.sum(
            _div(slope * (dtp + intercept * np.log(ratio)), np.maximum(tp[1:] + fn[1:], 0))
        )
    rec = _div(tp, tp + fn)
    x, y = (_div(fp, fp + tn), rec) if curve == "ROC" else (rec, _div(tp, tp + fp))
    h = {
        "interpolation": (y[:-1] + y[1:]) / 2,
        "minoring": np.minimum(y[:-1], y[1:]),
        "majoring": np.maximum(y[:-1], y[1:]),
    }[method]
    return np.sum((x[:-1] - x[1:]) * h)


def pr_interpolation_tolerance(tp, fp, fn):
    """Float32 error bound of Keras' interpolated PR-AUC formula on these counts.

    Each term is ``slope·(Δtp + intercept·log(p_i / p_{i+1})) / (tp + fn)``; the ratio is
    rounded to float32, so the log carries an absolute error of about 2^-24, multiplied
    by ``|slope·intercept| / (tp + fn)`` — which reaches ~30 when ``intercept ≈ -p``
    (many negatives) and cancels against ``slope·Δtp``. A fixed atol of 1e-6 was below
    that bound (1.2e-6 seen on a PR-AUC of 0.0199). Keras evaluates the same formula in
    float32, so this is the rounding of the formula, not of our counts.
    """
    p = tp + fp
    dtp, dp = tp[:-1] - tp[1:], p[:-1] - p[1:]
    slope = _div(dtp, np.maximum(dp, 0))
    intercept = tp[1:] - slope * p[1:]
    both = (p[:-1] > 0) & (p[1:] > 0)
    log_ratio = np.log(np.where(both, _div(p[:-1], np.maximum(p[1:], 0)), 1.0))
    size = np.abs(slope) * (np.abs(dtp) + np.abs(intercept) * (1 + np.abs(log_ratio)))
    return 1e-6 + 4 * 2.0**-24 * np.sum(_div(size, np.maximum(tp[1:] + fn[1:], 0)))


def test_pr_auc_is_scale_free():
    # The AUC formulas are ratios of counts: scaling every weight by a power of two
    # must not change them. With weights of 2**-126 the products inside Keras'
    # PR interpolation underflowed to (flushed) subnormals: 0.9715 instead of 0.9793.
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, (3, N)).astype(np.float32)
    p = rng.uniform(0, 1, (3, N)).astype(np.float32)
    w = np.ones((3, N), np.float32)
    big = _all_ways(y, p, w)["folded"]["curve"]
    for scale in (2.0**-126, 2.0**-100, 2.0**100):
        tiny = _all_ways(y, p, w * np.float32(scale))["folded"]["curve"]
        for c in ("ROC", "PR"):
            for m in ("interpolation", "minoring", "majoring"):
                assert float(tiny.auc(c, m)) == float(big.auc(c, m)), (scale, c, m)


def test_bucket_rule_agrees_with_strict_comparison_for_T11():
    # Keras' ceil(p (T-1)) - 1 equals "p > t_i" at every grid point when T = 11 (not
    # for every T: e.g. T = 200 counts p == t_31 as above t_31, see test_metrics_values).
    b = np.ceil(_grid * np.float32(T - 1)) - 1
    np.testing.assert_array_equal(b, np.arange(T) - 1)


@SETTINGS
@given(batches(integer_weights=False))
def test_matches_numpy_reference(data):
    y, p, w = data
    out = _all_ways(y, p, w)["folded"]
    # ConfusionCurve: clipped scores against the evenly spaced thresholds.
    tp, fp, tn, fn = ref_counts(y, np.clip(p, 0, 1), w, metrics.curve_thresholds(T))
    curve = out["curve"]
    conf = curve.confusion()
    for got, ref in zip(
        (conf["tp"], conf["fp"], conf["tn"], conf["fn"]), (tp, fp, tn, fn), strict=True
    ):
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-5)
    for c in ("ROC", "PR"):
        for m in METHODS:
            got = float(curve.auc(c, m))
            atol = (
                pr_interpolation_tolerance(tp, fp, fn)
                if (c, m) == ("PR", "interpolation")
                else 1e-6
            )
            np.testing.assert_allclose(
                got, ref_auc(tp, fp, tn, fn, c, m), atol=atol, err_msg=f"{c}/{m}"
            )
            # In [0, 1] up to the same rounding (the PR interpolation can round past 1).
            assert -atol <= got <= 1 + atol, (c, m, got)
    # ConfusionAtThresholds: raw scores, strict and inclusive.
    for key, inclusive in (("at", False), ("at_incl", True)):
        tp, fp, tn, fn = ref_counts(y, p, w, np.float32(THRESHOLDS), inclusive)
        res = out[key].compute()
        np.testing.assert_allclose(res["tp"], tp, rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(res["tn"], tn, rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(res["precision"], _div(tp, tp + fp), atol=1e-6)
        np.testing.assert_allclose(res["recall"], _div(tp, tp + fn), atol=1e-6)
        yf, pf, wf = (a.reshape(-1).astype(np.float64) for a in (y, p, w))
        pred = (
            (pf[:, None] >= np.float32(THRESHOLDS))
            if inclusive
            else (pf[:, None] > np.float32(THRESHOLDS))
        )
        match = (yf[:, None] == pred).astype(np.float64)  # soft labels never match
        np.testing.assert_allclose(res["accuracy"], _div(wf @ match, wf.sum()), atol=1e-6)
    # Means.
    np.testing.assert_allclose(
        out["mean"].compute(),
        _div((p * w).sum(dtype=np.float64), w.sum(dtype=np.float64)),
        rtol=1e-5,
        atol=1e-6,
    )
    acc = _div(((y == (p > 0.5)).astype(np.float64) * w).sum(), w.sum(dtype=np.float64))
    np.testing.assert_allclose(out["acc"].compute(), acc, rtol=1e-5, atol=1e-6)
