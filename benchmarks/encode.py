"""Anchor matching + encoding of one image's boxes: the compiled matcher, the numpy-vectorised one and a
per-box loop baseline, timed in interleaved rounds so that all three see the same machine load."""
import os

import numpy as np

from benchmarks.timing import measure
from src.anchors import default_boxes_yxhw, default_boxes_yxyx
from src.box_coder import SsdTargetEncoder, encode

FPN_ANCHORS = {"anchor_type": "grid", "img_shape": [640, 640], "steps": [8, 16, 32, 64, 128],
               "feature_size": [80, 40, 20, 10, 5], "num_default": [6, 6, 6, 6, 6]}


def per_box_loop(boxes, labels, anchors_yxhw, anchors_yxyx, threshold, prior_scaling):
    """The model zoo's formulation (a Python loop over ground-truth boxes), kept only as a baseline."""
    count = len(anchors_yxhw)
    best = np.zeros(count, np.float32)
    target_boxes = np.zeros((count, 4), np.float32)
    target_labels = np.zeros(count, np.int64)
    area = (anchors_yxyx[:, 2] - anchors_yxyx[:, 0]) * (anchors_yxyx[:, 3] - anchors_yxyx[:, 1])
    for box, label in zip(boxes, labels):
        ymin, xmin = np.maximum(anchors_yxyx[:, 0], box[0]), np.maximum(anchors_yxyx[:, 1], box[1])
        ymax, xmax = np.minimum(anchors_yxyx[:, 2], box[2]), np.minimum(anchors_yxyx[:, 3], box[3])
        inter = np.maximum(ymax - ymin, 0) * np.maximum(xmax - xmin, 0)
        scores = inter / (area + (box[2] - box[0]) * (box[3] - box[1]) - inter)
        scores[np.argmax(scores)] = 2.0
        mask = (scores > threshold) & (scores > best)
        best = np.maximum(best, scores * mask)
        target_labels = np.where(mask, label, target_labels)
        target_boxes = np.where(mask[:, None], box, target_boxes)
    index = np.nonzero(target_labels)[0]
    loc = np.zeros((count, 4), np.float32)
    loc[index] = encode(target_boxes[index], anchors_yxhw[index], prior_scaling)
    return loc, target_labels.astype(np.int32), len(index)


def sample_boxes(count=5, seed=0):
    rng = np.random.default_rng(seed)
    corner = rng.uniform(0, 0.6, (count, 2))
    boxes = np.concatenate([corner, corner + rng.uniform(0.05, 0.4, (count, 2))], 1).astype(np.float32)
    return boxes, np.arange(1, count + 1, dtype=np.int32)


def interleaved(functions, repeats, number):
    """{name: {'median', 'min', 'noise'}} seconds per call, one timed run of each function per round."""
    samples = {name: [] for name in functions}
    for _ in range(repeats):
        for name, fn in functions.items():
            samples[name].append(measure(fn, 1, number)["median"])
    out = {}
    for name, times in samples.items():
        median = float(np.median(times))
        out[name] = {"median": median, "min": min(times), "noise": (max(times) - min(times)) / median}
    return out


def run(cfg, repeats=9, number=200):
    """{'<anchors> anchors': {'<variant>_us': median, '<variant>_min_us': min, '<variant>_noise': spread/median}}
    for the variants compiled (None without a C++ compiler), vectorised (numpy) and per_box_loop, with
    'noise' (the vectorised one's), 'compiled_speedup' (vectorised / compiled medians) and 'load_average'
    (1-minute load before and after)."""
    boxes, labels = sample_boxes()
    results = {}
    for settings in ({}, FPN_ANCHORS):
        anchor_cfg = cfg.replace(**settings)
        yxhw, yxyx = default_boxes_yxhw(anchor_cfg), default_boxes_yxyx(anchor_cfg)
        compiled = SsdTargetEncoder(yxhw, yxyx, cfg.match_threshold, cfg.prior_scaling)
        vectorised = SsdTargetEncoder(yxhw, yxyx, cfg.match_threshold, cfg.prior_scaling, use_native=False)
        functions = {"vectorised": lambda: vectorised(boxes, labels),
                     "per_box_loop": lambda: per_box_loop(boxes, labels, yxhw, yxyx, cfg.match_threshold,
                                                          cfg.prior_scaling)}
        if compiled.native is not None:
            functions["compiled"] = lambda: compiled(boxes, labels)
        load_before = os.getloadavg()[0]
        times = interleaved(functions, repeats, number if len(yxhw) < 10000 else max(1, number // 20))
        entry = {"compiled_us": None, "compiled_speedup": None}
        for name in ("compiled", "vectorised", "per_box_loop"):
            if name in times:
                entry.update({name + "_us": times[name]["median"] * 1e6, name + "_min_us": times[name]["min"] * 1e6,
                              name + "_noise": times[name]["noise"]})
        if "compiled" in times:
            entry["compiled_speedup"] = times["vectorised"]["median"] / times["compiled"]["median"]
        entry.update(noise=times["vectorised"]["noise"], load_average=[load_before, os.getloadavg()[0]])
        results["%d anchors" % len(yxhw)] = entry
    return results
