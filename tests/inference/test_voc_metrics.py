"""VOC AP (src/inference/voc_metrics.py) on hand-worked cases whose expected values follow from the VOC
devkit's definition, worked out in each test."""
import numpy as np
import pytest

from src.inference.voc_metrics import ap_voc07, ap_voc12, class_ap, evaluate_voc, true_false_positives

BOX = [0, 0, 10, 10]
NEAR = [0, 0, 10, 9]     # IoU 0.9 with BOX
FAR = [50, 50, 60, 60]   # IoU 0 with BOX


def ap(metric, dets, gts):
    """dets: [(image, box, score)], gts: [(image, box, difficult)]."""
    di, db, ds = zip(*dets) if dets else ((), np.zeros((0, 4)), ())
    gi, gb, gd = zip(*gts) if gts else ((), np.zeros((0, 4)), ())
    return class_ap(metric, di, db, ds, gi, gb, gd)


def test_perfect_detections_give_one():
    dets = [(0, BOX, 0.9), (1, BOX, 0.8)]
    gts = [(0, BOX, False), (1, BOX, False)]
    assert ap("voc07", dets, gts) == 1.0 and ap("voc12", dets, gts) == 1.0


def test_false_positive_ranked_first():
    """Ranks: FP (0.9), TP (0.8), of 1 object. recall [0, 1], precision [0, 0.5]. VOC07: all 11 points
    see precision 0.5 (at recall 1) -> 0.5. VOC12: envelope 0.5 over recall 0..1 -> 0.5."""
    dets = [(0, FAR, 0.9), (0, BOX, 0.8)]
    gts = [(0, BOX, False)]
    assert ap("voc07", dets, gts) == pytest.approx(0.5) and ap("voc12", dets, gts) == pytest.approx(0.5)


def test_half_the_objects_found():
    """2 objects, one found at precision 1: recall 0.5. VOC07: points 0..0.5 (6 of 11) at 1 -> 6/11.
    VOC12: area 0.5 x 1 = 0.5."""
    dets = [(0, BOX, 0.9)]
    gts = [(0, BOX, False), (1, BOX, False)]
    assert ap("voc07", dets, gts) == pytest.approx(6 / 11) and ap("voc12", dets, gts) == pytest.approx(0.5)


def test_duplicate_is_a_false_positive_and_does_not_take_another_box():
    """Two detections on the same object: the second (its best box is taken) is a FP even though a
    second object overlaps it less. Ranks TP, FP; recall 0.5 at precision 1 -> VOC12 0.5."""
    dets = [(0, BOX, 0.9), (0, NEAR, 0.8)]
    gts = [(0, BOX, False), (0, [0, 0, 10, 7], False)]  # IoU(NEAR, BOX)=0.9 > IoU(NEAR, second)=0.78
    tp, fp, positives = true_false_positives(*zip(*dets), *zip(*gts))
    assert tp.tolist() == [1, 0] and fp.tolist() == [0, 1] and positives == 2
    assert ap("voc12", dets, gts) == pytest.approx(0.5)


def test_difficult_objects_are_ignored_both_ways():
    """A detection of a difficult object is neither TP nor FP, and missing it is no miss: with one
    normal object found, AP is 1 whatever happens on the difficult one."""
    gts = [(0, BOX, False), (1, BOX, True)]
    for dets in ([(0, BOX, 0.9)], [(1, BOX, 0.95), (0, BOX, 0.9)]):
        tp, fp, positives = true_false_positives(*zip(*dets), *zip(*gts))
        assert positives == 1 and tp.sum() == 1 and fp.sum() == 0
        assert ap("voc07", dets, gts) == 1.0 and ap("voc12", dets, gts) == 1.0


def test_threshold_is_strict_at_one_half():
    """IoU exactly 0.5 is a miss, as the devkit's ovmax > 0.5."""
    half = [0, 0, 10, 5]  # IoU 0.5 with BOX
    assert ap("voc12", [(0, half, 0.9)], [(0, BOX, False)]) == 0.0
    assert ap("voc12", [(0, [0, 0, 10, 5.1], 0.9)], [(0, BOX, False)]) == 1.0


def test_ties_keep_the_input_order():
    """Equal scores: the first listed is ranked first (MATLAB's stable sort). FP then TP -> 0.5; TP then
    FP -> 1.0 (VOC12)."""
    gts = [(0, BOX, False)]
    assert ap("voc12", [(0, FAR, 0.5), (0, BOX, 0.5)], gts) == pytest.approx(0.5)
    assert ap("voc12", [(0, BOX, 0.5), (0, FAR, 0.5)], gts) == pytest.approx(1.0)


def test_no_detections_no_ground_truth_and_images_without_objects():
    assert ap("voc12", [], [(0, BOX, False)]) == 0.0
    assert ap("voc07", [(0, BOX, 0.9)], []) is None
    assert ap("voc12", [(0, BOX, 0.9)], [(0, BOX, True)]) is None  # only difficult ground truth
    # an image without ground truth: its detection is a FP ranked first -> 0.5 as above
    assert ap("voc12", [(7, BOX, 0.9), (0, BOX, 0.8)], [(0, BOX, False)]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="metric must be one of voc07, voc12"):
        ap("coco", [], [(0, BOX, False)])


def test_envelope_and_eleven_points_differ():
    """recall [1/3, 1/3, 2/3], precision [1, 1/2, 2/3] (TP, FP, TP of 3 objects).
    VOC12: envelope 1 on (0, 1/3], 2/3 on (1/3, 2/3] -> 1/3 + 2/9 = 5/9.
    VOC07: t = 0..0.3 (4 points) -> 1; t = 0.4..0.6 (3) -> 2/3; t = 0.7..1 (4) -> 0: (4 + 2) / 11."""
    recall, precision = np.array([1, 1, 2]) / 3, np.array([1, 1 / 2, 2 / 3])
    assert ap_voc12(recall, precision) == pytest.approx(5 / 9)
    assert ap_voc07(recall, precision) == pytest.approx(6 / 11)


def devkit_tp_fp(dets, gts, threshold=0.5):
    """The devkit's loop, literally: detections by descending score (stable), each against its image's
    boxes, the best one decides."""
    taken = set()
    tp, fp = [], []
    for index in sorted(range(len(dets)), key=lambda i: -dets[i][2]):
        image, box, _ = dets[index]
        best, best_j = 0.0, None
        for j, (gt_image, gt_box, _) in enumerate(gts):
            if gt_image != image:
                continue
            ix = max(0.0, min(box[2], gt_box[2]) - max(box[0], gt_box[0]))
            iy = max(0.0, min(box[3], gt_box[3]) - max(box[1], gt_box[1]))
            union = ((box[2] - box[0]) * (box[3] - box[1]) + (gt_box[2] - gt_box[0]) * (gt_box[3] - gt_box[1])
                     - ix * iy)
            if ix * iy / union > best:
                best, best_j = ix * iy / union, j
        if best > threshold and gts[best_j][2]:
            tp.append(0), fp.append(0)
        elif best > threshold and best_j not in taken:
            taken.add(best_j)
            tp.append(1), fp.append(0)
        else:
            tp.append(0), fp.append(1)
    return tp, fp


@pytest.mark.parametrize("seed", range(5))
def test_matches_the_devkit_loop_on_random_cases(seed):
    rng = np.random.default_rng(seed)

    def boxes(count):
        corner = rng.uniform(0, 80, (count, 2))
        return np.concatenate([corner, corner + rng.uniform(5, 30, (count, 2))], 1).round()

    gts = [(int(i), b.tolist(), bool(d)) for i, b, d in zip(rng.integers(0, 6, 40), boxes(40), rng.random(40) < 0.2)]
    near = [(i, (np.array(b) + rng.normal(0, 3, 4)).tolist(), float(s)) for (i, b, _), s in
            zip(gts, rng.random(40).round(1))]
    dets = near + [(int(i), b.tolist(), float(s)) for i, b, s in zip(rng.integers(0, 8, 30), boxes(30),
                                                                      rng.random(30).round(1))]
    tp, fp, _ = true_false_positives(*zip(*dets), *zip(*gts))
    want_tp, want_fp = devkit_tp_fp(dets, gts)
    assert tp.tolist() == want_tp and fp.tolist() == want_fp
    assert sum(want_tp) > 5 and sum(want_fp) > 5


def small_gt():
    """Two images; class 1 has two objects (one difficult, written as iscrowd), class 2 one, class 3 none."""
    return {"images": [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 100, "height": 100}],
            "categories": [{"id": 1, "name": "tree"}, {"id": 2, "name": "car"}, {"id": 3, "name": "dog"}],
            "annotations": [annotation(1, 1, 1, [0, 0, 10, 10], 0), annotation(2, 2, 1, [0, 0, 10, 10], 1),
                            annotation(3, 2, 2, [20, 20, 10, 10], 0)]}


def annotation(ann_id, image_id, category_id, bbox, crowd):
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": bbox,
            "area": bbox[2] * bbox[3], "iscrowd": crowd}


def test_evaluate_voc_over_coco_dicts():
    """tree: the normal object found, the difficult one ignored -> 1. car: a FP ranked above the hit -> 0.5.
    dog: no ground truth but a detection -> listed, not in the mean. Mean (1 + 0.5) / 2."""
    detections = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9},
                  {"image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.95},
                  {"image_id": 1, "category_id": 2, "bbox": [20, 20, 10, 10], "score": 0.9},
                  {"image_id": 2, "category_id": 2, "bbox": [20, 20, 10, 10], "score": 0.8},
                  {"image_id": 1, "category_id": 3, "bbox": [0, 0, 5, 5], "score": 0.5}]
    mean, rows, lines = evaluate_voc(small_gt(), detections, "voc12")
    assert rows == [("tree", 1.0, 1, 2), ("car", 0.5, 1, 2), ("dog", None, 0, 1)]
    assert mean == pytest.approx(0.75) and lines[-1] == "  mean over 2 class(es) with ground truth: 0.7500"
    assert "no ground truth" in lines[-2]
    mean, rows, _ = evaluate_voc(small_gt(), detections, "voc12", image_ids=[2])
    assert rows == [("tree", None, 0, 1), ("car", 1.0, 1, 1)] and mean == 1.0


@pytest.mark.parametrize("metric", ["coco", "voc07", "voc12"])
def test_the_chosen_metric_is_the_mAP_line(tmp_path, metric):
    """eval.py, eval_onnx.py, postprocess.py and training print mAP: for --metric; COCO's summary stays."""
    import json

    from src.config import load_config
    from src.inference.coco_eval import evaluate_detections
    from src.inference.evaluation import report_evaluation

    path = tmp_path / "gt.json"
    path.write_text(json.dumps(small_gt()))
    detections = [{"image_id": 2, "category_id": 2, "bbox": [20, 20, 10, 10], "score": 0.8},
                  {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9}]
    coco = evaluate_detections(str(path), detections, str(tmp_path))
    cfg = load_config(["--metric=%s" % metric, "--classes=[background,tree,car]", "--num_classes=3"])
    mean, stats, summary = report_evaluation(cfg, str(path), detections, str(tmp_path), analysis=False)
    assert stats == coco[1] and summary.startswith(coco[2].rstrip("\n"))
    assert "Per class (pycocotools, area all, maxDets 100), 2 image(s):" in summary
    if metric == "coco":
        assert mean == coco[0] and "at IoU 0.5 (difficult objects ignored)" not in summary
    else:
        assert mean == 1.0 and "at IoU 0.5 (difficult objects ignored), 2 image(s):" in summary
