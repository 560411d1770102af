"""A rare-event classifier, evaluated with ``BinaryClassHead(extended_metrics=True)``.

Run: ``python examples/train_rare_event.py`` (needs the ``examples`` extra).

Data: scikit-learn's shipped ``digits`` set, made imbalanced: "is it a 9?"
with all but 30 of the nines dropped (about 1.8 % positives, the base rate
of fraud or click data). A small MLP trains with adam; after every epoch one
line of TF's metrics is printed (a progress bar only on a terminal, so logs
stay one line per epoch). At the end the extended table — ROC-AUC with its
certified interval and DeLong standard error, average precision, calibration
(ECE, calibration ratio) and normalized entropy — is printed next to TF's
200-threshold ``auc``, and ``examples/out/rare_event_{roc,pr,reliability}.png``
are saved.
"""

import pathlib

import jax
import matplotlib
import numpy as np
import optax
from flax import linen as nn
from flax.training.train_state import TrainState
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import jaxheads as jh
from jaxheads import train
from jaxheads.flax import LinenHead

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from _console import epochs, header, row, shuffled_batches

OUT = pathlib.Path(__file__).parent / "out"
EPOCHS, BATCH, KEPT_POSITIVES = 12, 64, 30
COLUMNS = ["average_loss", "accuracy", "recall", "auc", "roc_auc", "average_precision"]


def imbalanced_digits(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``digits`` as "is it a 9?" with only ``KEPT_POSITIVES`` nines kept."""
    data = load_digits()
    rng = np.random.default_rng(seed)
    nines = np.flatnonzero(data.target == 9)
    keep = np.concatenate([np.flatnonzero(data.target != 9), rng.choice(nines, KEPT_POSITIVES)])
    x = data.data[keep].astype(np.float32)
    y = (data.target[keep] == 9).astype(np.float32)[:, None]
    return x, y


x, y = imbalanced_digits()
x_train, x_test, y_train, y_test = train_test_split(
    x, y, test_size=0.5, stratify=y[:, 0], random_state=0
)
scaler = StandardScaler().fit(x_train)
x_train, x_test = (scaler.transform(a).astype(np.float32) for a in (x_train, x_test))
print(
    f"train {len(x_train)} examples ({100 * y_train.mean():.1f} % positive), "
    f"test {len(x_test)} ({int(y_test.sum())} positives)"
)

head = jh.BinaryClassHead(extended_metrics=True)


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
        state, _ = train_step(state, x_train[batch], y_train[batch])
    evaluation = eval_step(state, x_test, y_test).metrics
    values = head.compute_metrics(evaluation)
    say(row(epoch, values, COLUMNS))

print("\nExtended evaluation (test set):")
lower, upper = float(values["roc_auc/lower"]), float(values["roc_auc/upper"])
table = [
    ("auc (TF, 200 probability thresholds)", f"{float(values['auc']):.4f}"),
    ("roc_auc (logit histogram)", f"{float(values['roc_auc']):.4f}"),
    ("  certified interval", f"[{lower:.4f}, {upper:.4f}]"),
    ("  DeLong standard error", f"{float(values['roc_auc/stderr']):.4f}"),
    ("average_precision", f"{float(values['average_precision']):.4f}"),
    ("expected_calibration_error", f"{float(values['expected_calibration_error']):.4f}"),
    ("calibration_ratio (Σp / Σy)", f"{float(values['calibration_ratio']):.4f}"),
    ("normalized_entropy", f"{float(values['normalized_entropy']):.4f}"),
]
width = max(len(k) for k, _ in table)
for key, value in table:
    print(f"  {key:<{width}}  {value}")

# Curves and the reliability diagram from the same streaming state.
hist = evaluation.counts.logit_histogram()
OUT.mkdir(exist_ok=True)
roc = hist.roc_curve()
fig, ax = plt.subplots(figsize=(4.5, 4))
ax.plot(roc["fpr"], roc["tpr"]), ax.plot([0, 1], [0, 1], "k:")
ax.set(
    xlabel="false positive rate",
    ylabel="true positive rate",
    title=f"ROC-AUC {float(values['roc_auc']):.3f}",
)
fig.tight_layout(), fig.savefig(OUT / "rare_event_roc.png", dpi=100)

pr = hist.pr_curve()
fig, ax = plt.subplots(figsize=(4.5, 4))
keep = np.asarray(pr["recall"]) > 0
ax.step(np.asarray(pr["recall"])[keep], np.asarray(pr["precision"])[keep], where="post")
ax.set(xlabel="recall", ylabel="precision", title=f"AP {float(values['average_precision']):.3f}")
fig.tight_layout(), fig.savefig(OUT / "rare_event_pr.png", dpi=100)

cal = hist.calibration(num_bins=10)
filled = np.asarray(cal["weight"]) > 0
fig, ax = plt.subplots(figsize=(4.5, 4))
ax.plot([0, 1], [0, 1], "k:")
ax.plot(np.asarray(cal["mean_probability"])[filled], np.asarray(cal["positive_rate"])[filled], "o-")
ece = float(values["expected_calibration_error"])
ax.set(xlabel="mean predicted probability", ylabel="observed rate", title=f"ECE {ece:.4f}")
fig.tight_layout(), fig.savefig(OUT / "rare_event_reliability.png", dpi=100)
print("saved", *(OUT / f"rare_event_{k}.png" for k in ("roc", "pr", "reliability")))
