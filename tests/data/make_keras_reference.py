"""Generates tests/data/keras_metrics_reference.json with Keras 3 (JAX backend).

Not run by the tests (they only read the JSON; neither keras nor TF is needed).
Re-generate with a separate environment that has keras:

    python3 -m venv /tmp/kerasvenv
    /tmp/kerasvenv/bin/pip install keras jax jaxlib
    KERAS_BACKEND=jax /tmp/kerasvenv/bin/python tests/data/make_keras_reference.py

Each case stores its inputs (float32 values written as exact decimals), the
Keras metric that produced the result and its constructor arguments, and the
result of ``update_state`` over one or more batches then ``result()``.
"""

from __future__ import annotations

import json
import os
import pathlib

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402

OUT = pathlib.Path(__file__).with_name("keras_metrics_reference.json")


def _f32(x: np.ndarray) -> list:
    return np.asarray(x, np.float32).astype(np.float64).tolist()


def _scores(rng: np.random.Generator, shape: tuple[int, ...], num_thresholds: int) -> np.ndarray:
    """Scores with the awkward cases mixed in: exact thresholds, 0, 1, out of range."""
    p = rng.random(shape).astype(np.float32)
    flat = p.reshape(-1)
    n = flat.size
    k = max(1, n // 6)
    idx = rng.choice(n, size=4 * k, replace=False)
    grid = (rng.integers(0, num_thresholds, size=k) / (num_thresholds - 1)).astype(np.float32)
    flat[idx[:k]] = grid  # exactly on an evenly spaced threshold
    flat[idx[k : 2 * k]] = rng.choice(np.float32([0.25, 0.5, 0.75]), size=k)  # explicit thresholds
    flat[idx[2 * k : 3 * k]] = rng.choice(np.float32([0.0, 1.0]), size=k)
    flat[idx[3 * k : 4 * k]] = rng.choice(np.float32([-0.3, 1.4]), size=k)  # clipped by AUC
    return flat.reshape(shape)


def _labels(rng: np.random.Generator, shape: tuple[int, ...], soft: bool) -> np.ndarray:
    y = (rng.random(shape) < 0.4).astype(np.float32)
    if soft:
        y = np.where(rng.random(shape) < 0.2, np.float32(0.7), y).astype(np.float32)
    return y


def _run(metric, batches) -> list | float:
    for b in batches:
        metric.update_state(*b["args"], sample_weight=b.get("sample_weight"))
    return np.asarray(metric.result(), np.float64).tolist()


def _case(name, ctor, kwargs, batches) -> dict:
    metric = getattr(keras.metrics, ctor)(**kwargs)
    result = _run(
        metric,
        [
            {k: (tuple(np.asarray(a) for a in v) if k == "args" else v) for k, v in b.items()}
            for b in batches
        ],
    )
    return {
        "name": name,
        "metric": ctor,
        "kwargs": kwargs,
        "batches": [
            {
                "args": [_f32(a) for a in b["args"]],
                "sample_weight": None
                if b.get("sample_weight") is None
                else _f32(b["sample_weight"]),
            }
            for b in batches
        ],
        "result": result,
    }


def main() -> None:
    rng = np.random.default_rng(20240611)
    cases = []

    # ------------------------------------------------------------------ AUC
    for t in (200, 7, 2000):
        for curve in ("ROC", "PR"):
            for method in ("interpolation", "minoring", "majoring"):
                if t == 2000 and method != "interpolation":
                    continue
                batches = []
                for _ in range(3):  # streaming over three batches
                    shape = (int(rng.integers(10, 40)), 1)
                    batches.append(
                        {
                            "args": (_labels(rng, shape, soft=True), _scores(rng, shape, t)),
                            "sample_weight": rng.uniform(0.0, 3.0, shape[0]).astype(np.float32),
                        }
                    )
                cases.append(
                    _case(
                        f"auc_T{t}_{curve}_{method}",
                        "AUC",
                        {"num_thresholds": t, "curve": curve, "summation_method": method},
                        batches,
                    )
                )
    # Multi-label flattening and the weight shapes [B], [B, 1], [B, k], none.
    for wname in ("B", "B1", "Bk", "none"):
        shape = (24, 3)
        w = {
            "B": rng.uniform(0, 2, 24),
            "B1": rng.uniform(0, 2, (24, 1)),
            "Bk": rng.uniform(0, 2, shape),
            "none": None,
        }[wname]
        for curve in ("ROC", "PR"):
            cases.append(
                _case(
                    f"auc_multilabel_w{wname}_{curve}",
                    "AUC",
                    {"num_thresholds": 200, "curve": curve},
                    [
                        {
                            "args": (_labels(rng, shape, False), _scores(rng, shape, 200)),
                            "sample_weight": None if w is None else w.astype(np.float32),
                        }
                    ],
                )
            )

    # ------------------------------------------------------------ thresholds
    for ctor in ("Precision", "Recall"):
        for thresholds in (0.5, [0.25, 0.5, 0.75], [0.75, 0.1, 0.5]):
            shape = (40, 1)
            batches = [
                {
                    "args": (_labels(rng, shape, True), _scores(rng, shape, 5)),
                    "sample_weight": rng.uniform(0, 2, 40).astype(np.float32),
                }
                for _ in range(2)
            ]
            name = f"{ctor.lower()}_{'_'.join(str(x) for x in np.atleast_1d(thresholds))}"
            cases.append(_case(name, ctor, {"thresholds": thresholds}, batches))
        shape = (30, 4)
        cases.append(
            _case(
                f"{ctor.lower()}_multilabel_wB",
                ctor,
                {"thresholds": [0.25, 0.5]},
                [
                    {
                        "args": (_labels(rng, shape, False), _scores(rng, shape, 5)),
                        "sample_weight": rng.uniform(0, 2, 30).astype(np.float32),
                    }
                ],
            )
        )
    for t in (0.25, 0.5, 0.75):
        shape = (40, 1)
        cases.append(
            _case(
                f"binary_accuracy_{t}",
                "BinaryAccuracy",
                {"threshold": t},
                [
                    {
                        "args": (_labels(rng, shape, True), _scores(rng, shape, 5)),
                        "sample_weight": rng.uniform(0, 2, 40).astype(np.float32),
                    }
                    for _ in range(2)
                ],
            )
        )
    shape = (30, 4)  # Keras averages the match over the last axis, then weights per example
    cases.append(
        _case(
            "binary_accuracy_multilabel_wB",
            "BinaryAccuracy",
            {"threshold": 0.5},
            [
                {
                    "args": (_labels(rng, shape, False), _scores(rng, shape, 5)),
                    "sample_weight": rng.uniform(0, 2, 30).astype(np.float32),
                }
            ],
        )
    )

    # ----------------------------------------------------------- means
    for wname, w in (
        ("B", rng.uniform(0, 2, 25)),
        ("B1", rng.uniform(0, 2, (25, 1))),
        ("Bk", rng.uniform(0, 2, (25, 3))),
        ("none", None),
    ):
        cases.append(
            _case(
                f"mean_w{wname}",
                "Mean",
                {},
                [
                    {
                        "args": (rng.normal(size=(25, 3)).astype(np.float32),),
                        "sample_weight": None if w is None else w.astype(np.float32),
                    }
                ],
            )
        )
    shape = (50, 1)
    cases.append(
        _case(
            "accuracy_w",
            "Accuracy",
            {},
            [
                {
                    "args": (
                        _labels(rng, shape, True),
                        (rng.random(shape) < 0.5).astype(np.float32),
                    ),
                    "sample_weight": rng.uniform(0, 2, 50).astype(np.float32),
                }
            ],
        )
    )

    OUT.write_text(
        json.dumps(
            {
                "keras_version": keras.__version__,
                "backend": keras.backend.backend(),
                "cases": cases,
            },
            separators=(",", ":"),
        )
        + "\n"
    )
    print(f"wrote {len(cases)} cases to {OUT} ({OUT.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
