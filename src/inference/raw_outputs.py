"""Per-image raw output files: written by the Ascend 310 app (ascend310_infer/) and by its Python twin
``python -m tools.infer_mindir``, turned into COCO detections for ``postprocess.py``.

Layout (docs/interfaces.md): for an image file ``<stem>.<ext>`` the folder ``result_path`` gets one
file per graph output, ``<stem>_<i>.bin``, holding the output tensor's bytes as they are: float32,
little-endian, C order, no header. For the exported detector (batch 1):

* ``<stem>_0.bin``: boxes  ``[1, N, 4]``, (ymin, xmin, ymax, xmax) normalised to [0, 1];
* ``<stem>_1.bin``: scores ``[1, N, num_classes]``, sigmoid scores, column 0 the background;

``N`` is the number of default boxes (``num_ssd_boxes``), so a file of boxes is ``16 N`` bytes.
"""
import json
import os

import cv2
import numpy as np

from src.errors import UserError
from src.inference.coco_eval import category_mapping
from src.inference.postprocess import detections_for_batch

DTYPE = np.dtype("<f4")


def image_stem(file_name):
    """The name outputs of an image are written under: its base name without the extension."""
    return os.path.splitext(os.path.basename(file_name))[0]


def output_file(result_path, stem, index):
    """``result_path/<stem>_<index>.bin``."""
    return os.path.join(result_path, "%s_%d.bin" % (stem, index))


def write_outputs(result_path, stem, outputs):
    """Write each output array as ``<stem>_<i>.bin`` (float32 little-endian, raw); returns the paths."""
    os.makedirs(result_path, exist_ok=True)
    paths = []
    for index, array in enumerate(outputs):
        path = output_file(result_path, stem, index)
        np.ascontiguousarray(array, dtype=DTYPE).tofile(path)
        paths.append(path)
    return paths


def read_outputs(result_path, stem, num_classes):
    """(boxes [N, 4], scores [N, num_classes]) of one image, or None when it has no output files."""
    boxes_path, scores_path = output_file(result_path, stem, 0), output_file(result_path, stem, 1)
    if not os.path.isfile(boxes_path):
        return None
    if not os.path.isfile(scores_path):
        raise UserError("%s exists but %s does not: every image needs both outputs" % (boxes_path, scores_path))
    boxes = np.fromfile(boxes_path, dtype=DTYPE)
    scores = np.fromfile(scores_path, dtype=DTYPE)
    if boxes.size == 0 or boxes.size % 4:
        raise UserError("%s: %d bytes is not a [1, N, 4] float32 box tensor" % (boxes_path, boxes.nbytes))
    count = boxes.size // 4
    if scores.size != count * num_classes:
        raise UserError("%s: %d floats, expected %d boxes x num_classes %d = %d (exported for another class "
                        "count? pass its --config_path)" % (scores_path, scores.size, count, num_classes,
                                                           count * num_classes))
    return boxes.reshape(count, 4), scores.reshape(count, num_classes)


def image_size(image, img_path):
    """(height, width) of a ground-truth image entry: its own fields, else the decoded image file."""
    if image.get("height") and image.get("width"):
        return int(image["height"]), int(image["width"])
    path = os.path.join(img_path or "", os.path.basename(image["file_name"]))
    decoded = cv2.imread(path, cv2.IMREAD_COLOR) if os.path.isfile(path) else None
    if decoded is None:
        raise UserError("image %s has no height/width in the ground truth and %s cannot be read (set --img_path)"
                        % (image["file_name"], path))
    return decoded.shape[:2]


def detections_from_files(cfg, result_path, gt_json, img_path=""):
    """COCO detections from the output files of the ground truth's images.

    Returns (detections, ids of the images that have outputs, file names of those that have none).
    Post-processing is evaluation's (score threshold, per-class NMS, ``max_boxes``).
    """
    if not os.path.isdir(result_path):
        raise UserError("result folder not found: %s (set --result_path)" % result_path)
    with open(gt_json, encoding="utf-8") as stream:
        images = json.load(stream).get("images", [])
    label_to_category = category_mapping(gt_json, cfg.classes)
    detections, found, missing = [], [], []
    for image in images:
        outputs = read_outputs(result_path, image_stem(image["file_name"]), cfg.num_classes)
        if outputs is None:
            missing.append(image["file_name"])
            continue
        boxes, scores = outputs
        detections += detections_for_batch(boxes[None], scores[None], [image["id"]], [image_size(image, img_path)],
                                           cfg, label_to_category)
        found.append(int(image["id"]))
    if not found:
        example = output_file(result_path, image_stem(images[0]["file_name"]), 0) if images else "<image>_0.bin"
        raise UserError("no output files in %s belong to the %d images of %s (looked for e.g. %s)"
                        % (result_path, len(images), gt_json, example))
    return detections, found, missing
