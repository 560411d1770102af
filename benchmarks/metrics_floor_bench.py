"""Benchmark: the binary head's metric update against a jitted floor, and its peers.

Run:  KERAS_BACKEND=jax python benchmarks/metrics_floor_bench.py [--n 1000000] [--repeats 15]

All contenders get the same ``[N, 1]`` logits and labels (and ``[N]`` weights
where they are weighted) and run interleaved, round-robin (background load hits
all alike); each ratio is the median of the per-round ratios to its floor.

* **floor** — one jitted function computing only the stable sigmoid-BCE loss
  sum ``Σ max(x, 0) − x·y + log1p(exp(−|x|))`` and the sigmoid sum ``Σ σ(x)``:
  the least any metric update must do (read the batch, one ``exp``, two
  reductions). **floor (weighted)** — the same sums weighted, ``Σ w·…``.
* **default** — ``jax.jit(head.update_metrics)`` of ``BinaryClassHead()``:
  TF's full metric set (accuracy, precision, recall, AUC, PR-AUC, the means),
  exact counts. Compared to the unweighted floor.
* **+ thresholds** — ``BinaryClassHead(thresholds=[0.25, 0.5, 0.75])``.
* **extended** — ``BinaryClassHead(extended_metrics=True)`` (plus the
  16,384-bucket logit histogram); ``× default`` is its ratio to **default**.
* **weighted**, **weighted extended** — the same heads with
  ``weight_column="w"`` and the three thresholds: exact weighted counts
  (compensated digit scatters). Compared to the weighted floor.
* **keras jit / eager** — Keras 3 metrics for the weighted TF metric set (see
  ``metrics_bench.py``), when Keras is installed. Compared to the weighted floor.
* **metrax jit** — metrax's metrics for the same set (``pip install
  google-metrax``; its precision / recall are unweighted), in one ``jax.jit``.
* **sklearn** — ``roc_auc_score`` + ``average_precision_score`` on the host
  (exact, sorting; one call each), for scale.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxheads

THRESHOLDS = (0.25, 0.5, 0.75)


def _inputs(n: int, seed: int = 0) -> tuple[jax.Array, jax.Array, jax.Array]:
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, 1)) < 0.3).astype(np.float32)
    logits = (rng.normal(size=(n, 1)) + 1.5 * labels).astype(np.float32)
    weights = rng.uniform(0.5, 2.0, size=(n,)).astype(np.float32)
    return jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(weights)


def _bce_and_sigmoid(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    e = jnp.exp(-jnp.abs(logits))
    loss = jnp.maximum(logits, 0.0) - logits * labels + jnp.log1p(e)
    sigmoid = jnp.where(logits >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    return loss, sigmoid


@jax.jit
def floor(logits: jax.Array, labels: jax.Array, weights: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Σ BCE and Σ σ over flat views (the floor of the unweighted heads)."""
    del weights
    x, y = jax.lax.optimization_barrier((logits.reshape(-1), labels.reshape(-1)))
    loss, sigmoid = _bce_and_sigmoid(x, y)
    return jnp.sum(loss), jnp.sum(sigmoid)


@jax.jit
def weighted_floor(
    logits: jax.Array, labels: jax.Array, weights: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Σ w·BCE and Σ w·σ over flat views (the floor of the weighted heads)."""
    x, y, w = jax.lax.optimization_barrier((logits.reshape(-1), labels.reshape(-1), weights))
    loss, sigmoid = _bce_and_sigmoid(x, y)
    return jnp.sum(w * loss), jnp.sum(w * sigmoid)


def _head_update(head: jaxheads.BinaryClassHead) -> Callable[..., Any]:
    @jax.jit
    def update(state: Any, logits: jax.Array, labels: jax.Array, weights: jax.Array) -> Any:
        return head.update_metrics(state, {"w": weights}, logits, labels)

    return update


def _keras() -> tuple[Callable[..., Any], Any, Callable[..., Any]] | None:
    try:
        import metrics_bench  # the Keras contender of the full-table benchmark
    except ImportError:
        return None
    found = metrics_bench.keras_contender()
    if found is None:
        return None
    update, variables, _, eager = found

    def jit_update(vs: Any, logits: jax.Array, labels: jax.Array, weights: jax.Array) -> Any:
        return update(vs, logits, labels, weights.reshape(-1, 1))

    def eager_update(vs: Any, logits: jax.Array, labels: jax.Array, weights: jax.Array) -> Any:
        del vs
        return eager(logits, labels, weights.reshape(-1, 1))

    return jit_update, variables, eager_update


def _metrax() -> tuple[Callable[..., Any], Any] | None:
    """TF's binary metric set with metrax (``pip install google-metrax``), jitted; or None.

    metrax's ``AUCROC`` / ``AUCPR`` compare every prediction with every one of
    the 200 thresholds (an ``[T, N]`` array); its ``Precision`` / ``Recall`` take
    no weights, so those are unweighted here (less work than the head does).
    """
    try:
        import metrax
    except ImportError:
        return None

    def batch(logits: jax.Array, labels: jax.Array, weights: jax.Array) -> dict[str, Any]:
        x, y, w = logits.reshape(-1), labels.reshape(-1), weights.reshape(-1)
        loss, p = _bce_and_sigmoid(x, y)
        cid = (x > 0).astype(jnp.float32)
        out = {
            "loss": metrax.Average.from_model_output(loss, w),
            "prediction": metrax.Average.from_model_output(p, w),
            "label": metrax.Average.from_model_output(y, w),
            "accuracy": metrax.Accuracy.from_model_output(cid, y, w),
            "precision": metrax.Precision.from_model_output(p, y),
            "recall": metrax.Recall.from_model_output(p, y),
            "auc": metrax.AUCROC.from_model_output(p, y, w),
            "auc_pr": metrax.AUCPR.from_model_output(p, y, w),
        }
        for t in THRESHOLDS:
            hit = (p > t).astype(jnp.float32)
            out[f"accuracy/{t}"] = metrax.Accuracy.from_model_output(hit, y, w)
            out[f"precision/{t}"] = metrax.Precision.from_model_output(p, y, threshold=t)
            out[f"recall/{t}"] = metrax.Recall.from_model_output(p, y, threshold=t)
        return out

    @jax.jit
    def update(state: Any, logits: jax.Array, labels: jax.Array, weights: jax.Array) -> Any:
        new = batch(logits, labels, weights)
        return {k: state[k].merge(v) for k, v in new.items()}

    return update, jax.eval_shape(batch, *_inputs(8))


def _sklearn(vs: Any, logits: jax.Array, labels: jax.Array, weights: jax.Array) -> float:
    from sklearn.metrics import average_precision_score, roc_auc_score

    del vs
    x, y, w = (np.asarray(a).reshape(-1) for a in (logits, labels, weights))
    return roc_auc_score(y, x, sample_weight=w) + average_precision_score(y, x, sample_weight=w)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10**6)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--no-peers", action="store_true", help="skip keras and sklearn")
    args = parser.parse_args()
    logits, labels, weights = _inputs(args.n)
    data = (logits, labels, weights)
    heads = {
        "default": jaxheads.BinaryClassHead(),
        "+ thresholds": jaxheads.BinaryClassHead(thresholds=THRESHOLDS),
        "extended": jaxheads.BinaryClassHead(extended_metrics=True),
        "weighted": jaxheads.BinaryClassHead(weight_column="w", thresholds=THRESHOLDS),
        "weighted extended": jaxheads.BinaryClassHead(
            weight_column="w", thresholds=THRESHOLDS, extended_metrics=True
        ),
    }
    contenders: dict[str, tuple[Callable[..., Any], Any]] = {
        "floor": (lambda s, *a: floor(*a), None),
        "floor (weighted)": (lambda s, *a: weighted_floor(*a), None),
    }
    contenders.update({k: (_head_update(h), h.init_metrics()) for k, h in heads.items()})
    if not args.no_peers:
        keras = _keras()
        if keras is not None:
            contenders["keras jit"] = (keras[0], keras[1])
            contenders["keras eager"] = (keras[2], None)
        found = _metrax()
        if found is not None:
            update, shapes = found
            zero = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), shapes)
            contenders["metrax jit"] = (update, zero)
        contenders["sklearn"] = (_sklearn, None)
    for fn, state in contenders.values():
        jax.block_until_ready(fn(state, *data))
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(args.repeats):
        for name, (fn, state) in contenders.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn(state, *data))
            times[name].append(1e3 * (time.perf_counter() - t0))
    print(f"JAX {jax.__version__} {jax.default_backend()}, N = {args.n:,}, {args.repeats} rounds")
    print(f"{'contender':>18} | {'median ms':>9} | {'x floor':>7} | {'x default':>9}")
    print("-" * 54)
    for name, ts in times.items():
        unweighted_heads = ("floor", "default", "+ thresholds", "extended")
        own = "floor" if name in unweighted_heads else "floor (weighted)"
        unweighted = own == "floor"
        base = "default" if unweighted or name == "weighted" else "weighted"
        x_floor = statistics.median(a / b for a, b in zip(ts, times[own], strict=True))
        x_default = statistics.median(a / b for a, b in zip(ts, times[base], strict=True))
        print(f"{name:>18} | {statistics.median(ts):>9.3f} | {x_floor:>7.2f} | {x_default:>9.2f}")


if __name__ == "__main__":
    main()
