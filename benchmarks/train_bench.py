"""Cost of the head in a jitted train step (MLP + head + adam) vs a hand-written step.

``ours``: ``jaxheads.train.make_train_step`` with ``BinaryClassHead`` (loss
only, ``with_metrics=False``). ``baseline``: the same model, adam and update
written by hand with ``optax.sigmoid_binary_cross_entropy`` and ``jnp.mean``.
Two models: ``mlp`` (two ReLU layers) and ``bn_dropout`` (the same with
``BatchNorm`` — a ``batch_stats`` collection updated by the step — and
``Dropout`` keyed by the step's rng).
Both run in one process, interleaved repetition by repetition, and the table
reports medians; ``compile s`` is the first call (trace + compile + one run).
``ours`` skips the host-side label check (``check_labels=False``), as the
hand-written step does; ``checked`` is the default step, which also runs
``head.encode_labels`` on the host each step; ``+metrics`` is the default step
with the head's streaming metrics (AUC curves included), for information.
Each step above is timed alone (``block_until_ready`` after every call).
``pipelined`` times 20 steps back to back, blocking once, as a training loop
runs them (the host work of one step overlaps the device work of the one
before): ms per step of the checked and the baseline step, interleaved.

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


class BNDropout(nn.Module):
    head: object

    @nn.compact
    def __call__(self, x, train: bool = True):
        for _ in range(2):
            x = nn.Dense(HIDDEN)(x)
            x = nn.BatchNorm(use_running_average=not train)(x)
            x = nn.Dropout(0.1, deterministic=not train)(nn.relu(x))
        return LinenHead(self.head)(x)


class BNState(TrainState):
    batch_stats: dict


def baseline_step(model):
    @jax.jit
    def step(state, x, y, rng=None):
        def loss_fn(params):
            logits = model.apply({"params": params}, x)
            return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, y))

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        return state.apply_gradients(grads=grads), loss

    return step


def baseline_bn_step(model):
    @jax.jit
    def step(state, x, y, rng):
        def loss_fn(params):
            logits, updated = model.apply(
                {"params": params, "batch_stats": state.batch_stats},
                x,
                mutable=["batch_stats"],
                rngs={"dropout": rng},
            )
            return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, y)), updated

        (loss, updated), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        state = state.apply_gradients(grads=grads, batch_stats=updated["batch_stats"])
        return state, loss

    return step


def setup(kind, head, x):
    """(initial state, {name: step factory}) for one model kind."""
    if kind == "mlp":
        model = MLP(head)
        params = model.init(jax.random.key(0), x[:1])["params"]
        state = TrainState.create(apply_fn=model.apply, params=params, tx=optax.adam(1e-3))
        return state, {
            "ours": lambda: train.make_train_step(
                None, head, with_metrics=False, check_labels=False
            ),
            "checked": lambda: train.make_train_step(None, head, with_metrics=False),
            "baseline": lambda: baseline_step(model),
            "metrics": lambda: train.make_train_step(None, head),
        }
    model = BNDropout(head)
    variables = model.init(jax.random.key(0), x[:2], train=False)
    state = BNState.create(
        apply_fn=model.apply,
        params=variables["params"],
        batch_stats=variables["batch_stats"],
        tx=optax.adam(1e-3),
    )
    ours = {"mutable": ("batch_stats",)}
    return state, {
        "ours": lambda: train.make_train_step(
            None, head, with_metrics=False, check_labels=False, **ours
        ),
        "checked": lambda: train.make_train_step(None, head, with_metrics=False, **ours),
        "baseline": lambda: baseline_bn_step(model),
        "metrics": lambda: train.make_train_step(None, head, **ours),
    }


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    jax.block_until_ready(out)
    return time.perf_counter() - start, out


def bench(kind, batch, reps, measure_compile=True):
    head = jh.BinaryClassHead()
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(batch, FEATURES)), jnp.float32)
    y = jnp.asarray(rng.uniform(size=(batch, 1)) > 0.5, jnp.float32)
    key = jax.random.key(1) if kind == "bn_dropout" else None
    state, makers = setup(kind, head, x)
    # Compile time: first call (trace + compile + run) from empty caches, the
    # better of two alternating tries, so no step pays for the other's warm-up.
    compile_s = {name: float("inf") for name in makers}
    for name in [*makers, *reversed(makers)] if measure_compile else []:
        jax.clear_caches()
        dt, _ = timed(makers[name](), state, x, y, key)
        compile_s[name] = min(compile_s[name], dt)
    steps = {name: make() for name, make in makers.items()}
    states, times = {}, {k: [] for k in steps}
    for name, step in steps.items():
        _, (states[name], _) = timed(step, state, x, y, key)
    for _ in range(3):  # warm up
        for name, step in steps.items():
            states[name], _ = step(states[name], x, y, key)
    jax.block_until_ready(states)
    for rep in range(reps):
        names = list(steps) if rep % 2 == 0 else list(steps)[::-1]
        for name in names:
            dt, (states[name], _) = timed(steps[name], states[name], x, y, key)
            times[name].append(dt)
    med = {k: 1e3 * float(np.median(v)) for k, v in times.items()}
    med.update(
        _pipelined({k: steps[k] for k in ("checked", "baseline")}, states, (x, y, key), reps)
    )
    return med, compile_s


def _pipelined(steps, states, args, reps, run=20):
    """ms per step over ``run`` back-to-back steps (one block at the end): medians of
    rounds that alternate between the steps."""
    rounds = {name: [] for name in steps}
    for i in range(max(3, reps // run)):
        for name in list(steps) if i % 2 == 0 else list(steps)[::-1]:
            start = time.perf_counter()
            for _ in range(run):
                states[name], loss = steps[name](states[name], *args)
            jax.block_until_ready((states[name], loss))
            rounds[name].append((time.perf_counter() - start) / run)
    return {f"{k} pipelined": 1e3 * float(np.median(v)) for k, v in rounds.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 4096, 65536])
    parser.add_argument("--models", nargs="+", default=["mlp", "bn_dropout"])
    parser.add_argument("--budget-s", type=float, default=8.0, help="timing budget per batch size")
    args = parser.parse_args()
    cpu = platform.processor() or platform.machine()
    print(
        f"jax {jax.__version__}, {jax.devices()[0].platform}, {jax.device_count()} device(s), {cpu}"
    )
    print(f"{FEATURES}-{HIDDEN}-{HIDDEN}-1, adam, BinaryClassHead, medians of interleaved reps")
    print(
        "| model | batch | reps | ours ms | baseline ms | ratio | checked ms (ratio) | +metrics ms "
        + "| pipelined: checked / baseline ms (ratio) | compile s (ours / baseline) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for kind in args.models:
        for batch in args.batch_sizes:
            probe, _ = bench(kind, batch, 3, measure_compile=False)
            per_rep = sum(v for k, v in probe.items() if "pipelined" not in k)
            reps = int(max(15, min(400, args.budget_s * 1e3 / per_rep)))
            med, comp = bench(kind, batch, reps)
            ratio = med["ours"] / med["baseline"]
            print(
                f"| {kind} | {batch} | {reps} | {med['ours']:.3f} | {med['baseline']:.3f} | "
                f"{ratio:.3f} | {med['checked']:.3f} ({med['checked'] / med['baseline']:.3f}) | "
                f"{med['metrics']:.3f} | {med['checked pipelined']:.3f} / "
                f"{med['baseline pipelined']:.3f} "
                f"({med['checked pipelined'] / med['baseline pipelined']:.3f}) | {comp['ours']:.2f} / "
                f"{comp['baseline']:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
