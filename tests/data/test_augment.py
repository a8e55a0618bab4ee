"""Tests of the SSD augmentation (src/data/augment.py)."""
import time

import numpy as np
import pytest

from src.data import augment


def image_and_boxes(seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    boxes = np.array([[0.1, 0.1, 0.5, 0.4], [0.4, 0.5, 0.9, 0.95], [0.0, 0.8, 0.2, 1.0]], np.float32)
    return image, boxes, np.array([3, 7, 9], np.int32)


def check_boxes(boxes, labels):
    assert boxes.dtype == np.float32 and labels.dtype == np.int32
    assert boxes.shape == (len(labels), 4)
    assert (boxes >= 0).all() and (boxes <= 1).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()


@pytest.mark.parametrize("use_expand", [False, True])
def test_train_transform_output_is_valid(use_expand):
    image, boxes, labels = image_and_boxes()
    for seed in range(30):
        chw, out_boxes, out_labels = augment.train_transform(image, boxes, labels, np.random.default_rng(seed),
                                                             (300, 200), use_expand=use_expand)
        assert chw.shape == (3, 300, 200) and chw.dtype == np.float32 and chw.flags.c_contiguous
        check_boxes(out_boxes, out_labels)
        assert len(out_labels) >= 1 and set(out_labels) <= {3, 7, 9}


def test_image_without_boxes():
    image, _, _ = image_and_boxes()
    for seed in range(20):
        chw, boxes, labels = augment.train_transform(image, np.zeros((0, 4), np.float32), np.zeros(0, np.int32),
                                                     np.random.default_rng(seed), (64, 80), use_expand=True)
        assert chw.shape == (3, 64, 80) and boxes.shape == (0, 4) and labels.shape == (0,)
        assert boxes.dtype == np.float32 and labels.dtype == np.int32
    crops = {augment.random_crop(image, [], [], np.random.default_rng(s))[0].shape for s in range(20)}
    assert len(crops) > 1


@pytest.mark.parametrize("min_iou", [0.1, 0.3, 0.5, 0.7, 0.9])
def test_crop_respects_min_iou(min_iou):
    _, boxes, _ = image_and_boxes()
    found = 0
    for seed in range(20):
        patch = augment.sample_crop(boxes, 240, 320, min_iou, np.random.default_rng(seed), trials=500)
        if patch is None:
            continue
        found += 1
        top, left, bottom, right = patch
        assert 0 <= top < bottom <= 240 and 0 <= left < right <= 320
        h, w = bottom - top, right - left
        assert 0.3 * 240 - 1 <= h and 0.3 * 320 - 1 <= w and 0.5 <= h / w <= 2
        crop = np.array([[top / 240, left / 320, bottom / 240, right / 320]], np.float32)
        assert augment.iou_matrix(crop, boxes).max() >= min_iou
        assert augment.centres_inside(crop, boxes).any()
    assert found > 0


def test_crop_moves_boxes_with_the_pixels():
    image = np.zeros((100, 200, 3), np.uint8)
    image[20:60, 50:150] = 255
    boxes = np.array([[0.2, 0.25, 0.6, 0.75], [0.9, 0.9, 1.0, 1.0]], np.float32)
    labels = np.array([1, 2], np.int32)
    for seed in range(30):
        out, kept, kept_labels = augment.random_crop(image, boxes, labels, np.random.default_rng(seed))
        check_boxes(kept, kept_labels)
        if 1 in kept_labels:
            h, w = out.shape[:2]
            top, left, bottom, right = (kept[list(kept_labels).index(1)] * [h, w, h, w]).round().astype(int)
            assert out[top:bottom, left:right].min() == 255
            assert out[:top].max(initial=0) == 0 and out[:, :left].max(initial=0) == 0


def test_crop_boxes_keeps_centres_and_clips():
    boxes = np.array([[0.0, 0.0, 0.4, 0.4], [0.3, 0.3, 0.9, 0.9], [0.8, 0.8, 1.0, 1.0]], np.float32)
    kept, labels = augment.crop_boxes(boxes, np.array([1, 2, 3], np.int32), np.array([0.25, 0.25, 0.75, 0.75]))
    np.testing.assert_array_equal(labels, [2])
    np.testing.assert_allclose(kept, [[0.1, 0.1, 1.0, 1.0]], atol=1e-6)


def test_flip_mirrors_boxes_exactly():
    image, boxes, _ = image_and_boxes()
    seed = next(s for s in range(100) if np.random.default_rng(s).random() < 0.5)
    flipped, out = augment.random_flip(image, boxes, np.random.default_rng(seed))
    np.testing.assert_array_equal(flipped, image[:, ::-1])
    np.testing.assert_array_equal(out[:, [1, 3]], 1 - boxes[:, [3, 1]])
    np.testing.assert_array_equal(out[:, [0, 2]], boxes[:, [0, 2]])
    seed = next(s for s in range(100) if np.random.default_rng(s).random() >= 0.5)
    same, out = augment.random_flip(image, boxes, np.random.default_rng(seed))
    assert same is image and np.array_equal(out, boxes)


def test_expand_keeps_boxes_on_their_pixels():
    image = np.zeros((50, 80, 3), np.uint8)
    image[10:30, 20:60] = 255
    boxes = np.array([[0.2, 0.25, 0.6, 0.75]], np.float32)
    grown = 0
    for seed in range(10):
        canvas, out = augment.expand(image, boxes, np.random.default_rng(seed), 3.0)
        h, w = canvas.shape[:2]
        assert 50 <= h <= 150 and 80 <= w <= 240
        top, left, bottom, right = (out[0] * [h, w, h, w]).round().astype(int)
        assert canvas[top:bottom, left:right].min() == 255
        if h > 50:
            grown += 1
            assert tuple(canvas[0, 0]) == augment.MEAN_BGR_U8 or tuple(canvas[-1, -1]) == augment.MEAN_BGR_U8
    assert 0 < grown < 10


def test_overhead_symmetries_keep_boxes_on_their_pixels():
    """Every one of the symmetries drawn (flip top-bottom, transpose, both) moves the box with its pixels,
    on a non-square image with a marked corner; over 40 seeds all four combinations occur."""
    image = np.zeros((50, 80, 3), np.uint8)
    image[10:30, 20:60] = 255
    image[10:12, 20:22] = 128  # marks the top-left corner, so a wrong symmetry cannot pass
    boxes = np.array([[0.2, 0.25, 0.6, 0.75]], np.float32)
    shapes = set()
    for seed in range(40):
        out_image, out = augment.random_overhead_symmetry(image, boxes, np.random.default_rng(seed))
        h, w = out_image.shape[:2]
        top, left, bottom, right = (out[0] * [h, w, h, w]).round().astype(int)
        mark_row, mark_col = np.argwhere(out_image[..., 0] == 128).mean(0)
        shapes.add((h, w, int(mark_row < (top + bottom) / 2), int(mark_col < (left + right) / 2)))
        inside = out_image[top:bottom, left:right]
        assert inside.min() >= 128 and (inside == 128).sum() == 12 and out_image.sum() == image.sum()
    # (size, mark in the top half, mark in the left half): identity, flip, transpose, flip then transpose
    assert shapes == {(50, 80, 1, 1), (50, 80, 0, 1), (80, 50, 1, 1), (80, 50, 1, 0)}


def test_color_jitter_keeps_shape_and_varies():
    image, _, _ = image_and_boxes()
    outs = [augment.color_jitter(image, np.random.default_rng(s)) for s in range(8)]
    assert all(o.shape == image.shape and o.dtype == np.uint8 for o in outs)
    assert any(not np.array_equal(o, image) for o in outs)
    grey = np.full((4, 4, 3), 128, np.uint8)
    np.testing.assert_allclose(augment.hue_matrix(17.0) @ np.ones(3), np.ones(3), atol=1e-9)
    assert np.abs(augment.cv2.transform(grey, np.hstack([augment.hue_matrix(17.0), np.zeros((3, 1))]))
                  .astype(int) - 128).max() <= 1


def test_same_seed_same_result_and_eval_is_deterministic():
    image, boxes, labels = image_and_boxes()
    a = augment.train_transform(image, boxes, labels, np.random.default_rng(5), (300, 300), use_expand=True)
    b = augment.train_transform(image, boxes, labels, np.random.default_rng(5), (300, 300), use_expand=True)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    e = augment.eval_transform(image, (300, 300))
    assert e.shape == (3, 300, 300) and e.dtype == np.float32
    np.testing.assert_array_equal(e, augment.eval_transform(image, (300, 300)))


def test_normalize_and_rgb_order():
    image = np.zeros((2, 2, 3), np.uint8)
    image[..., 0] = 255
    chw = augment.normalize_chw(image)
    assert chw[0, 0, 0] == pytest.approx((255 - 123.675) / 58.395)
    assert chw[2, 0, 0] == pytest.approx(-103.53 / 57.375)
    np.testing.assert_array_equal(augment.eval_transform(image[..., ::-1], (2, 2)), chw)


def test_train_transform_is_fast():
    image, boxes, labels = image_and_boxes()
    image = np.ascontiguousarray(np.tile(image, (2, 2, 1))[:400, :400])
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(50):
        augment.train_transform(image, boxes, labels, rng, (300, 300), use_expand=True)
    assert (time.perf_counter() - start) / 50 < 0.02
