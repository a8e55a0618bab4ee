"""The per-class table (src/inference/per_class.py) against pycocotools itself: its AP column averages to
pycocotools' mAP, and each class's AP50 equals a pycocotools evaluation of that class alone."""
import contextlib
import io
import json

import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from src.inference.coco_eval import evaluate_coco
from src.inference.per_class import per_class_lines, per_class_rows, write_per_class_csv

CLASSES = ["background", "circle", "square", "triangle"]


def annotation(ann_id, image_id, category_id, bbox, crowd=0):
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": bbox,
            "area": bbox[2] * bbox[3], "iscrowd": crowd}


def ground_truth():
    """Three images; square (id 7) has three objects, circle (id 3) two and a crowd region, triangle (id 9)
    none, and "star" (id 11), which the model does not predict, one."""
    return {"images": [{"id": i, "width": 100, "height": 100, "file_name": "%d.png" % i} for i in (1, 2, 3)],
            "categories": [{"id": 7, "name": "square"}, {"id": 3, "name": "circle"}, {"id": 9, "name": "triangle"},
                           {"id": 11, "name": "star"}],
            "annotations": [annotation(1, 1, 7, [10, 10, 20, 20]), annotation(2, 2, 7, [50, 50, 30, 30]),
                            annotation(3, 3, 7, [0, 0, 40, 40]), annotation(4, 1, 3, [60, 60, 20, 20]),
                            annotation(5, 2, 3, [5, 5, 10, 10]), annotation(6, 3, 3, [70, 0, 30, 30], crowd=1),
                            annotation(7, 3, 11, [50, 50, 10, 10])]}


def detections():
    """Some hits, a loose box, a false alarm and a triangle where there is none."""
    return [{"image_id": 1, "category_id": 7, "bbox": [11, 10, 20, 20], "score": 0.9},
            {"image_id": 2, "category_id": 7, "bbox": [50, 55, 30, 30], "score": 0.6},
            {"image_id": 3, "category_id": 7, "bbox": [60, 60, 20, 20], "score": 0.95},
            {"image_id": 1, "category_id": 3, "bbox": [60, 60, 20, 21], "score": 0.8},
            {"image_id": 2, "category_id": 3, "bbox": [30, 30, 10, 10], "score": 0.85},
            {"image_id": 3, "category_id": 9, "bbox": [0, 0, 10, 10], "score": 0.5}]


@pytest.fixture()
def evaluated(tmp_path):
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(ground_truth()))
    coco = evaluate_coco(str(path), detections(), str(tmp_path))
    return path, coco, per_class_rows(coco.cocoeval, coco.coco_gt, detections(), CLASSES)


def single_class_ap50(path, category_id):
    """AP50 of one category as pycocotools computes it when asked for that category alone."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(path))
        evaluator = COCOeval(gt, gt.loadRes(detections()), "bbox")
        evaluator.params.catIds = [category_id]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats[1]


def test_rows_follow_the_classes_then_unpredicted_categories(evaluated):
    _, _, rows = evaluated
    assert [(r["class"], r["predicted"]) for r in rows] == [("circle", True), ("square", True), ("triangle", True),
                                                            ("star", False)]
    assert [(r["objects"], r["detections"]) for r in rows] == [(2, 2), (3, 3), (0, 1), (1, 0)]
    assert rows[2]["AP"] is None and rows[2]["AP50"] is None and rows[3]["AP"] == 0.0


def test_ap_column_averages_to_the_map_and_matches_pycocotools_per_class(evaluated):
    path, coco, rows = evaluated
    scored = [r["AP"] for r in rows if r["AP"] is not None]
    assert len(scored) == 3 and sum(scored) / 3 == pytest.approx(coco.mean_ap, abs=1e-12)
    for row in rows:
        if row["AP"] is not None:
            assert row["AP50"] == pytest.approx(single_class_ap50(path, row["category_id"]), abs=1e-12)
    assert 0 < coco.mean_ap < 1


def test_printed_table_and_csv(evaluated, tmp_path):
    _, coco, rows = evaluated
    lines = per_class_lines(rows, 3)
    assert lines[0] == "Per class (pycocotools, area all, maxDets 100), 3 image(s):"
    assert [line.split()[0] for line in lines[2:5]] == ["circle", "square", "star"]
    assert "(not a class of the model)" in lines[4] and "-1" not in "\n".join(lines)
    assert lines[5] == ("  no ground truth in these images for 1 class(es) (triangle): their 1 detection(s) are "
                        "not scored")
    assert lines[-1] == "  mean AP over 3 class(es) with ground truth: %.4f" % coco.mean_ap
    path = tmp_path / "out" / "per_class.csv"
    write_per_class_csv(str(path), rows)
    text = path.read_text().splitlines()
    assert text[0] == "class,objects,detections,AP,AP50,AP75,AR100,note"
    assert text[3] == "triangle,0,1,,,,,no ground truth"
    assert text[4].startswith("star,1,0,0.000000,") and text[4].endswith(",not a class of the model")
