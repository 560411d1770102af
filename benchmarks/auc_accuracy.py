"""ROC-AUC accuracy on rare events: exact vs 200 probability thresholds vs LogitHistogram.

Run:  python benchmarks/auc_accuracy.py [--n 1000000]

Data: logits ``x ~ N(μ, 1)`` with labels drawn from ``sigmoid(x)`` (a
calibrated model), ``μ`` chosen for base rates (``E[σ(x)] ≈ exp(μ + 1/2)``) of 1.6 %, 0.3 % and 0.1 %, plus
the 1.6 % data with every logit multiplied by 2 (the same ranking). Columns:
scikit-learn's exact ``roc_auc_score``; TF's / Keras' / our
``ConfusionCurve`` at 200 probability thresholds; :class:`LogitHistogram`
(16,384 logit buckets on [−16, 16]) with its certified interval.
"""

from __future__ import annotations

import argparse

import jax
import numpy as np
from sklearn.metrics import roc_auc_score

from jaxheads import metrics

CASES = (
    ("1.6 %", -4.6, 1.0),
    ("0.3 %", -6.3, 1.0),
    ("0.1 %", -7.4, 1.0),
    ("1.6 %, logits x2", -4.6, 2.0),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10**6)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"N = {args.n:,} per row")
    print(
        f"{'data':>18} | {'base rate':>9} | {'exact':>7} | {'200 thr':>7} | {'error':>8} | "
        f"{'histogram':>9} | {'error':>8} | {'certified interval':>20}"
    )
    print("-" * 108)
    for name, mu, scale in CASES:
        x = rng.normal(mu, 1.0, args.n).astype(np.float32)
        y = (rng.random(args.n) < 1.0 / (1.0 + np.exp(-x))).astype(np.float32)
        x = x * np.float32(scale)
        exact = roc_auc_score(y, x)
        curve = metrics.ConfusionCurve.empty(200).update(y, jax.nn.sigmoid(x))
        hist = metrics.LogitHistogram.empty().update(y, x)
        thr, ours = float(curve.roc_auc()), float(hist.roc_auc())
        lo, hi = (float(b) for b in hist.roc_auc_bounds())
        print(
            f"{name:>18} | {100 * y.mean():>8.2f}% | {exact:>7.4f} | {thr:>7.4f} | "
            f"{thr - exact:>+8.1e} | {ours:>9.5f} | {ours - exact:>+8.1e} | "
            f"[{lo:.5f}, {hi:.5f}]"
        )


if __name__ == "__main__":
    main()
