"""The examples' training-loop plumbing: shuffled batches, epoch progress, the metric table.

Epoch progress is a bar on a terminal and plain lines in a log file.

On a terminal (and with tqdm installed) the epochs show as a tqdm bar and each
epoch's row is written above it with ``tqdm.write``; when stdout is a file or a
CI log there is no bar at all, only one flushed line per epoch, so the bar's
carriage returns never interleave with the metric table.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np


def epochs(n: int) -> tuple[Iterable[int], Callable[[str], None]]:
    """``(epoch numbers 1..n, a function that prints one row of the table)``."""
    if sys.stdout.isatty():
        try:
            from tqdm import tqdm
        except ImportError:
            pass
        else:
            return tqdm(range(1, n + 1), desc="epochs", leave=False), tqdm.write

    def say(line: str) -> None:
        print(line, flush=True)

    return range(1, n + 1), say


def shuffled_batches(
    rng: np.random.Generator, indices: int | np.ndarray, size: int
) -> Iterator[np.ndarray]:
    """One epoch: ``indices`` (or ``range(indices)``) shuffled and cut into full batches.

    The last partial batch is dropped, so every step has one shape (one compilation).
    """
    order = rng.permutation(indices)
    for start in range(0, len(order) - size + 1, size):
        yield order[start : start + size]


def header(columns: Sequence[str]) -> str:
    """The table's first line: ``epoch | <column> | …``."""
    return " | ".join(["epoch", *columns])


def row(epoch: int, values: Mapping[str, Any], columns: Sequence[str]) -> str:
    """One epoch's line: each value (4 decimals) right-aligned under its column name."""
    return " | ".join([f"{epoch:5d}", *(f"{float(values[k]):{len(k)}.4f}" for k in columns)])
