"""Tests of what surrounds the model: infer.py, src/visualize.py, src/data/check.py, the CSV training log
and its plot, eval.py --visualize. The end-to-end tests (marked slow) train one epoch on a tiny shapes set."""
import csv
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from src.config import load_config
from tests.helpers import ROOT

CLASSES = ["background", "person", "cat", "dog"]


def small_cfg(tmp_path, **changes):
    """The default config with four classes, pointed at tmp_path."""
    cfg = load_config([]).replace(classes=CLASSES, num_classes=len(CLASSES), mindrecord_dir=str(tmp_path / "mr"),
                                  output_path=str(tmp_path / "out"))
    return cfg.replace(**changes)


def write_image(path, height=40, width=60, value=None):
    """A random (or flat grey) colour image file; the suffix picks the format."""
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    rng = np.random.default_rng(7)
    image = (rng.integers(0, 255, (height, width, 3), dtype=np.uint8) if value is None
             else np.full((height, width, 3), value, np.uint8))
    assert cv2.imwrite(str(path), image)
    return image


# ------------------------------------------------------------------------------------------ drawing
def test_draw_boxes_marks_the_box_and_leaves_the_input_alone():
    from src.inference.visualize import class_color, draw_boxes
    image = np.full((120, 160, 3), 128, np.uint8)
    box = {"image_id": 1, "category_id": 2, "bbox": [40.0, 50.0, 60.0, 40.0], "score": 0.87}
    drawn, count = draw_boxes(image, [box], {2: "cat"})
    assert count == 1 and (image == 128).all()
    assert tuple(drawn[89, 70]) == class_color(2)           # bottom edge (row 50 + 40 - 1)
    assert tuple(drawn[70, 99]) == class_color(2)           # right edge
    assert (drawn[70, 70] == 128).all()                     # inside stays untouched
    assert (drawn[30:50, 40:100] != 128).any()              # the caption sits above the box


def test_caption_stays_inside_at_the_border_and_crowd_is_named():
    from src.inference.visualize import caption_of, draw_boxes
    image = np.zeros((60, 80, 3), np.uint8)
    drawn, _ = draw_boxes(image, [{"category_id": 1, "bbox": [0, 0, 80, 60], "iscrowd": 1}], {1: "person"})
    assert drawn[2:12, 2:40].any()
    assert caption_of({"category_id": 1, "iscrowd": 1}, {1: "person"}) == "person (crowd)"
    assert caption_of({"category_id": 3, "score": 0.5}, {}) == "3 0.50"


def test_comparison_is_two_titled_panels():
    from src.inference.visualize import GAP, comparison
    image = np.full((50, 70, 3), 90, np.uint8)
    truth = [{"category_id": 1, "bbox": [5, 5, 20, 20]}]
    predictions = [{"category_id": 1, "bbox": [6, 6, 20, 20], "score": 0.9},
                   {"category_id": 1, "bbox": [30, 10, 20, 20], "score": 0.1}]
    out = comparison(image, truth, predictions, {1: "person"}, 0.5)
    assert out.shape[1] == 2 * 70 + GAP and out.shape[0] > 50
    right = out[-50:, 70 + GAP:]
    assert (right[29, 30:50] == 90).all()                   # the 0.1 detection is below the threshold
    assert (right[25, 6:26] != 90).any()


# ------------------------------------------------------------------------------------- training log
def fill(log, epochs, steps=4, interval=2, evaluate=()):
    for epoch in epochs:
        log.begin_epoch()
        for step in range(interval, steps + 1, interval):
            log.step(epoch, step, 10.0 / (epoch * steps + step))
        if epoch in evaluate:
            log.evaluation(epoch, 0.1 * epoch)


def rows_of(path):
    with open(path, newline="") as stream:
        return list(csv.reader(stream))


def test_training_log_rows_and_learning_rate(tmp_path):
    from src.training.log import COLUMNS, TrainingLog
    path = str(tmp_path / "out" / "train_log.csv")
    rates = np.arange(1, 13, dtype=np.float32) / 100
    fill(TrainingLog(path, 0, 4, rates), [1, 2, 3], evaluate=[2])
    rows = rows_of(path)
    assert tuple(rows[0]) == COLUMNS
    assert [(r[0], r[1], r[2]) for r in rows[1:]] == [("1", "2", "2"), ("1", "4", "4"), ("2", "2", "6"),
                                                      ("2", "4", "8"), ("2", "4", "8"), ("3", "2", "10"),
                                                      ("3", "4", "12")]
    assert float(rows[3][4]) == pytest.approx(0.06) and float(rows[1][5]) >= 0 and rows[1][6] == ""
    assert rows[5][3:6] == ["", "", ""] and float(rows[5][6]) == pytest.approx(0.2)


def test_resumed_log_neither_duplicates_nor_loses_rows(tmp_path):
    """Killed in epoch 4 with the last checkpoint after epoch 2: epochs 3-4 are trained and logged again."""
    from src.training.log import TrainingLog
    path = str(tmp_path / "train_log.csv")
    rates = np.full(24, 0.01, np.float32)
    fill(TrainingLog(path, 0, 4, rates), [1, 2, 3, 4], evaluate=[2])
    with open(path, "a") as stream:
        stream.write("4,6,1")                               # a row cut short by kill -9
    fill(TrainingLog(path, 2, 4, rates), [3, 4, 5, 6])
    keys = [(r[0], r[1], r[6] != "") for r in rows_of(path)[1:]]
    assert len(keys) == len(set(keys)) == 6 * 2 + 1
    assert [k[0] for k in keys] == ["1", "1", "2", "2", "2", "3", "3", "4", "4", "5", "5", "6", "6"]
    fill(TrainingLog(path, 0, 4, rates), [1])               # --resume=False: a new log
    assert [r[0] for r in rows_of(path)[1:]] == ["1", "1"]


def test_log_of_other_ranks_writes_nothing(tmp_path):
    from src.training.log import TrainingLog
    fill(TrainingLog(None, 0, 4, []), [1], evaluate=[1])
    assert not os.listdir(str(tmp_path))


def test_plot_writes_a_png(tmp_path, capsys):
    from src.training.log import TrainingLog
    from tools.plot_log import PANELS, main, nice_ticks
    path = str(tmp_path / "train_log.csv")
    fill(TrainingLog(path, 0, 10, np.linspace(0.001, 0.05, 200)), range(1, 21), steps=10, interval=5,
         evaluate=[10, 20])
    out = str(tmp_path / "plots" / "curves.png")
    assert main([path, "--out", out]) == 0
    image = cv2.imread(out)
    assert image is not None and image.shape[0] > 300 and image.shape[1] > 600
    for _, _, color in PANELS:
        assert (np.abs(image.astype(int) - color).sum(axis=2) < 30).sum() > 50
    assert "42 rows" in capsys.readouterr().out
    assert nice_ticks(0, 500) == [0, 100, 200, 300, 400, 500]


def test_plot_bad_input_is_one_line(tmp_path, capsys):
    from tools.plot_log import main
    assert main([str(tmp_path / "none.csv")]) == 1
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    assert main([str(tmp_path / "bad.csv")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "not found" in err[0] and "no rows" in err[1]


# ---------------------------------------------------------------------------------- dataset check
def coco_set(root, annotations, images=None):
    images = images or [(1, "a.jpg", 40, 60), (2, "b.jpg", 200, 200), (3, "gone.jpg", 40, 60)]
    for split in ("train2017", "val2017"):
        for _, name, height, width in images:
            if name != "gone.jpg":
                write_image(root / split / name, height, width)
    data = {"images": [{"id": i, "file_name": n, "height": h, "width": w} for i, n, h, w in images],
            "annotations": [dict(a, id=k + 1) for k, a in enumerate(annotations)],
            "categories": [{"id": 17, "name": "cat"}, {"id": 18, "name": "dog"}, {"id": 90, "name": "zebra"}]}
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for split in ("train2017", "val2017"):
        (root / "annotations" / ("instances_%s.json" % split)).write_text(json.dumps(data))
    return root / "annotations" / "instances_train2017.json"


def coco_ann(image_id, bbox, category_id, iscrowd=0):
    return {"image_id": image_id, "bbox": bbox, "category_id": category_id, "iscrowd": iscrowd}


def run_check(cfg_args, capsys):
    from tools.check_dataset import main
    status = main(cfg_args)
    return status, capsys.readouterr().out


def test_check_coco_reports_every_problem_and_stops(tmp_path, capsys):
    root = tmp_path / "coco"
    anno = coco_set(root, [coco_ann(1, [6, 4, 30, 20], 17), coco_ann(1, [59.6, 5, 10, 10], 18),
                           coco_ann(1, [1, 2, 3], 17), coco_ann(2, [0, 0, 100, 100], 18),
                           coco_ann(2, [10, 10, 5, 5], 90), coco_ann(2, [0, 0, 50, 50], 17, iscrowd=1),
                           coco_ann(9, [0, 0, 5, 5], 17)])
    args = ["--dataset=coco", "--coco_root=%s" % root, "--classes=%s" % CLASSES, "--num_classes=4"]
    status, out = run_check(args, capsys)
    assert status == 1
    assert "%s: annotation id 3: needs 'image_id' and a 'bbox' of 4 numbers" % anno in out
    assert "(stops the conversion)" in out
    assert "%s: image id 1: annotation id 2 [59.6, 5, 69.6, 15] 'dog' is under 1 px after clipping" % anno in out
    assert "image id 3: image 'gone.jpg' is missing (image skipped)" in out
    assert "unknown class 'zebra': 1 box dropped: %s: image id 2: annotation id 5" % anno in out
    assert "1 crowd" in out and "to image ids missing from 'images', e.g. 9" in out
    assert "boxes: 2 (cat 1, dog 1)" in out and "small 1 (50%), medium 0 (0%), large 1 (50%)" in out
    assert out.strip().splitlines()[-1].startswith("check: the conversion would stop: 2 problems")
    from src.data.convert import DatasetError, convert
    with pytest.raises(DatasetError) as err:
        convert(small_cfg(tmp_path, coco_root=str(root)), is_training=True)
    assert str(err.value) in out


def test_check_coco_clean_exits_zero(tmp_path, capsys):
    root = tmp_path / "coco"
    coco_set(root, [coco_ann(1, [6, 4, 30, 20], 17)], images=[(1, "a.jpg", 40, 60), (2, "b.jpg", 40, 60)])
    status, out = run_check(["--coco_root=%s" % root, "--classes=%s" % CLASSES, "--num_classes=4"], capsys)
    assert status == 0 and "images: 2 listed, 2 readable, 1 without boxes (b.jpg)" in out
    assert out.count("split:") == 2 and "skipping 0 images and dropping 0 boxes" in out


def test_check_txt_malformed_lines_named_with_file_and_line(tmp_path, capsys):
    images = tmp_path / "imgs"
    write_image(images / "x.jpg")
    write_image(images / "sub" / "y.png", 150, 150)
    anno = tmp_path / "train.txt"
    anno.write_text("x.jpg 1,2,31,22,2 1,2,3\n\nsub/y.png 0,0,120,120,dog 1,2,x,4,1\nmissing.jpg\n")
    status, out = run_check(["--dataset", "other", "--image_dir", str(images), "--anno_path", str(anno),
                             "--classes=%s" % CLASSES, "--num_classes=4"], capsys)
    assert status == 1
    assert "%s:1: bad box '1,2,3': expected 5 comma-separated fields" % anno in out
    assert "%s:3: bad box '1,2,x,4,1': 'x' is not a number" % anno in out
    assert "%s:4: image 'missing.jpg' is missing (image skipped)" % anno in out
    assert "training and evaluation split: %s (other)" % anno in out and out.count("split:") == 1
    assert "boxes: 2 (cat 1, dog 1)" in out and "small 1 (50%), medium 0 (0%), large 1 (50%)" in out


def test_check_voc_counts_classes_and_difficult(tmp_path, capsys):
    root = tmp_path / "VOC2007"
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "Annotations").mkdir()
    objects = {"000001": [("cat", 0, (1, 1, 30, 20)), ("dog", 1, (11, 11, 40, 40))],
               "000002": [("dog", 0, (1, 1, 60, 40))], "000003": []}
    for image_id, objs in objects.items():
        body = "".join("<object><name>%s</name><difficult>%d</difficult><bndbox><xmin>%d</xmin><ymin>%d</ymin>"
                       "<xmax>%d</xmax><ymax>%d</ymax></bndbox></object>" % (n, d, *box) for n, d, box in objs)
        (root / "Annotations" / (image_id + ".xml")).write_text(
            "<annotation><filename>%s.jpg</filename><size><height>40</height><width>60</width></size>%s"
            "</annotation>" % (image_id, body))
        write_image(root / "JPEGImages" / (image_id + ".jpg"))
    (root / "ImageSets" / "Main" / "train.txt").write_text("000001\n000002\n000003\n")
    (root / "ImageSets" / "Main" / "val.txt").write_text("000001\n")
    status, out = run_check(["--dataset=voc", "--voc_root=%s" % root, "--classes=%s" % CLASSES,
                             "--num_classes=4"], capsys)
    assert status == 0
    assert "images: 3 listed, 3 readable, 1 without boxes (000003.jpg)" in out
    assert "boxes: 2 (cat 1, dog 1)" in out and "1 difficult" in out
    assert "images: 1 listed, 1 readable, 0 without boxes" in out
    xml = root / "Annotations" / "000002.xml"
    xml.write_text(xml.read_text().replace("<xmax>60</xmax>", "<xmax>sixty</xmax>"))
    (root / "ImageSets" / "Main" / "val.txt").write_text("000001\n000009\n")
    status, out = run_check(["--dataset=voc", "--voc_root=%s" % root, "--classes=%s" % CLASSES,
                             "--num_classes=4"], capsys)
    assert status == 1
    assert "%s: object 1: bndbox needs numeric xmin, ymin, xmax, ymax" % xml in out
    assert "val.txt:2: annotation file not found: %s" % (root / "Annotations" / "000009.xml") in out


def test_check_config_mismatch_stops(tmp_path, capsys):
    root = tmp_path / "coco"
    coco_set(root, [], images=[(1, "a.jpg", 40, 60)])
    status, out = run_check(["--coco_root=%s" % root, "--classes=%s" % CLASSES], capsys)
    assert status == 1 and "classes lists 4 names (background included) but num_classes is 81" in out


# ------------------------------------------------------------------------------- infer.py (no model)
def fake_predictor(cfg):
    """A detector that finds one 'cat' at (0.25..0.75 of the height, 0.2..0.6 of the width), score 0.9."""
    def predict(batch):
        assert batch.shape[1:] == (3, cfg.img_shape[0], cfg.img_shape[1]) and batch.dtype == np.float32
        boxes = np.array([[[0.25, 0.2, 0.75, 0.6], [0.0, 0.0, 0.1, 0.1]]], np.float32)
        scores = np.zeros((1, 2, cfg.num_classes), np.float32)
        scores[0, 0, 2], scores[0, 1, 3] = 0.9, 0.2
        return boxes, scores
    return predict


def test_infer_folder_with_a_fake_predictor(tmp_path, monkeypatch, capsys):
    import infer
    from src.inference.visualize import class_color
    monkeypatch.setattr(infer, "make_predictor", fake_predictor)
    folder = tmp_path / "photos"
    write_image(folder / "a.png", 100, 200, value=128)
    write_image(folder / "deep" / "b.jpg", 333, 251)
    (folder / "broken.jpg").write_bytes(b"not an image")
    (folder / "notes.txt").write_text("ignored")
    out = folder / "drawn"
    write_image(out / "old.png", 10, 10)                     # earlier results are not detected again
    status = infer.main(["--classes=%s" % CLASSES, "--num_classes=4", "--input=%s" % folder,
                         "--output=%s" % out, "--score_threshold=0.5"])
    captured = capsys.readouterr()
    assert status == 0
    assert "skipped %s: not a readable image" % (folder / "broken.jpg") in captured.err
    assert "2 images, 2 detections" in captured.out and "1 unreadable image skipped" in captured.out
    with open(str(out / "detections.json")) as stream:
        doc = json.load(stream)
    assert [i["file_name"] for i in doc["images"]] == ["a.png", os.path.join("deep", "b.jpg")]
    assert [c["name"] for c in doc["categories"]] == CLASSES[1:]
    first = doc["annotations"][0]
    assert first["image_id"] == 1 and first["category_id"] == 2 and first["score"] == pytest.approx(0.9)
    assert first["bbox"] == pytest.approx([40.0, 25.0, 80.0, 50.0])
    assert doc["annotations"][1]["bbox"] == pytest.approx([0.2 * 251, 0.25 * 333, 0.4 * 251, 0.5 * 333], rel=1e-5)
    drawn = cv2.imread(str(out / "a.png"))
    assert drawn.shape == (100, 200, 3) and tuple(drawn[74, 80]) == class_color(2)
    assert (drawn[50, 60] == 128).all()
    assert cv2.imread(str(out / "deep" / "b.jpg")).shape == (333, 251, 3)


def test_infer_bad_inputs_are_one_line(tmp_path, capsys):
    import infer
    (tmp_path / "empty").mkdir()
    cases = [(["--input=%s" % (tmp_path / "nowhere")], "input not found"),
             (["--input=%s" % (tmp_path / "empty")], "no JPG/JPEG/PNG/BMP images in"),
             (["--input=%s" % (tmp_path / "empty"), "--output=%s" % (tmp_path / "empty")], "must not be the input"),
             (["--input=%s" % (tmp_path / "a.png")], "no checkpoint given")]
    write_image(tmp_path / "a.png")
    for argv, message in cases:
        output = [] if any(a.startswith("--output=") for a in argv) else ["--output=%s" % (tmp_path / "o")]
        assert infer.main(argv + output) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


# -------------------------------------------------------------------------------------- end to end
def run_script(script, args, timeout=600):
    return subprocess.run([sys.executable, os.path.join(ROOT, script)] + [str(a) for a in args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny shapes set and a one-epoch checkpoint (2 steps of 4 images), with its training log."""
    from src.data.shapes import generate_shapes
    root = tmp_path_factory.mktemp("infer_e2e")
    generate_shapes(str(root / "shapes"), num_train=8, num_val=4, seed=5)
    args = ["--coco_root=%s" % (root / "shapes"), "--mindrecord_dir=%s" % (root / "mr"),
            "--output_path=%s" % (root / "out"), "--checkpoint_path=%s" % (root / "ckpt"), "--batch_size=4",
            "--epoch_size=1", "--final_eval=False", "--log_interval=1"]
    done = run_script("train.py", args)
    assert done.returncode == 0, done.stderr[-2000:]
    return root, args, str(root / "ckpt" / "ssd-1_2.ckpt")


@pytest.mark.slow
def test_training_writes_the_csv_and_a_resumed_run_keeps_it(trained):
    root, args, _ = trained
    path = str(root / "out" / "train_log.csv")
    rows = rows_of(path)
    assert [r[:3] for r in rows[1:]] == [["1", "1", "1"], ["1", "2", "2"]]
    assert all(float(r[3]) > 0 and float(r[4]) > 0 and float(r[5]) > 0 for r in rows[1:])
    with open(path, "a") as stream:
        stream.write("2,1,3,1.5,0.01,900,\n2,2,4,1.4")        # rows of an epoch without a checkpoint
    done = run_script("train.py", args)
    assert done.returncode == 0 and "resuming from" in done.stdout, done.stderr[-2000:]
    assert rows_of(path) == rows


@pytest.mark.slow
def test_infer_on_a_folder_draws_what_the_json_lists(trained, tmp_path):
    root, _, ckpt = trained
    folder = root / "shapes" / "val2017"
    out = tmp_path / "drawn"
    done = run_script("infer.py", ["--checkpoint_file_path=%s" % ckpt, "--input=%s" % folder, "--output=%s" % out,
                                   "--score_threshold=0", "--max_boxes=3"])
    assert done.returncode == 0, done.stderr[-2000:]
    with open(str(out / "detections.json")) as stream:
        doc = json.load(stream)
    names = sorted(os.listdir(str(folder)))
    assert [i["file_name"] for i in doc["images"]] == names and len(doc["annotations"]) == 3 * len(names)
    assert "%d images, %d detections" % (len(names), 3 * len(names)) in done.stdout
    for image in doc["images"]:
        original = cv2.imread(str(folder / image["file_name"])).astype(int)
        drawn = cv2.imread(str(out / image["file_name"])).astype(int)
        assert drawn.shape == original.shape == (image["height"], image["width"], 3)
        best = max((a for a in doc["annotations"] if a["image_id"] == image["id"]), key=lambda a: a["score"])
        x, y, w, h = best["bbox"]
        left, bottom = min(int(round(x)), image["width"] - 1), min(int(round(y + h)) - 1, image["height"] - 1)
        right = max(min(int(round(x + w)) - 1, image["width"] - 1), left)
        edge = np.abs(drawn[max(bottom, 0), left:right + 1] - original[max(bottom, 0), left:right + 1]).mean()
        assert edge > 3 * np.abs(drawn - original).mean(), (image["file_name"], best)


@pytest.mark.slow
def test_eval_visualize_saves_side_by_side_images(trained):
    root, args, ckpt = trained
    done = run_script("eval.py", args + ["--checkpoint_file_path=%s" % ckpt, "--visualize=2", "--score_threshold=0"])
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1].startswith("mAP: ")
    folder = root / "out" / "visualize"
    files = sorted(os.listdir(str(folder)))
    assert len(files) == 2 and "visualize: 2 images" in done.stdout
    with open(str(root / "shapes" / "annotations" / "instances_val2017.json")) as stream:
        sizes = {i["id"]: (i["height"], i["width"]) for i in json.load(stream)["images"]}
    from src.inference.visualize import GAP
    for name in files:
        height, width = sizes[int(name.split("_")[0])]
        image = cv2.imread(str(folder / name))
        assert image.shape[1] == 2 * width + GAP and image.shape[0] > height
