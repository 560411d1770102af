"""Small models shared by the multi-process worker and its test (not a test module)."""

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn
from flax import nnx
from flax.training.train_state import TrainState

import jaxheads as jh
from jaxheads.flax import LinenHead, NnxHead


def make_head():
    # SUM_OVER_BATCH_SIZE counts rows: padding must be masked, not just zero-weighted.
    return jh.BinaryClassHead(weight_column="w")


class Mlp(nn.Module):
    head: jh.BinaryClassHead

    @nn.compact
    def __call__(self, x):
        return LinenHead(self.head)(nn.tanh(nn.Dense(6)(x)))


class NnxMlp(nnx.Module):
    def __init__(self, head, rngs):
        self.hidden = nnx.Linear(4, 6, rngs=rngs)
        self.head = NnxHead(head, 6, rngs=rngs)

    def __call__(self, x):
        return self.head(nnx.tanh(self.hidden(x)))


def linen_setup():
    head = make_head()
    model = Mlp(head)
    params = model.init(jax.random.key(0), jnp.ones((1, 4)))["params"]
    return head, TrainState.create(apply_fn=model.apply, params=params, tx=optax.sgd(0.5))


def nnx_setup():
    head = make_head()
    module = NnxMlp(head, nnx.Rngs(0))
    return head, module, nnx.Optimizer(module, optax.sgd(0.5), wrt=nnx.Param)
