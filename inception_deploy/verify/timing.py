"""Timing, one way for the benchmark, the evaluation and the batch jobs: wall-clock time of calls."""

from __future__ import annotations

import time
from collections.abc import Callable


def timed(run: Callable):
    """``run()``'s result and the seconds it took."""
    start = time.perf_counter()
    result = run()
    return result, time.perf_counter() - start


def timed_runs(run: Callable, iterations: int, warmup: int) -> list[float]:
    """The milliseconds of each of ``iterations`` calls of ``run``, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        run()
    return [timed(run)[1] * 1000 for _ in range(iterations)]
