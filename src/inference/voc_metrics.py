"""Pascal VOC average precision at IoU 0.5, as the VOC devkit computes it (Everingham et al. 2010,
section 4.2), vectorised per class.

Per class, detections are taken in descending score (ties in input order, as MATLAB's stable sort in the
devkit). Each is compared with the ground truth of its image: the one of highest IoU is its candidate.
When that IoU exceeds the threshold (strictly, as the devkit's ``ovmax > minoverlap``): a ``difficult``
candidate makes the detection ignored (neither true nor false positive), a candidate not yet taken by an
earlier detection makes it a true positive, and a taken one a false positive (a duplicate: the devkit does
not fall back to the second-best box). Otherwise it is a false positive. Recall counts the non-difficult
ground truth only.

* ``voc07``: the 11-point interpolated AP of VOC 2007: the mean over recall r in {0, 0.1, ..., 1} of the
  highest precision at recall >= r (0 when none);
* ``voc12``: the area under the precision envelope of VOC 2010 and later (precision made non-increasing
  from the right, summed over the recall steps).

A class without non-difficult ground truth has no AP (None): the devkit would divide by zero. Boxes are
continuous pixel corners (x0, y0, x1, y1) as the converter stores them (VOC's 1-based xmin, ymin become
xmin - 1, ymin - 1), so widths are x1 - x0, which equals the devkit's xmax - xmin + 1.
"""
import numpy as np

METRICS = ("voc07", "voc12")


def pairwise_iou(a, b):
    """IoU [len(a), len(b)] of corner boxes (x0, y0, x1, y1)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    left, top = np.maximum(a[:, None, 0], b[None, :, 0]), np.maximum(a[:, None, 1], b[None, :, 1])
    right, bottom = np.minimum(a[:, None, 2], b[None, :, 2]), np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def true_false_positives(det_images, det_boxes, det_scores, gt_images, gt_boxes, gt_difficult, threshold=0.5):
    """(tp, fp, positives) of one class: tp and fp [D] in descending score order (0/1; both 0 for an
    ignored detection), positives the non-difficult ground-truth count."""
    det_images, gt_images = np.asarray(det_images), np.asarray(gt_images)
    gt_difficult = np.asarray(gt_difficult, bool).reshape(-1)
    order = np.argsort(-np.asarray(det_scores, np.float64), kind="stable")
    det_images, det_boxes = det_images[order], np.asarray(det_boxes, np.float64).reshape(-1, 4)[order]
    best_iou, best_gt = np.zeros(len(order)), np.full(len(order), -1)
    for image in np.unique(det_images):
        dets, gts = np.flatnonzero(det_images == image), np.flatnonzero(gt_images == image)
        if len(gts):
            iou = pairwise_iou(det_boxes[dets], np.asarray(gt_boxes, np.float64).reshape(-1, 4)[gts])
            best_iou[dets], best_gt[dets] = iou.max(1), gts[iou.argmax(1)]
    hit = best_iou > threshold
    ignored = hit & (gt_difficult[np.maximum(best_gt, 0)] if len(gt_difficult) else False)
    candidates = np.flatnonzero(hit & ~ignored)
    _, first = np.unique(best_gt[candidates], return_index=True)
    tp = np.zeros(len(order))
    tp[candidates[first]] = 1.0
    fp = (~ignored).astype(np.float64) - tp
    return tp, fp, int((~gt_difficult).sum())


def precision_recall(tp, fp, positives):
    """Cumulative (recall, precision) over the ranked detections."""
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    recall = tp / max(positives, 1)
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return recall, precision


def ap_voc07(recall, precision):
    """11-point interpolated AP (VOC 2007)."""
    points = [precision[recall >= t].max() if np.any(recall >= t) else 0.0 for t in np.linspace(0, 1, 11)]
    return float(np.mean(points))


def ap_voc12(recall, precision):
    """Area under the non-increasing precision envelope (VOC 2010 and later)."""
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[steps] - mrec[steps - 1]) * mpre[steps]))


def class_ap(metric, det_images, det_boxes, det_scores, gt_images, gt_boxes, gt_difficult, threshold=0.5):
    """AP of one class by ``metric`` ("voc07" or "voc12"); None when it has no non-difficult ground truth."""
    if metric not in METRICS:
        raise ValueError("metric must be one of %s, got %r" % (", ".join(METRICS), metric))
    tp, fp, positives = true_false_positives(det_images, det_boxes, det_scores, gt_images, gt_boxes,
                                             gt_difficult, threshold)
    if positives == 0:
        return None
    recall, precision = precision_recall(tp, fp, positives)
    return (ap_voc07 if metric == "voc07" else ap_voc12)(recall, precision)


def corners(xywh):
    """COCO [x, y, w, h] boxes as corners (x0, y0, x1, y1)."""
    boxes = np.asarray(xywh, np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)


def evaluate_voc(gt, detections, metric, image_ids=None):
    """VOC mAP of COCO detection dicts against a COCO ground-truth dict ``gt`` (crowd = ``iscrowd``, which
    is how the converter writes VOC's difficult objects: ignored), over ``image_ids`` (default: all).
    Returns (mean AP over the classes with ground truth, [(class name, AP or None, objects, detections)],
    printable lines)."""
    images = {img["id"] for img in gt["images"]} if image_ids is None else set(image_ids)
    annotations = [a for a in gt.get("annotations", []) if a["image_id"] in images]
    detections = [d for d in detections if d["image_id"] in images]
    rows = []
    for category in gt.get("categories", []):
        gts = [a for a in annotations if a["category_id"] == category["id"]]
        dets = [d for d in detections if d["category_id"] == category["id"]]
        value = class_ap(metric, [d["image_id"] for d in dets], corners([d["bbox"] for d in dets]),
                         [d["score"] for d in dets], [a["image_id"] for a in gts], corners([a["bbox"] for a in gts]),
                         [bool(a.get("iscrowd", 0)) for a in gts])
        objects = sum(1 for a in gts if not a.get("iscrowd", 0))
        if value is not None or dets:
            rows.append((category["name"], value, objects, len(dets)))
    scored = [value for _, value, _, _ in rows if value is not None]
    mean = float(np.mean(scored)) if scored else 0.0
    title = {"voc07": "VOC2007 11-point AP", "voc12": "VOC2010+ area AP"}[metric]
    lines = ["%s at IoU 0.5 (difficult objects ignored), %d image(s):" % (title, len(images)),
             "  %-20s %8s %8s %11s" % ("class", "AP", "objects", "detections")]
    lines += ["  %-20s %8s %8d %11d" % (name[:20], "-" if value is None else "%.4f" % value, objects, count)
              + ("  (no ground truth)" if value is None else "") for name, value, objects, count in rows]
    lines.append("  mean over %d class(es) with ground truth: %.4f" % (len(scored), mean))
    return mean, rows, lines
