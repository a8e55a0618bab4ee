import numpy as np
import pytest

from src.data import augment


def image_and_boxes(seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    boxes = np.array([[0.1, 0.1, 0.5, 0.4], [0.4, 0.5, 0.9, 0.95], [0.0, 0.8, 0.2, 1.0]], np.float32)
    return image, boxes, np.array([3, 7, 9], np.int32)


@pytest.mark.parametrize("seed", range(20))
def test_train_transform_output_is_valid(seed):
    image, boxes, labels = image_and_boxes()
    rng = np.random.default_rng(seed)
    chw, out_boxes, out_labels = augment.train_transform(image, boxes, labels, rng, (300, 300), use_expand=True)
    assert chw.shape == (3, 300, 300) and chw.dtype == np.float32
    assert out_boxes.dtype == np.float32 and out_labels.dtype == np.int32
    assert len(out_boxes) == len(out_labels) >= 1
    assert (out_boxes >= 0).all() and (out_boxes <= 1).all()
    assert (out_boxes[:, 2] > out_boxes[:, 0]).all() and (out_boxes[:, 3] > out_boxes[:, 1]).all()


def test_image_without_boxes():
    image, _, _ = image_and_boxes()
    for seed in range(10):
        chw, boxes, labels = augment.train_transform(image, np.zeros((0, 4), np.float32), np.zeros(0, np.int32),
                                                     np.random.default_rng(seed), (64, 80), use_expand=True)
        assert chw.shape == (3, 64, 80) and boxes.shape == (0, 4) and labels.shape == (0,)


@pytest.mark.parametrize("min_iou", [0.1, 0.3, 0.5, 0.7])
def test_crop_respects_min_iou(min_iou):
    _, boxes, _ = image_and_boxes()
    for seed in range(10):
        crop = augment.find_crop(boxes, np.random.default_rng(seed), min_iou)
        if crop is not None:
            assert augment.crop_iou(crop, boxes).max() >= min_iou
            assert 0 <= crop[0] < crop[2] <= 1 and 0 <= crop[1] < crop[3] <= 1


def test_crop_moves_boxes_with_the_pixels():
    image = np.zeros((100, 200, 3), np.uint8)
    image[20:60, 50:150] = 255
    boxes = np.array([[0.2, 0.25, 0.6, 0.75]], np.float32)
    out, kept, _ = augment.apply_crop(image, boxes, np.array([1], np.int32), np.array([0.1, 0.2, 0.9, 1.0]))
    h, w = out.shape[:2]
    top, left, bottom, right = (kept[0] * [h, w, h, w]).round().astype(int)
    assert out[top:bottom, left:right].min() == 255
    assert out[:top].max() == 0 and out[:, :left].max() == 0


def test_flip_mirrors_boxes_exactly():
    image, boxes, _ = image_and_boxes()
    rng = next(np.random.default_rng(s) for s in range(100) if np.random.default_rng(s).random() >= 0.5)
    flipped, out = augment.random_flip(image, boxes, rng)
    np.testing.assert_array_equal(flipped, image[:, ::-1])
    np.testing.assert_allclose(out[:, [1, 3]], 1 - boxes[:, [3, 1]])
    np.testing.assert_array_equal(out[:, [0, 2]], boxes[:, [0, 2]])


def test_expand_keeps_boxes_on_their_pixels():
    image = np.zeros((50, 80, 3), np.uint8)
    image[10:30, 20:60] = 255
    boxes = np.array([[0.2, 0.25, 0.6, 0.75]], np.float32)
    canvas, out = augment.expand(image, boxes, np.random.default_rng(1), 3.0)
    h, w = canvas.shape[:2]
    top, left, bottom, right = (out[0] * [h, w, h, w]).round().astype(int)
    assert canvas[top:bottom, left:right].min() == 255


def test_same_seed_same_result_and_eval_is_deterministic():
    image, boxes, labels = image_and_boxes()
    a = augment.train_transform(image, boxes, labels, np.random.default_rng(5), (300, 300))
    b = augment.train_transform(image, boxes, labels, np.random.default_rng(5), (300, 300))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(augment.eval_transform(image, (300, 300)), augment.eval_transform(image, (300, 300)))


def test_normalize_is_rgb():
    image = np.zeros((2, 2, 3), np.uint8)
    image[..., 0] = 255
    chw = augment.normalize_chw(image)
    assert chw[2, 0, 0] == pytest.approx((255 - 103.53) / 57.375)
    assert chw[0, 0, 0] == pytest.approx(-123.675 / 58.395)
