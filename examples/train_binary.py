"""Binary classification of scikit-learn's breast cancer set with ``BinaryClassHead``.

Run: ``python examples/train_binary.py`` (needs the ``examples`` extra). Trains
a small MLP with adam, prints the head's eval metrics after every epoch,
saves ROC and PR curves to ``examples/out/binary_curves.png`` and exports the
model with its label vocabulary.
"""

import pathlib

import jax
import matplotlib
import numpy as np
import optax
from flax import linen as nn
from flax.training.train_state import TrainState
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import jaxheads as jh
from jaxheads import train
from jaxheads.export import ExportedHead, export_head
from jaxheads.flax import LinenHead

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from _console import epochs, header, row, shuffled_batches

OUT = pathlib.Path(__file__).parent / "out"
EPOCHS, BATCH = 15, 32
COLUMNS = ["average_loss", "accuracy", "precision", "recall", "auc", "auc_precision_recall"]

data = load_breast_cancer()
x_train, x_test, y_train, y_test = train_test_split(
    data.data.astype(np.float32), data.target_names[data.target], test_size=0.25, random_state=0
)
scaler = StandardScaler().fit(x_train)
x_train, x_test = (
    scaler.transform(x_train).astype(np.float32),
    scaler.transform(x_test).astype(np.float32),
)
head = jh.BinaryClassHead(label_vocabulary=list(data.target_names))  # string labels


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        return LinenHead(head)(nn.relu(nn.Dense(32)(x)))  # the head owns the final Dense


model = MLP()
params = model.init(jax.random.key(0), x_train[:1])["params"]
state = TrainState.create(apply_fn=model.apply, params=params, tx=optax.adam(3e-3))
train_step = train.make_train_step(None, head, with_metrics=False, donate=True)
eval_step = train.make_eval_step(None, head)


rng = np.random.default_rng(0)
print(header(COLUMNS), flush=True)
progress, say = epochs(EPOCHS)  # a bar on a terminal only; one line per epoch in a log
for epoch in progress:
    for batch in shuffled_batches(rng, len(x_train), BATCH):
        # The labels are strings ("malignant", "benign"): encoded on the host by the step.
        state, _ = train_step(state, x_train[batch], y_train[batch])
    metrics = eval_step(state, x_test, y_test).metrics
    values = head.compute_metrics(metrics)
    say(row(epoch, values, COLUMNS))

OUT.mkdir(exist_ok=True)
curve = head.curve(metrics)  # the ROC / PR counts at 200 thresholds
roc, pr = curve.roc_curve(), curve.pr_curve()
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 4))
ax1.plot(roc["fpr"], roc["tpr"]), ax1.plot([0, 1], [0, 1], "k:")
ax1.set(
    xlabel="false positive rate",
    ylabel="true positive rate",
    title=f"ROC, AUC = {values['auc']:.3f}",
)
counts = curve.confusion()
defined = np.asarray(counts["tp"] + counts["fp"]) > 0  # precision needs predicted positives
ax2.plot(np.asarray(pr["recall"])[defined], np.asarray(pr["precision"])[defined])
ax2.set(xlabel="recall", ylabel="precision", title=f"PR-AUC = {values['auc_precision_recall']:.3f}")
fig.tight_layout()
fig.savefig(OUT / "binary_curves.png", dpi=100)

# Serving: StableHLO with a symbolic batch; the vocabulary travels with it.
served = ExportedHead.deserialize(
    export_head(head, lambda x: model.apply({"params": state.params}, x), x_test[:1]).serialize()
)
print("served classes:", served(x_test[:4], "predict")["classes"].ravel(), "truth:", y_test[:4])
print("saved", OUT / "binary_curves.png")
