"""Turn the network's decoded boxes and class scores into final detections (pure numpy).

Per image the network gives ``boxes`` float32 [N, 4] ``[ymin, xmin, ymax, xmax]`` normalised to [0, 1]
and ``scores`` float32 [N, num_classes] (sigmoid scores, column 0 = background, ignored).
:func:`detect` keeps the (box, class) pairs scoring above ``min_score``, runs per-class greedy NMS for
all classes in one loop (:func:`batched_nms`) and keeps the ``max_boxes`` best.
:func:`to_coco_detections` is the single place where normalised yxyx boxes become COCO
``[x, y, w, h]`` boxes in original image pixels.

IoU here is the continuous one, ``inter / (area_a + area_b - inter)`` on normalised coordinates (no
"+1 pixel" convention), computed in float64 so that offsetting boxes by class does not cost precision.
"""
import numpy as np

# Candidates kept (by score) before NMS. Greedy NMS of a score-sorted prefix keeps exactly the boxes
# the full NMS keeps within that prefix, so with 1000 candidates the top ``max_boxes`` (COCO: 100)
# only differ from NMS over all candidates when fewer than ``max_boxes`` of the best 1000 survive.
# It bounds the cost when scores are flat (an untrained model puts ~150k pairs above 0.01).
PRE_NMS_TOP_K = 1000


def _greedy_nms(boxes, scores, iou_threshold, max_out):
    """Greedy NMS over float64 boxes; returns kept indices in descending score order.

    The candidates live in one score-sorted table (rows y1, x1, y2, x2, weighted area, index) that
    shrinks every iteration, so each step is a few vectorised operations on the survivors only.
    ``IoU > t`` is tested without a division as ``inter > t / (1 + t) * (area_a + area_b)``, which is
    the same inequality rearranged, and needs no guard against a zero union.
    """
    order = np.argsort(-scores, kind="stable")
    b = boxes[order].T
    area = np.maximum(b[2] - b[0], 0.0) * np.maximum(b[3] - b[1], 0.0)
    weight = iou_threshold / (1.0 + iou_threshold)
    table = np.vstack([b, weight * area, order.astype(np.float64)])
    limit = len(order) if max_out is None else int(max_out)
    keep = []
    while table.shape[1] and len(keep) < limit:
        top, rest = table[:, 0], table[:, 1:]
        keep.append(top[5])
        hw = np.minimum(rest[2:4], top[2:4, None]) - np.maximum(rest[0:2], top[0:2, None])
        np.maximum(hw, 0.0, out=hw)
        table = np.compress(hw[0] * hw[1] <= rest[4] + top[4], rest, axis=1)
    return np.asarray(keep, dtype=np.int64)


def _check_boxes(boxes, scores):
    """Return boxes as float64 [N, 4] and scores as float64 [N], or raise on mismatched shapes."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if boxes.shape[0] != scores.shape[0]:
        raise ValueError("nms: %d boxes but %d scores" % (boxes.shape[0], scores.shape[0]))
    return boxes, scores


def nms(boxes, scores, iou_threshold, max_out=None):
    """Greedy NMS for one class: indices of kept boxes, best score first.

    A box is suppressed when its IoU with an already kept, higher-scoring box is greater than
    ``iou_threshold``. Equal scores keep the lower index first. ``max_out`` stops after that many
    kept boxes (exact: later boxes can never suppress earlier ones).
    """
    boxes, scores = _check_boxes(boxes, scores)
    return _greedy_nms(boxes, scores, iou_threshold, max_out)


def batched_nms(boxes, scores, classes, iou_threshold, max_out=None):
    """Per-class NMS of all classes in one greedy loop: indices of kept boxes, best score first.

    Each box is shifted by ``class * (span + 1)`` along both axes, ``span`` being the extent of all
    coordinates, so boxes of different classes can never overlap and never suppress each other.
    The result equals running :func:`nms` class by class and merging by score.
    """
    boxes, scores = _check_boxes(boxes, scores)
    classes = np.asarray(classes).reshape(-1)
    if boxes.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    span = boxes.max() - boxes.min()
    shifted = boxes + (classes.astype(np.float64) * (span + 1.0))[:, None]
    return _greedy_nms(shifted, scores, iou_threshold, max_out)


def detect(boxes: np.ndarray, scores: np.ndarray, min_score: float, nms_threshold: float, max_boxes: int,
           pre_nms_top_k: int = PRE_NMS_TOP_K, per_class: bool = False) -> tuple:
    """Final detections of one image: (boxes_yxyx float32 [K, 4], scores float32 [K], labels int32 [K]).

    Keeps (box, class) pairs with score > ``min_score`` over classes 1..C-1, the ``pre_nms_top_k``
    best of them (None or 0: all), then per-class NMS at ``nms_threshold`` and the ``max_boxes`` best.
    ``per_class=True`` is the model zoo's counting instead: no pre-NMS cut, and up to ``max_boxes`` per
    class (so up to ``max_boxes`` x classes per image). Results are sorted by descending score; labels
    index ``cfg.classes`` (1..num_classes-1).
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float32)
    if scores.ndim != 2 or scores.shape[0] != boxes.shape[0]:
        raise ValueError("detect: boxes %s do not match scores %s" % (boxes.shape, scores.shape))
    box_idx, labels = np.divmod(np.flatnonzero(scores > min_score), scores.shape[1])
    box_idx, labels = box_idx[labels > 0], labels[labels > 0].astype(np.int32)
    cand = scores[box_idx, labels]
    if pre_nms_top_k and not per_class and cand.shape[0] > pre_nms_top_k:
        top = np.argpartition(-cand, pre_nms_top_k - 1)[:pre_nms_top_k]
        box_idx, labels, cand = box_idx[top], labels[top], cand[top]
    keep = batched_nms(boxes[box_idx], cand, labels, nms_threshold, max_out=None if per_class else max_boxes)
    if per_class:
        keep = keep[first_per_label(labels[keep], max_boxes)]
    return boxes[box_idx[keep]], cand[keep], labels[keep]


def first_per_label(labels, limit: int) -> np.ndarray:
    """Indices (in order) of the entries among the first ``limit`` of their label in ``labels``."""
    labels = np.asarray(labels)
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    starts = np.searchsorted(sorted_labels, sorted_labels, side="left")
    rank = np.empty(len(labels), dtype=np.int64)
    rank[order] = np.arange(len(labels)) - starts
    return np.flatnonzero(rank < limit)


def to_coco_detections(image_id: int, boxes_yxyx, scores, labels, height: int, width: int,
                       label_to_category_id: dict) -> list:
    """COCO result dicts ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` of one image.

    Boxes are clipped to the image and scaled to original pixels. Labels missing from
    ``label_to_category_id`` (classes the ground truth does not have) are dropped.
    """
    boxes = np.clip(np.asarray(boxes_yxyx, dtype=np.float64).reshape(-1, 4), 0.0, 1.0)
    pixels = boxes * np.array([height, width, height, width], dtype=np.float64)
    result = []
    for (y1, x1, y2, x2), score, label in zip(pixels.tolist(), np.asarray(scores).tolist(),
                                              np.asarray(labels).tolist()):
        category_id = label_to_category_id.get(int(label))
        if category_id is None:
            continue
        result.append({"image_id": int(image_id), "category_id": int(category_id),
                       "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score)})
    return result


def detections_for_batch(boxes, scores, img_ids, shapes, cfg, label_to_category: dict) -> list:
    """COCO detection dicts for one batch of decoded network outputs (numpy arrays): :func:`detect` at the
    evaluation thresholds (``min_score``, ``nms_threshold``, ``max_boxes``, per class under
    ``protocol: model_zoo``), then COCO boxes in the
    pixels of each image's original ``shapes[i] = (height, width)``."""
    out = []
    for i, img_id in enumerate(np.asarray(img_ids).reshape(-1)):
        kept_boxes, kept_scores, labels = detect(boxes[i], scores[i], cfg.min_score, cfg.nms_threshold,
                                                 cfg.max_boxes, per_class=cfg.get("protocol") == "model_zoo")
        height, width = (int(v) for v in shapes[i])
        out.extend(to_coco_detections(int(img_id), kept_boxes, kept_scores, labels, height, width,
                                      label_to_category))
    return out
