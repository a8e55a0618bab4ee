"""Readers of the three annotation formats: COCO json, Pascal VOC xml and TXT lines.

Each reader checks its paths when it is built (so a typo fails before anything is written), describes
its source for the staleness fingerprint, and yields one :class:`Sample` per image of the split, in
source order. Readers only parse: clipping, class matching, dropping and the image checks are done
once for every format in :mod:`src.data.convert`.
"""
import json
import math
import os
import re
import xml.etree.ElementTree as ElementTree
from collections import defaultdict
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from src.errors import UserError


class DatasetError(UserError, ValueError):
    """Bad dataset input, told in one line naming the file, the line or record, and what is wrong."""


@dataclass
class Sample:
    """One image of a split as its annotation describes it.

    ``boxes`` are float64 ``[K, 4]`` ``x0, y0, x1, y1`` in 0-based continuous pixel coordinates,
    ``names`` the class name of each box, ``crowd`` / ``difficult`` bool ``[K]`` flags, ``size`` the
    ``(height, width)`` the annotation states (None when it states none). ``where`` names the record
    (``train.txt:7``, the xml file, ``instances.json: image id 12``) and ``box_where`` each box in it,
    for reports (:mod:`tools.check_dataset`).
    """
    img_id: int
    path: str
    file_name: str
    boxes: np.ndarray
    names: list
    crowd: np.ndarray
    difficult: np.ndarray
    size: Optional[Tuple[int, int]] = None
    where: str = ""
    box_where: Optional[list] = None


def make_sample(img_id, path, file_name, boxes, names, crowd=None, difficult=None, size=None, where="",
                box_where=None):
    """Build a :class:`Sample`, giving absent flags their all-False default."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    count = len(boxes)
    crowd = np.zeros(count, bool) if crowd is None else np.asarray(crowd, bool).reshape(count)
    difficult = np.zeros(count, bool) if difficult is None else np.asarray(difficult, bool).reshape(count)
    return Sample(int(img_id), path, file_name, boxes, list(names), crowd, difficult, size, where,
                  box_where)


def raise_or_collect(errors, err):
    """Raise ``err`` (the converter stops), or record it when a reader collects problems.

    Every reader has an ``errors`` attribute, None by default; :mod:`tools.check_dataset` sets it to a list,
    and the reader then records each bad record and skips it instead of stopping at the first.
    """
    if errors is None:
        raise err
    errors.append(err)


def require_dir(path, key, what):
    """Stop with a DatasetError naming the config key when a folder is missing."""
    if not path or not os.path.isdir(path):
        raise DatasetError("%s not found: '%s' (set --%s)" % (what, path, key))


def require_file(path, key, what):
    """Stop with a DatasetError naming the config key when a file is missing."""
    if not path or not os.path.isfile(path):
        raise DatasetError("%s not found: '%s' (set --%s)" % (what, path, key))


def file_stat(path):
    """Path, size and modification time of a file: the part of the fingerprint that notices edits."""
    stat = os.stat(path)
    return {"path": os.path.abspath(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def positive_size(height, width):
    """``(height, width)`` as ints when both are positive numbers, else None (unknown size)."""
    try:
        height, width = int(float(height)), int(float(width))
    except (TypeError, ValueError):
        return None
    return (height, width) if height > 0 and width > 0 else None


class CocoSource:
    """COCO instances json: ``coco_root/instances_set.format(data_type)``, images in ``coco_root/data_type``."""

    kind = "coco"
    errors = None

    def __init__(self, cfg, is_training):
        key = "train_data_type" if is_training else "val_data_type"
        data_type = cfg.get(key)
        require_dir(cfg.coco_root, "coco_root", "COCO root")
        self.anno_path = os.path.join(cfg.coco_root, cfg.instances_set.format(data_type))
        require_file(self.anno_path, "coco_root, --%s or --instances_set" % key, "COCO annotation file")
        self.image_dir = os.path.join(cfg.coco_root, data_type)
        require_dir(self.image_dir, "coco_root or --%s" % key, "COCO image folder")
        self.gt_json = None if is_training else os.path.abspath(self.anno_path)
        self.images = None
        self.anns = None
        self.cat_names = None

    def fingerprint(self):
        """What the MindRecord depends on besides the config: the json and the image folder."""
        return {"annotation": file_stat(self.anno_path), "image_dir": os.path.abspath(self.image_dir)}

    def load(self):
        """Read the json once: images, annotations grouped by image id, category id -> name."""
        if self.images is not None:
            return
        data = load_json(self.anno_path)
        if not isinstance(data, dict) or not isinstance(data.get("images"), list):
            raise DatasetError("%s: not a COCO instances file (no 'images' list)" % self.anno_path)
        self.cat_names = {cat.get("id"): str(cat.get("name")) for cat in data.get("categories", [])}
        self.anns = defaultdict(list)
        for ann in data.get("annotations", []):
            try:
                self.anns[ann.get("image_id")].append(check_coco_ann(self.anno_path, ann))
            except DatasetError as err:
                raise_or_collect(self.errors, err)
        self.images = data["images"]

    def __len__(self):
        self.load()
        return len(self.images)

    def __iter__(self):
        self.load()
        for index, image in enumerate(self.images):
            try:
                sample = self.sample(index, image)
            except DatasetError as err:
                raise_or_collect(self.errors, err)
                continue
            yield sample

    def sample(self, index, image):
        """The Sample of one ``images`` entry; COCO ``[x, y, w, h]`` boxes become ``x0, y0, x1, y1``."""
        if "id" not in image or not image.get("file_name"):
            raise DatasetError("%s: images[%d]: needs 'id' and 'file_name'" % (self.anno_path, index))
        anns = self.anns.get(image["id"], [])
        boxes = np.array([ann[0] for ann in anns], np.float64).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        names = [self.cat_names.get(ann[1], "category_id=%s" % ann[1]) for ann in anns]
        crowd = [ann[2] for ann in anns]
        size = positive_size(image.get("height"), image.get("width"))
        return make_sample(image["id"], os.path.join(self.image_dir, image["file_name"]),
                           image["file_name"], boxes, names, crowd=crowd, size=size,
                           where="%s: image id %s" % (self.anno_path, image["id"]),
                           box_where=["annotation id %s" % ann[3] for ann in anns])

    def category_ids(self, classes):
        """For each label (index in ``classes``), the COCO category id of that name (None if absent)."""
        self.load()
        by_name = {name: cid for cid, name in self.cat_names.items()}
        return [None] + [by_name.get(name) for name in classes[1:]]


def load_json(path):
    """json.load with a one-line DatasetError naming the file and position on bad input."""
    with open(path, encoding="utf-8") as stream:
        try:
            return json.load(stream)
        except json.JSONDecodeError as err:
            raise DatasetError("%s:%d: not valid JSON: %s" % (path, err.lineno, err.msg)) from None


def check_coco_ann(path, ann):
    """``(bbox, category_id, iscrowd, id)`` of one COCO annotation, or a DatasetError naming it."""
    bbox = ann.get("bbox")
    ok = isinstance(bbox, (list, tuple)) and len(bbox) == 4 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)
    if not ok or "image_id" not in ann:
        raise DatasetError("%s: annotation id %s: needs 'image_id' and a 'bbox' of 4 numbers, got %r"
                           % (path, ann.get("id"), bbox))
    return bbox, ann.get("category_id"), bool(ann.get("iscrowd", 0)), ann.get("id")


class VocSource:
    """Pascal VOC: ``ImageSets/Main/{train,val}.txt``, ``Annotations/<id>.xml``, ``JPEGImages/<filename>``."""

    kind = "voc"
    errors = None

    def __init__(self, cfg, is_training):
        root = cfg.voc_root
        require_dir(root, "voc_root", "VOC root")
        self.list_path = os.path.join(root, "ImageSets", "Main", "train.txt" if is_training else "val.txt")
        require_file(self.list_path, "voc_root", "VOC image list")
        self.anno_dir = os.path.join(root, "Annotations")
        require_dir(self.anno_dir, "voc_root", "VOC Annotations folder")
        self.image_dir = os.path.join(root, "JPEGImages")
        require_dir(self.image_dir, "voc_root", "VOC JPEGImages folder")
        self.gt_json = None
        self.ids = None

    def fingerprint(self):
        """The image list, plus the Annotations folder's mtime (it changes when xml files come or go)."""
        return {"annotation": file_stat(self.list_path),
                "annotations_dir_mtime_ns": os.stat(self.anno_dir).st_mtime_ns,
                "image_dir": os.path.abspath(self.image_dir)}

    def load(self):
        """Read the image ids of the split (first word of each non-blank line)."""
        if self.ids is None:
            with open(self.list_path, encoding="utf-8") as stream:
                self.ids = [(num, line.split()[0]) for num, line in enumerate(stream, 1) if line.strip()]

    def __len__(self):
        self.load()
        return len(self.ids)

    def __iter__(self):
        self.load()
        for index, (lineno, image_id) in enumerate(self.ids, 1):
            xml_path = os.path.join(self.anno_dir, image_id + ".xml")
            try:
                if not os.path.isfile(xml_path):
                    raise DatasetError("%s:%d: annotation file not found: %s" % (self.list_path, lineno, xml_path))
                sample = parse_voc_xml(xml_path, index, self.image_dir, image_id, self.errors)
            except DatasetError as err:
                raise_or_collect(self.errors, err)
                continue
            yield sample

    def category_ids(self, classes):
        """Labels are the category ids of the gt json this converter writes."""
        return [None] + list(range(1, len(classes)))


def parse_voc_xml(xml_path, img_id, image_dir, image_id, errors=None):
    """The Sample of one VOC xml file; a malformed file stops with a DatasetError naming it.

    With an ``errors`` list a bad bndbox is recorded there and its object skipped.
    """
    try:
        root = ElementTree.parse(xml_path).getroot()
    except ElementTree.ParseError as err:
        raise DatasetError("%s: malformed XML: %s" % (xml_path, err)) from None
    file_name = (root.findtext("filename") or "").strip() or image_id + ".jpg"
    size = positive_size(root.findtext("size/height"), root.findtext("size/width"))
    boxes, names, difficult, box_where = [], [], [], []
    for number, obj in enumerate(root.findall("object"), 1):
        try:
            boxes.append(voc_bndbox(xml_path, number, obj))
        except DatasetError as err:
            raise_or_collect(errors, err)
            continue
        names.append((obj.findtext("name") or "").strip())
        difficult.append((obj.findtext("difficult") or "0").strip() not in ("0", ""))
        box_where.append("object %d" % number)
    boxes = np.array(boxes, np.float64).reshape(-1, 4)
    # VOC pixel coordinates are 1-based and inclusive: pixel i covers [i - 1, i] in continuous
    # 0-based coordinates, so the usual conversion subtracts 1 from xmin and ymin only.
    boxes[:, :2] -= 1.0
    return make_sample(img_id, os.path.join(image_dir, file_name), file_name, boxes, names,
                       difficult=difficult, size=size, where=xml_path, box_where=box_where)


def voc_bndbox(xml_path, number, obj):
    """``[xmin, ymin, xmax, ymax]`` of one VOC object as floats, or a DatasetError naming it."""
    values = [obj.findtext("bndbox/" + tag) for tag in ("xmin", "ymin", "xmax", "ymax")]
    try:
        coords = [float(v) for v in values]
    except (TypeError, ValueError):
        coords = None
    if coords is None or not all(math.isfinite(v) for v in coords):
        raise DatasetError("%s: object %d: bndbox needs numeric xmin, ymin, xmax, ymax, got %s"
                           % (xml_path, number, values))
    return coords


INTEGER = re.compile(r"[+-]?\d+")


class TxtSource:
    """TXT (``dataset: other``): ``relative/path.jpg x0,y0,x1,y1,cls ...`` per line, paths under image_dir."""

    kind = "other"
    errors = None

    def __init__(self, cfg, is_training):
        key = "anno_path" if is_training or not cfg.get("val_anno_path") else "val_anno_path"
        self.anno_path = cfg.get(key)
        require_dir(cfg.image_dir, "image_dir", "image folder")
        require_file(self.anno_path, key, "TXT annotation file")
        self.image_dir = cfg.image_dir
        self.classes = list(cfg.classes)
        self.gt_json = None
        self.samples = None

    def fingerprint(self):
        """The annotation file and the image folder it is relative to."""
        return {"annotation": file_stat(self.anno_path), "image_dir": os.path.abspath(self.image_dir)}

    def load(self):
        """Parse every line up front, so a malformed line stops before any image is read."""
        if self.samples is not None:
            return
        samples = []
        with open(self.anno_path, encoding="utf-8") as stream:
            for lineno, line in enumerate(stream, 1):
                if line.strip():
                    samples.append(self.parse_line(lineno, line, len(samples) + 1))
        self.samples = samples

    def parse_line(self, lineno, line, img_id):
        """One non-blank line: the image path then zero or more ``x0,y0,x1,y1,cls`` boxes."""
        tokens = line.split()
        boxes, names, box_where = [], [], []
        for token in tokens[1:]:
            try:
                coords, name = parse_txt_box(self.anno_path, lineno, token, self.classes)
            except DatasetError as err:
                raise_or_collect(self.errors, err)
                continue
            boxes.append(coords)
            names.append(name)
            box_where.append("box '%s'" % token)
        return make_sample(img_id, os.path.join(self.image_dir, tokens[0]), tokens[0], boxes, names,
                           where="%s:%d" % (self.anno_path, lineno), box_where=box_where)

    def __len__(self):
        self.load()
        return len(self.samples)

    def __iter__(self):
        self.load()
        return iter(self.samples)

    def category_ids(self, classes):
        """Labels are the category ids of the gt json this converter writes."""
        return [None] + list(range(1, len(classes)))


def parse_txt_box(path, lineno, token, classes):
    """``([x0, y0, x1, y1], class name)`` of one box token; a bad token stops with FILE:LINE: bad box."""
    def bad(reason):
        return DatasetError("%s:%d: bad box '%s': %s" % (path, lineno, token, reason))

    fields = token.split(",")
    if len(fields) != 5:
        raise bad("expected 5 comma-separated fields x0,y0,x1,y1,cls, got %d" % len(fields))
    coords = []
    for field in fields[:4]:
        try:
            value = float(field)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise bad("'%s' is not a number" % field)
        coords.append(value)
    return coords, txt_class_name(fields[4], classes, bad)


def txt_class_name(cls, classes, bad):
    """The class name of a TXT ``cls`` field: an index 1..len(classes)-1 or a name (kept as written)."""
    if not cls:
        raise bad("the class field is empty")
    if INTEGER.fullmatch(cls):
        index = int(cls)
        if not 1 <= index < len(classes):
            raise bad("class index %d out of range 1..%d" % (index, len(classes) - 1))
        return classes[index]
    try:
        float(cls)
    except ValueError:
        return cls
    raise bad("class '%s' must be an integer index or a class name" % cls)


SOURCES = {"coco": CocoSource, "voc": VocSource, "other": TxtSource}


def make_source(cfg, is_training):
    """The reader for ``cfg.dataset`` and the split (training or evaluation)."""
    if cfg.dataset not in SOURCES:
        raise DatasetError("unknown dataset '%s' (set --dataset to coco, voc or other)" % cfg.dataset)
    return SOURCES[cfg.dataset](cfg, is_training)
