"""Three-class wine classification with ``MultiClassHead`` (scikit-learn's wine set, no download).

Run: ``python examples/train_multiclass.py`` (needs the ``examples`` extra).
Trains a small MLP with adam on the class *names* (``class_0`` … ``class_2``,
encoded on the host through the head's ``label_vocabulary``), prints the
head's eval metrics (``average_loss``, ``accuracy``) after every epoch, and
decodes a few predictions back to names with ``head.class_names``.
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

EPOCHS, BATCH = 20, 16

data = load_wine()
names = np.asarray(data.target_names)[data.target].reshape(-1, 1)  # string labels [N, 1]
x_train, x_test, y_train, y_test = train_test_split(
    data.data.astype(np.float32), names, test_size=0.3, random_state=0, stratify=data.target
)
scaler = StandardScaler().fit(x_train)
x_train = scaler.transform(x_train).astype(np.float32)
x_test = scaler.transform(x_test).astype(np.float32)

head = MultiClassHead(n_classes=3, label_vocabulary=list(data.target_names), name="wine")


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        return LinenHead(head)(nn.relu(nn.Dense(16)(x)))  # the head owns the final Dense(3)


model = MLP()
params = model.init(jax.random.key(0), x_train[:1])["params"]
state = TrainState.create(apply_fn=model.apply, params=params, tx=optax.adam(1e-2))
train_step = train.make_train_step(None, head, with_metrics=False)
eval_step = train.make_eval_step(None, head)

rng = np.random.default_rng(0)
COLUMNS = ["train loss", "average_loss/wine", "accuracy/wine"]
print(header(COLUMNS), flush=True)
progress, say = epochs(EPOCHS)  # a bar on a terminal only; one line per epoch in a log
for epoch in progress:
    losses = []
    for batch in shuffled_batches(rng, len(x_train), BATCH):  # one batch shape: one compilation
        state, out = train_step(state, x_train[batch], y_train[batch])  # strings encoded on host
        losses.append(float(out.loss))
    values = head.compute_metrics(eval_step(state, x_test, y_test).metrics)
    say(row(epoch, {**values, "train loss": np.mean(losses)}, COLUMNS))

logits = model.apply({"params": state.params}, x_test[:5])
predictions = head.predictions(logits)
print("predicted:", head.class_names(predictions["class_ids"]).ravel().tolist())
print("truth:    ", y_test[:5].ravel().tolist())
print(
    "p(class): ",
    [[round(float(p), 3) for p in line] for line in np.asarray(predictions["probabilities"])],
)
