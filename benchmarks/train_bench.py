"""Cost of the head in a jitted train step (MLP + head + adam) vs a hand-written step.

``ours``: ``jaxheads.train.make_train_step`` with ``BinaryClassHead`` (loss
only, ``with_metrics=False``). ``baseline``: the same MLP, adam and update
written by hand with ``optax.sigmoid_binary_cross_entropy`` and ``jnp.mean``.
Both run in one process, interleaved repetition by repetition, and the table
reports medians; ``compile s`` is the first call (trace + compile + one run).
``+metrics`` is ours with the head's streaming metrics (AUC curves included)
returned by the step, for information.

Run: ``python benchmarks/train_bench.py [--batch-sizes 256 4096 65536]``.
"""

import argparse
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from flax.training.train_state import TrainState

import jaxheads as jh
from jaxheads import train
from jaxheads.flax import LinenHead

FEATURES, HIDDEN = 32, 128


class MLP(nn.Module):
    head: object

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(HIDDEN)(x))
        x = nn.relu(nn.Dense(HIDDEN)(x))
        return LinenHead(self.head)(x)


def baseline_step(model):
    @jax.jit
    def step(state, x, y):
        def loss_fn(params):
            logits = model.apply({"params": params}, x)
            return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, y))

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        return state.apply_gradients(grads=grads), loss

    return step


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    jax.block_until_ready(out)
    return time.perf_counter() - start, out


def bench(batch, reps, measure_compile=True):
    head = jh.BinaryClassHead()
    model = MLP(head)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(batch, FEATURES)), jnp.float32)
    y = jnp.asarray(rng.uniform(size=(batch, 1)) > 0.5, jnp.float32)
    params = model.init(jax.random.key(0), x[:1])["params"]
    state = TrainState.create(apply_fn=model.apply, params=params, tx=optax.adam(1e-3))
    makers = {
        "ours": lambda: train.make_train_step(None, head, with_metrics=False),
        "baseline": lambda: baseline_step(model),
        "metrics": lambda: train.make_train_step(None, head),
    }
    # Compile time: first call (trace + compile + run) from empty caches, the
    # better of two alternating tries, so no step pays for the other's warm-up.
    compile_s = {name: float("inf") for name in makers}
    for name in [*makers, *reversed(makers)] if measure_compile else []:
        jax.clear_caches()
        dt, _ = timed(makers[name](), state, x, y)
        compile_s[name] = min(compile_s[name], dt)
    steps = {name: make() for name, make in makers.items()}
    states, times = {}, {k: [] for k in steps}
    for name, step in steps.items():
        _, (states[name], _) = timed(step, state, x, y)
    for _ in range(3):  # warm up
        for name, step in steps.items():
            states[name], _ = step(states[name], x, y)
    jax.block_until_ready(states)
    for rep in range(reps):
        names = list(steps) if rep % 2 == 0 else list(steps)[::-1]
        for name in names:
            dt, (states[name], _) = timed(steps[name], states[name], x, y)
            times[name].append(dt)
    med = {k: 1e3 * float(np.median(v)) for k, v in times.items()}
    return med, compile_s


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 4096, 65536])
    parser.add_argument("--budget-s", type=float, default=8.0, help="timing budget per batch size")
    args = parser.parse_args()
    cpu = platform.processor() or platform.machine()
    print(
        f"jax {jax.__version__}, {jax.devices()[0].platform}, {jax.device_count()} device(s), {cpu}"
    )
    print(f"MLP {FEATURES}-{HIDDEN}-{HIDDEN}-1, adam, BinaryClassHead, medians of interleaved reps")
    print(
        "| batch | reps | ours ms | baseline ms | ratio | +metrics ms "
        + "| compile s (ours / baseline) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---|")
    for batch in args.batch_sizes:
        probe, _ = bench(batch, 3, measure_compile=False)
        reps = int(max(15, min(400, args.budget_s * 1e3 / sum(probe.values()))))
        med, comp = bench(batch, reps)
        ratio = med["ours"] / med["baseline"]
        print(
            f"| {batch} | {reps} | {med['ours']:.3f} | {med['baseline']:.3f} | {ratio:.3f} | "
            f"{med['metrics']:.3f} | {comp['ours']:.2f} / {comp['baseline']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
