"""The files an evaluation leaves in ``output_path/eval/`` beside its figures: the confusion matrix and the
error breakdown as CSV (always), and, with ``plots``, the pictures of ``eval_plots``.

Both analyses cover the images pycocotools scored. The error breakdown takes every detection of the model's
classes (as AP does); the confusion matrix the detections scoring at least ``score_threshold`` (what a user
of the detector keeps), over the classes that occur there. Definitions: :mod:`src.inference.error_analysis`."""
import os

from src.inference.error_analysis import (
    ERROR_TYPES,
    confusion_matrix,
    error_breakdown,
    write_confusion_csv,
    write_errors_csv,
)
from src.inference.eval_plots import plot_confusion_matrix, plot_errors, plot_pr_curves

EVAL_FOLDER = "eval"


def write_analysis(output_dir: str, coco, detections, rows, score_threshold: float, plots: bool) -> tuple:
    """Write the analysis of one evaluation (``coco``: a :class:`src.inference.coco_eval.CocoEvaluation`,
    ``rows``: its per-class rows) to ``output_dir/eval``. Returns (folder, file names written, the error
    breakdown)."""
    folder = os.path.join(output_dir, EVAL_FOLDER)
    model_rows = [row for row in rows if row["predicted"]]
    gt, image_ids = coco.coco_gt.dataset, coco.cocoeval.params.imgIds
    breakdown = error_breakdown(gt, detections, [row["category_id"] for row in model_rows], image_ids)
    shown = occurring_classes(model_rows, detections, score_threshold)
    category_ids, names = [row["category_id"] for row in shown], [row["class"] for row in shown]
    matrix = confusion_matrix(gt, detections, category_ids, score_threshold, 0.5, image_ids)
    write_confusion_csv(os.path.join(folder, "confusion_matrix.csv"), matrix, names)
    write_errors_csv(os.path.join(folder, "errors.csv"), breakdown)
    written = ["confusion_matrix.csv", "errors.csv"]
    if plots:
        plot_pr_curves(os.path.join(folder, "pr_curves.png"), coco.cocoeval, rows)
        plot_confusion_matrix(os.path.join(folder, "confusion_matrix.png"), matrix, names)
        plot_errors(os.path.join(folder, "errors.png"), breakdown, ERROR_TYPES)
        written += ["pr_curves.png", "confusion_matrix.png", "errors.png"]
    return folder, written, breakdown


def occurring_classes(rows, detections, score_threshold):
    """The rows of the classes that occur at the confusion matrix's operating point: with ground truth in the
    evaluated images or with a detection scoring at least ``score_threshold`` (80 COCO classes on a set that
    has 3 would make an unreadable matrix of zeros)."""
    predicted = {det["category_id"] for det in detections if det["score"] >= score_threshold}
    return [row for row in rows if row["objects"] > 0 or row["category_id"] in predicted]


def error_line(breakdown) -> str:
    """One line: each error type's count and the AP50 fixing it would gain."""
    parts = ["%s %d (+%.3f)" % (name, breakdown["counts"][name], breakdown["gains"][name]) for name in ERROR_TYPES]
    return "Errors at IoU 0.5 (count, AP50 gained if fixed): " + ", ".join(parts)
