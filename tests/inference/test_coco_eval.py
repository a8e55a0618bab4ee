"""Tests of src/coco_eval.py on a tiny hand-made COCO ground truth."""
import contextlib
import io
import json
import os

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from src.inference.coco_eval import category_mapping, evaluate_detections, format_map_line
from src.inference.postprocess import to_coco_detections

CLASSES = ["background", "square", "triangle", "circle"]
# Non-crowd gt boxes [x, y, w, h] per image; image 2 also holds a crowd box, image 3 holds nothing.
GT_BOXES = {1: [(3, [20, 40, 100, 60]), (7, [150, 10, 40, 120])], 2: [(7, [0, 0, 64, 32])]}
CROWD_BOX = [100, 50, 80, 80]


def write_gt(tmp_path):
    """Write the gt json: 3 images (one without annotations), categories 3 and 7 plus 11 unused."""
    images = [{"id": i, "width": 200, "height": 160, "file_name": "%d.jpg" % i} for i in (1, 2, 3)]
    annotations = [{"image_id": image_id, "category_id": cat, "bbox": box, "area": box[2] * box[3],
                    "iscrowd": 0} for image_id, objs in GT_BOXES.items() for cat, box in objs]
    annotations.append({"image_id": 2, "category_id": 3, "bbox": CROWD_BOX, "iscrowd": 1,
                        "area": CROWD_BOX[2] * CROWD_BOX[3]})
    for i, ann in enumerate(annotations):
        ann["id"] = i + 1
    categories = [{"id": 3, "name": "circle"}, {"id": 7, "name": "square"},
                  {"id": 11, "name": "star"}]
    path = tmp_path / "gt.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": categories}))
    return str(path)


def perfect_detections():
    """One exact detection per non-crowd gt box, score 0.9."""
    return [{"image_id": image_id, "category_id": cat, "bbox": list(map(float, box)), "score": 0.9}
            for image_id, objs in GT_BOXES.items() for cat, box in objs]


def cocoeval_stats(gt_path, predictions_path, image_ids=None):
    """Stats computed directly with pycocotools from a predictions file."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(gt_path)
        coco_eval = COCOeval(coco_gt, coco_gt.loadRes(predictions_path), iouType="bbox")
        if image_ids is not None:
            coco_eval.params.imgIds = image_ids
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval.stats.tolist()


def test_perfect_detections(tmp_path):
    gt = write_gt(tmp_path)
    mAP, stats, summary = evaluate_detections(gt, perfect_detections(), str(tmp_path / "out"))
    assert mAP == pytest.approx(1.0)
    assert len(stats) == 12 and stats[0] == mAP
    assert summary.count("Average Precision") == 6 and summary.count("Average Recall") == 6
    assert sorted(os.listdir(tmp_path / "out")) == ["predictions.json"]


def test_matches_pycocotools_and_false_positives_on_empty_image(tmp_path):
    gt = write_gt(tmp_path)
    detections = perfect_detections()
    detections[0]["score"] = 0.5
    detections.append({"image_id": 3, "category_id": 3, "bbox": [10.0, 10.0, 50.0, 50.0],
                       "score": 0.8})
    mAP, stats, _ = evaluate_detections(gt, detections, str(tmp_path))
    assert mAP < 1.0
    predictions = str(tmp_path / "predictions.json")
    assert stats == cocoeval_stats(gt, predictions)
    assert json.load(open(predictions)) == detections
    restricted, stats12, _ = evaluate_detections(gt, detections, str(tmp_path), image_ids=[1, 2])
    assert restricted == pytest.approx(1.0)
    assert stats12 == cocoeval_stats(gt, predictions, image_ids=[1, 2])


def test_detection_on_crowd_box_is_not_a_false_positive(tmp_path):
    gt = write_gt(tmp_path)
    detections = perfect_detections()
    detections.append({"image_id": 2, "category_id": 3, "bbox": [100.0, 50.0, 80.0, 80.0],
                       "score": 0.95})
    mAP, _, _ = evaluate_detections(gt, detections, str(tmp_path))
    assert mAP == pytest.approx(1.0)


def test_no_detections(tmp_path):
    gt = write_gt(tmp_path)
    mAP, stats, summary = evaluate_detections(gt, [], str(tmp_path))
    assert mAP == 0.0 and stats[0] == 0.0 and len(stats) == 12
    assert "no detections" in summary
    assert json.load(open(tmp_path / "predictions.json")) == []


def test_unknown_image_id_is_an_error(tmp_path):
    gt = write_gt(tmp_path)
    detections = [{"image_id": 99, "category_id": 3, "bbox": [0, 0, 1, 1], "score": 0.5}]
    with pytest.raises(ValueError, match="99"):
        evaluate_detections(gt, detections, str(tmp_path))
    with pytest.raises(ValueError, match="98"):
        evaluate_detections(gt, [], str(tmp_path), image_ids=[1, 98])


def test_category_mapping_by_name(tmp_path):
    gt = write_gt(tmp_path)
    assert category_mapping(gt, CLASSES) == {1: 7, 3: 3}


def test_end_to_end_with_postprocess_conversion(tmp_path):
    """Normalised yxyx boxes converted by to_coco_detections score a perfect mAP."""
    gt = write_gt(tmp_path)
    mapping = category_mapping(gt, CLASSES)
    label_of = {cat: label for label, cat in mapping.items()}
    detections = []
    for image_id, objs in GT_BOXES.items():
        boxes = np.array([[y / 160, x / 200, (y + h) / 160, (x + w) / 200]
                          for _, (x, y, w, h) in objs], np.float32)
        labels = [label_of[cat] for cat, _ in objs]
        detections += to_coco_detections(image_id, boxes, [0.9] * len(objs), labels, 160, 200,
                                         mapping)
    mAP, _, _ = evaluate_detections(gt, detections, str(tmp_path))
    assert mAP == pytest.approx(1.0)


def test_format_map_line():
    assert format_map_line(0.18937438355383837) == "mAP: 0.18937438355383837"
    assert format_map_line(np.float64(0.5)) == "mAP: 0.5"
