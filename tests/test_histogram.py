"""LogitHistogram against scikit-learn / NumPy (issue 11).

Two kinds of checks:

* **On-grid data** (every logit is a bucket centre, so the histogram loses
  nothing): every result must equal an independent scikit-learn / NumPy
  computation on the raw data up to float32 rounding (tolerance 1e-5: counts
  are exact, the float32 ratios of sums of <= 5,000 terms round at ~1e-7
  relative each).
* **Continuous data** over a hypothesis-driven family of distributions (base
  rates 0.1 %–99 %, scaled and saturated logits, weights, soft labels): the
  ROC-AUC is within 1e-4 of scikit-learn's exact value and the certified
  interval always contains it.
"""

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jax.sharding import PartitionSpec as P
from sklearn import metrics as skm

import jaxheads as jh
from jaxheads.metrics import LogitHistogram

B = 16384
RTOL = 1e-5


def _expand(y, x, w):
    """Soft labels as sklearn sees them: a positive of weight w·y and a negative of w·(1−y)."""
    w = np.ones_like(x, np.float64) if w is None else np.asarray(w, np.float64)
    scores = np.concatenate([x, x]).astype(np.float64)
    labels = np.concatenate([np.ones_like(x), np.zeros_like(x)])
    weights = np.concatenate([w * y, w * (1.0 - y)])
    keep = weights > 0
    return labels[keep], scores[keep], weights[keep]


def _on_grid(rng, n, num_buckets=B, rate=0.2, weights=False, soft=False):
    h = LogitHistogram.empty(num_buckets)
    centres = h.centres()[1:-1]
    y = (rng.uniform(size=n) < rate).astype(np.float32)
    idx = rng.integers(3000, 3000 + 2000, n) + (y * rng.integers(0, 800, n)).astype(int)
    x = centres[idx].astype(np.float32)
    if soft:
        y = np.clip(y * 0.8 + rng.uniform(0, 0.2, n), 0, 1).astype(np.float32)
    w = rng.uniform(0.1, 3.0, n).astype(np.float32) if weights else None
    return y, x, w


def _hist(y, x, w, num_buckets=B, grid=(-16.0, 16.0)):
    return LogitHistogram.empty(num_buckets, grid).update(y, x, w)


@pytest.mark.parametrize("weights", [False, True])
@pytest.mark.parametrize("soft", [False, True])
def test_on_grid_ranking_metrics_equal_sklearn(weights, soft):
    rng = np.random.default_rng(int(weights) * 2 + int(soft))
    y, x, w = _on_grid(rng, 3000, weights=weights, soft=soft)
    h = _hist(y, x, w)
    lab, sc, sw = _expand(y, x, w)
    auc = skm.roc_auc_score(lab, sc, sample_weight=sw)
    assert float(h.roc_auc()) == pytest.approx(auc, abs=RTOL)
    lo, hi = h.roc_auc_bounds()
    assert float(lo) <= auc <= float(hi)
    ap = skm.average_precision_score(lab, sc, sample_weight=sw)
    assert float(h.average_precision()) == pytest.approx(ap, abs=RTOL)


def _delong(lab, sc, sw):
    """Independent weighted DeLong: structural components from pairwise comparisons."""
    pos, neg = sc[lab == 1], sc[lab == 0]
    wp, wn = sw[lab == 1], sw[lab == 0]
    cmp = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    big_p, big_n = wp.sum(), wn.sum()
    v10 = cmp @ wn / big_n
    v01 = wp @ cmp / big_p
    auc = wp @ v10 / big_p
    s10 = wp @ (v10 - auc) ** 2 / (big_p - 1)
    s01 = wn @ (v01 - auc) ** 2 / (big_n - 1)
    return np.sqrt(s10 / big_p + s01 / big_n)


@pytest.mark.parametrize("weights", [False, True])
def test_on_grid_delong_stderr(weights):
    rng = np.random.default_rng(7)
    y, x, w = _on_grid(rng, 1500, weights=weights)
    h = _hist(y, x, w)
    lab, sc, sw = _expand(y, x, w)
    assert float(h.roc_auc_stderr()) == pytest.approx(_delong(lab, sc, sw), rel=1e-4)


def test_delong_unweighted_matches_textbook_example():
    # Hanley & McNeil style toy: 3 positives, 3 negatives, one tie.
    x = np.float32([-1, 0, 1, 1, 2, 3]) * 0.5
    y = np.float32([0, 0, 1, 0, 1, 1])
    h = _hist(y, x, None)
    lab, sc, sw = _expand(y, x, None)
    assert float(h.roc_auc_stderr()) == pytest.approx(_delong(lab, sc, sw), rel=1e-5)
    assert float(h.roc_auc()) == pytest.approx(skm.roc_auc_score(y, x), abs=1e-7)


def _curve_by_threshold(lab, sc, sw, thresholds):
    tp = np.array([sw[(lab == 1) & (sc >= t)].sum() for t in thresholds])
    fp = np.array([sw[(lab == 0) & (sc >= t)].sum() for t in thresholds])
    big_p, big_n = sw[lab == 1].sum(), sw[lab == 0].sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
    return tp / big_p, prec, fp / big_n, tp + fp


def test_on_grid_curves_and_operating_points():
    rng = np.random.default_rng(3)
    y, x, w = _on_grid(rng, 2000, weights=True)
    h = _hist(y, x, w)
    lab, sc, sw = _expand(y, x, w)
    distinct = np.unique(sc)[::-1]
    rec, prec, fpr, pred = _curve_by_threshold(lab, sc, sw, distinct)
    roc = h.roc_curve()
    # Our points at each bucket's lower edge; those with data equal sklearn's.
    sk_fpr, sk_tpr, _ = skm.roc_curve(lab, sc, sample_weight=sw, drop_intermediate=False)
    ours = np.stack([np.asarray(roc["fpr"]), np.asarray(roc["tpr"])], 1).astype(np.float64)
    theirs = np.stack([sk_fpr, sk_tpr], 1)
    gap = np.abs(theirs[:, None, :] - ours[None, :, :]).max(-1).min(1)
    assert gap.max() <= RTOL
    assert np.asarray(roc["thresholds"])[0] == np.inf
    pr = h.pr_curve()
    assert np.all(np.diff(np.asarray(pr["recall"])) >= -1e-7)  # descending thresholds
    for r in (0.0, 0.3, 0.5, 0.9, 1.0):
        want = max(
            [p for p, rr, k in zip(prec, rec, pred, strict=True) if rr >= r - 1e-7 and k > 0]
        )
        assert float(h.precision_at_recall(r)) == pytest.approx(want, abs=RTOL)
    for p_min in (0.1, 0.3, 0.6, 0.99):
        ok = [rr for p, rr, k in zip(prec, rec, pred, strict=True) if p >= p_min and k > 0]
        want = max(ok) if ok else 0.0
        assert float(h.recall_at_precision(p_min)) == pytest.approx(want, abs=RTOL)
    spec = 1.0 - fpr
    for s in (0.5, 0.9, 0.99, 1.0):
        ok = [rr for rr, sp in zip(rec, spec, strict=True) if sp >= s - 1e-7] + [0.0]
        assert float(h.sensitivity_at_specificity(s)) == pytest.approx(max(ok), abs=RTOL)


def _ece(y, p, w, num_bins):
    w = np.ones_like(p) if w is None else w
    bins = np.minimum(np.floor(p * num_bins), num_bins - 1).astype(int)
    total = 0.0
    for j in range(num_bins):
        m = bins == j
        total += abs(np.sum(w[m] * y[m]) - np.sum(w[m] * p[m]))
    return total / w.sum()


@pytest.mark.parametrize("num_bins", [10, 15])
def test_on_grid_calibration_and_ece(num_bins):
    """On bucket centres the histogram's ECE is the exact ECE of the data."""
    rng = np.random.default_rng(num_bins)
    y, x, w = _on_grid(rng, 3000, weights=True, soft=True)
    h = _hist(y, x, w)
    p = 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
    want = _ece(y.astype(np.float64), p, w.astype(np.float64), num_bins)
    assert float(h.expected_calibration_error(num_bins)) == pytest.approx(want, abs=RTOL)
    table = h.calibration(num_bins)
    bins = np.minimum(np.floor(p * num_bins), num_bins - 1).astype(int)
    weight = np.bincount(bins, weights=w, minlength=num_bins)
    np.testing.assert_allclose(np.asarray(table["weight"]), weight, rtol=RTOL)
    rate = np.bincount(bins, weights=w * y, minlength=num_bins)
    with np.errstate(invalid="ignore"):
        want_rate = np.where(weight > 0, rate / weight, 0.0)
    np.testing.assert_allclose(np.asarray(table["positive_rate"]), want_rate, atol=RTOL)


def test_continuous_ece_within_stated_tolerance():
    """Off-grid: centre probabilities are within width/8 of each p (|σ'| <= 1/4, half a
    bucket), and a bucket straddling a bin edge moves its mass (<= 14 such buckets of
    ~1/16k of the data each): measured error is far below the 2e-3 we allow."""
    rng = np.random.default_rng(0)
    n = 20000
    x = rng.normal(0, 2, n).astype(np.float32)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-x))).astype(np.float32)
    h = _hist(y, x, None)
    p = 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
    assert float(h.expected_calibration_error()) == pytest.approx(_ece(y, p, None, 15), abs=2e-3)


def test_normalized_entropy_and_calibration_ratio_use_raw_values():
    """Confident mistakes at |logit| 20–100 count fully (no bucket centres, no clamping)."""
    x = np.float32([-100.0, 35.0, -3.0, 0.5, 20.0, 2.0])
    y = np.float32([1.0, 0.0, 0.0, 1.0, 1.0, 0.3])
    w = np.float32([1.0, 2.0, 1.0, 0.5, 1.0, 3.0])
    h = _hist(y, x, w)
    x64, y64, w64 = (a.astype(np.float64) for a in (x, y, w))
    loss = np.maximum(x64, 0) - x64 * y64 + np.log1p(np.exp(-np.abs(x64)))
    rate = np.sum(w64 * y64) / w64.sum()
    ne = (np.sum(w64 * loss) / w64.sum()) / -(rate * np.log(rate) + (1 - rate) * np.log(1 - rate))
    assert float(h.normalized_entropy()) == pytest.approx(ne, rel=1e-6)
    p = 1 / (1 + np.exp(-x64))
    assert float(h.calibration_ratio()) == pytest.approx(
        np.sum(w64 * p) / np.sum(w64 * y64), rel=1e-6
    )
    assert float(h.mean("loss")) == pytest.approx(np.sum(w64 * loss) / w64.sum(), rel=1e-6)
    assert float(h.clamped_weight()) == pytest.approx(4.0)  # -100, 35 and 20 are off the grid


def test_infinite_logits_never_nan():
    h = _hist(np.float32([1, 0, 1, 0]), np.float32([np.inf, -np.inf, -np.inf, 1.0]), None)
    assert float(h.mean("loss")) == np.inf  # a positive at -inf
    assert np.isfinite(float(h.roc_auc()))
    ok = _hist(np.float32([1, 0]), np.float32([np.inf, -np.inf]), None)
    assert float(ok.mean("loss")) == 0.0
    assert float(ok.roc_auc()) == 1.0


# ------------------------------------------------------------------ continuous family
@st.composite
def distributions(draw):
    rate = draw(st.sampled_from([0.001, 0.003, 0.016, 0.1, 0.5, 0.9, 0.99]))
    # Realistic sizes: >= ~100 examples of the rarer class. With a handful of
    # positives one tied pair alone moves the AUC by 1/(P·N) > 1e-4.
    n = 200_000 if min(rate, 1 - rate) < 0.01 else 20_000
    scale = draw(st.sampled_from([0.5, 1.0, 2.0, 4.0, 8.0]))
    sep = draw(st.floats(0.0, 3.0))
    shift = draw(st.floats(-6.0, 6.0))
    weighted = draw(st.booleans())
    soft = draw(st.booleans())
    seed = draw(st.integers(0, 2**31 - 1))
    return n, rate, scale, sep, shift, weighted, soft, seed


def _sample(n, rate, scale, sep, shift, weighted, soft, seed):
    rng = np.random.default_rng(seed)
    y = (rng.uniform(size=n) < rate).astype(np.float32)
    y[0], y[1] = 1.0, 0.0  # both classes present
    x = (scale * (rng.logistic(size=n) + sep * y) + shift).astype(np.float32)
    # Saturated models: |x| > 10 gives p within 5e-5 of 0 or 1 (float32 rounds
    # p to 1 beyond 16.6); logits are kept on the default grid here.
    x = np.clip(x, -15.9, 15.9)
    if soft:
        y = np.where(rng.uniform(size=n) < 0.3, rng.uniform(size=n), y).astype(np.float32)
    w = rng.lognormal(0, 1, n).astype(np.float32) if weighted else None
    return y, x, w


def _exact_tie_share(lab, sc, sw):
    """Weighted share of positive–negative pairs with exactly equal scores."""
    vals, inv = np.unique(sc, return_inverse=True)
    pos = np.bincount(inv, weights=sw * (lab == 1), minlength=vals.size)
    neg = np.bincount(inv, weights=sw * (lab == 0), minlength=vals.size)
    return float(pos @ neg / (pos.sum() * neg.sum()))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(distributions())
def test_auc_within_1e4_and_bounds_contain_exact(params):
    y, x, w = _sample(*params)
    h = _hist(y, x, w)
    lab, sc, sw = _expand(y, x, w)
    exact = skm.roc_auc_score(lab, sc, sample_weight=sw)
    lo, hi = (float(b) for b in h.roc_auc_bounds())
    assert lo <= exact <= hi
    assert abs(float(h.roc_auc()) - exact) <= 1e-4
    # Narrow: the share of exactly tied pairs plus the grid's share, not a CI.
    assert hi - lo <= _exact_tie_share(lab, sc, sw) + 2e-3


@settings(max_examples=15, deadline=None)
@given(distributions(), st.sampled_from([(64, (-4.0, 4.0)), (1024, (-2.0, 2.0)), (3, (-1.0, 1.0))]))
def test_bounds_contain_exact_on_coarse_grids_and_clamped_logits(params, config):
    """Coarse or narrow grids (many clamped logits): the interval is wide but certified."""
    params = (min(params[0], 20_000), *params[1:])
    y, x, w = _sample(*params)
    h = _hist(y, x, w, *config)
    lab, sc, sw = _expand(y, x, w)
    exact = skm.roc_auc_score(lab, sc, sample_weight=sw)
    lo, hi = (float(b) for b in h.roc_auc_bounds())
    assert lo <= exact <= hi
    assert lo <= float(h.roc_auc()) <= hi


def test_probability_threshold_auc_fails_where_histogram_does_not():
    """The issue's rare-event case: 200 probability thresholds vs the logit grid."""
    rng = np.random.default_rng(0)
    n = 100_000
    x = (rng.normal(-6.5, 1.0, n)).astype(np.float32)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-x))).astype(np.float32)
    exact = skm.roc_auc_score(y, x)
    curve = jh.metrics.ConfusionCurve.empty().update(y, jax.nn.sigmoid(x))
    h = _hist(y, x, None)
    assert abs(float(curve.roc_auc()) - exact) > 0.01
    assert abs(float(h.roc_auc()) - exact) < 1e-4


# ------------------------------------------------------------------ streaming, merging, sharding
def test_merge_any_order_equals_one_pass():
    rng = np.random.default_rng(5)
    y, x, w = _sample(3000, 0.1, 2.0, 1.0, -2.0, True, True, 9)
    w = np.round(w * 4).astype(np.float32)  # integer weights: every order is bit-exact
    one = _hist(y, x, w)
    parts = [_hist(y[i::5], x[i::5], w[i::5]) for i in range(5)]
    for order in (range(5), rng.permutation(5)):
        acc = LogitHistogram.empty()
        for i in order:
            acc = acc.merge(parts[i])
        np.testing.assert_array_equal(acc.counts.to_numpy(), one.counts.to_numpy())
        assert float(acc.roc_auc()) == float(one.roc_auc())
    tree = jh.metrics.merge({"h": parts[0]}, {"h": parts[1]})
    np.testing.assert_array_equal(
        tree["h"].counts.to_numpy(), parts[0].merge(parts[1]).counts.to_numpy()
    )


def test_eight_sharded_devices_equal_one_pass():
    y, x, w = _sample(8 * 512, 0.05, 2.0, 1.5, -3.0, True, False, 11)
    w = np.round(w * 4).astype(np.float32)
    one = _hist(y, x, w)
    mesh = jax.make_mesh((8,), ("batch",), (jax.sharding.AxisType.Auto,))

    def step(y, x, w):
        return jh.metrics.all_reduce(LogitHistogram.empty().update(y, x, w), "batch")

    f = jax.jit(jax.shard_map(step, mesh=mesh, in_specs=P("batch"), out_specs=P()))
    got = f(y, x, w)
    np.testing.assert_array_equal(got.counts.to_numpy(), one.counts.to_numpy())
    assert float(got.roc_auc()) == float(one.roc_auc())
    # jit over NamedSharding'd arrays: the global update
    sharding = jax.sharding.NamedSharding(mesh, P("batch"))
    g = jax.jit(lambda y, x, w: LogitHistogram.empty().update(y, x, w))
    got2 = g(*(jax.device_put(a, sharding) for a in (y, x, w)))
    np.testing.assert_array_equal(got2.counts.to_numpy(), one.counts.to_numpy())


def test_leading_dims_and_trailing_one():
    rng = np.random.default_rng(2)
    y, x, w = _sample(600, 0.3, 1.0, 1.0, 0.0, True, False, 2)
    flat = _hist(y, x, w)
    shaped = _hist(y.reshape(20, 30), x.reshape(20, 30, 1), w.reshape(20, 30))
    np.testing.assert_array_equal(shaped.counts.to_numpy(), flat.counts.to_numpy())
    per_row = _hist(y.reshape(20, 30), x.reshape(20, 30), w.reshape(20, 30)[:, :1])
    assert per_row.counts.to_numpy().sum() == pytest.approx(
        30 * w.reshape(20, 30)[:, 0].sum(), rel=1e-6
    )
    del rng


def test_update_under_jit_and_scan():
    y, x, w = _sample(1000, 0.2, 1.0, 1.0, 0.0, False, False, 4)

    @jax.jit
    def run(y, x):
        def body(h, batch):
            return h.update(*batch), None

        h, _ = jax.lax.scan(body, LogitHistogram.empty(), (y.reshape(10, 100), x.reshape(10, 100)))
        return h.compute()

    out = run(y, x)
    ref = _hist(y, x, None).compute()
    for k in ref:
        assert float(out[k]) == pytest.approx(float(ref[k]), abs=1e-6), k


def test_configuration_mismatch_and_argument_errors():
    a = LogitHistogram.empty(1024)
    with pytest.raises(ValueError, match="num_buckets=1024"):
        a.merge(LogitHistogram.empty(2048))
    with pytest.raises(ValueError, match="grid"):
        a.merge(LogitHistogram.empty(1024, (-8.0, 8.0)))
    with pytest.raises(ValueError, match="num_buckets"):
        LogitHistogram.empty(2)
    with pytest.raises(ValueError, match="num_buckets"):
        LogitHistogram.empty(10.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="grid"):
        LogitHistogram.empty(16, (1.0, -1.0))
    with pytest.raises(ValueError, match="grid"):
        LogitHistogram.empty(16, (0.0, float("inf")))
    with pytest.raises(ValueError, match="num_bins"):
        a.expected_calibration_error(0)
    with pytest.raises(ValueError, match="labels and predictions"):
        a.update(np.zeros(3, np.float32), np.zeros(4, np.float32))
    with pytest.raises(ValueError):
        jh.metrics.merge({"h": a}, {"h": LogitHistogram.empty(2048)})


def test_empty_classes_are_defined():
    h = _hist(np.ones(5, np.float32), np.linspace(-1, 1, 5).astype(np.float32), None)
    assert float(h.roc_auc()) == 0.0
    assert [float(b) for b in h.roc_auc_bounds()] == [0.0, 1.0]
    assert float(h.roc_auc_stderr()) == np.inf
    assert float(h.average_precision()) == pytest.approx(1.0)
    empty = LogitHistogram.empty()
    assert float(empty.average_precision()) == 0.0
    assert float(empty.expected_calibration_error()) == 0.0


def test_empty_and_degenerate_evaluations_give_no_nan():
    """Nothing counted: every extended metric is a number (0 as TF's empty means; the
    interval is the whole [0, 1]; the standard error is inf). Degenerate but
    non-empty data get their documented limits, never NaN."""
    out = {k: float(v) for k, v in LogitHistogram.empty(64).compute().items()}
    assert not any(np.isnan(v) for v in out.values()), out
    assert out["normalized_entropy"] == 0.0 and out["calibration_ratio"] == 0.0
    y0 = np.zeros(4, np.float32)
    perfect = _hist(y0, np.full(4, -np.inf, np.float32), None)  # no loss, no positives
    assert float(perfect.normalized_entropy()) == 0.0
    assert float(perfect.calibration_ratio()) == 1.0
    wrong = _hist(y0, np.full(4, 2.0, np.float32), None)  # loss, base rate 0
    assert float(wrong.normalized_entropy()) == np.inf
    assert float(wrong.calibration_ratio()) == np.inf
    zero_weight = _hist(y0 + 1, np.full(4, 2.0, np.float32), np.zeros(4, np.float32))
    assert float(zero_weight.calibration_ratio()) == 0.0  # weight 0: nothing counted
    head = jh.BinaryClassHead(extended_metrics=True)
    empty_eval = head.compute_metrics(head.init_metrics())
    assert not any(np.isnan(float(v)) for v in empty_eval.values())
