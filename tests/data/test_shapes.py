"""Tests of the synthetic shapes set (src/data/shapes.py)."""
import json
import os

import numpy as np
import pytest
import yaml
from pycocotools.coco import COCO

from src.config import DEFAULT_CONFIG
from src.data import shapes
from tools import make_shapes

NUM_TRAIN, NUM_VAL = 16, 6


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory):
    return shapes.generate_shapes(str(tmp_path_factory.mktemp("gen") / "shapes"), NUM_TRAIN, NUM_VAL, seed=3)


def load_coco(root, folder):
    return COCO(os.path.join(root, "annotations", "instances_%s.json" % folder))


def read_tree(root):
    """Every file under ``root`` as {relative path: bytes}."""
    files = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as stream:
                files[os.path.relpath(path, root)] = stream.read()
    return files


def test_class_tables_match_config():
    with open(DEFAULT_CONFIG, encoding="utf-8") as stream:
        classes = next(yaml.safe_load_all(stream))["classes"]
    assert list(shapes.COCO_NAMES) == classes[1:]
    assert len(shapes.COCO_IDS) == 80 and len(set(shapes.COCO_IDS)) == 80
    assert shapes.COCO_IDS[0] == 1 and shapes.COCO_IDS[-1] == 90 and 12 not in shapes.COCO_IDS
    assert set(shapes.SHAPE_CLASSES.values()) <= set(classes)
    assert shapes.DEFAULT_SHAPES_ROOT == "./data/shapes"


def test_layout(shapes_root):
    for folder, count in (("train2017", NUM_TRAIN), ("val2017", NUM_VAL)):
        assert len(os.listdir(os.path.join(shapes_root, folder))) == count
    meta = json.load(open(os.path.join(shapes_root, "SHAPES.json")))
    assert (meta["seed"], meta["num_train"], meta["num_val"]) == (3, NUM_TRAIN, NUM_VAL)
    assert not [n for n in os.listdir(os.path.dirname(shapes_root)) if ".tmp-" in n or ".old-" in n]


def test_determinism(shapes_root, tmp_path):
    again = shapes.generate_shapes(str(tmp_path / "again"), NUM_TRAIN, NUM_VAL, seed=3)
    assert read_tree(again) == read_tree(shapes_root)
    other = shapes.generate_shapes(str(tmp_path / "other"), 2, 0, seed=4)
    assert read_tree(other)["train2017/000001.jpg"] != read_tree(shapes_root)["train2017/000001.jpg"]


def test_worker_processes_write_the_same_set(shapes_root, tmp_path, monkeypatch):
    """Large sets are drawn by worker processes; the files are those one process writes."""
    monkeypatch.setattr(shapes, "PARALLEL_MIN_IMAGES", 1)
    monkeypatch.setattr(shapes.os, "cpu_count", lambda: 2)
    parallel = shapes.generate_shapes(str(tmp_path / "parallel"), NUM_TRAIN, NUM_VAL, seed=3)
    assert read_tree(parallel) == read_tree(shapes_root)


@pytest.mark.parametrize("folder", ["train2017", "val2017"])
def test_coco_json(shapes_root, folder):
    coco = load_coco(shapes_root, folder)
    cats = coco.loadCats(coco.getCatIds())
    assert [c["id"] for c in cats] == list(shapes.COCO_IDS)
    assert [c["name"] for c in cats] == list(shapes.COCO_NAMES)
    for img in coco.loadImgs(coco.getImgIds()):
        assert 200 <= img["height"] <= 500 and 200 <= img["width"] <= 500
        assert os.path.isfile(os.path.join(shapes_root, folder, img["file_name"]))
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img["id"]))
        assert 1 <= len(anns) <= 6
        for ann in anns:
            x, y, w, h = ann["bbox"]
            assert w > 0 and h > 0 and x >= 0 and y >= 0
            assert x + w <= img["width"] and y + h <= img["height"]
            assert ann["area"] == pytest.approx(w * h) and ann["iscrowd"] == 0


def test_variety(shapes_root):
    coco = load_coco(shapes_root, "train2017")
    assert len({a["category_id"] for a in coco.dataset["annotations"]}) >= 3
    sizes = {(i["height"], i["width"]) for i in coco.dataset["images"]}
    assert any(h != w for h, w in sizes) and len(sizes) > NUM_TRAIN // 2
    touching, overlapping = 0, 0
    for img in coco.dataset["images"]:
        boxes = np.array([a["bbox"] for a in coco.loadAnns(coco.getAnnIds(imgIds=img["id"]))])
        x0, y0, x1, y1 = boxes[:, 0], boxes[:, 1], boxes[:, 0] + boxes[:, 2], boxes[:, 1] + boxes[:, 3]
        touching += np.sum((x0 == 0) | (y0 == 0) | (x1 == img["width"]) | (y1 == img["height"]))
        inter_w = np.minimum(x1[:, None], x1[None]) - np.maximum(x0[:, None], x0[None])
        inter_h = np.minimum(y1[:, None], y1[None]) - np.maximum(y0[:, None], y0[None])
        overlap = (inter_w > 0) & (inter_h > 0)
        overlapping += (overlap.sum() - len(boxes)) // 2
    assert touching > 0 and overlapping > 0


@pytest.mark.parametrize("split,folder", shapes.SPLITS)
def test_txt_agrees_with_json(shapes_root, split, folder):
    coco = load_coco(shapes_root, folder)
    names = ["background"] + list(shapes.COCO_NAMES)
    lines = open(os.path.join(shapes_root, "%s.txt" % split)).read().splitlines()
    assert len(lines) == len(coco.dataset["images"])
    for line in lines:
        path, *objects = line.split()
        assert os.path.isfile(os.path.join(shapes_root, path))
        img = [i for i in coco.dataset["images"] if "%s/%s" % (folder, i["file_name"]) == path][0]
        expected = [[int(x), int(y), int(x + w), int(y + h), names.index(coco.cats[a["category_id"]]["name"])]
                    for a in coco.loadAnns(coco.getAnnIds(imgIds=img["id"])) for x, y, w, h in [a["bbox"]]]
        assert [[int(v) for v in o.split(",")] for o in objects] == expected


def test_ensure_shapes_reuses(shapes_root, capsys):
    before = os.stat(os.path.join(shapes_root, "SHAPES.json")).st_mtime_ns
    assert shapes.ensure_shapes(shapes_root, NUM_TRAIN, NUM_VAL, 3) == shapes_root
    assert os.stat(os.path.join(shapes_root, "SHAPES.json")).st_mtime_ns == before
    assert capsys.readouterr().out == ""


def test_ensure_shapes_generates_and_regenerates(tmp_path, capsys):
    root = str(tmp_path / "data" / "shapes")
    shapes.ensure_shapes(root, 3, 1, 0)
    assert len(capsys.readouterr().out.strip().splitlines()) == 1
    assert len(os.listdir(os.path.join(root, "train2017"))) == 3
    shapes.ensure_shapes(root, 2, 2, 0)
    assert len(os.listdir(os.path.join(root, "val2017"))) == 2
    assert sorted(os.listdir(tmp_path / "data")) == ["shapes"]


def test_ensure_shapes_refuses_foreign_dir(tmp_path):
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    with pytest.raises(ValueError, match="not a shapes set"):
        shapes.ensure_shapes(str(root), 2, 1, 0)
    assert os.listdir(root) == ["annotations"]
    with pytest.raises(ValueError, match="not a shapes set"):
        shapes.generate_shapes(str(root), 2, 1, 0)


def test_cli(tmp_path, capsys):
    assert make_shapes.main(["--out", str(tmp_path / "cli"), "--num_train", "2", "--num_val", "1", "--seed", "5"]) == 0
    assert json.load(open(tmp_path / "cli" / "SHAPES.json"))["seed"] == 5
    assert "wrote 2 train and 1 val" in capsys.readouterr().out
