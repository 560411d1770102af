"""Two tasks, one model, ``MultiHead``: wine cultivar (3 classes) + colour intensity (regression).

Run: ``python examples/train_multihead.py`` (needs the ``examples`` extra).
The colour intensity is taken out of the inputs and predicted by a
``RegressionHead``; the cultivar by a ``MultiClassHead``. One ``Dense(3 + 1)``
produces both heads' logits, which ``MultiHead`` splits in head order. The
training loss is ``1.0 · loss_cultivar + 0.5 · loss_colour``; the eval
metrics per epoch are each head's own metrics (suffixed with its name) plus
``loss/<head>``. Predictions are keyed by ``(head_name, key)`` tuples.
"""

import jax
import numpy as np
import optax
from _console import epochs, header, row, shuffled_batches
from flax import linen as nn
from flax.training.train_state import TrainState
from sklearn.datasets import load_wine
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from jaxheads import train
from jaxheads.flax import LinenHead
from jaxheads.heads.multi_class import MultiClassHead
from jaxheads.heads.multi_head import MultiHead
from jaxheads.heads.regression import RegressionHead

EPOCHS, BATCH = 20, 16
COLUMNS = ["loss/cultivar", "accuracy/cultivar", "loss/colour", "average_loss/colour"]

data = load_wine()
colour = data.feature_names.index("color_intensity")
inputs = np.delete(data.data, colour, axis=1).astype(np.float32)
target = data.data[:, colour : colour + 1].astype(np.float32)
idx_train, idx_test = train_test_split(
    np.arange(len(inputs)), test_size=0.3, random_state=0, stratify=data.target
)
scaler = StandardScaler().fit(inputs[idx_train])
x = scaler.transform(inputs).astype(np.float32)
y_mean, y_std = target[idx_train].mean(), target[idx_train].std()
labels = {
    "cultivar": data.target.reshape(-1, 1).astype(np.int32),
    "colour": (target - y_mean) / y_std,  # standardised regression target
}

head = MultiHead(
    [MultiClassHead(n_classes=3, name="cultivar"), RegressionHead(name="colour")],
    head_weights=[1.0, 0.5],
)


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        return LinenHead(head)(nn.relu(nn.Dense(32)(x)))  # Dense(4): 3 + 1 logits


def take(tree, index):
    return jax.tree.map(lambda a: a[index], tree)


model = MLP()
params = model.init(jax.random.key(0), x[:1])["params"]
state = TrainState.create(apply_fn=model.apply, params=params, tx=optax.adam(1e-2))
train_step = train.make_train_step(None, head, with_metrics=False)
eval_step = train.make_eval_step(None, head)

rng = np.random.default_rng(0)
print(header(["train loss", *COLUMNS]), flush=True)
progress, say = epochs(EPOCHS)  # a bar on a terminal only; one line per epoch in a log
for epoch in progress:
    losses = []
    for batch in shuffled_batches(rng, idx_train, BATCH):
        state, out = train_step(state, x[batch], take(labels, batch))
        losses.append(float(out.loss))
    values = head.compute_metrics(eval_step(state, x[idx_test], take(labels, idx_test)).metrics)
    say(row(epoch, {**values, "train loss": np.mean(losses)}, ["train loss", *COLUMNS]))

predictions = head.predictions(model.apply({"params": state.params}, x[idx_test[:5]]))
print("cultivar predicted:", np.asarray(predictions[("cultivar", "class_ids")]).ravel().tolist())
print("cultivar truth:    ", data.target[idx_test[:5]].tolist())
colour_pred = np.asarray(predictions[("colour", "predictions")]).ravel() * y_std + y_mean
print("colour predicted:  ", [round(float(v), 2) for v in colour_pred])
print("colour truth:      ", [round(float(v), 2) for v in target[idx_test[:5]].ravel()])
