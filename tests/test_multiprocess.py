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
import time

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
    deadline = time.monotonic() + TIMEOUT_S
    procs, logs = [], [os.path.join(out_dir, f"log_{p}.txt") for p in (0, 1)]
    try:
        for process, log in zip((0, 1), logs, strict=True):
            with open(log, "wb") as sink:  # a file, not a pipe: a full pipe cannot block a worker
                procs.append(
                    subprocess.Popen(
                        [sys.executable, str(HERE / "multiprocess_worker.py"), str(process), port]
                        + [out_dir],
                        env=env,
                        stdout=sink,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,  # its own process group, killed below
                    )
                )
        for proc in procs:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pytest.fail(f"the workers ran past {TIMEOUT_S} s:\n{_tails(logs)}")
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    for proc in procs:
        assert proc.returncode == 0, f"a worker failed ({proc.returncode}):\n{_tails(logs)}"
    return [dict(np.load(os.path.join(out_dir, f"process_{p}.npz"))) for p in (0, 1)]


def _tails(logs):
    return "\n".join(
        f"--- {log}\n{pathlib.Path(log).read_text(errors='replace')[-3000:]}" for log in logs
    )


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
