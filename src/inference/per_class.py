"""The per-class table of a COCO evaluation, read from pycocotools' own accumulated arrays.

``COCOeval.accumulate()`` leaves ``eval['precision']`` [IoU thresholds, 101 recall points, categories,
area ranges, maxDets] and ``eval['recall']`` [IoU thresholds, categories, area ranges, maxDets], with -1
where a category has no ground truth to score. Each row takes the "all" area range and the largest
maxDets (100) of one category: AP@[.5:.95] is the mean of its precision over every IoU threshold and
recall point, AP50 / AP75 the mean at IoU 0.5 / 0.75, AR100 the mean recall over the IoU thresholds. Since
every category has the same number of entries, the mean of the AP column over the categories with
ground truth is exactly pycocotools' AP@[.5:.95]: no second implementation of COCO AP is involved.

Rows follow ``classes`` (the model's order); ground-truth categories the model does not predict follow
them, marked so (they count in pycocotools' mean, with AP 0).
"""
import csv
import io

import numpy as np

from src.inference.coco_eval import write_text_atomic

COLUMNS = ("class", "objects", "detections", "AP", "AP50", "AP75", "AR100")


def _mean_of_scored(values):
    """Mean of the entries that are not -1, or None when every entry is -1 (no ground truth)."""
    values = np.asarray(values)
    scored = values[values > -1]
    return float(scored.mean()) if scored.size else None


def _iou_index(params, iou):
    """Index of the IoU threshold ``iou`` in pycocotools' ``iouThrs``."""
    return int(np.argmin(np.abs(np.asarray(params.iouThrs) - iou)))


def _category_order(coco_gt, categories, classes):
    """(category id, name, predicted) in the model's class order, then gt categories it does not predict."""
    names = {cat["id"]: cat["name"] for cat in coco_gt.loadCats(categories)}
    by_name = {name: cat_id for cat_id, name in names.items()}
    ordered = [(by_name[name], name, True) for name in list(classes)[1:] if name in by_name]
    listed = {cat_id for cat_id, _, _ in ordered}
    return ordered + [(cat_id, names[cat_id], False) for cat_id in categories if cat_id not in listed]


def per_class_rows(coco_eval, coco_gt, detections, classes) -> list:
    """One dict per category (keys: COLUMNS, ``category_id``, ``predicted``); AP None without ground truth.

    ``objects`` counts the non-crowd ground truth of the evaluated images, ``detections`` the detections
    of the category in those images (what post-processing kept)."""
    params = coco_eval.params
    precision, recall = coco_eval.eval["precision"], coco_eval.eval["recall"]
    area, max_dets = params.areaRngLbl.index("all"), len(params.maxDets) - 1
    at50, at75 = _iou_index(params, 0.5), _iou_index(params, 0.75)
    images = set(params.imgIds)
    counts = {}
    for det in detections:
        if det["image_id"] in images:
            counts[det["category_id"]] = counts.get(det["category_id"], 0) + 1
    rows = []
    for cat_id, name, predicted in _category_order(coco_gt, params.catIds, classes):
        k = params.catIds.index(cat_id)
        column = precision[:, :, k, area, max_dets]
        objects = len(coco_gt.getAnnIds(imgIds=params.imgIds, catIds=[cat_id], iscrowd=False))
        rows.append({"class": name, "category_id": cat_id, "objects": objects, "detections": counts.get(cat_id, 0),
                     "AP": _mean_of_scored(column), "AP50": _mean_of_scored(column[at50]),
                     "AP75": _mean_of_scored(column[at75]),
                     "AR100": _mean_of_scored(recall[:, k, area, max_dets]), "predicted": predicted})
    return rows


def _figure(value):
    return "-" if value is None else "%.4f" % value


def per_class_lines(rows, image_count: int) -> list:
    """The printed table: one line per class with ground truth (and per category the model does not
    predict), one line naming the classes without ground truth in these images, then the mean AP."""
    lines = ["Per class (pycocotools, area all, maxDets 100), %d image(s):" % image_count,
             "  %-20s %8s %11s %8s %8s %8s %8s" % COLUMNS]
    absent = [row for row in rows if row["AP"] is None and row["predicted"]]
    for row in rows:
        if row["AP"] is None and row["predicted"]:
            continue
        note = "  (no ground truth)" if row["AP"] is None else ""
        note += "" if row["predicted"] else "  (not a class of the model)"
        lines.append("  %-20s %8d %11d %8s %8s %8s %8s%s" % (
            row["class"][:20], row["objects"], row["detections"], _figure(row["AP"]), _figure(row["AP50"]),
            _figure(row["AP75"]), _figure(row["AR100"]), note))
    if absent:
        names = ", ".join(row["class"] for row in absent[:6]) + (", ..." if len(absent) > 6 else "")
        lines.append("  no ground truth in these images for %d class(es) (%s): their %d detection(s) are not "
                     "scored" % (len(absent), names, sum(row["detections"] for row in absent)))
    scored = [row["AP"] for row in rows if row["AP"] is not None]
    mean = float(np.mean(scored)) if scored else 0.0
    lines.append("  mean AP over %d class(es) with ground truth: %.4f" % (len(scored), mean))
    return lines


def write_per_class_csv(path: str, rows) -> None:
    """``rows`` as CSV (COLUMNS plus ``note``; empty AP cells for classes without ground truth), written to a
    temporary name and renamed."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(COLUMNS + ("note",))
    for row in rows:
        figures = ["" if row[key] is None else "%.6f" % row[key] for key in COLUMNS[3:]]
        note = "no ground truth" if row["AP"] is None else ""
        note = note if row["predicted"] else "; ".join(filter(None, [note, "not a class of the model"]))
        writer.writerow([row["class"], row["objects"], row["detections"]] + figures + [note])
    write_text_atomic(path, text.getvalue())
