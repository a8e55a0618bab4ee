"""Tests of src/data/convert.py: COCO, VOC and TXT to MindRecord, atomic publishing, reuse and staleness."""
import json
import os

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

import src.data.convert as conv
import tools.convert_dataset as convert_cli
from src.config import load_config
from src.data.convert import DatasetError, convert, ensure_mindrecord

CLASSES = ["background", "person", "cat", "dog"]


def base_cfg(tmp_path, **changes):
    """The default config pointed at tmp_path with a 4-class list."""
    cfg = load_config([]).replace(classes=CLASSES, num_classes=len(CLASSES),
                                  mindrecord_dir=str(tmp_path / "mr"))
    return cfg.replace(**changes)


def write_image(path, height=40, width=60, mode="color"):
    """A small random image file: color JPEG/PNG, grayscale or RGBA (PNG) as the suffix and mode say."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(len(str(path)))
    channels = {"color": 3, "gray": 1, "rgba": 4}[mode]
    image = rng.integers(0, 255, (height, width, channels), dtype=np.uint8)
    assert cv2.imwrite(str(path), image[..., 0] if mode == "gray" else image)


def read_rows(files):
    """Rows of MindRecord files as a dict img_id -> row, annotation as float32 [-1, 5].

    An empty annotation reads back as a 0-d array holding one 0.0 (not an empty array), so it cannot
    simply be reshaped: ndim 0 means no boxes.
    """
    import mindspore.dataset as ds
    rows = {}
    for row in ds.MindDataset(files, shuffle=False).create_dict_iterator(output_numpy=True, num_epochs=1):
        boxes = row["annotation"]
        row["annotation"] = boxes.reshape(-1, 5) if boxes.ndim else np.zeros((0, 5), np.float32)
        assert int(row["img_id"]) not in rows
        rows[int(row["img_id"])] = row
    return rows


# ----------------------------------------------------------------------------------------- COCO
def coco_dataset(root, images, annotations, split="train2017"):
    """A COCO root with non-contiguous category ids; images are (id, file_name, h, w, mode)."""
    for _, name, height, width, mode in images:
        if mode:
            write_image(root / split / name, height, width, mode)
    data = {"images": [{"id": i, "file_name": n, "height": h, "width": w} for i, n, h, w, _ in images],
            "annotations": [dict(a, id=k + 1) for k, a in enumerate(annotations)],
            "categories": [{"id": 17, "name": "cat"}, {"id": 18, "name": "dog"},
                           {"id": 90, "name": "zebra"}, {"id": 1, "name": "person"}]}
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    path = root / "annotations" / ("instances_%s.json" % split)
    path.write_text(json.dumps(data))
    return path


def ann(image_id, bbox, category_id, iscrowd=0):
    return {"image_id": image_id, "bbox": bbox, "category_id": category_id, "iscrowd": iscrowd, "area": 1.0}


@pytest.fixture
def coco(tmp_path):
    """COCO train and val splits exercising classes, clipping, crowd, empty images and odd image files."""
    root = tmp_path / "coco"
    images = [(10, "a.jpg", 40, 60, "color"), (11, "gray.png", 30, 50, "gray"),
              (12, "rgba.png", 32, 48, "rgba"), (13, "empty.jpg", 40, 60, "color"),
              (14, "crowd.jpg", 40, 60, "color"), (15, "missing.jpg", 40, 60, None),
              (16, "broken.jpg", 40, 60, None), (17, "wrongsize.jpg", 99, 99, None)]
    write_image(root / "train2017" / "wrongsize.jpg", 40, 60)
    (root / "train2017").mkdir(parents=True, exist_ok=True)
    (root / "train2017" / "broken.jpg").write_bytes(b"not an image at all")
    anns = [ann(10, [6, 4, 30, 20], 17), ann(10, [50, 30, 20, 20], 18), ann(10, [59.6, 5, 10, 10], 18),
            ann(10, [1, 1, 5, 5], 90), ann(11, [0, 0, 10, 10], 1), ann(12, [2, 2, 10, 10], 17),
            ann(14, [0, 0, 30, 30], 1, iscrowd=1), ann(14, [5, 5, 10, 10], 18)]
    coco_dataset(root, images, anns, "train2017")
    val = coco_dataset(root, [(20, "v.jpg", 40, 60, "color"), (21, "vempty.jpg", 40, 60, "color"),
                              (22, "vcrowd.jpg", 40, 60, "color")],
                       [ann(20, [6, 4, 30, 20], 17), ann(22, [0, 0, 30, 30], 1, iscrowd=1)], "val2017")
    return base_cfg(tmp_path, dataset="coco", coco_root=str(root)), root, val


def test_coco_train_classes_clipping_crowd_and_images(coco, capsys):
    cfg, root, _ = coco
    info = convert(cfg, is_training=True)
    rows = read_rows(info["files"])
    assert sorted(rows) == [10, 11, 12, 13, 14, 17]
    a = rows[10]["annotation"]
    # cat (id 17) -> label 2, dog (id 18) -> label 3; the dog box at x=50..70 is clipped to the 60 px width.
    np.testing.assert_allclose(a, [[4 / 40, 6 / 60, 24 / 40, 36 / 60, 2],
                                   [30 / 40, 50 / 60, 40 / 40, 60 / 60, 3]], rtol=1e-6)
    np.testing.assert_allclose(rows[11]["annotation"], [[0, 0, 10 / 30, 10 / 50, 1]], rtol=1e-6)
    assert (rows[11]["height"], rows[11]["width"], rows[12]["height"], rows[12]["width"]) == (30, 50, 32, 48)
    assert bytes(rows[11]["image"]) == (root / "train2017" / "gray.png").read_bytes()
    assert cv2.imdecode(np.frombuffer(rows[12]["image"], np.uint8), cv2.IMREAD_COLOR).shape == (32, 48, 3)
    assert rows[13]["annotation"].shape == (0, 5)
    assert rows[14]["annotation"][:, 4].tolist() == [3]
    assert (rows[17]["height"], rows[17]["width"]) == (40, 60)
    counts = info["counts"]
    assert counts["images_written"] == 6 and counts["boxes_written"] == 5 and info["num_images"] == 6
    assert counts["images_skipped"] == {"missing": 1, "unreadable": 1}
    assert counts["skipped_names"] == {"missing": ["missing.jpg"], "unreadable": ["broken.jpg"]}
    assert counts["boxes_dropped"] == {"unknown_class": 1, "too_small": 1, "crowd": 1, "difficult": 0}
    assert counts["unknown_classes"] == {"zebra": 1} and counts["size_mismatch"] == 1
    assert info["gt_json"] is None and info["category_ids"] == [None, 1, 17, 18]
    out = capsys.readouterr().out
    assert "wrote 6 images, 5 boxes" in out and "1 missing (missing.jpg)" in out
    assert "1 unreadable (broken.jpg)" in out and "zebra x1" in out and "1 crowd" in out
    assert "1 under 1 px after clipping" in out and "wrongsize.jpg" in out


def test_coco_eval_keeps_every_image_and_original_gt(coco):
    cfg, _, val = coco
    info = convert(cfg, is_training=False)
    rows = read_rows(info["files"])
    assert sorted(rows) == [20, 21, 22]
    assert rows[21]["annotation"].shape == (0, 5) and rows[22]["annotation"].shape == (0, 5)
    assert info["gt_json"] == str(val) and os.path.basename(info["files"][0]) == "ssd_eval.mindrecord0"
    assert info["counts"]["boxes_dropped"]["crowd"] == 1


# ----------------------------------------------------------------------------------------- VOC
def voc_xml(filename, objects, size=(40, 60)):
    body = "".join("<object><name>%s</name><difficult>%d</difficult><bndbox><xmin>%s</xmin><ymin>%s</ymin>"
                   "<xmax>%s</xmax><ymax>%s</ymax></bndbox></object>" % (n, d, *box) for n, d, box in objects)
    return ("<annotation><filename>%s</filename><size><height>%d</height><width>%d</width><depth>3</depth>"
            "</size>%s</annotation>" % (filename, size[0], size[1], body))


@pytest.fixture
def voc(tmp_path):
    root = tmp_path / "VOC2007"
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "Annotations").mkdir()
    xmls = {"000001": voc_xml("000001.jpg", [("cat", 0, (1, 1, 30, 20)), ("dog", 1, (11, 11, 40, 40))]),
            "000002": voc_xml("000002.jpg", [("horse", 0, (1, 1, 10, 10))]),
            "000003": voc_xml("000003.jpg", [])}
    for image_id, text in xmls.items():
        (root / "Annotations" / (image_id + ".xml")).write_text(text)
        write_image(root / "JPEGImages" / (image_id + ".jpg"))
    (root / "ImageSets" / "Main" / "train.txt").write_text("000001\n000002\n000003\n")
    (root / "ImageSets" / "Main" / "val.txt").write_text("000001\n\n000003\n")
    return base_cfg(tmp_path, dataset="voc", voc_root=str(root)), root


@pytest.mark.parametrize("use_difficult", [False, True])
def test_voc_difficult_and_one_based_coords(voc, use_difficult):
    cfg, _ = voc
    info = convert(cfg.replace(voc_use_difficult=use_difficult), is_training=True)
    rows = read_rows(info["files"])
    assert sorted(rows) == [1, 2, 3]
    first = rows[1]["annotation"]
    np.testing.assert_allclose(first[0], [0, 0, 20 / 40, 30 / 60, 2], rtol=1e-6)
    assert first[:, 4].tolist() == ([2, 3] if use_difficult else [2])
    assert info["counts"]["boxes_dropped"]["difficult"] == (0 if use_difficult else 1)
    assert info["counts"]["unknown_classes"] == {"horse": 1}


def test_voc_eval_gt_json(voc):
    cfg, _ = voc
    info = convert(cfg, is_training=False)
    assert info["gt_json"] == os.path.join(os.path.abspath(cfg.mindrecord_dir), "ssd_eval_gt.json")
    gt = COCO(info["gt_json"])
    assert sorted(gt.getImgIds()) == sorted(read_rows(info["files"])) == [1, 2]
    anns = gt.loadAnns(gt.getAnnIds(imgIds=[1]))
    assert [(a["category_id"], a["bbox"], a["iscrowd"]) for a in anns] == [
        (2, [0.0, 0.0, 30.0, 20.0], 0), (3, [10.0, 10.0, 30.0, 30.0], 1)]
    assert [c["name"] for c in gt.loadCats(gt.getCatIds())] == CLASSES[1:]


def test_voc_malformed_xml(voc):
    cfg, root = voc
    (root / "Annotations" / "000002.xml").write_text("<annotation><object></annotation>")
    with pytest.raises(DatasetError, match=r"000002\.xml: malformed XML"):
        convert(cfg, is_training=True)


# ----------------------------------------------------------------------------------------- TXT
@pytest.fixture
def txt(tmp_path):
    images = tmp_path / "imgs"
    for name in ("x.jpg", "sub/y.png", "z.jpg"):
        write_image(images / name)
    anno = tmp_path / "train.txt"
    anno.write_text("x.jpg 1,2,31,22,2 5.5,5,20,30.5,dog 3,3,9,9,unicorn\n\nsub/y.png\nz.jpg 10,10,10.5,30,1\n")
    return base_cfg(tmp_path, dataset="other", image_dir=str(images), anno_path=str(anno)), anno


def test_txt_index_and_name_classes(txt):
    cfg, _ = txt
    info = convert(cfg, is_training=True)
    rows = read_rows(info["files"])
    assert sorted(rows) == [1, 2, 3]
    np.testing.assert_allclose(rows[1]["annotation"], [[2 / 40, 1 / 60, 22 / 40, 31 / 60, 2],
                                                       [5 / 40, 5.5 / 60, 30.5 / 40, 20 / 60, 3]], rtol=1e-6)
    assert rows[2]["annotation"].shape == (0, 5) and rows[3]["annotation"].shape == (0, 5)
    assert info["counts"]["boxes_dropped"]["too_small"] == 1
    assert info["counts"]["unknown_classes"] == {"unicorn": 1}
    gt = COCO(convert(cfg, is_training=False)["gt_json"])
    assert sorted(gt.getImgIds()) == [1, 2, 3] and len(gt.getAnnIds()) == 2


@pytest.mark.parametrize("line, token, reason", [
    ("a.jpg 1,2,3,4,1 1,2,3,4", "1,2,3,4", "expected 5 comma-separated fields"),
    ("a.jpg 1,2,x3,4,1", "1,2,x3,4,1", "'x3' is not a number"),
    ("a.jpg 1,2,3,4,4", "1,2,3,4,4", "class index 4 out of range 1..3"),
    ("a.jpg 1,2,3,4,0", "1,2,3,4,0", "out of range"),
    ("a.jpg 1,2,3,4,1.5", "1,2,3,4,1.5", "integer index or a class name"),
])
def test_txt_malformed_line(txt, line, token, reason):
    cfg, anno = txt
    anno.write_text("x.jpg 1,2,31,22,2\n\n%s\n" % line)
    with pytest.raises(DatasetError) as err:
        convert(cfg, is_training=True)
    message = str(err.value)
    assert message.startswith("%s:3: bad box '%s': " % (anno, token)) and reason in message
    assert "\n" not in message
    assert not os.path.exists(conv.marker_path(cfg, True))


def test_txt_val_anno_path(txt, tmp_path):
    cfg, _ = txt
    val = tmp_path / "val.txt"
    val.write_text("z.jpg 1,1,20,20,cat\n")
    info = ensure_mindrecord(cfg.replace(val_anno_path=str(val)), is_training=False)
    assert sorted(read_rows(info["files"])) == [1] and info["num_boxes"] == 1


# ------------------------------------------------------------------------- atomicity and reuse
def test_reuse_and_stale_source(txt, capsys):
    cfg, anno = txt
    first = ensure_mindrecord(cfg, is_training=True)
    mtime = os.stat(first["files"][0]).st_mtime_ns
    capsys.readouterr()
    again = ensure_mindrecord(cfg, is_training=True)
    assert "reusing up-to-date MindRecord" in capsys.readouterr().out
    assert again["files"] == first["files"] and os.stat(first["files"][0]).st_mtime_ns == mtime
    anno.write_text("x.jpg 1,2,31,22,2\n")
    info = ensure_mindrecord(cfg, is_training=True)
    out = capsys.readouterr().out
    assert "stale: changed source.annotation" in out and "rebuilding" in out
    assert info["num_images"] == 1 and sorted(read_rows(info["files"])) == [1]
    ensure_mindrecord(cfg.replace(classes=["background", "person", "kitty", "dog"]), is_training=True)
    assert "stale: changed classes" in capsys.readouterr().out


def test_partial_files_without_marker_rebuilt(txt, capsys):
    cfg, _ = txt
    os.makedirs(cfg.mindrecord_dir)
    with open(os.path.join(cfg.mindrecord_dir, "ssd.mindrecord0"), "wb") as stream:
        stream.write(b"half-written shard")
    stale_tmp = os.path.join(cfg.mindrecord_dir, ".tmp-ssd.mindrecord-999999999")
    os.makedirs(stale_tmp)
    info = ensure_mindrecord(cfg, is_training=True)
    assert "partial: shard files without ssd.mindrecord.done.json" in capsys.readouterr().out
    assert sorted(read_rows(info["files"])) == [1, 2, 3] and not os.path.exists(stale_tmp)


def test_truncated_shard_is_detected_and_rebuilt(txt, capsys):
    cfg, _ = txt
    info = ensure_mindrecord(cfg, is_training=True)
    shard = info["files"][0]
    size = os.path.getsize(shard)
    with open(shard, "r+b") as stream:
        stream.truncate(size // 2)
    capsys.readouterr()
    info = ensure_mindrecord(cfg, is_training=True)
    assert ("existing MindRecord is damaged: ssd.mindrecord0 is %d bytes, the conversion wrote %d; rebuilding"
            % (size // 2, size)) in capsys.readouterr().out
    assert os.path.getsize(shard) == size and sorted(read_rows(info["files"])) == [1, 2, 3]


def test_killed_conversion_leaves_no_marker(txt, monkeypatch, capsys):
    cfg, _ = txt
    ensure_mindrecord(cfg, is_training=True)
    marker = conv.marker_path(cfg, True)
    assert os.path.exists(marker)
    real = conv.RowMaker.__call__
    seen = []

    def killed(self, sample, loaded):
        seen.append(os.path.exists(marker))
        if len(seen) == 2:
            raise KeyboardInterrupt("killed")
        return real(self, sample, loaded)

    monkeypatch.setattr(conv.RowMaker, "__call__", killed)
    with pytest.raises(KeyboardInterrupt):
        convert(cfg, is_training=True)
    monkeypatch.undo()
    assert seen == [False, False] and not os.path.exists(marker)
    assert not [n for n in os.listdir(cfg.mindrecord_dir) if n.startswith(".tmp-")]
    capsys.readouterr()
    info = ensure_mindrecord(cfg, is_training=True)
    assert "partial" in capsys.readouterr().out and os.path.exists(marker)
    assert sorted(read_rows(info["files"])) == [1, 2, 3]


def test_source_gone_reuses_finished(txt, capsys):
    cfg, anno = txt
    ensure_mindrecord(cfg, is_training=True)
    anno.unlink()
    info = ensure_mindrecord(cfg, is_training=True)
    assert "source not available" in capsys.readouterr().out and info["num_images"] == 3


def test_sharding_two_files(coco):
    cfg, _, _ = coco
    cfg = cfg.replace(mindrecord_shards=2)
    info = ensure_mindrecord(cfg, is_training=True)
    assert [os.path.basename(f) for f in info["files"]] == ["ssd.mindrecord0", "ssd.mindrecord1"]
    per_file = [sorted(read_rows([f])) for f in info["files"]]
    assert all(per_file) and sorted(per_file[0] + per_file[1]) == [10, 11, 12, 13, 14, 17]
    assert sorted(read_rows(info["files"])) == [10, 11, 12, 13, 14, 17]
    info = ensure_mindrecord(cfg.replace(mindrecord_shards=1), is_training=True)
    assert sorted(os.listdir(cfg.mindrecord_dir)) == ["ssd.mindrecord.done.json", "ssd.mindrecord0",
                                                      "ssd.mindrecord0.db"]


# ------------------------------------------------------------------------------------ bad input
def test_missing_paths(tmp_path, coco):
    cfg = base_cfg(tmp_path)
    cases = [(cfg.replace(dataset="coco", coco_root=str(tmp_path / "nope")), "--coco_root"),
             (coco[0].replace(train_data_type="train2099"), "--coco_root, --train_data_type or --instances_set"),
             (cfg.replace(dataset="voc", voc_root=""), "--voc_root"),
             (cfg.replace(dataset="other", image_dir=str(tmp_path / "nope"), anno_path="x"), "--image_dir"),
             (cfg.replace(dataset="other", image_dir=str(tmp_path), anno_path=str(tmp_path / "a.txt")),
              "--anno_path")]
    for bad, key in cases:
        with pytest.raises(DatasetError, match="not found: .*set %s" % key):
            ensure_mindrecord(bad, is_training=True)


def test_empty_split_and_unreadable_split(txt, tmp_path):
    cfg, anno = txt
    anno.write_text("\n\n")
    with pytest.raises(DatasetError, match="the split has no images"):
        convert(cfg, is_training=True)
    anno.write_text("gone.jpg\n")
    with pytest.raises(DatasetError, match=r"none of the 1 images .*1 missing \(gone.jpg\)"):
        convert(cfg, is_training=True)


def test_command_line(txt, capsys):
    cfg, anno = txt
    args = ["--dataset=other", "--image_dir=%s" % cfg.image_dir, "--anno_path=%s" % anno,
            "--mindrecord_dir=%s" % cfg.mindrecord_dir, "--classes=%s" % json.dumps(CLASSES), "--num_classes=4"]
    assert convert_cli.main(args) == 0
    names = set(os.listdir(cfg.mindrecord_dir))
    assert {"ssd.mindrecord.done.json", "ssd_eval.mindrecord.done.json", "ssd_eval_gt.json"} <= names
    anno.write_text("x.jpg 1,2\n")
    assert convert_cli.main(args) == 1
    assert "error: %s:1: bad box '1,2'" % anno in capsys.readouterr().err


def test_conversions_are_byte_identical(tmp_path):
    """The output of a conversion is a function of its input alone: two conversions of one set into
    four shards give the same files byte for byte (MindSpore's multi-shard writer did not)."""
    from src.data.shapes import generate_shapes
    generate_shapes(str(tmp_path / "shapes"), num_train=40, num_val=10, seed=2)
    folders = []
    for run in ("one", "two"):
        cfg = load_config(["--coco_root=%s" % (tmp_path / "shapes"), "--mindrecord_dir=%s" % (tmp_path / run),
                           "--mindrecord_shards=4"])
        for is_training in (True, False):
            convert(cfg, is_training)
        folders.append(str(tmp_path / run))
    names = sorted(n for n in os.listdir(folders[0]) if not n.endswith(".done.json"))
    assert len(names) == 2 * 2 * 4 and names == sorted(n for n in os.listdir(folders[1])
                                                           if not n.endswith(".done.json"))
    for name in names:
        with open(os.path.join(folders[0], name), "rb") as one, open(os.path.join(folders[1], name), "rb") as two:
            assert one.read() == two.read(), name
