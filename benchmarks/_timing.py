"""Timing helper shared by the benchmark scripts (run as ``python benchmarks/bench_x.py``)."""

import time


def best_of(fn, repeats):
    """The best wall time of ``repeats`` calls of ``fn`` and the last result."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out
