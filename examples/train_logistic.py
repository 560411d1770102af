"""Soft-label logistic regression with ``LogisticRegressionHead`` on scikit-learn's diabetes set.

Run: ``python examples/train_logistic.py`` (needs the ``examples`` extra).
The regression target (disease progression after one year) is rescaled to a
soft label in [0, 1]; the head fits ``sigmoid(logits)`` to it with sigmoid
cross-entropy. Prints the head's eval metrics per epoch and saves ROC / PR
curves of the event "progression above the midpoint" (label > 0.5), read from
a streaming ``ConfusionCurve`` state, to ``examples/out/logistic_curves.png``.
"""

import pathlib

import jax.numpy as jnp
import matplotlib
import numpy as np
import optax
from _console import epochs, header, row, shuffled_batches
from flax import nnx
from sklearn.datasets import load_diabetes
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import jaxheads as jh
from jaxheads import train
from jaxheads.flax import NnxHead

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

OUT = pathlib.Path(__file__).parent / "out"
EPOCHS, BATCH = 30, 32
COLUMNS = ["average_loss", "label/mean", "prediction/mean"]

x, y = load_diabetes(return_X_y=True)
y = ((y - y.min()) / (y.max() - y.min())).astype(np.float32).reshape(-1, 1)  # soft labels in [0, 1]
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0)
scaler = StandardScaler().fit(x_train)
x_train, x_test = (
    scaler.transform(x_train).astype(np.float32),
    scaler.transform(x_test).astype(np.float32),
)
head = jh.LogisticRegressionHead()


class MLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(10, 32, rngs=rngs)
        self.head = NnxHead(head, in_features=32, rngs=rngs)  # the head owns the final Linear

    def __call__(self, x):
        return self.head(nnx.relu(self.hidden(x)))


model = MLP(nnx.Rngs(0))
optimizer = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)
train_step = train.make_nnx_train_step(None, head, with_metrics=False)
eval_step = train.make_nnx_eval_step(None, head)
predict = nnx.jit(lambda m, x: m.head.predictions(m(x))["predictions"])

rng = np.random.default_rng(0)
print(header(COLUMNS), flush=True)
progress, say = epochs(EPOCHS)  # a bar on a terminal only; one line per epoch in a log
for epoch in progress:
    for batch in shuffled_batches(rng, len(x_train), BATCH):
        train_step(model, optimizer, x_train[batch], y_train[batch])
    values = head.compute_metrics(eval_step(model, x_test, y_test).metrics)
    say(row(epoch, values, COLUMNS))

# The head has no AUC (TF's neither): stream a ConfusionCurve for "label > 0.5" instead.
curve = jh.metrics.ConfusionCurve.empty().update(
    jnp.asarray(y_test > 0.5, jnp.float32), predict(model, x_test)
)
roc, pr = curve.roc_curve(), curve.pr_curve()
OUT.mkdir(exist_ok=True)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 4))
ax1.plot(roc["fpr"], roc["tpr"]), ax1.plot([0, 1], [0, 1], "k:")
ax1.set(
    xlabel="false positive rate",
    ylabel="true positive rate",
    title=f"ROC, AUC = {curve.roc_auc():.3f}",
)
counts = curve.confusion()
defined = np.asarray(counts["tp"] + counts["fp"]) > 0  # precision needs predicted positives
ax2.plot(np.asarray(pr["recall"])[defined], np.asarray(pr["precision"])[defined])
ax2.set(xlabel="recall", ylabel="precision", title=f"PR, AUC = {curve.pr_auc():.3f}")
fig.suptitle("progression above the midpoint (label > 0.5)")
fig.tight_layout()
fig.savefig(OUT / "logistic_curves.png", dpi=100)
print("saved", OUT / "logistic_curves.png")
