"""Benchmark: the full binary-head metric update per batch, jaxheads vs Keras 3 vs naive.

Run:  python benchmarks/metrics_bench.py [--sizes 10000 100000 1000000] [--repeats 7]

What is timed (one jitted call per batch, ``block_until_ready``, median of
``--repeats`` runs after a warm-up call): everything TF's ``BinaryClassHead``
updates on one eval batch of N examples with weights —

* weighted means of the loss, the predicted probability and the label;
* accuracy of the class ids; precision and recall of the class ids;
* ROC-AUC and PR-AUC at 200 thresholds;
* accuracy / precision / recall at the thresholds 0.25, 0.5, 0.75.

The contenders compute the same numbers from the same logits, labels and
weights:

* **ours** — ``jax.jit(head.update_metrics)`` of a
  ``jaxheads.BinaryClassHead(weight_column="w", thresholds=[0.25, 0.5, 0.75])``,
  given ``[N, 1]`` logits and labels and ``[N]`` weights exactly as a user
  passes them (the head computes the loss and the sigmoid itself; every count
  comes from one bucketing, exact double-float accumulators);
* **keras jit** — Keras 3 metrics on the JAX backend (``keras.metrics.AUC`` x2,
  ``Precision``, ``Recall``, ``BinaryAccuracy``, ``Accuracy``, ``Mean`` …) through
  ``stateless_update_state`` inside one ``jax.jit``, given flat ``[N]`` views
  (XLA:CPU runs ``[N, 1]`` loops 10-30x slower) — the fastest way to run them;
* **keras eager** — the same metrics' ``update_state`` called one by one, the
  way Keras documents streaming metrics (N ≤ 10^6);
* **naive** — plain jnp under jit with an ``[N, T]`` threshold comparison.
Keras is skipped when it is not installed (``pip install jaxheads[bench]``).

Ours and keras jit run interleaved (so each starts with the caches the other
left, and background load hits both alike); ratios are medians of per-round
ratios.

A second table times the confusion-curve (AUC) update alone at T = 200 and
T = 20,000 thresholds.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxheads
from jaxheads import metrics

THRESHOLDS = (0.25, 0.5, 0.75)
NUM_THRESHOLDS = 200


# ---------------------------------------------------------------------------- helpers
def _interleaved(
    contenders: dict[str, tuple[Callable[..., Any], tuple[Any, ...]]], repeats: int
) -> dict[str, list[float]]:
    """Wall times (ms) of each contender, run round-robin after one warm-up call each.

    Interleaving makes background load on a shared machine hit every
    contender alike, so the per-round ratios stay meaningful.
    """
    for fn, args in contenders.values():
        jax.block_until_ready(fn(*args))
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(repeats):
        for name, (fn, args) in contenders.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times[name].append(1e3 * (time.perf_counter() - t0))
    return times


def _median_ratio(num: list[float], den: list[float]) -> float:
    return statistics.median(a / b for a, b in zip(num, den, strict=True))


def _inputs(n: int, seed: int = 0) -> tuple[jax.Array, jax.Array, jax.Array]:
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, 1)) < 0.3).astype(np.float32)
    logits = (rng.normal(size=(n, 1)) + 1.5 * labels).astype(np.float32)
    weights = rng.uniform(0.5, 2.0, size=(n, 1)).astype(np.float32)
    return jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(weights)


def _prepare(logits: jax.Array, labels: jax.Array, weights: jax.Array):
    """Flat [N] views of the [N, 1] head inputs, pinned by an optimization barrier.

    XLA:CPU (jaxlib 0.10) runs fused elementwise + reduction loops over
    ``[N, 1]`` arrays 10-30x slower than over ``[N]`` (and folds a plain
    reshape back): Keras and the naive version get flat views, their best case.
    (The head flattens internally.)
    """
    return jax.lax.optimization_barrier(
        (logits.reshape(-1), labels.reshape(-1), weights.reshape(-1))
    )


def _head_parts(logits: jax.Array, labels: jax.Array):
    """Loss, probability and class id, as the binary head computes them."""
    loss = jnp.maximum(logits, 0.0) - logits * labels + jnp.log1p(jnp.exp(-jnp.abs(logits)))
    prob = jax.nn.sigmoid(logits)
    class_ids = (logits > 0).astype(jnp.float32)
    return loss, prob, class_ids


# ---------------------------------------------------------------------------- ours
HEAD = jaxheads.BinaryClassHead(weight_column="w", thresholds=THRESHOLDS)


@jax.jit
def ours_update(state: dict[str, Any], logits, labels, weights) -> dict[str, Any]:
    """The head's own metric update, on the inputs as a user passes them."""
    return HEAD.update_metrics(state, {"w": weights.reshape(-1)}, logits, labels)


def ours_compute(state: dict[str, Any]) -> dict[str, float]:
    out = HEAD.compute_metrics(state)
    renamed = {k.replace("/positive_threshold_", "/"): v for k, v in out.items()}
    return {k: float(v) for k, v in renamed.items()}


# ---------------------------------------------------------------------------- naive
def naive_init() -> dict[str, jax.Array]:
    z = jnp.zeros((), jnp.float32)
    zt = jnp.zeros((NUM_THRESHOLDS,), jnp.float32)
    z3 = jnp.zeros((len(THRESHOLDS),), jnp.float32)
    return {
        **{k: z for k in ("loss_t", "w", "acc_t", "pm_t", "lm_t")},
        **{k: z for k in ("c_tp", "c_fp", "c_fn")},
        **{k: zt for k in ("tp", "fp", "tn", "fn")},
        **{k: z3 for k in ("t_tp", "t_fp", "t_fn", "t_acc")},
    }


@jax.jit
def naive_update(s: dict[str, jax.Array], logits, labels, weights) -> dict[str, jax.Array]:
    logits, labels, weights = _prepare(logits, labels, weights)
    loss, prob, class_ids = _head_parts(logits, labels)
    w = weights.reshape(-1)
    y = labels.reshape(-1)
    p = prob.reshape(-1)
    c = class_ids.reshape(-1)
    pos = (y != 0).astype(jnp.float32)
    wp, wn = w * pos, w * (1.0 - pos)
    curve_t = jnp.asarray(metrics.curve_thresholds(NUM_THRESHOLDS))
    above = (p[:, None] > curve_t[None, :]).astype(jnp.float32)  # [N, T]
    tp, fp = wp @ above, wn @ above
    at = jnp.asarray(THRESHOLDS, jnp.float32)
    above3 = (p[:, None] > at[None, :]).astype(jnp.float32)  # [N, 3]
    t_tp, t_fp = wp @ above3, wn @ above3
    match3 = (y[:, None] == above3).astype(jnp.float32)
    return {
        "loss_t": s["loss_t"] + jnp.sum(loss.reshape(-1) * w),
        "w": s["w"] + jnp.sum(w),
        "acc_t": s["acc_t"] + jnp.sum(w * (y == c).astype(jnp.float32)),
        "pm_t": s["pm_t"] + jnp.sum(w * p),
        "lm_t": s["lm_t"] + jnp.sum(w * y),
        "c_tp": s["c_tp"] + jnp.sum(wp * c),
        "c_fp": s["c_fp"] + jnp.sum(wn * c),
        "c_fn": s["c_fn"] + jnp.sum(wp * (1.0 - c)),
        "tp": s["tp"] + tp,
        "fp": s["fp"] + fp,
        "tn": s["tn"] + (jnp.sum(wn) - fp),
        "fn": s["fn"] + (jnp.sum(wp) - tp),
        "t_tp": s["t_tp"] + t_tp,
        "t_fp": s["t_fp"] + t_fp,
        "t_fn": s["t_fn"] + (jnp.sum(wp) - t_tp),
        "t_acc": s["t_acc"] + w @ match3,
    }


# ---------------------------------------------------------------------------- keras
def keras_contender() -> (
    tuple[Callable[..., Any], Any, Callable[..., Any], Callable[..., Any]] | None
):
    """(jitted update, initial variables, compute, eager update) with Keras 3 metrics, or None."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    try:
        import keras
    except ImportError:
        return None
    if keras.backend.backend() != "jax":
        return None
    km = keras.metrics
    ms: dict[str, Any] = {
        "average_loss": km.Mean(),
        "accuracy": km.Accuracy(),
        "precision": km.Precision(),
        "recall": km.Recall(),
        "prediction/mean": km.Mean(),
        "label/mean": km.Mean(),
        "auc": km.AUC(num_thresholds=NUM_THRESHOLDS),
        "auc_pr": km.AUC(num_thresholds=NUM_THRESHOLDS, curve="PR"),
        "t_precision": km.Precision(thresholds=list(THRESHOLDS)),
        "t_recall": km.Recall(thresholds=list(THRESHOLDS)),
    }
    for t in THRESHOLDS:
        ms[f"accuracy/{t:g}"] = km.BinaryAccuracy(threshold=t)
    variables = {k: [v.value for v in m.variables] for k, m in ms.items()}

    @jax.jit
    def update(vs, logits, labels, weights):
        logits, labels, weights = _prepare(logits, labels, weights)
        loss, prob, class_ids = _head_parts(logits, labels)
        args: dict[str, tuple[Any, ...]] = {
            "average_loss": (loss,),
            "accuracy": (labels, class_ids),
            "precision": (labels, class_ids),
            "recall": (labels, class_ids),
            "prediction/mean": (prob,),
            "label/mean": (labels,),
        }
        out = {}
        for k, m in ms.items():
            a = args.get(k, (labels, prob))
            w = weights
            if k.startswith("accuracy/"):
                # BinaryAccuracy averages over the last axis: give it [N, 1] so that
                # it is per example (on flat [N] it would average the whole batch).
                a = tuple(x.reshape(-1, 1) for x in a)
                w = weights.reshape(-1, 1)
            out[k] = m.stateless_update_state(vs[k], *a, sample_weight=w)
        return out

    def compute(vs) -> dict[str, float]:
        res = {k: np.asarray(m.stateless_result(vs[k])) for k, m in ms.items()}
        out = {k: float(res[k]) for k in ms if not k.startswith("t_")}
        out["auc_precision_recall"] = out.pop("auc_pr")
        for i, t in enumerate(THRESHOLDS):
            out[f"precision/{t:g}"] = float(res["t_precision"][i])
            out[f"recall/{t:g}"] = float(res["t_recall"][i])
        return out

    def eager_update(logits, labels, weights):
        """Each metric's ``update_state``, called eagerly one by one (Keras' documented use)."""
        loss, prob, class_ids = _head_parts(logits.reshape(-1), labels.reshape(-1))
        y, w = labels.reshape(-1), weights.reshape(-1)
        ms["average_loss"].update_state(loss, sample_weight=w)
        ms["accuracy"].update_state(y, class_ids, sample_weight=w)
        ms["precision"].update_state(y, class_ids, sample_weight=w)
        ms["recall"].update_state(y, class_ids, sample_weight=w)
        ms["prediction/mean"].update_state(prob, sample_weight=w)
        ms["label/mean"].update_state(y, sample_weight=w)
        for k in ("auc", "auc_pr", "t_precision", "t_recall"):
            ms[k].update_state(y, prob, sample_weight=w)
        for t in THRESHOLDS:
            ms[f"accuracy/{t:g}"].update_state(
                y.reshape(-1, 1), prob.reshape(-1, 1), sample_weight=w.reshape(-1, 1)
            )
        return [v.value for m in ms.values() for v in m.variables]

    return update, variables, compute, eager_update


# ---------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10**4, 10**5, 10**6, 10**7])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument(
        "--no-naive-above",
        type=int,
        default=10**7,
        help="skip the naive [N, T] version above this N",
    )
    parser.add_argument(
        "--no-eager-above", type=int, default=10**6, help="skip keras eager above this N"
    )
    parser.add_argument("--skip-curve-table", action="store_true")
    args = parser.parse_args()

    print(
        f"JAX {jax.__version__}, backend {jax.default_backend()}, "
        f"{os.cpu_count()} CPUs, {platform.machine()} {platform.processor() or ''}".rstrip()
    )
    keras_c = keras_contender()
    if keras_c is None:
        print("keras (JAX backend) not available: the keras column is skipped")
    else:
        import keras

        print(f"Keras {keras.__version__}")

    print(
        f"\nFull binary-head metric update per batch (ms, median of {args.repeats} runs; "
        "ours and keras jit interleaved; ratios = medians of per-round ratios)"
    )
    print(
        f"{'N':>10} | {'ours ms':>9} | {'keras jit':>9} | {'keras eager':>11} | "
        f"{'naive ms':>9} | {'jit/ours':>8} | {'eager/ours':>10} | {'naive/ours':>10}"
    )
    print("-" * 98)
    nan = float("nan")
    for n in args.sizes:
        logits, labels, weights = _inputs(n)
        data = (logits, labels, weights)
        contenders = {"ours": (ours_update, (HEAD.init_metrics(), *data))}
        if keras_c is not None:
            k_update, k_vars, k_compute, k_eager = keras_c
            contenders["keras"] = (k_update, (k_vars, *data))
        reps = args.repeats if n < 10**7 else max(3, args.repeats // 2)
        times = _interleaved(contenders, reps)
        if keras_c is not None and n <= args.no_eager_above:
            times["eager"] = _interleaved({"eager": (k_eager, data)}, max(3, reps // 3))["eager"]
        if n <= args.no_naive_above:
            # Timed on its own: its [N, T] work churns memory and would slow down
            # whichever contender runs right after it.
            naive = (naive_update, (naive_init(), *data))
            times["naive"] = _interleaved({"naive": naive}, max(3, reps // 3))["naive"]
        if keras_c is not None:  # same numbers?
            k_vals = k_compute(k_update(k_vars, *data))
            vals = ours_compute(ours_update(HEAD.init_metrics(), *data))
            worst = max(abs(k_vals[k] - vals[k]) for k in k_vals)
            if worst > 1e-4:
                print(f"  warning: ours and keras differ by {worst:.2e} at N={n}")
        med = {k: statistics.median(v) for k, v in times.items()}
        jit_ratio = _median_ratio(times["keras"], times["ours"]) if "keras" in times else nan
        eager_ratio = med["eager"] / med["ours"] if "eager" in times else nan
        naive_ratio = med["naive"] / med["ours"] if "naive" in times else nan
        print(
            f"{n:>10} | {med['ours']:>9.3f} | {med.get('keras', nan):>9.3f} | "
            f"{med.get('eager', nan):>11.3f} | {med.get('naive', nan):>9.3f} | "
            f"{jit_ratio:>8.1f} | {eager_ratio:>10.1f} | {naive_ratio:>10.1f}"
        )

    if args.skip_curve_table:
        return
    print("\nConfusion-curve (ROC + PR AUC) update alone: T = 200 vs T = 20,000 (ms, median)")
    print(f"{'N':>10} | {'T=200':>9} | {'T=20000':>9} | {'ratio':>6}")
    print("-" * 44)

    @jax.jit
    def curve_update(state, labels, prob, weights):
        return state.update(labels, prob, weights)

    for n in args.sizes:
        logits, labels, weights = (a.reshape(-1) for a in _inputs(n))
        prob = jax.nn.sigmoid(logits)
        times = _interleaved(
            {
                "small": (curve_update, (metrics.ConfusionCurve.empty(200), labels, prob, weights)),
                "big": (
                    curve_update,
                    (metrics.ConfusionCurve.empty(20_000), labels, prob, weights),
                ),
            },
            args.repeats,
        )
        t_small, t_big = (statistics.median(times[k]) for k in ("small", "big"))
        print(
            f"{n:>10} | {t_small:>9.3f} | {t_big:>9.3f} | "
            f"{_median_ratio(times['big'], times['small']):>6.2f}"
        )


if __name__ == "__main__":
    main()
