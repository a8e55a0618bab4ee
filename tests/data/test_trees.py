"""The real tree set (src/data/trees.py, python -m tools.make_trees): aerial photographs with their authors'
boxes, from the deepforest package's data files (pip install --no-deps -r requirements-data.txt), as a VOC
folder the converter reads like any user's."""
import hashlib
import importlib.metadata
import os

import numpy as np
import pytest

from src.config import load_config
from src.data import trees
from src.data.sources import make_source
from src.errors import UserError
from tools.make_trees import main as make_trees_main


@pytest.fixture(scope="module")
def tree_set(tmp_path_factory):
    return trees.build_trees(str(tmp_path_factory.mktemp("trees") / "trees"))


def folder_digest(root):
    digest = hashlib.sha256()
    for folder, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            path = os.path.join(folder, name)
            digest.update(os.path.relpath(path, root).encode())
            with open(path, "rb") as stream:
                digest.update(stream.read())
    return digest.hexdigest()


def test_the_set_is_real_and_large_enough(tree_set):
    """At least 50 training tiles and 300 boxes; validation from other places (another Yellowstone tile
    and two other sites); where it came from and its licence recorded with checksums."""
    splits = tree_set["splits"]
    assert splits["train"]["images"] >= 50 and splits["train"]["boxes"] >= 300
    assert splits["val"]["images"] >= 10 and splits["val"]["boxes"] >= 300
    sources = {s["image"]: s for s in tree_set["sources"]}
    train_images = [name for name, s in sources.items() if s["split"] == "train"]
    assert train_images == ["2019_YELL_2_528000_4978000_image_crop2.png"]
    assert {s["site"].split(" (")[0] for s in sources.values() if s["split"] == "val"} >= {
        "Ordway-Swisher, FL", "Soaproot Saddle, CA"}
    assert "MIT" in tree_set["licence"] and tree_set["package"] == "deepforest"
    assert all(len(s["image_sha256"]) == 64 for s in sources.values())


def test_two_builds_are_byte_identical(tree_set, tmp_path):
    """The set is a function of the package files alone: two builds hold the same bytes (so two runs of
    one command train on the same data)."""
    for name in ("one", "two"):
        assert trees.build_trees(str(tmp_path / name)) == tree_set
    assert folder_digest(str(tmp_path / "one")) == folder_digest(str(tmp_path / "two"))


def test_the_converter_reads_it_as_voc(tmp_path):
    root = str(tmp_path / "trees")
    meta = trees.build_trees(root)
    cfg = load_config(["--config_path=config/custom.yaml", "--voc_root=%s" % root, "--classes=[background,tree]",
                       "--num_classes=2"])
    for is_training, split in ((True, "train"), (False, "val")):
        samples = list(make_source(cfg, is_training))
        assert len(samples) == meta["splits"][split]["images"]
        difficult = sum(int(np.sum(s.difficult)) for s in samples)
        assert sum(len(s.boxes) for s in samples) - difficult == meta["splits"][split]["boxes"]
        assert difficult == meta["splits"][split]["difficult"]
        assert all(set(s.names) <= {"tree"} for s in samples)


def test_tiles_cover_the_image_and_cut_boxes_become_difficult():
    assert trees.tile_starts(320, 320) == [0]
    starts = trees.tile_starts(1035, 320)
    assert starts[0] == 0 and starts[-1] == 1035 - 320 and len(starts) == 4
    assert all(b - a <= 320 for a, b in zip(starts, starts[1:]))
    boxes = np.array([[10, 10, 50, 50], [300, 10, 340, 50], [310, 10, 350, 50], [400, 400, 420, 420]], np.float64)
    kept, difficult = trees.tile_boxes(boxes, 0, 0, 320, 320)
    np.testing.assert_array_equal(kept, [[10, 10, 50, 50], [300, 10, 320, 50], [310, 10, 320, 50]])
    np.testing.assert_array_equal(difficult, [False, False, True])  # half inside is kept, a quarter is not


def test_without_the_package_it_says_what_to_install(monkeypatch, tmp_path, capsys):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)
    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(UserError, match="pip install --no-deps -r requirements-data.txt"):
        trees.package_file("OSBS_029.png")
    assert make_trees_main(["--out", str(tmp_path / "t")]) == 1
    assert capsys.readouterr().err.count("\n") == 1


def test_a_folder_of_other_data_is_never_replaced(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "photo.jpg").write_bytes(b"x")
    with pytest.raises(UserError, match="is not a tree set"):
        trees.build_trees(str(mine))
    assert (mine / "photo.jpg").read_bytes() == b"x"
