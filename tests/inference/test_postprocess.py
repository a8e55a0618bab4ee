"""Tests of src/postprocess.py against brute-force pure-Python references."""
import json

import numpy as np
import pytest

from src.inference.postprocess import batched_nms, detect, nms, to_coco_detections


def ref_iou(a, b):
    """IoU of two [ymin, xmin, ymax, xmax] boxes, plain Python."""
    h = min(a[2], b[2]) - max(a[0], b[0])
    w = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(h, 0.0) * max(w, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def ref_nms(boxes, scores, threshold):
    """Textbook greedy NMS: visit by score, keep a box unless a kept box overlaps it too much."""
    boxes, scores = boxes.tolist(), scores.tolist()
    keep = []
    for i in sorted(range(len(scores)), key=lambda i: (-scores[i], i)):
        if all(ref_iou(boxes[i], boxes[k]) <= threshold for k in keep):
            keep.append(i)
    return keep


def ref_per_class(boxes, scores, classes, threshold):
    """Per-class reference NMS, merged by descending score."""
    keep = []
    for c in np.unique(classes):
        members = np.flatnonzero(classes == c)
        keep += [members[k] for k in ref_nms(boxes[members], scores[members], threshold)]
    return sorted(keep, key=lambda i: (-scores[i], i))


def random_boxes(rng, n, spread=0.4):
    """Boxes crowded in part of the image so that many of them overlap."""
    centre = rng.uniform(0.3, 0.3 + spread, (n, 2))
    size = rng.uniform(0.05, 0.3, (n, 2))
    return np.concatenate([centre - size / 2, centre + size / 2], axis=1).astype(np.float32)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_nms_matches_reference(seed, threshold):
    rng = np.random.default_rng(seed)
    boxes = random_boxes(rng, 300)
    scores = rng.random(300).astype(np.float32)
    kept = nms(boxes, scores, threshold)
    expected = ref_nms(boxes, scores, threshold)
    assert kept.tolist() == expected
    assert 0 < len(expected) < 300
    assert nms(boxes, scores, threshold, max_out=5).tolist() == expected[:5]


def test_nms_empty_and_identical_boxes():
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5).shape == (0,)
    boxes = np.array([[0.1, 0.1, 0.5, 0.5]] * 3, np.float32)
    assert nms(boxes, np.array([0.2, 0.9, 0.5], np.float32), 0.5).tolist() == [1]


def test_nms_threshold_is_strict():
    """IoU exactly equal to the threshold does not suppress."""
    boxes = np.array([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.5]], np.float32)
    scores = np.array([0.9, 0.8], np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [0, 1]
    assert nms(boxes, scores, 0.49).tolist() == [0]


@pytest.mark.parametrize("seed", range(4))
def test_batched_nms_equals_class_by_class(seed):
    rng = np.random.default_rng(seed)
    boxes = random_boxes(rng, 400)
    scores = rng.random(400).astype(np.float32)
    classes = rng.integers(1, 81, 400)
    kept = batched_nms(boxes, scores, classes, 0.5)
    assert kept.tolist() == ref_per_class(boxes, scores, classes, 0.5)
    assert batched_nms(boxes, scores, classes, 0.5, max_out=7).tolist() == kept[:7].tolist()


def test_batched_nms_boxes_outside_unit_square():
    """Decoded boxes may leave [0, 1]; the class offset must still separate the classes."""
    rng = np.random.default_rng(7)
    boxes = random_boxes(rng, 200) * 6.0 - 3.0
    scores = rng.random(200)
    classes = rng.integers(1, 4, 200)
    assert batched_nms(boxes, scores, classes, 0.4).tolist() == \
        ref_per_class(boxes, scores, classes, 0.4)


def make_scores(n, num_classes, entries):
    """Score matrix of tiny values with the given {(box, class): score} entries."""
    scores = np.full((n, num_classes), 0.001, np.float32)
    for (box, cls), value in entries.items():
        scores[box, cls] = value
    return scores


def test_detect_classes_never_suppress_each_other():
    boxes = np.array([[0.1, 0.1, 0.6, 0.6], [0.1, 0.1, 0.6, 0.61]], np.float32)
    scores = make_scores(2, 4, {(0, 1): 0.9, (0, 2): 0.8, (1, 1): 0.7, (1, 3): 0.6})
    out_boxes, out_scores, labels = detect(boxes, scores, 0.01, 0.5, 100)
    assert labels.tolist() == [1, 2, 3]
    np.testing.assert_allclose(out_scores, [0.9, 0.8, 0.6])
    np.testing.assert_array_equal(out_boxes, boxes[[0, 0, 1]])


def test_detect_min_score_background_and_max_boxes():
    """Scores equal to min_score and the background column never give detections."""
    grid = np.arange(30, dtype=np.float32) / 30.0
    boxes = np.stack([grid, grid, grid + 0.02, grid + 0.02], axis=1)
    entries = {(i, 1 + i % 3): 0.3 + 0.02 * i for i in range(30)}
    entries.update({(0, 0): 0.99, (1, 3): 0.25})
    scores = make_scores(30, 4, entries)
    _, out_scores, labels = detect(boxes, scores, 0.25, 0.5, 100)
    assert len(labels) == 30 and np.all(out_scores > 0.25) and np.all(labels >= 1)
    _, top_scores, _ = detect(boxes, scores, 0.25, 0.5, 10)
    np.testing.assert_allclose(top_scores, np.sort(out_scores)[::-1][:10])
    assert np.all(np.diff(out_scores) <= 0)


def test_detect_empty():
    boxes = random_boxes(np.random.default_rng(0), 50)
    scores = np.full((50, 81), 0.005, np.float32)
    scores[:, 0] = 0.9
    out_boxes, out_scores, labels = detect(boxes, scores, 0.01, 0.6, 100)
    assert out_boxes.shape == (0, 4) and out_scores.shape == (0,) and labels.shape == (0,)
    assert out_boxes.dtype == np.float32 and out_scores.dtype == np.float32
    assert labels.dtype == np.int32


@pytest.mark.parametrize("seed", range(3))
def test_detect_matches_reference(seed):
    rng = np.random.default_rng(seed)
    boxes = random_boxes(rng, 500)
    scores = (rng.random((500, 11)) ** 8).astype(np.float32)
    out_boxes, out_scores, labels = detect(boxes, scores, 0.05, 0.6, 100, pre_nms_top_k=None)
    rows, cols = np.nonzero(scores[:, 1:] > 0.05)
    cand = scores[rows, cols + 1]
    expected = ref_per_class(boxes[rows], cand, cols + 1, 0.6)[:100]
    assert len(expected) == 100
    np.testing.assert_array_equal(out_boxes, boxes[rows[expected]])
    np.testing.assert_array_equal(labels, cols[expected] + 1)
    top_k = detect(boxes, scores, 0.05, 0.6, 100, pre_nms_top_k=400)
    np.testing.assert_array_equal(top_k[1], out_scores)


def test_to_coco_detections_exact():
    boxes = np.array([[0.25, 0.5, 0.75, 1.0], [-0.5, -0.25, 0.5, 1.5], [0.0, 0.0, 0.5, 0.5]],
                     np.float32)
    scores = np.array([0.75, 0.5, 0.25], np.float32)
    labels = np.array([1, 2, 3], np.int32)
    result = to_coco_detections(np.int64(42), boxes, scores, labels, 400, 200, {1: 7, 2: 18})
    assert result == [
        {"image_id": 42, "category_id": 7, "bbox": [100.0, 100.0, 100.0, 200.0], "score": 0.75},
        {"image_id": 42, "category_id": 18, "bbox": [0.0, 0.0, 200.0, 200.0], "score": 0.5},
    ]
    assert json.loads(json.dumps(result)) == result
    assert to_coco_detections(1, np.zeros((0, 4)), [], [], 10, 10, {1: 1}) == []


def test_to_coco_detections_rectangular_image():
    result = to_coco_detections(3, np.array([[0.125, 0.25, 0.625, 0.5]]), [0.5], [1], 480, 640,
                                {1: 1})
    assert result[0]["bbox"] == [160.0, 60.0, 160.0, 240.0]

