"""Epoch progress for the examples: a bar on a terminal, plain lines in a log file.

On a terminal (and with tqdm installed) the epochs show as a tqdm bar and each
epoch's row is written above it with ``tqdm.write``; when stdout is a file or a
CI log there is no bar at all, only one flushed line per epoch, so the bar's
carriage returns never interleave with the metric table.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable


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
