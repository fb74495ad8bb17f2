"""Timing shared by the benchmarks: the best of a few runs, which is the least disturbed by other work."""

import time


def best_seconds(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best
