"""Timing helpers for the benchmark command: warm-up excluded, median of several runs, spread stated."""
import time

import numpy as np


def measure(fn, repeats=7, number=1, warmup=1):
    """Median seconds per call of ``fn`` over ``repeats`` runs of ``number`` calls, and the spread.

    Returns {'median': s, 'min': s, 'max': s, 'noise': (max - min) / median}.
    """
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - start) / number)
    samples = np.array(samples)
    median = float(np.median(samples))
    return {"median": median, "min": float(samples.min()), "max": float(samples.max()),
            "noise": float((samples.max() - samples.min()) / median) if median else 0.0}
