"""One process of the 2-process x 4-CPU-device test (tests/test_multiprocess.py).

Run as ``python multiprocess_worker.py PROCESS_ID PORT OUT_DIR``: joins the
localhost ``jax.distributed`` cluster, runs every configuration in sequence
(one train step and one eval step each) and writes its results to
``OUT_DIR/process_<id>.npz``. Not collected by pytest (no ``test_`` prefix).
"""

import os
import sys

import jax
import numpy as np

# Sizes of each host's batch: equal, and uneven (an uneven last batch).
HOST_SIZES = {"equal": (16, 16), "unequal": (8, 16)}
# Each pair of (model kind, strategy, host split) values appears once: 4 runs, not 8.
CONFIGS = [
    ("linen", "jit", "unequal"),
    ("linen", "shard_map", "equal"),
    ("nnx", "jit", "equal"),
    ("nnx", "shard_map", "unequal"),
]


def data(sizes):
    """The global batch (process 0's rows first), identical on every process."""
    rng = np.random.default_rng(7)
    n = sum(sizes)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    w = rng.uniform(0.5, 2.0, size=n).astype(np.float32)
    y = (rng.uniform(size=(n, 1)) > 0.5).astype(np.float32)
    return {"x": x, "w": w}, y


def rows(sizes, process):
    start = sum(sizes[:process])
    return slice(start, start + sizes[process])


def run(kind, strategy, sizes, mesh, process):
    """One train and one eval step: (loss, flat params, metric values, eval results)."""
    from common_models import linen_setup, nnx_setup  # noqa: PLC0415

    from jaxheads import train  # noqa: PLC0415

    features, labels = data(sizes)
    mine = rows(sizes, process) if mesh is not None else slice(None)
    local = ({k: v[mine] for k, v in features.items()}, labels[mine])
    options = {} if mesh is None else {"mesh": mesh, "strategy": strategy}
    if kind == "linen":
        head, state = linen_setup()
        if mesh is not None:
            state = train.replicate(state, mesh)
        state, out = train.make_train_step(None, head, inputs_key="x", **options)(state, *local)
        evaluated = train.make_eval_step(None, head, inputs_key="x", **options)(state, *local)
        params = state.params
    else:
        from flax import nnx  # noqa: PLC0415

        head, module, optimizer = nnx_setup()
        if mesh is not None:
            train.replicate(module, mesh)
            train.replicate(optimizer, mesh)
        out = train.make_nnx_train_step(None, head, inputs_key="x", **options)(
            module, optimizer, *local
        )
        evaluated = train.make_nnx_eval_step(None, head, inputs_key="x", **options)(module, *local)
        params = nnx.state(module, nnx.Param)
    flat = np.concatenate([np.ravel(np.asarray(p)) for p in jax.tree.leaves(params)])
    metrics = head.compute_metrics(out.metrics)
    results = evaluated.results(head)
    keys = sorted(metrics)
    return {
        "loss": np.asarray(out.loss),
        "params": flat,
        "metrics": np.asarray([metrics[k] for k in keys], np.float64),
        "eval": np.asarray([results[k] for k in sorted(results)], np.float64),
    }


def configure():
    """The 4-CPU-device set-up, before any JAX computation (only when run as a script:
    the test imports this module for its configurations and reference runs)."""
    os.environ.pop("XLA_FLAGS", None)
    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_num_cpu_devices", 4)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.config.update("jax_numpy_rank_promotion", "raise")
    jax.config.update("jax_numpy_dtype_promotion", "strict")


def main():
    process, port, out_dir = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    jax.distributed.initialize(
        f"127.0.0.1:{port}", num_processes=2, process_id=process, initialization_timeout=60
    )
    from jaxheads import train  # noqa: PLC0415

    assert jax.process_count() == 2 and jax.device_count() == 8
    mesh = train.make_mesh()
    out = {}
    for kind, strategy, split in CONFIGS:
        result = run(kind, strategy, HOST_SIZES[split], mesh, process)
        for key, value in result.items():
            out[f"{kind}/{strategy}/{split}/{key}"] = value
    # A host batch that fails its label check raises on every host, without a hang.
    try:
        run_bad_labels(mesh, process)
        out["bad_labels"] = np.asarray("no error")
    except ValueError as e:
        out["bad_labels"] = np.asarray(str(e))
    np.savez(os.path.join(out_dir, f"process_{process}.npz"), **out)
    jax.distributed.shutdown()


def run_bad_labels(mesh, process):
    from common_models import linen_setup  # noqa: PLC0415

    from jaxheads import train  # noqa: PLC0415

    head, state = linen_setup()
    features, labels = data((8, 8))
    local = ({k: v[rows((8, 8), process)] for k, v in features.items()}, labels[:8].copy())
    if process == 1:
        local[1][0, 0] = 2.0  # not in [0, 1]
    train.make_train_step(None, head, inputs_key="x", mesh=mesh)(
        train.replicate(state, mesh), *local
    )


if __name__ == "__main__":
    configure()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
