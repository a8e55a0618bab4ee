"""Post-processing figure of the benchmark: one :func:`src.inference.postprocess.detect` call (score
threshold, per-class NMS, top ``max_boxes``) on synthetic outputs shaped like SSD300's."""
import time

import numpy as np

from src.inference.postprocess import detect


def synthetic_outputs(rng, num_boxes, num_classes, num_confident):
    """Realistic-looking network outputs: tiny scores except ``num_confident`` pairs in [0.01, 1)."""
    centre = rng.random((num_boxes, 2))
    size = rng.uniform(0.02, 0.5, (num_boxes, 2))
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1).astype(np.float32)
    scores = (rng.random((num_boxes, num_classes)) * 0.01).astype(np.float32)
    flat = rng.choice(num_boxes * (num_classes - 1), num_confident, replace=False)
    rows, cols = np.divmod(flat, num_classes - 1)
    scores[rows, cols + 1] = rng.uniform(0.01, 1.0, num_confident)
    return boxes, scores


def benchmark_postprocess(num_boxes=1917, num_classes=81, num_confident=300, repeats=50, seed=0,
                          min_score=0.01, nms_threshold=0.6, max_boxes=100):
    """Median milliseconds of one :func:`detect` call on synthetic SSD300-sized outputs."""
    boxes, scores = synthetic_outputs(np.random.default_rng(seed), num_boxes, num_classes,
                                       num_confident)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        detect(boxes, scores, min_score, nms_threshold, max_boxes)
        times.append((time.perf_counter() - start) * 1000.0)
    return float(np.median(times))
