"""Where a detector's errors come from: a confusion matrix at one operating point, and a breakdown of every
detection into true positives and error types, each with the AP50 gained by fixing it alone.

Both analyses take a COCO ground-truth dict and COCO result dicts, keep the categories of ``category_ids``
(the model's class order; other categories are dropped, ground truth and detections alike) and the images of
``image_ids`` (default: every image of the ground truth), and compare boxes by IoU per image. Crowd boxes
(``iscrowd`` 1, which is how the project's VOC converter writes VOC's "difficult" objects) are never matched
and never missed; a detection that is not a true positive (breakdown) or part of a matched pair (confusion
matrix) and whose IoU with a crowd box of any class reaches the match threshold is ignored: it is neither a
false alarm nor any error, and it is left out of the AP ranking.

Confusion matrix ``confusion_matrix``: int64 [K + 1, K + 1] for K = len(category_ids). Rows are the true
class and a last "background" row (false alarms); columns the predicted class and a last "missed" column.
Only detections scoring at least ``score_threshold`` take part. Per image, matching is class-agnostic and
one-to-one: the (ground truth, detection) pairs of IoU >= ``iou_threshold`` are taken by descending IoU (ties:
higher score first, then the earlier detection, then the earlier ground truth), each box in one pair at
most. A pair counts at [true class, predicted class] (off the diagonal for a class confusion), an unmatched
ground truth at [true class, missed], an unmatched detection at [background, predicted class]; the cell
[background, missed] stays 0. This answers "what is confused with what" at the threshold a deployment uses.

Error breakdown ``error_breakdown``: every detection (no score threshold, as AP integrates over all of
them). Per image, the detections of all classes are taken by descending score (stable for ties):

* a **true positive** takes, among the not yet taken non-crowd ground truth of its own class with IoU >=
  ``fg_iou``, the one of highest IoU (the greedy rule of COCO);
* otherwise it is ignored (crowd, above), or the first of these that applies:

  1. **duplicate**: its own-class IoU reaches ``fg_iou`` with some ground truth (one already taken by a
     higher-scoring true positive, or it would have been one);
  2. **localisation**: its highest own-class IoU lies in [``bg_iou``, ``fg_iou``); that ground truth is its
     target;
  3. **classification**: its highest IoU with a ground truth of another class reaches ``fg_iou``; that
     ground truth is its target;
  4. **both**: its highest other-class IoU lies in [``bg_iou``, ``fg_iou``);
  5. **background**: every IoU is below ``bg_iou`` (so every detection of an image without ground truth).

A non-crowd ground truth is **missed** when no true positive took it and it is no localisation or
classification target (those count as the detector's wrong attempts at it, not as misses).

AP50 of the breakdown: per class of ``category_ids`` with at least one non-crowd ground truth, that class'
detections (ignored ones dropped) ranked by descending score (stable), cumulative true and false positives,
precision made non-increasing from the right and read at the 101 recall points 0, 0.01, ..., 1 as COCO reads
it (at each point, the envelope precision at the first rank whose recall reaches it; 0 when none does);
``ap50`` is the mean over those classes. It uses the simplified matching above (no area ranges, no
detection cap per image, crowd handling as stated), so it is close to, but not guaranteed equal to,
pycocotools' AP50.

Gains: each error type is fixed alone, everything else as in the baseline, and the gain is the mean AP50
over the same classes after the fix minus ``ap50``:

* classification: each such detection takes the class of its target; by descending score it becomes a true
  positive of that class when its target is free (not taken by a baseline true positive nor by an earlier
  fixed detection), otherwise it is removed;
* localisation: each such detection becomes a true positive of its target by the same rule;
* both, duplicate, background: those detections are removed;
* missed: the missed ground truth leaves the positives of its class. The class set stays the baseline's: a
  class whose every object was missed has no positives left and keeps AP 0, which is its baseline AP (none
  of its objects was found), so such a class adds nothing to the missed gain.

Gains tell which kind of error costs the most AP, so the fix worth trying first (better boxes, better
classification, fewer false alarms, higher recall) is the one of largest gain.
"""
import csv
import io
from typing import NamedTuple

import numpy as np

from src.inference.coco_eval import write_text_atomic
from src.inference.voc_metrics import corners, pairwise_iou, precision_recall

ERROR_TYPES = ("classification", "localisation", "both", "duplicate", "background", "missed")
TRUE_POSITIVE = "true_positive"
IGNORED = "ignored"
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
NO_OVERLAP = -1.0


class GroundTruth(NamedTuple):
    """Ground-truth boxes of the analysed images and categories, one entry per annotation."""
    images: np.ndarray   # [G] image ids
    classes: np.ndarray  # [G] index into category_ids
    boxes: np.ndarray    # [G, 4] corners x0, y0, x1, y1
    crowd: np.ndarray    # [G] bool


class Detections(NamedTuple):
    """Detections of the analysed images and categories in descending score (stable for ties)."""
    images: np.ndarray   # [D] image ids
    classes: np.ndarray  # [D] index into category_ids
    boxes: np.ndarray    # [D, 4] corners x0, y0, x1, y1
    scores: np.ndarray   # [D]


class Overlaps(NamedTuple):
    """Per detection (in Detections order): the ground truth its greedy match took (-1: none) and its best
    own-class, other-class (non-crowd) and crowd IoU, with the ground-truth index of the first two (-1: none).
    Ground-truth indices are positions in GroundTruth; IoU is NO_OVERLAP where there is no such box."""
    matched: np.ndarray
    same_iou: np.ndarray
    same_gt: np.ndarray
    other_iou: np.ndarray
    other_gt: np.ndarray
    crowd_iou: np.ndarray


def load_boxes(gt, detections, category_ids, image_ids=None):
    """(GroundTruth, Detections) of the images ``image_ids`` (None: all of ``gt``) and the categories
    ``category_ids``, detections sorted by descending score (stable)."""
    images = {image["id"] for image in gt["images"]} if image_ids is None else set(image_ids)
    index = {category: position for position, category in enumerate(category_ids)}
    annotations = [a for a in gt.get("annotations", []) if a["image_id"] in images and a["category_id"] in index]
    detections = [d for d in detections if d["image_id"] in images and d["category_id"] in index]
    truth = GroundTruth(np.asarray([a["image_id"] for a in annotations]),
                        np.asarray([index[a["category_id"]] for a in annotations], np.int64),
                        corners([a["bbox"] for a in annotations]),
                        np.asarray([bool(a.get("iscrowd", 0)) for a in annotations], bool))
    scores = np.asarray([d["score"] for d in detections], np.float64)
    order = np.argsort(-scores, kind="stable")
    found = Detections(np.asarray([d["image_id"] for d in detections])[order],
                       np.asarray([index[d["category_id"]] for d in detections], np.int64)[order],
                       corners([d["bbox"] for d in detections])[order], scores[order])
    return truth, found


def indices_by_image(images):
    """{image id: ascending indices of the entries of that image}."""
    images = np.asarray(images)
    order = np.argsort(images, kind="stable")
    keys, starts = np.unique(images[order], return_index=True)
    return dict(zip(keys.tolist(), np.split(order, starts[1:])))


def per_image(det_images, gt_images):
    """Yield (detection indices, ground-truth indices) of every image that has either."""
    dets, gts = indices_by_image(det_images), indices_by_image(gt_images)
    empty = np.zeros(0, np.int64)
    for image in dets.keys() | gts.keys():
        yield dets.get(image, empty), gts.get(image, empty)


def match_pairs(iou, allowed):
    """One-to-one greedy matching of the pairs where ``allowed`` [D, G] holds, by descending IoU, ties by
    lower detection then lower ground-truth index. Returns (detection indices, ground-truth indices)."""
    dets, gts = np.nonzero(allowed)
    order = np.lexsort((gts, dets, -iou[dets, gts]))
    det_used, gt_used = np.zeros(iou.shape[0], bool), np.zeros(iou.shape[1], bool)
    pairs = []
    for det, truth in zip(dets[order], gts[order]):
        if not det_used[det] and not gt_used[truth]:
            det_used[det] = gt_used[truth] = True
            pairs.append((det, truth))
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    return pairs[:, 0], pairs[:, 1]


def image_confusion(det_classes, det_boxes, gt_classes, gt_boxes, gt_crowd, iou_threshold, background):
    """(rows, columns) of the confusion-matrix cells that one image adds to, one entry per count;
    ``background`` is both the background row and the missed column (K)."""
    iou = pairwise_iou(det_boxes, gt_boxes)
    hits = iou >= iou_threshold
    det_of, gt_of = match_pairs(iou, hits & ~gt_crowd[None, :])
    det_free, gt_free = np.ones(len(det_classes), bool), ~gt_crowd
    det_free[det_of], gt_free[gt_of] = False, False
    false_alarms = det_free & ~(hits & gt_crowd[None, :]).any(axis=1)
    rows = np.concatenate([gt_classes[gt_of], np.full(false_alarms.sum(), background), gt_classes[gt_free]])
    columns = np.concatenate([det_classes[det_of], det_classes[false_alarms], np.full(gt_free.sum(), background)])
    return rows, columns


def confusion_matrix(gt, detections, category_ids, score_threshold, iou_threshold=0.5, image_ids=None):
    """int64 [K + 1, K + 1] confusion matrix (rows: true class then background; columns: predicted class then
    missed) of the detections scoring at least ``score_threshold``, as the module docstring defines it."""
    truth, found = load_boxes(gt, detections, category_ids, image_ids)
    found = Detections(*(field[found.scores >= score_threshold] for field in found))
    background = len(category_ids)
    matrix = np.zeros((background + 1, background + 1), np.int64)
    for dets, gts in per_image(found.images, truth.images):
        rows, columns = image_confusion(found.classes[dets], found.boxes[dets], truth.classes[gts],
                                        truth.boxes[gts], truth.crowd[gts], iou_threshold, background)
        np.add.at(matrix, (rows, columns), 1)
    return matrix


def best_overlap(iou, allowed):
    """(highest IoU, its column) per row of ``iou`` over the ``allowed`` columns; NO_OVERLAP and -1 for a
    row without any."""
    if iou.shape[1] == 0:
        return np.full(iou.shape[0], NO_OVERLAP), np.full(iou.shape[0], -1, np.int64)
    masked = np.where(allowed, iou, NO_OVERLAP)
    best = masked.argmax(axis=1)
    value = masked[np.arange(len(best)), best]
    return value, np.where(value > NO_OVERLAP, best, -1)


def greedy_true_positives(same_iou, fg_iou):
    """Column each row (a detection, in descending score) takes as a true positive, -1 for none: the free
    column of highest ``same_iou`` that reaches ``fg_iou`` (NO_OVERLAP entries never do)."""
    taken = np.zeros(same_iou.shape[1], bool)
    matched = np.full(same_iou.shape[0], -1, np.int64)
    for det, row in enumerate(same_iou):
        candidates = (row >= fg_iou) & ~taken
        if candidates.any():
            matched[det] = np.where(candidates, row, NO_OVERLAP).argmax()
            taken[matched[det]] = True
    return matched


def image_overlaps(det_classes, det_boxes, gt_classes, gt_boxes, gt_crowd, fg_iou):
    """Overlaps of one image's detections (descending score) with its ground truth, with image-local
    ground-truth indices."""
    iou = pairwise_iou(det_boxes, gt_boxes)
    same_class = det_classes[:, None] == gt_classes[None, :]
    real = ~gt_crowd[None, :]
    same_iou, same_gt = best_overlap(iou, same_class & real)
    other_iou, other_gt = best_overlap(iou, ~same_class & real)
    crowd_iou, _ = best_overlap(iou, np.broadcast_to(gt_crowd[None, :], iou.shape))
    matched = greedy_true_positives(np.where(same_class & real, iou, NO_OVERLAP), fg_iou)
    return Overlaps(matched, same_iou, same_gt, other_iou, other_gt, crowd_iou)


def global_index(local, gts):
    """Image-local ground-truth indices (-1: none) as positions in GroundTruth (``gts``: the image's)."""
    return np.where(local >= 0, gts[np.maximum(local, 0)], -1)


def all_overlaps(truth, found, fg_iou):
    """Overlaps of every detection, ground-truth indices made positions in ``truth``. A detection of an
    image without ground truth keeps the defaults: no match, NO_OVERLAP everywhere."""
    count = len(found.scores)
    result = Overlaps(np.full(count, -1, np.int64), np.full(count, NO_OVERLAP), np.full(count, -1, np.int64),
                      np.full(count, NO_OVERLAP), np.full(count, -1, np.int64), np.full(count, NO_OVERLAP))
    for dets, gts in per_image(found.images, truth.images):
        if not len(dets) or not len(gts):
            continue
        local = image_overlaps(found.classes[dets], found.boxes[dets], truth.classes[gts], truth.boxes[gts],
                               truth.crowd[gts], fg_iou)
        result.matched[dets] = global_index(local.matched, gts)
        result.same_gt[dets] = global_index(local.same_gt, gts)
        result.other_gt[dets] = global_index(local.other_gt, gts)
        result.same_iou[dets], result.other_iou[dets] = local.same_iou, local.other_iou
        result.crowd_iou[dets] = local.crowd_iou
    return result


def detection_kinds(overlaps, fg_iou, bg_iou):
    """Per detection, TRUE_POSITIVE, IGNORED or its error type, by the rules of the module docstring."""
    conditions = [overlaps.matched >= 0, overlaps.crowd_iou >= fg_iou, overlaps.same_iou >= fg_iou,
                  overlaps.same_iou >= bg_iou, overlaps.other_iou >= fg_iou, overlaps.other_iou >= bg_iou]
    choices = [TRUE_POSITIVE, IGNORED, "duplicate", "localisation", "classification", "both"]
    return np.select(conditions, choices, default="background")


def error_targets(kinds, overlaps):
    """Per detection, the ground truth a localisation or classification error aimed at, -1 otherwise."""
    return np.where(kinds == "localisation", overlaps.same_gt,
                    np.where(kinds == "classification", overlaps.other_gt, -1))


def missed_ground_truth(truth, taken, targets):
    """bool [G]: non-crowd ground truth neither taken by a true positive nor targeted by an error."""
    targeted = np.zeros(len(truth.classes), bool)
    targeted[targets[targets >= 0]] = True
    return ~truth.crowd & ~taken & ~targeted


def ap101(tp, positives):
    """COCO's 101-point AP of one class from its ranked true-positive flags (bool) and positive count."""
    if not len(tp) or positives == 0:
        return 0.0
    recall, precision = precision_recall(tp.astype(np.float64), (~tp).astype(np.float64), positives)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    rank = np.searchsorted(recall, RECALL_POINTS, side="left")
    return float(np.mean(np.where(rank < len(tp), envelope[np.minimum(rank, len(tp) - 1)], 0.0)))


def mean_ap50(classes, tp, keep, positives, evaluated):
    """Mean 101-point AP over the class indices ``evaluated`` of the kept detections (already ranked by
    descending score) with their classes and true-positive flags; 0.0 without classes."""
    if not len(evaluated):
        return 0.0
    return float(np.mean([ap101(tp[keep & (classes == k)], positives[k]) for k in evaluated]))


def promote(kinds, kind, targets, taken, truth, classes, tp, keep):
    """(classes, tp, keep) once each ``kind`` error becomes, by descending score, a true positive of its
    target's class when the target is free, and is removed otherwise."""
    errors = np.flatnonzero(kinds == kind)
    free = errors[~taken[targets[errors]]]
    _, first = np.unique(targets[free], return_index=True)
    winners = free[first]
    classes, tp, keep = classes.copy(), tp.copy(), keep.copy()
    classes[winners] = truth.classes[targets[winners]]
    tp[winners] = True
    keep[errors] = False
    keep[winners] = True
    return classes, tp, keep


def error_gains(truth, found, kinds, targets, taken, missed, category_count):
    """(baseline mean AP50, number of evaluated classes, {error type: AP50 gain of fixing it alone})."""
    positives = np.bincount(truth.classes[~truth.crowd], minlength=category_count)
    evaluated = np.flatnonzero(positives > 0)
    tp, keep = kinds == TRUE_POSITIVE, kinds != IGNORED
    baseline = mean_ap50(found.classes, tp, keep, positives, evaluated)
    fixed = {kind: mean_ap50(*promote(kinds, kind, targets, taken, truth, found.classes, tp, keep), positives,
                             evaluated) for kind in ("classification", "localisation")}
    fixed.update({kind: mean_ap50(found.classes, tp, keep & (kinds != kind), positives, evaluated)
                  for kind in ("both", "duplicate", "background")})
    remaining = positives - np.bincount(truth.classes[missed], minlength=category_count)
    fixed["missed"] = mean_ap50(found.classes, tp, keep, remaining, evaluated)
    return baseline, len(evaluated), {kind: fixed[kind] - baseline for kind in ERROR_TYPES}


def error_breakdown(gt, detections, category_ids, image_ids=None, fg_iou=0.5, bg_iou=0.1):
    """True positives, error counts and AP50 gains of every detection, as the module docstring defines them:
    {"ap50", "true_positives", "counts": {type: int}, "gains": {type: float}, "classes"} over ERROR_TYPES."""
    truth, found = load_boxes(gt, detections, category_ids, image_ids)
    overlaps = all_overlaps(truth, found, fg_iou)
    kinds = detection_kinds(overlaps, fg_iou, bg_iou)
    targets = error_targets(kinds, overlaps)
    taken = np.zeros(len(truth.classes), bool)
    taken[overlaps.matched[overlaps.matched >= 0]] = True
    missed = missed_ground_truth(truth, taken, targets)
    ap50, classes, gains = error_gains(truth, found, kinds, targets, taken, missed, len(category_ids))
    counts = {kind: int(np.sum(kinds == kind)) for kind in ERROR_TYPES}
    counts["missed"] = int(missed.sum())
    return {"ap50": ap50, "true_positives": int(np.sum(kinds == TRUE_POSITIVE)), "counts": counts,
            "gains": gains, "classes": classes}


def write_rows_atomic(path, rows):
    """Write ``rows`` as CSV to ``path`` through a temporary name and a rename, creating the folder."""
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(rows)
    write_text_atomic(path, text.getvalue())


def write_confusion_csv(path, matrix, class_names):
    """The confusion matrix as CSV: a ``true\\predicted`` header of the class names and ``missed``, then one
    row per true class and a ``background`` row."""
    names = list(class_names)
    rows = [["true\\predicted", *names, "missed"]]
    rows += [[name, *(int(count) for count in counts)] for name, counts in zip(names + ["background"], matrix)]
    write_rows_atomic(path, rows)


def write_errors_csv(path, breakdown):
    """An ``error_breakdown`` result as CSV: ``error,count,ap50_gain`` per error type (gain to 4 decimals),
    then ``true_positive,<count>,``."""
    rows = [["error", "count", "ap50_gain"]]
    rows += [[kind, breakdown["counts"][kind], "%.4f" % (round(breakdown["gains"][kind], 4) + 0.0)]
             for kind in ERROR_TYPES]
    rows.append([TRUE_POSITIVE, breakdown["true_positives"], ""])
    write_rows_atomic(path, rows)
