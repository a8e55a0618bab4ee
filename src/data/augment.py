"""SSD training augmentation (SSD paper, section 2.2 "Data augmentation") and the evaluation transform.

Pure numpy/cv2. Images are HWC uint8 in BGR order, as cv2 decodes them, all the way through the
augmentation; the one conversion to RGB happens in :func:`to_chw` (the last step of both
:func:`train_transform` and :func:`eval_transform`), right before :func:`normalize_chw`.
Boxes are float32 ``[K, 4]`` rows ``[ymin, xmin, ymax, xmax]`` normalised to [0, 1]; labels are
int32 ``[K]``. All randomness comes from the ``np.random.Generator`` passed in, so a seeded
generator reproduces the same sample exactly.
"""
import cv2
import numpy as np

MEAN_RGB = np.array([123.675, 116.28, 103.53], np.float32)
STD_RGB = np.array([58.395, 57.12, 57.375], np.float32)
MEAN_BGR_U8 = (104, 116, 124)

# SSD patch sampler: None = keep the whole image, a number = the minimum IoU the patch must reach with
# at least one object, -inf = any patch.
CROP_MODES = (None, 0.1, 0.3, 0.5, 0.7, 0.9, -np.inf)
CROP_TRIALS = 50
CROP_MIN_SCALE = 0.3
CROP_ASPECT = (0.5, 2.0)

BRIGHTNESS_DELTA = 32.0
CONTRAST_RANGE = (0.5, 1.5)
SATURATION_RANGE = (0.5, 1.5)
HUE_DELTA_DEG = 18.0
LUMA_BGR = np.array([0.114, 0.587, 0.299])


def as_boxes(boxes):
    """Boxes as float32 [K, 4] (accepts an empty list or shape (0,))."""
    return np.asarray(boxes, np.float32).reshape(-1, 4)


def iou_matrix(a, b):
    """IoU of every box of ``a`` [N, 4] with every box of ``b`` [K, 4] (yxyx) -> [N, K]."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, 1e-12)


def centres_inside(crops, boxes):
    """[N, K] mask: is the centre of box k strictly inside crop n (both normalised yxyx)?"""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    return np.all((centre[None] > crops[:, None, :2]) & (centre[None] < crops[:, None, 2:]), axis=2)


def sample_crop(boxes, height, width, min_iou, rng, trials=CROP_TRIALS):
    """One SSD patch ``(top, left, bottom, right)`` in integer pixels, or None when no trial qualifies.

    All ``trials`` candidates are drawn at once: sides 0.3..1 of the image's, aspect ratio 0.5..2.
    A candidate qualifies when some box reaches ``min_iou`` with it and some box centre lies inside
    it (so the patch keeps an object); with no boxes, any candidate of valid aspect ratio does.
    """
    boxes = as_boxes(boxes)
    h = np.maximum(np.floor(rng.uniform(CROP_MIN_SCALE, 1, trials) * height), 1)
    w = np.maximum(np.floor(rng.uniform(CROP_MIN_SCALE, 1, trials) * width), 1)
    top = np.floor(rng.uniform(0, 1, trials) * (height - h + 1))
    left = np.floor(rng.uniform(0, 1, trials) * (width - w + 1))
    ok = (h / w >= CROP_ASPECT[0]) & (h / w <= CROP_ASPECT[1])
    if len(boxes):
        crops = np.stack([top / height, left / width, (top + h) / height, (left + w) / width], axis=1)
        ok &= (iou_matrix(crops, boxes).max(axis=1) >= min_iou) & centres_inside(crops, boxes).any(axis=1)
    hits = np.flatnonzero(ok)
    if not len(hits):
        return None
    i = hits[0]
    return int(top[i]), int(left[i]), int(top[i] + h[i]), int(left[i] + w[i])


def crop_boxes(boxes, labels, crop):
    """Boxes and labels of the objects whose centre lies in ``crop`` (normalised yxyx), in its frame."""
    keep = centres_inside(crop[None], boxes)[0]
    size = np.tile(crop[2:] - crop[:2], 2)
    moved = (boxes[keep] - np.tile(crop[:2], 2)) / size
    return np.clip(moved, 0, 1).astype(np.float32), labels[keep]


def random_crop(image, boxes, labels, rng):
    """SSD patch sampling: pick a mode of CROP_MODES, then up to 50 trials, else the whole image.

    Kept objects are those whose box centre lies in the patch, clipped to it. An image without boxes
    gets a random patch (or stays whole), with boxes of shape (0, 4).
    """
    boxes, labels = as_boxes(boxes), np.asarray(labels, np.int32).reshape(-1)
    min_iou = CROP_MODES[rng.integers(len(CROP_MODES))]
    height, width = image.shape[:2]
    patch = None if min_iou is None else sample_crop(boxes, height, width, min_iou, rng)
    if patch is None:
        return image, boxes, labels
    top, left, bottom, right = patch
    crop = np.array([top / height, left / width, bottom / height, right / width], np.float32)
    boxes, labels = crop_boxes(boxes, labels, crop)
    return image[top:bottom, left:right], boxes, labels


def expand(image, boxes, rng, max_ratio, prob=0.5):
    """Zoom out with probability ``prob``: place the image at a random spot of a canvas up to
    ``max_ratio`` times larger per side, filled with the mean colour, so the network sees small objects.
    """
    apply, ratio, fy, fx = rng.random() < prob, rng.uniform(1, max(max_ratio, 1)), rng.random(), rng.random()
    boxes = as_boxes(boxes)
    if not apply or max_ratio <= 1:
        return image, boxes
    height, width = image.shape[:2]
    out_h, out_w = int(height * ratio), int(width * ratio)
    top, left = int(fy * (out_h - height)), int(fx * (out_w - width))
    canvas = cv2.copyMakeBorder(image, top, out_h - height - top, left, out_w - width - left,
                                cv2.BORDER_CONSTANT, value=MEAN_BGR_U8)
    scale = np.array([height / out_h, width / out_w] * 2, np.float32)
    shift = np.array([top / out_h, left / out_w] * 2, np.float32)
    return canvas, boxes * scale + shift


def random_flip(image, boxes, rng, prob=0.5):
    """Mirror left-right with probability ``prob`` (xmin, xmax -> 1 - xmax, 1 - xmin)."""
    boxes = as_boxes(boxes)
    if rng.random() >= prob:
        return image, boxes
    return cv2.flip(image, 1), np.stack([boxes[:, 0], 1 - boxes[:, 3], boxes[:, 2], 1 - boxes[:, 1]], axis=1)


def random_overhead_symmetry(image, boxes, rng):
    """One of the 8 symmetries of the square at random, as flips top-bottom and a transposition on top of
    :func:`random_flip`'s left-right one: for images taken from above (aerial, microscopy), which have no
    up direction, every one of them is as real as the original."""
    boxes = as_boxes(boxes)
    if rng.random() < 0.5:
        image, boxes = cv2.flip(image, 0), np.stack([1 - boxes[:, 2], boxes[:, 1], 1 - boxes[:, 0], boxes[:, 3]], 1)
    if rng.random() < 0.5:
        image, boxes = np.ascontiguousarray(np.swapaxes(image, 0, 1)), boxes[:, [1, 0, 3, 2]]
    return image, boxes


def hue_matrix(degrees):
    """3x3 colour matrix rotating colours about the grey axis by ``degrees`` (a hue shift)."""
    theta = np.deg2rad(degrees)
    k = np.full(3, 1 / np.sqrt(3))
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.cos(theta) * np.eye(3) + np.sin(theta) * cross + (1 - np.cos(theta)) * np.outer(k, k)


def color_jitter(image, rng):
    """Photometric distortion: brightness, contrast, saturation and hue, each with p=0.5, random order.

    All four are affine maps of the colour vector, so they are composed into one 3x4 matrix and
    applied in a single saturating cv2.transform pass over the uint8 BGR image (cheap). Contrast
    blends with the mean grey level of the image as the preceding steps left it.
    """
    order, apply = rng.permutation(4), rng.random(4) < 0.5
    params = (rng.uniform(-BRIGHTNESS_DELTA, BRIGHTNESS_DELTA), rng.uniform(*CONTRAST_RANGE),
              rng.uniform(*SATURATION_RANGE), rng.uniform(-HUE_DELTA_DEG, HUE_DELTA_DEG))
    matrix, offset = np.eye(3), np.zeros(3)
    mean = np.array(cv2.mean(image)[:3])
    for op in order[apply[order]]:
        value = params[op]
        if op == 0:
            step, shift = np.eye(3), np.full(3, value)
        elif op == 1:
            step, shift = value * np.eye(3), np.full(3, (1 - value) * LUMA_BGR @ (matrix @ mean + offset))
        elif op == 2:
            step, shift = value * np.eye(3) + (1 - value) * np.tile(LUMA_BGR, (3, 1)), np.zeros(3)
        else:
            step, shift = hue_matrix(value), np.zeros(3)
        matrix, offset = step @ matrix, step @ offset + shift
    if not apply.any():
        return image
    return cv2.transform(image, np.hstack([matrix, offset[:, None]]).astype(np.float32))


def resize(image, boxes, img_shape):
    """Resize to ``img_shape`` [height, width] (bilinear); normalised boxes are unchanged."""
    height, width = int(img_shape[0]), int(img_shape[1])
    if image.shape[:2] != (height, width):
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    return image, boxes


def normalize_chw(image_rgb):
    """HWC uint8 RGB -> CHW float32 standardised with the ImageNet mean and std (transposed as uint8: cheaper)."""
    chw = np.ascontiguousarray(image_rgb.transpose(2, 0, 1)).astype(np.float32)
    chw -= MEAN_RGB[:, None, None]
    chw *= (1 / STD_RGB)[:, None, None]
    return chw


def to_chw(image_bgr):
    """The single BGR -> RGB conversion of the pipeline, then :func:`normalize_chw`."""
    return normalize_chw(image_bgr[..., ::-1])


def train_transform(image_bgr, boxes, labels, rng, img_shape, use_expand=False, max_expand_ratio=2.0,
                    overhead=False):
    """Training sample: (expand), SSD crop, flip (all 8 symmetries when ``overhead``), resize, colour
    jitter, normalise.

    Jitter runs after the resize: the result is the same kind of distortion, at the cost of the
    (usually smaller) network input rather than the crop. Returns (CHW float32 [3, H, W], boxes
    float32 [K', 4], labels int32 [K']); boxes that became empty are dropped.
    """
    boxes, labels = as_boxes(boxes), np.asarray(labels, np.int32).reshape(-1)
    if use_expand:
        image_bgr, boxes = expand(image_bgr, boxes, rng, max_expand_ratio)
    image, boxes, labels = random_crop(image_bgr, boxes, labels, rng)
    image, boxes = random_flip(image, boxes, rng)
    if overhead:
        image, boxes = random_overhead_symmetry(image, boxes, rng)
    image, boxes = resize(image, boxes, img_shape)
    image = color_jitter(image, rng)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return to_chw(image), np.clip(boxes[keep], 0, 1).astype(np.float32), labels[keep]


def resize_only_transform(image_bgr, boxes, labels, img_shape):
    """Training sample without augmentation (``augment: False``): resize and normalise only; for
    overfitting checks and debugging, not for real training."""
    boxes, labels = as_boxes(boxes), np.asarray(labels, np.int32).reshape(-1)
    image, boxes = resize(image_bgr, boxes, img_shape)
    return to_chw(image), np.clip(boxes, 0, 1).astype(np.float32), labels


def eval_transform(image_bgr, img_shape):
    """Evaluation input: resize to ``img_shape`` and normalise (no randomness) -> CHW float32."""
    return to_chw(resize(image_bgr, as_boxes([]), img_shape)[0])
