"""The pictures of an evaluation (``output_path/eval/``): precision-recall curves, the confusion matrix
and the error breakdown. Drawn with matplotlib's object interface on its Agg canvas (no pyplot state, no
screen), each figure written to a temporary name and renamed."""
import os

import numpy as np
from matplotlib.figure import Figure

CURVE_CLASSES = 8
ANNOTATE_UP_TO = 20
MAX_SIDE_INCHES = 12.0


def _save(figure, path):
    """Write ``figure`` as PNG to ``path`` through a temporary name."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.png"
    figure.savefig(tmp, dpi=110)
    os.replace(tmp, path)


def mean_precision_curve(precision, iou_index, class_indices):
    """Precision at pycocotools' 101 recall points for IoU ``iou_index``, averaged over the categories
    ``class_indices`` that have ground truth ("all area", maxDets 100): the curve whose area is AP50 / AP75."""
    curves = precision[iou_index, :, class_indices, 0, -1].reshape(len(class_indices), -1)
    scored = curves[(curves > -1).all(axis=1)]
    return scored.mean(axis=0) if len(scored) else None


def plot_pr_curves(path, coco_eval, rows):
    """Precision against recall at IoU 0.5 and 0.75: all classes (the mean curve) and the
    CURVE_CLASSES classes with the most ground truth."""
    params, precision = coco_eval.params, coco_eval.eval["precision"]
    recall = np.asarray(params.recThrs)
    scored = [row for row in rows if row["AP"] is not None]
    frequent = sorted(scored, key=lambda row: -row["objects"])[:CURVE_CLASSES]
    figure = Figure(figsize=(11, 4.6))
    for axis, iou in zip(figure.subplots(1, 2), (0.5, 0.75)):
        t = int(np.argmin(np.abs(np.asarray(params.iouThrs) - iou)))
        key = "AP50" if iou == 0.5 else "AP75"
        for row in frequent:
            curve = mean_precision_curve(precision, t, [params.catIds.index(row["category_id"])])
            axis.plot(recall, curve, linewidth=1.2, label="%s (%.3f)" % (row["class"][:18], row[key]))
        everything = mean_precision_curve(precision, t, [params.catIds.index(r["category_id"]) for r in scored])
        if everything is not None:
            axis.plot(recall, everything, color="black", linewidth=2.6,
                      label="all classes (%.3f)" % float(everything.mean()))
        axis.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision",
                 title="IoU %.2f (legend: %s)" % (iou, key))
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7, loc="lower left")
    figure.tight_layout()
    _save(figure, path)


def plot_confusion_matrix(path, matrix, names):
    """Rows: true class and "background"; columns: predicted class and "missed". Colour is the share of
    the row (so rare classes read as well as frequent ones); counts are written in the cells when the
    matrix is small enough to read them."""
    matrix = np.asarray(matrix)
    share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = min(max(4.5, 0.42 * len(names) + 2.5), MAX_SIDE_INCHES)
    label_size = max(3.5, min(8.0, 320.0 / max(len(names), 1)))
    figure = Figure(figsize=(size + 1, size))
    axis = figure.subplots()
    image = axis.imshow(share, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label="share of the row")
    rows, columns = list(names) + ["background"], list(names) + ["missed"]
    axis.set_xticks(range(len(columns)), columns, rotation=60, ha="right", fontsize=label_size)
    axis.set_yticks(range(len(rows)), rows, fontsize=label_size)
    axis.set(xlabel="predicted", ylabel="true", title="Confusion matrix at IoU 0.5")
    if len(names) <= ANNOTATE_UP_TO:
        for (i, j), count in np.ndenumerate(matrix):
            if count:
                axis.text(j, i, str(count), ha="center", va="center", fontsize=8,
                          color="white" if share[i, j] > 0.5 else "black")
    figure.tight_layout()
    _save(figure, path)


def plot_errors(path, breakdown, error_types):
    """Two bar charts of the error breakdown: how many of each error, and the AP50 fixing them would gain."""
    counts = [breakdown["counts"][name] for name in error_types]
    gains = [breakdown["gains"][name] for name in error_types]
    figure = Figure(figsize=(10, 3.8))
    left, right = figure.subplots(1, 2)
    left.bar(error_types, counts, color="#4c72b0")
    left.set(title="Errors (%d true positives)" % breakdown["true_positives"], ylabel="count")
    right.bar(error_types, gains, color="#dd8452")
    right.set(title="AP50 gained if fixed (AP50 %.3f)" % breakdown["ap50"], ylabel="AP50 gain")
    for axis in (left, right):
        axis.tick_params(axis="x", labelrotation=30, labelsize=8)
        axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    _save(figure, path)
