"""--protocol=standard|model_zoo (src/inference/protocol.py, postprocess.detect per_class): which images are
scored and how many detections are kept, with both figures worked out by hand."""
import json

import numpy as np
import pytest

from src.config import load_config
from src.errors import UserError
from src.inference.evaluation import report_evaluation
from src.inference.postprocess import detect, first_per_label
from src.inference.protocol import images_to_score, model_zoo_image_ids

BOX = [10, 10, 20, 20]


def annotation(ann_id, image_id, bbox, crowd=0, category_id=1):
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": bbox,
            "area": bbox[2] * bbox[3], "iscrowd": crowd}


def empty_and_crowd_gt():
    """Image 1: one object. Image 2: no annotation. Image 3: one object and a crowd region."""
    return {"images": [{"id": i, "width": 100, "height": 100, "file_name": "%d.png" % i} for i in (1, 2, 3)],
            "categories": [{"id": 1, "name": "circle"}],
            "annotations": [annotation(1, 1, BOX), annotation(2, 3, BOX), annotation(3, 3, [60, 60, 30, 30], 1)]}


def test_model_zoo_skips_images_without_annotations_or_with_crowd():
    gt = empty_and_crowd_gt()
    assert model_zoo_image_ids(gt, [1]) == [1]
    assert model_zoo_image_ids(gt, [2]) == []
    assert images_to_score("standard", gt, [1]) is None
    assert images_to_score("model_zoo", gt, [1], image_ids=[2, 3]) == []
    with pytest.raises(ValueError, match="protocol must be one of standard, model_zoo"):
        images_to_score("zoo", gt, [1])


@pytest.mark.parametrize("protocol, expected", [("standard", 2 / 3), ("model_zoo", 1.0)])
def test_the_two_protocols_give_the_documented_figures(tmp_path, protocol, expected):
    """Detections: a false alarm on the empty image 2 (score 0.95), then exact hits on images 1 (0.9) and 3
    (0.8). standard: ranks FP, TP, TP of 2 objects: precision 0, 1/2, 2/3 at recall 0, 1/2, 1; the envelope
    is 2/3 at every recall point and IoU threshold, so AP = 2/3. model_zoo scores image 1 alone: AP 1."""
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(empty_and_crowd_gt()))
    detections = [{"image_id": 2, "category_id": 1, "bbox": BOX, "score": 0.95},
                  {"image_id": 1, "category_id": 1, "bbox": BOX, "score": 0.9},
                  {"image_id": 3, "category_id": 1, "bbox": BOX, "score": 0.8}]
    cfg = load_config(["--protocol=%s" % protocol, "--classes=[background,circle]", "--num_classes=2"])
    mean_ap, _, summary = report_evaluation(cfg, str(path), detections, str(tmp_path), analysis=False)
    assert mean_ap == pytest.approx(expected, abs=1e-12)
    images = 3 if protocol == "standard" else 1
    assert "Per class (pycocotools, area all, maxDets 100), %d image(s):" % images in summary
    written = json.loads((tmp_path / "predictions.json").read_text())
    assert len(written) == (3 if protocol == "standard" else 1)


def test_model_zoo_with_nothing_left_is_one_error(tmp_path):
    gt = empty_and_crowd_gt()
    gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] != 1]
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    cfg = load_config(["--protocol=model_zoo", "--classes=[background,circle]", "--num_classes=2"])
    with pytest.raises(UserError, match="no image is left to evaluate under --protocol=model_zoo"):
        report_evaluation(cfg, str(path), [], str(tmp_path), analysis=False)


def test_per_class_keeps_max_boxes_of_every_class():
    """3 classes x 5 boxes that never overlap; max_boxes 2: per image 2 boxes, per class 2 of each (6)."""
    boxes = np.array([[0.1 * i, 0.0, 0.1 * i + 0.05, 0.05] for i in range(5)], np.float32)
    scores = np.zeros((5, 4), np.float32)
    scores[:, 1:] = np.linspace(0.9, 0.5, 5)[:, None] - np.array([0.0, 0.01, 0.02])[None, :]
    _, kept, labels = detect(boxes, scores, 0.01, 0.5, 2)
    assert labels.tolist() == [1, 2]
    _, kept, labels = detect(boxes, scores, 0.01, 0.5, 2, per_class=True)
    assert sorted(labels.tolist()) == [1, 1, 2, 2, 3, 3] and np.all(np.diff(kept) <= 0)


def test_first_per_label():
    assert first_per_label([3, 1, 3, 3, 1, 2], 2).tolist() == [0, 1, 2, 4, 5]
    assert first_per_label([], 2).tolist() == []
