"""Tests of src/anchor_fit.py: anchor coverage per size bucket, the exact per-axis scorer of the fit, fits on
constructed objects whose best default boxes are known, the training split's boxes, and the table of
python -m tools.check_dataset."""
import math

import numpy as np
import pytest

from src import anchor_fit
from src.anchor_fit import anchor_coverage, fit_anchors, training_boxes
from src.anchors import default_boxes_yxhw, default_boxes_yxyx, grid_cell_sizes, ssd_cell_sizes
from src.config import load_config
from src.errors import UserError
from tests.tools.test_infer_tools import write_image

SSD300 = ["--config_path=config/ssd300.yaml"]


@pytest.fixture(scope="module")
def ssd300():
    return load_config(SSD300)


def three_maps(**changes):
    """A small SSD config: 300x300, maps of 10, 5 and 3 cells, four boxes per cell (ratio 2 and its inverse)."""
    cfg = load_config(SSD300).replace(feature_size=[10, 5, 3], steps=[30, 60, 100], num_default=[4, 4, 4],
                                      aspect_ratios=[[2], [2], [2]], min_scale=0.3, max_scale=0.7)
    return cfg.replace(**changes)


def two_grid_maps(**changes):
    """A small FPN grid config: 320x320, maps of 10 and 5 cells, six boxes per cell."""
    cfg = load_config(["--config_path=config/ssd_mobilenet_v1_fpn.yaml"]).replace(
        img_shape=[320, 320], feature_size=[10, 5], steps=[32, 64], num_default=[6, 6], anchor_scale=2.5)
    return cfg.replace(**changes)


def inside_default_boxes(cfg):
    """The config's default boxes that lie inside the image, as normalised (x0, y0, x1, y1)."""
    yxyx = default_boxes_yxyx(cfg).astype(np.float64)
    inside = (yxyx >= 0).all(axis=1) & (yxyx <= 1).all(axis=1)
    return yxyx[inside][:, [1, 0, 3, 2]]


def pixel_areas(boxes, side=300):
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) * side * side


# ------------------------------------------------------------------------------------------- coverage
def test_box_identical_to_a_default_box_is_covered_at_iou_one(ssd300):
    box = inside_default_boxes(ssd300)[100:101]
    coverage = anchor_coverage(ssd300, box, [50.0 ** 2])
    assert coverage["medium"]["objects"] == 1 and coverage["all"]["objects"] == 1
    assert coverage["medium"]["covered"] == 1.0 and coverage["medium"]["median_iou"] == 1.0
    assert coverage["medium"]["matched"] >= 1
    assert coverage["small"]["objects"] == 0 and math.isnan(coverage["small"]["covered"])


def test_box_far_too_small_is_not_covered(ssd300):
    # 2x2 px in a 300x300 image, centred on a cell: the smallest default box is 30 px.
    centre = 8.0 / 300
    box = np.array([[centre - 1 / 300, centre - 1 / 300, centre + 1 / 300, centre + 1 / 300]])
    coverage = anchor_coverage(ssd300, box, [4.0])
    assert coverage["small"] == coverage["all"]
    assert coverage["all"]["covered"] == 0.0 and coverage["all"]["matched"] == 0.0
    assert coverage["all"]["median_iou"] < 0.01


def test_size_buckets_split_at_32_and_96_pixels_squared(ssd300):
    boxes = np.repeat(inside_default_boxes(ssd300)[:1], 5, axis=0)
    coverage = anchor_coverage(ssd300, boxes, [32 ** 2 - 0.01, 32 ** 2, 96 ** 2 - 0.01, 96 ** 2, 1e6])
    assert [coverage[name]["objects"] for name in anchor_fit.BUCKETS] == [1, 2, 2, 5]


def test_empty_input_gives_empty_buckets_and_the_fit_refuses(ssd300):
    coverage = anchor_coverage(ssd300, np.zeros((0, 4)), [])
    assert all(coverage[name]["objects"] == 0 for name in anchor_fit.BUCKETS)
    assert "-" in anchor_fit.coverage_lines(coverage)[-1]
    with pytest.raises(UserError, match="no boxes"):
        fit_anchors(ssd300, np.zeros((0, 4)), [])
    with pytest.raises(ValueError, match="2 boxes but 1 areas"):
        anchor_coverage(ssd300, np.zeros((2, 4)), [1.0])


def random_boxes(count, seed=3):
    rng = np.random.default_rng(seed)
    centre = rng.uniform(0.05, 0.95, (count, 2))
    size = np.exp(rng.uniform(np.log(0.02), np.log(0.8), (count, 2)))
    return np.clip(np.concatenate([centre - size / 2, centre + size / 2], axis=1), 0, 1)


@pytest.mark.parametrize("make", [lambda: load_config(SSD300), lambda: load_config([]), two_grid_maps,
                                  lambda: load_config(["--config_path=config/ssd_mobilenet_v1_fpn.yaml"])])
def test_per_axis_scorer_equals_the_iou_matrix(make):
    cfg = make()
    boxes = random_boxes(400)
    best, matched = anchor_fit.best_overlaps(default_boxes_yxyx(cfg), boxes[:, [1, 0, 3, 2]], cfg.match_threshold)
    scorer = anchor_fit.FitScorer(cfg, boxes[:, [1, 0, 3, 2]])
    sizes = grid_cell_sizes(cfg) if cfg.anchor_type == "grid" else ssd_cell_sizes(cfg)
    fast_best, fast_matched = np.zeros(len(boxes)), np.zeros(len(boxes), np.int64)
    for index, cell in enumerate(sizes):
        map_best, map_matched = scorer.map_result(index, cell)
        fast_best, fast_matched = np.maximum(fast_best, map_best), fast_matched + map_matched
    np.testing.assert_allclose(fast_best, best, atol=1e-5)
    np.testing.assert_array_equal(fast_matched, matched)
    assert matched.sum() > 0 and scorer.score(sizes) == (int((best >= cfg.match_threshold).sum()), matched.sum())


# ------------------------------------------------------------------------------------------------- fit
def assert_same_shapes(cfg, fit):
    fitted = cfg.replace(**fit["changes"])
    assert len(default_boxes_yxhw(fitted)) == len(default_boxes_yxhw(cfg))
    assert fitted.num_default == cfg.num_default
    for key in ("aspect_ratios", "grid_aspect_ratios"):
        assert [len(r) if isinstance(r, list) else 1 for r in fitted.get(key)] == \
            [len(r) if isinstance(r, list) else 1 for r in cfg.get(key)]
    assert anchor_fit.objective(fit["after"]) >= anchor_fit.objective(fit["before"])


def test_fit_recovers_scales_that_cover_the_default_boxes_of_known_scales():
    boxes = inside_default_boxes(three_maps())
    start = three_maps(min_scale=0.05, max_scale=0.2)
    fit = fit_anchors(start, boxes, pixel_areas(boxes))
    assert fit["before"]["all"]["covered"] < 0.5 and fit["after"]["all"]["covered"] == 1.0
    assert 0 < fit["changes"]["min_scale"] < fit["changes"]["max_scale"] <= 1.0
    assert anchor_coverage(start.replace(**fit["changes"]), boxes, pixel_areas(boxes))["all"] == fit["after"]["all"]
    assert_same_shapes(start, fit)


def test_fit_recovers_aspect_ratios_keeping_their_count():
    # At IoU 0.7 a ratio-3 box is not covered by the ratio-2 box of its scale (IoU 0.69).
    boxes = inside_default_boxes(three_maps(aspect_ratios=[[3], [3], [3]]))
    start = three_maps(match_threshold=0.7)
    fit = fit_anchors(start, boxes, pixel_areas(boxes))
    assert fit["before"]["all"]["covered"] < 1.0 and fit["after"]["all"]["covered"] == 1.0
    assert all(len(ratios) == 1 for ratios in fit["changes"]["aspect_ratios"])
    assert_same_shapes(start, fit)


def test_fit_keeps_an_empty_first_map_and_the_box_count(ssd300):
    boxes = random_boxes(300)
    fit = fit_anchors(ssd300, boxes, pixel_areas(boxes))
    assert fit["changes"]["aspect_ratios"][0] == [] and fit["boxes"] == fit["total"] == 300
    assert_same_shapes(ssd300, fit)


def test_grid_fit_recovers_the_anchor_scale():
    boxes = inside_default_boxes(two_grid_maps())
    start = two_grid_maps(anchor_scale=5.0)
    fit = fit_anchors(start, boxes, pixel_areas(boxes, 320))
    assert fit["before"]["all"]["covered"] < 0.5 and fit["after"]["all"]["covered"] == 1.0
    assert set(fit["changes"]) == {"anchor_scale", "grid_aspect_ratios"}
    assert len(fit["changes"]["grid_aspect_ratios"]) == 3
    assert_same_shapes(start, fit)


def test_fit_samples_large_inputs_and_never_returns_lower_coverage(ssd300, monkeypatch):
    boxes = random_boxes(500)
    fit = fit_anchors(ssd300, boxes, pixel_areas(boxes), limit=200)
    assert fit["boxes"] == 200 and fit["total"] == 500 and fit["after"]["all"]["objects"] == 200
    assert "a fixed random sample of 200 of the 500" in anchor_fit.fit_lines(ssd300, fit)[0]
    # A search that proposes worse settings is overruled by the matcher's own IoU.
    monkeypatch.setattr(anchor_fit, "fit_ssd", lambda cfg, scorer: {"min_scale": 0.9, "max_scale": 0.95})
    fit = fit_anchors(ssd300, boxes, pixel_areas(boxes))
    assert fit["changes"] == {"min_scale": 0.2, "max_scale": 0.95} and fit["after"] == fit["before"]
    assert "no change covers more" in anchor_fit.fit_lines(ssd300, fit)[0]


def test_flags_paste_onto_a_command_line(ssd300):
    boxes = random_boxes(200, seed=5) * 0.3
    fit = fit_anchors(ssd300, boxes, pixel_areas(boxes))
    flags = anchor_fit.fit_lines(ssd300, fit)[-1].split("flags: ")[1]
    assert flags.count(" ") == 2 and fit["changes"] != {"min_scale": 0.2, "max_scale": 0.95,
                                                        "aspect_ratios": ssd300.aspect_ratios}
    cfg = load_config(SSD300 + flags.split())
    assert {key: cfg.get(key) for key in fit["changes"]} == fit["changes"]
    assert len(default_boxes_yxhw(cfg)) == len(default_boxes_yxhw(ssd300))


# ------------------------------------------------------------------------------------ reading a split
def voc_set(root, objects, size=(100, 200)):
    """A VOC folder whose training list holds every image of ``objects`` (id -> [(name, difficult, box)])."""
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "Annotations").mkdir()
    for image_id, objs in objects.items():
        body = "".join("<object><name>%s</name><difficult>%d</difficult><bndbox><xmin>%d</xmin><ymin>%d</ymin>"
                       "<xmax>%d</xmax><ymax>%d</ymax></bndbox></object>" % (n, d, *box) for n, d, box in objs)
        (root / "Annotations" / (image_id + ".xml")).write_text(
            "<annotation><filename>%s.jpg</filename><size><height>%d</height><width>%d</width></size>%s"
            "</annotation>" % (image_id, size[0], size[1], body))
        write_image(root / "JPEGImages" / (image_id + ".jpg"), *size)
    for split in ("train", "val"):
        (root / "ImageSets" / "Main" / (split + ".txt")).write_text("\n".join(objects) + "\n")
    return ["--dataset=voc", "--voc_root=%s" % root, "--classes=[background,tree]", "--num_classes=2"]


def test_training_boxes_follow_the_converter_rules(tmp_path):
    args = voc_set(tmp_path / "voc", {"a": [("tree", 0, (1, 1, 50, 20)), ("tree", 1, (1, 1, 9, 9)),
                                            ("cat", 0, (1, 1, 9, 9))], "b": [("tree", 0, (101, 51, 300, 100))]})
    boxes, areas = training_boxes(load_config(args))
    np.testing.assert_allclose(boxes, [[0, 0, 0.25, 0.2], [0.5, 0.5, 1.0, 1.0]])
    np.testing.assert_allclose(areas, [50 * 20, 100 * 50])
    boxes, _ = training_boxes(load_config(args), limit=1)
    assert len(boxes) == 1
    assert len(training_boxes(load_config(args + ["--voc_use_difficult=True"]))[0]) == 3


def test_training_split_without_boxes_is_a_user_error(tmp_path):
    args = voc_set(tmp_path / "voc", {"a": [("cat", 0, (1, 1, 9, 9))]})
    with pytest.raises(UserError, match="train.txt: the training split has no boxes"):
        training_boxes(load_config(args))


def test_txt_boxes_are_normalised_by_the_decoded_image_size(tmp_path):
    write_image(tmp_path / "img" / "a.png", 80, 160)
    (tmp_path / "train.txt").write_text("a.png 40,20,80,60,1\n")
    cfg = load_config(["--dataset=other", "--image_dir=%s" % (tmp_path / "img"),
                       "--anno_path=%s" % (tmp_path / "train.txt"), "--classes=[background,tree]", "--num_classes=2"])
    boxes, areas = training_boxes(cfg)
    np.testing.assert_allclose(boxes, [[0.25, 0.25, 0.5, 0.75]])
    np.testing.assert_allclose(areas, [1600])


# ---------------------------------------------------------------------------------- tools.check_dataset
def test_check_dataset_prints_the_coverage_and_the_fit(tmp_path, capsys):
    from tools.check_dataset import main
    args = voc_set(tmp_path / "voc", {"a": [("tree", 0, (1, 1, 30, 30)), ("tree", 0, (41, 41, 70, 70))],
                                      "b": [("tree", 0, (11, 21, 200, 100))]})
    assert main(SSD300 + args) == 0
    out = capsys.readouterr().out.strip().splitlines()
    title = out.index("anchor coverage of 3 training boxes: 1917 default boxes (ssd300, 300x300 input), IoU >= 0.5")
    assert out[title + 1].split() == ["size", "objects", "covered", "matched/object", "median", "best", "IoU"]
    assert [line.split()[:2] for line in out[title + 2:title + 6]] == [["small", "2"], ["medium", "0"],
                                                                          ["large", "1"], ["all", "3"]]
    assert out[-1].startswith("check: the conversion would succeed") and not any("anchor fit" in x for x in out)
    assert main(SSD300 + args + ["--fit_anchors=True"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert any(line.startswith("anchor fit on 3 training boxes") for line in out)
    assert out[-2].startswith("  flags: --min_scale=") and "--aspect_ratios=[[]," in out[-2]


def test_check_dataset_without_training_boxes_prints_no_coverage(tmp_path, capsys):
    from tools.check_dataset import main
    args = voc_set(tmp_path / "voc", {"a": []})
    assert main(args) == 0
    assert "anchor coverage" not in capsys.readouterr().out
