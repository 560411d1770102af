"""ROC and precision-recall curves from a streaming ConfusionCurve, saved as PNG.

Run:  python examples/plot_curves.py [--out examples/out] [--num-thresholds 200]

Synthetic scores for a binary problem are folded into a
``jaxheads.metrics.ConfusionCurve`` batch by batch under ``jax.jit`` (the way
an evaluation loop would), then the curve points and both AUCs come from the
same bucketed counts. Needs matplotlib (``pip install jaxheads[examples]``).
"""

from __future__ import annotations

import argparse
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from jaxheads import metrics


def synthetic_batches(num_batches: int, batch_size: int, seed: int = 0):
    """Labels ~ Bernoulli(0.3); scores = sigmoid(logit) with a class-dependent mean."""
    rng = np.random.default_rng(seed)
    for _ in range(num_batches):
        labels = (rng.random((batch_size, 1)) < 0.3).astype(np.float32)
        logits = rng.normal(loc=-1.0 + 2.0 * labels, scale=1.3).astype(np.float32)
        weights = rng.uniform(0.5, 1.5, size=(batch_size, 1)).astype(np.float32)
        yield jnp.asarray(labels), jax.nn.sigmoid(jnp.asarray(logits)), jnp.asarray(weights)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "out"))
    parser.add_argument("--num-thresholds", type=int, default=200)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=5000)
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    step = jax.jit(lambda state, y, p, w: state.update(y, p, w))
    curve = metrics.ConfusionCurve.empty(num_thresholds=args.num_thresholds)
    for labels, scores, weights in synthetic_batches(args.batches, args.batch_size):
        curve = step(curve, labels, scores, weights)

    roc, pr = curve.roc_curve(), curve.pr_curve()
    roc_auc, pr_auc = float(curve.roc_auc()), float(curve.pr_auc())
    total = float(curve.counts.to_numpy().sum())
    print(
        f"folded {args.batches} batches (total weight {total:.1f}); "
        f"ROC-AUC {roc_auc:.4f}, PR-AUC {pr_auc:.4f}"
    )

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(roc["fpr"], roc["tpr"], lw=2, label=f"ROC (AUC = {roc_auc:.3f})")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="chance")
    ax.set(
        xlabel="false positive rate",
        ylabel="true positive rate (recall)",
        xlim=(0, 1),
        ylim=(0, 1.01),
        title="ROC curve",
    )
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "roc_curve.png", dpi=120)
    plt.close(fig)

    # Drop the top threshold, where nothing is predicted positive (precision 0/0 -> 0).
    keep = np.asarray(roc["tpr"]) > 0
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(
        np.asarray(pr["recall"])[keep],
        np.asarray(pr["precision"])[keep],
        lw=2,
        label=f"PR (AUC = {pr_auc:.3f})",
    )
    counts = curve.confusion()
    base = float(counts["tp"][0] / (counts["tp"][0] + counts["fp"][0]))  # positive rate
    ax.axhline(base, ls="--", c="grey", lw=1, label=f"base rate {base:.2f}")
    ax.set(
        xlabel="recall",
        ylabel="precision",
        xlim=(0, 1),
        ylim=(0, 1.01),
        title="Precision-recall curve",
    )
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(out / "pr_curve.png", dpi=120)
    plt.close(fig)
    print(f"saved {out / 'roc_curve.png'} and {out / 'pr_curve.png'}")


if __name__ == "__main__":
    main()
