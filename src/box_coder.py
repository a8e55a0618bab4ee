"""IoU, anchor matching and SSD box coding, vectorised with numpy (no Python loop over boxes).

Matching follows the SSD paper (section 2.2 "Matching strategy"): every ground-truth box keeps the
default box it overlaps best, and every other default box is matched to the ground truth it overlaps
most when that IoU exceeds ``match_threshold``. Coding follows the paper's equation 2 with the usual
variances ``prior_scaling = [0.1, 0.2]`` for centre and size.
Boxes are float32 ``[ymin, xmin, ymax, xmax]`` (corners) or ``[cy, cx, h, w]`` (centres), in [0, 1].

:class:`SsdTargetEncoder`, run by the data pipeline for every training image, does matching and coding
in one call of a small compiled function (src/native/box_match.cc) when a C++ compiler is available:
numpy spends most of its time on the overhead of some thirty small calls. It repeats the numpy
functions' float32 arithmetic operation for operation, so matches are the same bit for bit; only the
logarithm of the size targets may differ by a few units in the last place (numpy's SIMD float32 log
is not correctly rounded).
"""
import ctypes
import functools

import numpy as np

from src import native

BACKGROUND = 0
LOG_CLAMP = 1e-6


def box_area(boxes):
    """Area of corner boxes (zero for inverted boxes); np.maximum, as np.clip costs microseconds per call."""
    return np.maximum(boxes[..., 2] - boxes[..., 0], 0) * np.maximum(boxes[..., 3] - boxes[..., 1], 0)


def iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU matrix [K, N] between corner boxes [K, 4] and [N, 4]."""
    top_left = np.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])
    bottom_right = np.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    size = np.clip(bottom_right - top_left, 0, None)
    inter = size[..., 0] * size[..., 1]
    union = box_area(boxes_a)[:, None] + box_area(boxes_b)[None, :] - inter
    return inter / np.maximum(union, 1e-12)


def match(gt_boxes: np.ndarray, anchors_yxyx: np.ndarray, threshold: float, anchor_columns=None) -> tuple:
    """Index of the matched ground truth for each anchor, -1 where unmatched (background).

    ``anchor_columns`` (from :class:`AnchorColumns`) may be passed precomputed, as it is the same for
    every image.
    """
    count = len(gt_boxes)
    if count == 0:
        return np.full(len(anchors_yxyx), -1, dtype=np.int64)
    columns = anchor_columns or AnchorColumns(anchors_yxyx)
    overlaps = columns.iou(np.asarray(gt_boxes, dtype=np.float32))
    matched = np.full(overlaps.shape[1], -1, dtype=np.int64)
    # argmax over axis 0 is slow in numpy; take it only over the few anchors above the threshold.
    above = np.flatnonzero(overlaps.max(axis=0) > threshold)
    matched[above] = overlaps[:, above].argmax(axis=0)
    # Every ground truth takes its best anchor; one shared by several stays with the first of them, as
    # in the model zoo's ssd_bboxes_encode (np.unique gives each anchor's first occurrence).
    forced, first = np.unique(overlaps.argmax(axis=1), return_index=True)
    matched[forced] = first
    return matched


class AnchorColumns:
    """Anchor coordinates laid out for a fast IoU of K ground-truth boxes against all N anchors.

    numpy broadcasts a per-row scalar ([K, 1] against [N]) several times slower than it runs a
    contiguous elementwise op, so the anchor columns are tiled K times once (growing when an image
    has more boxes) and each image repeats its few box coordinates N times: every op of the IoU is
    then a contiguous one over K*N elements.
    """

    def __init__(self, anchors_yxyx, tiles=8):
        self.anchors = np.ascontiguousarray(np.asarray(anchors_yxyx, dtype=np.float32).T)
        self.area = box_area(np.asarray(anchors_yxyx, dtype=np.float32))
        self.tile(tiles)

    def tile(self, tiles):
        self.tiles = tiles
        self.tiled = np.tile(self.anchors, (1, tiles))
        self.tiled_area = np.tile(self.area, tiles)

    def iou(self, gt_boxes):
        """IoU matrix [K, N] of corner boxes [K, 4] against the anchors."""
        count, size = len(gt_boxes), self.anchors.shape[1]
        if count > self.tiles:
            self.tile(max(count, 2 * self.tiles))
        used = count * size
        gt = np.repeat(gt_boxes.T, size, axis=1)
        anchors = self.tiled[:, :used]
        overlaps = np.minimum(gt[2], anchors[2])
        overlaps -= np.maximum(gt[0], anchors[0])
        width = np.minimum(gt[3], anchors[3])
        width -= np.maximum(gt[1], anchors[1])
        np.maximum(overlaps, 0, out=overlaps)
        np.maximum(width, 0, out=width)
        overlaps *= width
        union = np.repeat((gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1]), size)
        union += self.tiled_area[:used]
        union -= overlaps
        overlaps /= union
        return overlaps.reshape(count, size)


def corners_to_centres(boxes):
    """(ymin, xmin, ymax, xmax) -> (cy, cx, h, w)."""
    return np.concatenate([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], axis=1)


def encode(gt_yxyx: np.ndarray, anchors_yxhw: np.ndarray, prior_scaling) -> np.ndarray:
    """Regression targets of matched corner boxes against their anchors (SSD paper, equation 2)."""
    size = gt_yxyx[:, 2:] - gt_yxyx[:, :2]
    out = np.empty((len(gt_yxyx), 4), dtype=np.float32)
    out[:, :2] = (gt_yxyx[:, :2] + size / 2 - anchors_yxhw[:, :2]) / (anchors_yxhw[:, 2:] * prior_scaling[0])
    out[:, 2:] = np.log(np.maximum(size / anchors_yxhw[:, 2:], LOG_CLAMP)) / prior_scaling[1]
    return out


def decode(loc: np.ndarray, anchors_yxhw: np.ndarray, prior_scaling) -> np.ndarray:
    """Inverse of :func:`encode`: regression outputs [N, 4] -> corner boxes [N, 4]."""
    centre = loc[..., :2] * prior_scaling[0] * anchors_yxhw[..., 2:] + anchors_yxhw[..., :2]
    size = np.exp(loc[..., 2:] * prior_scaling[1]) * anchors_yxhw[..., 2:]
    return np.concatenate([centre - size / 2, centre + size / 2], axis=-1).astype(np.float32)


def writable_pointer(array):
    """ctypes pointer to a writable array's data (a few times cheaper than ``array.ctypes.data``)."""
    return ctypes.byref(ctypes.c_char.from_buffer(array))


@functools.lru_cache(maxsize=None)
def native_match_encode():
    """The compiled ``ssd_match_encode`` (src/native/box_match.cc), or None without a C++ compiler."""
    library = native.load("box_match.cc")
    if library is None:
        return None
    function = library.ssd_match_encode
    pointer, count, real = ctypes.c_void_p, ctypes.c_int, ctypes.c_float
    function.argtypes = [pointer, pointer, count, pointer, pointer, pointer, count, real, real, real, real,
                         pointer, pointer]
    function.restype = ctypes.c_int
    return function


class SsdTargetEncoder:
    """Turns one image's boxes and labels into per-anchor training targets.

    Holds the anchors and their areas so that each call does only per-image work. With ``use_native``
    (default) it runs the compiled matcher when one can be built, else the numpy functions above.
    """

    def __init__(self, anchors_yxhw, anchors_yxyx, match_threshold, prior_scaling, use_native=True):
        self.anchors_yxhw = np.ascontiguousarray(anchors_yxhw, dtype=np.float32)
        self.anchors_yxyx = np.asarray(anchors_yxyx, dtype=np.float32)
        self.columns = AnchorColumns(self.anchors_yxyx)
        # Python floats, with which numpy compares and scales float32 arrays in float32 as the compiled
        # path does (numpy 2 would promote to float64 for numpy float64 scalars).
        self.threshold = float(match_threshold)
        self.prior_scaling = tuple(float(scale) for scale in prior_scaling)
        self.use_native = use_native
        self.native = native_match_encode() if use_native else None
        # Arguments of every compiled call after the boxes: the anchors' corner columns, areas, centres and
        # count, then the constants rounded to float32.
        constants = (self.threshold, *self.prior_scaling, LOG_CLAMP)
        self.native_args = (self.columns.anchors.ctypes.data, self.columns.area.ctypes.data,
                            self.anchors_yxhw.ctypes.data, len(self.anchors_yxhw),
                            *(float(np.float32(value)) for value in constants))

    def __reduce__(self):
        """Pickled (and deep-copied) as its constructor's arguments: the raw addresses above would dangle."""
        return type(self), (self.anchors_yxhw, self.anchors_yxyx, self.threshold, self.prior_scaling,
                            self.use_native)

    def __call__(self, boxes, labels):
        """-> loc float32 [N, 4] (zeros where unmatched), label int32 [N] (0 = background), num_match int32."""
        boxes = np.ascontiguousarray(boxes, dtype=np.float32)
        labels = np.ascontiguousarray(labels, dtype=np.int32)
        if self.native is None or boxes.ndim != 2 or boxes.shape[1] != 4 or labels.ndim != 1 \
                or len(labels) < len(boxes):
            return self.numpy_targets(boxes, labels)
        return self.native_targets(boxes, labels)

    def native_targets(self, boxes, labels):
        """The compiled path of :meth:`__call__`, for C-contiguous float32 boxes [K, 4] and int32 labels [>=K]."""
        count = len(self.anchors_yxhw)
        loc = np.empty((count, 4), dtype=np.float32)
        target = np.empty(count, dtype=np.int32)
        num = self.native(boxes.tobytes(), labels.tobytes(), len(boxes), *self.native_args,
                          writable_pointer(loc), writable_pointer(target))
        return loc, target, np.int32(num)

    def numpy_targets(self, boxes, labels):
        """The numpy path of :meth:`__call__` (:func:`match` then :func:`encode`)."""
        count = len(self.anchors_yxhw)
        loc = np.zeros((count, 4), dtype=np.float32)
        target = np.zeros(count, dtype=np.int32)
        matched = match(boxes, self.anchors_yxyx, self.threshold, self.columns)
        positive = np.flatnonzero(matched >= 0)
        if len(positive):
            gt_index = matched[positive]
            target[positive] = labels[gt_index]
            loc[positive] = encode(boxes[gt_index], self.anchors_yxhw[positive], self.prior_scaling)
        return loc, target, np.int32(len(positive))


def ssd_targets(boxes: np.ndarray, labels: np.ndarray, anchors_yxhw: np.ndarray, anchors_yxyx: np.ndarray,
                match_threshold: float, prior_scaling) -> tuple:
    """Functional form of :class:`SsdTargetEncoder` for one image."""
    return SsdTargetEncoder(anchors_yxhw, anchors_yxyx, match_threshold, prior_scaling)(boxes, labels)
