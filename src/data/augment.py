"""Training augmentation of the SSD paper (Liu et al. 2016, section 2.2 "Data augmentation").

Images are HWC uint8 as OpenCV decodes them (BGR); :func:`normalize_chw` is the one place where they
become RGB. Boxes are float32 ``[ymin, xmin, ymax, xmax]`` normalised to [0, 1], labels int32; all
randomness comes from the ``numpy.random.Generator`` passed in. Images without boxes are valid input.
"""
import cv2
import numpy as np

MEAN_RGB = np.array([123.675, 116.28, 103.53], np.float32)
STD_RGB = np.array([58.395, 57.12, 57.375], np.float32)
# The SSD sampler: whole image (None), a patch with min IoU, or any patch (0.0).
MIN_IOU_CHOICES = (None, 0.1, 0.3, 0.5, 0.7, 0.9, 0.0)
CROP_TRIALS = 50


def crop_iou(crop, boxes):
    """IoU of one crop [4] with every box [K, 4]."""
    top_left = np.maximum(boxes[:, :2], crop[:2])
    bottom_right = np.minimum(boxes[:, 2:], crop[2:])
    inter = np.prod(np.maximum(bottom_right - top_left, 0), axis=1)
    area_boxes = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    area_crop = (crop[2] - crop[0]) * (crop[3] - crop[1])
    return inter / np.maximum(area_boxes + area_crop - inter, 1e-12)


def sample_crop(rng):
    """A random crop [ymin, xmin, ymax, xmax] in [0, 1]: sides 0.3..1, aspect ratio 0.5..2."""
    while True:
        h, w = rng.uniform(0.3, 1.0, 2)
        if 0.5 <= h / w <= 2.0:
            y, x = rng.uniform(0, 1 - h), rng.uniform(0, 1 - w)
            return np.array([y, x, y + h, x + w], np.float32)


def find_crop(boxes, rng, min_iou):
    """A crop whose IoU with some box is at least ``min_iou`` and that keeps a box centre, or None."""
    for _ in range(CROP_TRIALS):
        crop = sample_crop(rng)
        if len(boxes) == 0:
            return crop
        if min_iou > 0 and crop_iou(crop, boxes).max() < min_iou:
            continue
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        if np.any(np.all((centres > crop[:2]) & (centres < crop[2:]), axis=1)):
            return crop
    return None


def apply_crop(image, boxes, labels, crop):
    """Cut ``crop`` out of the image; keep the boxes whose centre lies in it, clipped and renormalised."""
    height, width = image.shape[:2]
    top, left = int(round(crop[0] * height)), int(round(crop[1] * width))
    bottom, right = max(top + 1, int(round(crop[2] * height))), max(left + 1, int(round(crop[3] * width)))
    crop = np.array([top / height, left / width, bottom / height, right / width], np.float32)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    keep = np.all((centres > crop[:2]) & (centres < crop[2:]), axis=1)
    size = crop[2:] - crop[:2]
    kept = (np.clip(boxes[keep], np.tile(crop[:2], 2), np.tile(crop[2:], 2)) - np.tile(crop[:2], 2)) / np.tile(size, 2)
    return image[top:bottom, left:right], kept.astype(np.float32), labels[keep]


def random_crop(image, boxes, labels, rng):
    """The SSD paper's patch sampler; returns the image unchanged when the whole image is chosen."""
    min_iou = MIN_IOU_CHOICES[rng.integers(len(MIN_IOU_CHOICES))]
    if min_iou is None:
        return image, boxes, labels
    crop = find_crop(boxes, rng, min_iou)
    if crop is None:
        return image, boxes, labels
    return apply_crop(image, boxes, labels, crop)


def expand(image, boxes, rng, max_ratio):
    """Zoom out: place the image at a random spot of a canvas up to ``max_ratio`` times larger, filled
    with the mean colour, so that the network sees more small objects."""
    ratio = rng.uniform(1.0, max_ratio)
    height, width = image.shape[:2]
    out_h, out_w = int(height * ratio), int(width * ratio)
    top, left = int(rng.uniform(0, out_h - height)), int(rng.uniform(0, out_w - width))
    canvas = np.empty((out_h, out_w, 3), np.uint8)
    canvas[:] = MEAN_RGB[::-1].astype(np.uint8)
    canvas[top:top + height, left:left + width] = image
    scale = np.array([height / out_h, width / out_w] * 2, np.float32)
    offset = np.array([top / out_h, left / out_w] * 2, np.float32)
    return canvas, (boxes * scale + offset).astype(np.float32)


def random_flip(image, boxes, rng):
    """Horizontal flip with probability 0.5."""
    if rng.random() < 0.5:
        return image, boxes
    flipped = boxes.copy()
    flipped[:, 1], flipped[:, 3] = 1.0 - boxes[:, 3], 1.0 - boxes[:, 1]
    return np.ascontiguousarray(image[:, ::-1]), flipped


def color_jitter(image, rng):
    """Brightness, contrast, saturation and hue changes in random order (photometric distortions)."""
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV).astype(np.float32)
    for op in rng.permutation(4):
        if rng.random() < 0.5:
            continue
        if op == 0:
            hsv[..., 2] += rng.uniform(-32, 32)
        elif op == 1:
            hsv[..., 2] *= rng.uniform(0.5, 1.5)
        elif op == 2:
            hsv[..., 1] *= rng.uniform(0.5, 1.5)
        else:
            hsv[..., 0] = (hsv[..., 0] + rng.uniform(-9, 9)) % 180
    np.clip(hsv, 0, 255, out=hsv)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)


def resize(image, img_shape):
    """Resize to ``img_shape`` [h, w]; normalised boxes need no change."""
    return cv2.resize(image, (int(img_shape[1]), int(img_shape[0])), interpolation=cv2.INTER_LINEAR)


def normalize_chw(image_bgr):
    """BGR uint8 HWC -> RGB float32 CHW with ImageNet mean and std (the one BGR -> RGB step)."""
    rgb = image_bgr[..., ::-1].astype(np.float32)
    return np.ascontiguousarray(((rgb - MEAN_RGB) / STD_RGB).transpose(2, 0, 1))


def train_transform(image_bgr, boxes, labels, rng, img_shape, use_expand=False, max_expand_ratio=2.0):
    """Expand (optional), SSD crop, flip, colour jitter, resize, normalise -> (chw, boxes, labels)."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    labels = np.asarray(labels, np.int32).reshape(-1)
    if use_expand and rng.random() < 0.5:
        image_bgr, boxes = expand(image_bgr, boxes, rng, max_expand_ratio)
    image_bgr, boxes, labels = random_crop(image_bgr, boxes, labels, rng)
    image_bgr, boxes = random_flip(image_bgr, boxes, rng)
    image_bgr = color_jitter(resize(image_bgr, img_shape), rng)
    valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return normalize_chw(image_bgr), boxes[valid], labels[valid]


def eval_transform(image_bgr, img_shape):
    """Resize and normalise, no randomness."""
    return normalize_chw(resize(image_bgr, img_shape))
