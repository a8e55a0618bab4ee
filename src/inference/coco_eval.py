"""COCO bbox evaluation of detections with pycocotools, and the label -> category id mapping.

Every image of the ground truth is evaluated by default, including images without annotations
(their detections are false positives) and images holding crowd boxes (pycocotools ignores matches to
crowd boxes), so the figure is the standard COCO mAP.
"""
import contextlib
import io
import json
import os
import tempfile
from typing import NamedTuple

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

PREDICTIONS_FILE = "predictions.json"


def _json_default(value):
    """Let json write numpy scalars and arrays found in detection dicts."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError("not JSON serialisable: %r" % (value,))


def write_json_atomic(path: str, data) -> None:
    """Write ``data`` as JSON to ``path`` via a temporary file and a rename, so readers never see
    a half-written file."""
    write_text_atomic(path, json.dumps(data, default=_json_default))


def write_text_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` (folders created) via a temporary file in the same folder, flushed to
    disk, then a rename."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _load_gt(gt_json_path):
    """Ground truth as a pycocotools COCO, without its progress prints."""
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(gt_json_path)


def _empty_results(coco_gt):
    """A result COCO with no detections (pycocotools' loadRes cannot load an empty list)."""
    coco_dt = COCO()
    coco_dt.dataset = {"images": list(coco_gt.dataset["images"]),
                       "categories": list(coco_gt.dataset.get("categories", [])),
                       "annotations": []}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt.createIndex()
    return coco_dt


def _check_image_ids(coco_gt, detections, image_ids):
    """Raise when no image is to be evaluated or ids refer to images the ground truth lacks."""
    if not image_ids:
        raise ValueError("no image to evaluate: image_ids is empty")
    known = set(coco_gt.getImgIds())
    for name, ids in (("detections", {d["image_id"] for d in detections}),
                      ("image_ids", set(image_ids))):
        unknown = sorted(ids - known)
        if unknown:
            raise ValueError("%s refer to %d image id(s) missing from the ground truth, e.g. %s"
                             % (name, len(unknown), unknown[0]))


class CocoEvaluation(NamedTuple):
    """What one pycocotools evaluation gives: the mAP, the 12 stats, the summary text, and the evaluated
    ``COCOeval`` (its ``eval['precision']`` / ``eval['recall']`` arrays feed the per-class table and the PR
    curves) with its ground truth ``COCO``."""
    mean_ap: float
    stats: list
    summary: str
    cocoeval: COCOeval
    coco_gt: COCO


def evaluate_coco(gt_json_path: str, detections, output_dir: str, image_ids=None) -> CocoEvaluation:
    """Evaluate COCO detection dicts with pycocotools (mAP = AP@[.5:.95]).

    The detections are first written to ``output_dir/predictions.json`` and pycocotools reads them
    back from there, so the figure always matches the file. ``image_ids`` restricts the evaluation
    (default: every image of the ground truth). With no detections at all the stats are those of an
    empty result set (AP 0) and the summary says so. pycocotools' -1 ("no ground truth to score")
    is returned as mAP 0.0; ``stats`` keeps pycocotools' values unchanged.
    """
    detections = list(detections)
    coco_gt = _load_gt(gt_json_path)
    image_ids = sorted(coco_gt.getImgIds()) if image_ids is None else sorted(set(image_ids))
    _check_image_ids(coco_gt, detections, image_ids)
    path = os.path.join(output_dir, PREDICTIONS_FILE)
    write_json_atomic(path, detections)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(path) if len(detections) else _empty_results(coco_gt)
    coco_eval, stats, summary = _run_cocoeval(coco_gt, coco_dt, image_ids)
    if len(detections) == 0:
        summary = "no detections: every image was evaluated with an empty result set\n" + summary
    return CocoEvaluation(max(stats[0], 0.0), stats, summary, coco_eval, coco_gt)


def evaluate_detections(gt_json_path: str, detections, output_dir: str, image_ids=None) -> tuple:
    """:func:`evaluate_coco` as (mAP, the 12 COCO stats, summary text)."""
    result = evaluate_coco(gt_json_path, detections, output_dir, image_ids)
    return result.mean_ap, result.stats, result.summary


def _run_cocoeval(coco_gt, coco_dt, image_ids):
    """COCOeval(bbox) on ``image_ids``: (the evaluated COCOeval, 12 stats as floats, pycocotools' summary)."""
    coco_eval = COCOeval(coco_gt, coco_dt, iouType="bbox")
    coco_eval.params.imgIds = image_ids
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval.evaluate()
        coco_eval.accumulate()
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        coco_eval.summarize()
    return coco_eval, [float(s) for s in coco_eval.stats], summary.getvalue()


def category_mapping(gt_json_path: str, classes) -> dict:
    """Map label index (position in ``classes``, 1..) to the gt category id with the same name.

    COCO category ids are not contiguous, so matching is by name. Gt categories absent from
    ``classes`` are never predicted; classes absent from the gt stay unmapped and their
    detections are dropped by :func:`src.inference.postprocess.to_coco_detections`.
    """
    with open(gt_json_path, encoding="utf-8") as stream:
        categories = json.load(stream).get("categories", [])
    index = {name: i for i, name in enumerate(classes) if i > 0}
    mapping = {}
    for category in categories:
        label = index.get(category["name"])
        if label is None:
            continue
        if label in mapping:
            raise ValueError("%s: category name %r appears twice" % (gt_json_path, category["name"]))
        mapping[label] = int(category["id"])
    return mapping


def format_map_line(mAP):
    """The line the model zoo prints after evaluation, e.g. ``mAP: 0.18937438355383837``."""
    return "mAP: {}".format(float(mAP))
