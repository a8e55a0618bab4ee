import numpy as np
import pytest

from src.anchors import default_boxes_yxhw, default_boxes_yxyx
from src.box_coder import SsdTargetEncoder, decode, encode, iou, match


def random_boxes(rng, count):
    corner = rng.uniform(0, 0.7, (count, 2))
    return np.concatenate([corner, corner + rng.uniform(0.02, 0.3, (count, 2))], 1).astype(np.float32)


def brute_iou(a, b):
    out = np.zeros((len(a), len(b)))
    for i, p in enumerate(a):
        for j, q in enumerate(b):
            h = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
            w = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
            union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - h * w
            out[i, j] = h * w / union
    return out


def brute_match(gt, anchors, threshold):
    overlaps = brute_iou(gt, anchors)
    matched = np.full(len(anchors), -1)
    for j in range(len(anchors)):
        k = int(np.argmax(overlaps[:, j]))
        if overlaps[k, j] > threshold:
            matched[j] = k
    for k in range(len(gt)):
        matched[int(np.argmax(overlaps[k]))] = k
    return matched


def test_iou_against_brute_force():
    rng = np.random.default_rng(0)
    a, b = random_boxes(rng, 7), random_boxes(rng, 11)
    np.testing.assert_allclose(iou(a, b), brute_iou(a, b), atol=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_match_against_brute_force(cfg, seed):
    rng = np.random.default_rng(seed)
    gt = random_boxes(rng, int(rng.integers(1, 8)))
    anchors = default_boxes_yxyx(cfg)
    np.testing.assert_array_equal(match(gt, anchors, 0.5), brute_match(gt, anchors, 0.5))


def test_every_ground_truth_keeps_its_best_anchor(cfg):
    anchors = default_boxes_yxyx(cfg)
    tiny = np.array([[0.40, 0.40, 0.41, 0.41], [0.70, 0.10, 0.705, 0.12]], np.float32)
    matched = match(tiny, anchors, 0.5)
    assert set(matched[matched >= 0]) == {0, 1}
    best = iou(tiny, anchors).argmax(axis=1)
    assert list(matched[best]) == [0, 1]


def test_encode_decode_round_trip(cfg):
    rng = np.random.default_rng(1)
    anchors = default_boxes_yxhw(cfg)
    gt = random_boxes(rng, len(anchors))
    loc = encode(gt, anchors, cfg.prior_scaling)
    np.testing.assert_allclose(decode(loc, anchors, cfg.prior_scaling), gt, atol=1e-5)


def test_targets_for_boxes_and_for_empty_image(cfg):
    encoder = SsdTargetEncoder(default_boxes_yxhw(cfg), default_boxes_yxyx(cfg), 0.5, cfg.prior_scaling)
    boxes = np.array([[0.1, 0.1, 0.5, 0.4], [0.5, 0.5, 0.9, 0.95]], np.float32)
    loc, label, num = encoder(boxes, np.array([3, 7]))
    assert loc.shape == (1917, 4) and label.shape == (1917,) and label.dtype == np.int32
    assert num == (label > 0).sum() > 2 and set(np.unique(label)) == {0, 3, 7}
    decoded = decode(loc[label == 3], default_boxes_yxhw(cfg)[label == 3], cfg.prior_scaling)
    np.testing.assert_allclose(decoded, np.repeat(boxes[:1], len(decoded), 0), atol=1e-5)
    assert not loc[label == 0].any()
    loc, label, num = encoder(np.zeros((0, 4), np.float32), np.zeros(0, np.int32))
    assert num == 0 and not label.any() and not loc.any()
