"""Confusion matrix and error breakdown (src/inference/error_analysis.py) on hand-built cases; every expected
value is derived in the test's docstring from the definitions of the module docstring.

Boxes are COCO [x, y, w, h]. Against the object BOX = [0, 0, 10, 10], a box [0, 0, 10, h] (h <= 10) has IoU
h / 10, which makes every overlap easy to read. COCO's 101-point AP: a class whose envelope precision is p on
recall (0, r] reads p at the points 0, 0.01, ..., r, that is 100 r + 1 of the 101 points.
"""
import pytest

from src.inference.error_analysis import (
    ERROR_TYPES,
    confusion_matrix,
    error_breakdown,
    write_confusion_csv,
    write_errors_csv,
)

A, B, C = 1, 2, 3  # category ids
BOX = [0, 0, 10, 10]
FAR = [50, 50, 10, 10]  # IoU 0 with BOX


def box(iou):
    """A box of IoU ``iou`` with BOX."""
    return [0, 0, 10, 10 * iou]


def ground_truth(annotations, images=None, categories=(A, B, C)):
    """COCO ground truth from (image, category, bbox[, crowd]) tuples; images default to those named."""
    images = sorted({a[0] for a in annotations}) if images is None else images
    return {"images": [{"id": image} for image in images],
            "categories": [{"id": c, "name": "c%d" % c} for c in categories],
            "annotations": [{"id": n, "image_id": a[0], "category_id": a[1], "bbox": a[2],
                             "iscrowd": a[3] if len(a) > 3 else 0} for n, a in enumerate(annotations)]}


def results(*detections):
    """COCO results from (image, category, bbox, score) tuples."""
    return [{"image_id": i, "category_id": c, "bbox": b, "score": s} for i, c, b, s in detections]


def every_error_once():
    """Five images, classes A and B (category_ids [A, B]), every detection predicted A:

    * image 1, object A: A BOX 0.9 is the true positive; A box(0.8) 0.8 overlaps the taken object -> duplicate;
    * image 2, object A: A box(0.3) 0.7 -> localisation (own-class IoU 0.3 in [0.1, 0.5)), target the object;
    * image 3, object B: A BOX 0.6 -> classification (IoU 1 with another class), target the object;
      A box(0.3) 0.5 -> both (no own-class object, other-class IoU 0.3);
    * image 4, object A: A FAR 0.4 -> background; the object is neither taken nor targeted -> missed.
    """
    gt = ground_truth([(1, A, BOX), (2, A, BOX), (3, B, BOX), (4, A, BOX)])
    dets = results((1, A, BOX, 0.9), (1, A, box(0.8), 0.8), (2, A, box(0.3), 0.7), (3, A, BOX, 0.6),
                   (3, A, box(0.3), 0.5), (4, A, FAR, 0.4))
    return gt, dets


def test_every_error_type_once_counts_and_gains():
    """Baseline: A ranks TP, then 5 FPs, of 3 objects: precision 1 up to recall 1/3, i.e. points 0..0.33 ->
    AP_A = 34/101; B has no detection -> 0; ap50 = 17/101.

    * localisation fixed: A ranks TP, FP, TP, FP, FP, FP: envelope 1 on (0, 1/3], 2/3 on (1/3, 2/3]
      (points 0.34..0.66, 33 of them) -> AP_A = (34 + 22)/101 = 56/101, mean 28/101, gain 11/101;
    * classification fixed: the 0.6 detection becomes B's true positive: AP_B = 1, AP_A unchanged ->
      mean (34/101 + 1)/2, gain 1/2;
    * missed fixed: A has 2 positives, precision 1 up to recall 1/2 -> AP_A = 51/101, gain 17/202;
    * duplicate, both, background: removing false positives ranked below every true positive changes no
      envelope value at a reached recall -> gain 0.
    """
    gt, dets = every_error_once()
    result = error_breakdown(gt, dets, [A, B])
    assert result["counts"] == {kind: 1 for kind in ERROR_TYPES}
    assert result["true_positives"] == 1 and result["classes"] == 2
    assert result["ap50"] == pytest.approx(17 / 101)
    assert result["gains"] == pytest.approx({"classification": 0.5, "localisation": 11 / 101, "both": 0.0,
                                             "duplicate": 0.0, "background": 0.0, "missed": 17 / 202})


def test_background_and_missed_gains_of_one_class():
    """One class, 2 objects (images 1 and 3). Ranks: FAR 0.9 in image 2 (no ground truth: background), then
    the true positive 0.8; the object of image 3 is missed. recall [0, 1/2], precision [0, 1/2]: envelope 1/2,
    read at points 0..0.5 -> ap50 = 51 x 0.5 / 101 = 25.5/101.

    * background fixed: the TP alone, precision 1 up to recall 1/2 -> 51/101, gain 25.5/101;
    * missed fixed: 1 positive: recall [0, 1], precision [0, 1/2] -> 1/2 at all 101 points, gain
      1/2 - 25.5/101 = 25/101.
    """
    gt = ground_truth([(1, A, BOX), (3, A, BOX)], images=[1, 2, 3])
    result = error_breakdown(gt, results((2, A, FAR, 0.9), (1, A, BOX, 0.8)), [A])
    assert result["ap50"] == pytest.approx(25.5 / 101)
    assert result["counts"]["background"] == 1 and result["counts"]["missed"] == 1
    assert result["gains"]["background"] == pytest.approx(25.5 / 101)
    assert result["gains"]["missed"] == pytest.approx(25 / 101)


def test_a_class_whose_every_object_is_missed_keeps_ap_zero_when_misses_are_fixed():
    """A: found in image 1, missed in image 2 -> AP_A = 51/101; B: its one object (image 3) missed, no
    detection -> AP_B = 0; ap50 = 51/202. Missed fixed: AP_A = 1, and B stays in the mean with AP 0 (no
    positives left) -> 1/2, gain 1/2 - 51/202 = 50/202 (dropping B would have given 1 - 51/202)."""
    gt = ground_truth([(1, A, BOX), (2, A, BOX), (3, B, BOX)])
    result = error_breakdown(gt, results((1, A, BOX, 0.9)), [A, B])
    assert result["counts"]["missed"] == 2 and result["classes"] == 2
    assert result["ap50"] == pytest.approx(51 / 202)
    assert result["gains"]["missed"] == pytest.approx(50 / 202)


def test_true_positive_takes_the_free_object_of_highest_iou():
    """Two A objects in one image: BOX and [0, 2, 10, 10] (IoU 80/120 = 2/3 with each other). The 0.9
    detection BOX takes BOX (IoU 1 > 2/3); the 0.8 detection box(0.9) (IoU 0.9 with BOX, 70/120 = 7/12 with
    the other) falls back to the free object -> two true positives, nothing missed, AP 1."""
    gt = ground_truth([(1, A, BOX), (1, A, [0, 2, 10, 10])])
    result = error_breakdown(gt, results((1, A, box(0.9), 0.8), (1, A, BOX, 0.9)), [A])
    assert result["true_positives"] == 2 and sum(result["counts"].values()) == 0
    assert result["ap50"] == pytest.approx(1.0)


def test_crowd_boxes_ignore_detections_and_are_never_missed():
    """Image 1: a crowd B box and an A object; A BOX 0.9 is the true positive, a second A BOX 0.8 would be a
    duplicate but overlaps the crowd box (any class) -> ignored, and so is B box(0.6) 0.7. The crowd box is
    not missed and does not count as a positive: AP_A = 1, B has no positive -> one class."""
    gt = ground_truth([(1, A, BOX), (1, B, BOX, 1)])
    dets = results((1, A, BOX, 0.9), (1, A, BOX, 0.8), (1, B, box(0.6), 0.7))
    result = error_breakdown(gt, dets, [A, B])
    assert result["true_positives"] == 1 and sum(result["counts"].values()) == 0
    assert result["ap50"] == 1.0 and result["classes"] == 1


def test_breakdown_without_ground_truth_or_detections():
    """No ground truth: every detection is background, ap50 and gains 0. No detections: every object missed,
    ap50 0, and fixing misses leaves no positives -> gains 0."""
    result = error_breakdown(ground_truth([], images=[1]), results((1, A, BOX, 0.9), (1, B, FAR, 0.2)), [A, B])
    assert result["counts"] == {**{kind: 0 for kind in ERROR_TYPES}, "background": 2}
    assert result["ap50"] == 0.0 and result["classes"] == 0 and set(result["gains"].values()) == {0.0}
    result = error_breakdown(ground_truth([(1, A, BOX), (2, B, BOX)]), [], [A, B])
    assert result["counts"] == {**{kind: 0 for kind in ERROR_TYPES}, "missed": 2}
    assert result["ap50"] == 0.0 and result["true_positives"] == 0 and set(result["gains"].values()) == {0.0}


def test_breakdown_restrictions_and_classes_without_ground_truth():
    """image_ids [1, 2] keeps the TP, the duplicate and the localisation error of every_error_once (A: TP,
    FP, FP of 2 objects -> 51/101, one class: B's object is in image 3). A class C detection with no C
    ground truth is background and C stays out of ap50; categories outside category_ids (9) are dropped."""
    gt, dets = every_error_once()
    gt["annotations"].append({"id": 99, "image_id": 1, "category_id": 9, "bbox": FAR, "iscrowd": 0})
    dets += results((1, C, FAR, 0.95), (2, 9, BOX, 0.99))
    result = error_breakdown(gt, dets, [A, B, C], image_ids=[1, 2])
    assert result["classes"] == 1 and result["true_positives"] == 1
    assert result["counts"] == {"classification": 0, "localisation": 1, "both": 0, "duplicate": 1,
                                "background": 1, "missed": 0}
    assert result["ap50"] == pytest.approx(51 / 101)


def confusion_case():
    """category_ids [A, B]:

    * image 1: object A, A BOX 0.9 -> [A, A];
    * image 2: object B, A BOX 0.8 -> [B, A] (class confusion);
    * image 3: object A, only A BOX 0.1 below the 0.3 threshold -> [A, missed];
    * image 4: no ground truth, B BOX 0.7 -> [background, B];
    * image 5: a crowd A box, B BOX 0.9 -> ignored, and the crowd box is no miss;
    * a category 9 object and detection in image 1 -> dropped.
    """
    gt = ground_truth([(1, A, BOX), (2, B, BOX), (3, A, BOX), (5, A, BOX, 1), (1, 9, FAR)], images=[1, 2, 3, 4, 5])
    dets = results((1, A, BOX, 0.9), (2, A, BOX, 0.8), (3, A, BOX, 0.1), (4, B, BOX, 0.7), (5, B, BOX, 0.9),
                   (1, 9, FAR, 0.9))
    return gt, dets


def test_confusion_matrix_cells():
    gt, dets = confusion_case()
    matrix = confusion_matrix(gt, dets, [A, B], score_threshold=0.3)
    assert matrix.dtype.name == "int64"
    assert matrix.tolist() == [[1, 0, 1],
                               [1, 0, 0],
                               [0, 1, 0]]
    assert confusion_matrix(gt, dets, [A, B], score_threshold=0.05)[0].tolist() == [2, 0, 0]


def test_confusion_matrix_restrictions_and_empty_detections():
    """image_ids [1, 4]: the correct match and the false alarm. No detections: every non-crowd object
    missed (A: images 1 and 3, B: image 2)."""
    gt, dets = confusion_case()
    assert confusion_matrix(gt, dets, [A, B], 0.3, image_ids=[1, 4]).tolist() == [[1, 0, 0], [0, 0, 0], [0, 1, 0]]
    assert confusion_matrix(gt, [], [A, B], 0.3).tolist() == [[0, 0, 2], [0, 0, 1], [0, 0, 0]]


def test_confusion_matching_is_class_agnostic_by_descending_iou():
    """One A object. B box(0.6) 0.9 and A BOX 0.5 both overlap it: the pair of higher IoU (A, 1.0) is
    matched despite the lower score, the B detection becomes a false alarm. Equal IoU: the higher score wins."""
    gt = ground_truth([(1, A, BOX)])
    dets = results((1, B, box(0.6), 0.9), (1, A, BOX, 0.5))
    assert confusion_matrix(gt, dets, [A, B], 0.0).tolist() == [[1, 0, 0], [0, 0, 0], [0, 1, 0]]
    dets = results((1, A, BOX, 0.5), (1, B, BOX, 0.9))
    assert confusion_matrix(gt, dets, [A, B], 0.0).tolist() == [[0, 1, 0], [0, 0, 0], [1, 0, 0]]


def test_confusion_csv_text(tmp_path):
    gt, dets = confusion_case()
    path = tmp_path / "new" / "confusion.csv"
    write_confusion_csv(str(path), confusion_matrix(gt, dets, [A, B], 0.3), ["cat", "dog"])
    assert path.read_text() == "true\\predicted,cat,dog,missed\ncat,1,0,1\ndog,1,0,0\nbackground,0,1,0\n"
    assert [p.name for p in path.parent.iterdir()] == ["confusion.csv"]


def test_errors_csv_text(tmp_path):
    gt, dets = every_error_once()
    path = tmp_path / "errors.csv"
    write_errors_csv(str(path), error_breakdown(gt, dets, [A, B]))
    assert path.read_text() == ("error,count,ap50_gain\nclassification,1,0.5000\nlocalisation,1,0.1089\n"
                                "both,1,0.0000\nduplicate,1,0.0000\nbackground,1,0.0000\nmissed,1,0.0842\n"
                                "true_positive,1,\n")


@pytest.mark.parametrize("seed", range(3))
def test_ap50_agrees_with_pycocotools_without_crowd_boxes(seed):
    """Random scenes without crowd boxes and under 100 detections per image, where the simplified matching
    coincides with COCO's: ap50 equals pycocotools' AP50 (area all, maxDets 100)."""
    import contextlib
    import io

    import numpy as np
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(seed)
    corner = rng.integers(0, 40, (30, 2))
    size = rng.integers(5, 25, (30, 2))
    annotations = [(int(i), int(c), [*map(int, xy), *map(int, wh)]) for i, c, xy, wh in
                   zip(rng.integers(0, 5, 30), rng.integers(1, 4, 30), corner, size)]
    gt = ground_truth(annotations, images=list(range(6)))
    for annotation in gt["annotations"]:
        annotation["area"] = annotation["bbox"][2] * annotation["bbox"][3]
    shifted = corner + rng.integers(-4, 5, (30, 2))
    classes = np.where(rng.random(30) < 0.7, [c for _, c, _ in annotations], rng.integers(1, 4, 30))
    dets = results(*[(i, int(c), [*map(int, xy), *map(int, wh)], float(s)) for (i, _, _), c, xy, wh, s in
                     zip(annotations, classes, shifted, size, rng.random(30))])
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        evaluation = COCOeval(coco, coco.loadRes(dets), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    result = error_breakdown(gt, dets, [A, B, C])
    assert result["ap50"] == pytest.approx(evaluation.stats[1], abs=1e-12)
    assert result["true_positives"] > 5 and sum(result["counts"].values()) > 5
