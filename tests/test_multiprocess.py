"""A real multi-host run: 2 processes x 4 CPU devices over ``jax.distributed`` on localhost.

One pair of processes (tests/multiprocess_worker.py) runs every configuration in
sequence — linen and nnx, ``jit`` and ``shard_map``, equal and unequal host
batches — and each configuration's loss, parameters and metrics must equal the
1-process run on the concatenated batch and be identical on both processes.
Bounded: a free port, a subprocess timeout, and both process groups killed in a
``finally`` (no orphans).
"""

import os
import pathlib
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE))

import multiprocess_worker as worker  # noqa: E402

TIMEOUT_S = 150


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(out_dir):
    port = str(_free_port())
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    root = str(HERE.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    procs = []
    try:
        for process in (0, 1):
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        str(HERE / "multiprocess_worker.py"),
                        str(process),
                        port,
                        out_dir,
                    ],
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group, killed below
                )
            )
        logs = []
        for proc in procs:
            out, _ = proc.communicate(timeout=TIMEOUT_S)
            logs.append(out.decode(errors="replace"))
        for proc, log in zip(procs, logs, strict=True):
            assert proc.returncode == 0, f"worker failed ({proc.returncode}):\n{log[-4000:]}"
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return [dict(np.load(os.path.join(out_dir, f"process_{p}.npz"))) for p in (0, 1)]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return _launch(str(tmp_path_factory.mktemp("multiprocess")))


@pytest.mark.parametrize(("kind", "strategy", "split"), worker.CONFIGS)
def test_two_processes_equal_one_process(results, kind, strategy, split):
    expected = worker.run(kind, strategy, worker.HOST_SIZES[split], None, 0)
    for key, value in expected.items():
        first, second = (r[f"{kind}/{strategy}/{split}/{key}"] for r in results)
        np.testing.assert_array_equal(first, second, err_msg=f"{key} differs between processes")
        np.testing.assert_allclose(first, value, rtol=2e-6, atol=1e-7, err_msg=key)


def test_a_bad_host_batch_raises_on_every_host(results):
    assert "labels" in str(results[1]["bad_labels"]).lower()
    assert "process(es) [1]" in str(results[0]["bad_labels"])
