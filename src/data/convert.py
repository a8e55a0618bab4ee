"""Conversion of COCO json, VOC xml and TXT datasets to sharded MindRecord files.

The layout and row schema are those of docs/interfaces.md: ``ssd.mindrecord*`` (training) and
``ssd_eval.mindrecord*`` (evaluation) in ``cfg.mindrecord_dir``, each finished split marked by
``<prefix>.done.json``. A conversion writes into a private temporary folder, commits, moves the shard
files in and writes the marker last, so a run killed at any moment never leaves files that a later run
takes for finished (MindSpore can crash reading a MindRecord whose commit was interrupted).

Public API: :func:`ensure_mindrecord` (reuse when up to date, else build), :func:`convert` (always
build) and :class:`DatasetError`; the command line is ``python -m tools.convert_dataset [--key=value ...]``.
"""
import json
import os
import re
import shutil
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import compress, islice

import cv2
import numpy as np
from mindspore.mindrecord import FileWriter
from tqdm import tqdm

from src.data.sources import DatasetError, make_source

__all__ = ["DatasetError", "ensure_mindrecord", "convert"]

FORMAT_VERSION = 1
TRAIN_PREFIX = "ssd.mindrecord"
EVAL_PREFIX = "ssd_eval.mindrecord"
GT_JSON_NAME = "ssd_eval_gt.json"
BATCH_ROWS = 64
NAMES_SHOWN = 5
NAMES_KEPT = 20
MAX_SHARDS = 1000
TMP_DIR = re.compile(r"\.tmp-.+-(\d+)")
SCHEMA = {
    "img_id": {"type": "int64"},
    "image": {"type": "bytes"},
    "annotation": {"type": "float32", "shape": [-1, 5]},
    "height": {"type": "int32"},
    "width": {"type": "int32"},
}
DROP_REASONS = {
    "unknown_class": "unknown class",
    "too_small": "under 1 px after clipping",
    "crowd": "crowd (iscrowd)",
    "difficult": "difficult (voc_use_difficult is False)",
}


def split_prefix(is_training):
    """File prefix of a split inside mindrecord_dir."""
    return TRAIN_PREFIX if is_training else EVAL_PREFIX


def marker_path(cfg, is_training):
    """``<prefix>.done.json``: present only once a split is completely written."""
    return os.path.join(cfg.mindrecord_dir, split_prefix(is_training) + ".done.json")


def shard_names(prefix, shards):
    """Basenames of the shard files: ``<prefix>0 .. <prefix>{shards-1}``."""
    return ["%s%d" % (prefix, index) for index in range(shards)]


def check_config(cfg):
    """The output keys must make sense before anything is read or written."""
    if not cfg.mindrecord_dir:
        raise DatasetError("no output folder: set --mindrecord_dir")
    shards = cfg.mindrecord_shards
    if isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= MAX_SHARDS:
        raise DatasetError("--mindrecord_shards must be a whole number 1..%d, got %r" % (MAX_SHARDS, shards))
    if len(cfg.classes) != cfg.num_classes:
        raise DatasetError("classes lists %d names (background included) but num_classes is %d: "
                           "set --classes or --num_classes" % (len(cfg.classes), cfg.num_classes))


# ----------------------------------------------------------------------------------------- counting
class Summary:
    """What one conversion wrote, skipped and dropped, and why; printed at the end and kept in the marker."""

    def __init__(self):
        self.images = 0
        self.boxes = 0
        self.skipped = {"missing": [], "unreadable": []}
        self.dropped = Counter({reason: 0 for reason in DROP_REASONS})
        self.unknown = Counter()
        self.size_mismatch = []

    def to_dict(self):
        """JSON-ready counts (with the first few names of skipped and mismatched images)."""
        return {"images_written": self.images, "boxes_written": self.boxes,
                "images_skipped": {reason: len(names) for reason, names in self.skipped.items()},
                "skipped_names": {reason: names[:NAMES_KEPT] for reason, names in self.skipped.items()},
                "boxes_dropped": dict(self.dropped), "unknown_classes": dict(self.unknown.most_common()),
                "size_mismatch": len(self.size_mismatch), "size_mismatch_names": self.size_mismatch[:NAMES_KEPT]}

    def skipped_text(self):
        """``2 missing (a.jpg, b.jpg), 1 unreadable (c.png)``."""
        return ", ".join("%d %s (%s)" % (len(names), reason, shown(names))
                         for reason, names in self.skipped.items() if names)

    def lines(self, prefix, directory, shards):
        """The closing report: one line written, then one per kind of loss that happened."""
        out = ["%s: wrote %d images, %d boxes to %s (%d shard%s)"
               % (prefix, self.images, self.boxes, directory, shards, "" if shards == 1 else "s")]
        if any(self.skipped.values()):
            out.append("  images skipped: " + self.skipped_text())
        dropped = ["%d %s" % (count, DROP_REASONS[reason]) for reason, count in self.dropped.items() if count]
        if dropped:
            out.append("  boxes dropped: " + ", ".join(dropped))
        if self.unknown:
            out.append("  unknown class names: " + ", ".join("%s x%d" % kv for kv in self.unknown.most_common()))
        if self.size_mismatch:
            out.append("  warning: %d images differ in size from their annotation, the decoded size is used (%s)"
                       % (len(self.size_mismatch), shown(self.size_mismatch)))
        return out


def shown(names):
    """The first few names of a list, with a count of the rest."""
    text = ", ".join(names[:NAMES_SHOWN])
    return text + (", ... %d more" % (len(names) - NAMES_SHOWN) if len(names) > NAMES_SHOWN else "")


# ------------------------------------------------------------------------------------ image and boxes
def read_image(path):
    """``(bytes, height, width, None)`` for an image cv2 can decode, else ``(None, 0, 0, reason)``.

    The original bytes are stored; the size comes from decoding exactly as the pipeline will
    (IMREAD_COLOR turns grayscale, RGBA and PNG images into 3-channel BGR).
    """
    try:
        with open(path, "rb") as stream:
            data = stream.read()
    except FileNotFoundError:
        return None, 0, 0, "missing"
    except OSError:
        return None, 0, 0, "unreadable"
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    except cv2.error:
        image = None
    if image is None:
        return None, 0, 0, "unreadable"
    return data, int(image.shape[0]), int(image.shape[1]), None


@dataclass
class Selection:
    """Boxes of one image after clipping: which are training targets, which go to a written gt json."""
    boxes: np.ndarray
    labels: np.ndarray
    unknown: np.ndarray
    target: np.ndarray
    kept: np.ndarray
    ignore: np.ndarray
    drops: dict


def select_boxes(sample, height, width, class_index, use_difficult):
    """Clip a sample's boxes to the image and sort them, vectorised over the boxes.

    A box is dropped for the first reason that applies: its class is not in ``classes``, it is under
    1 px wide or high after clipping, it is a COCO crowd region, or it is VOC difficult while
    ``voc_use_difficult`` is off. ``kept`` (known class, not too small) is what a written gt json holds,
    with crowd and difficult boxes flagged ``ignore`` (iscrowd=1) so they count neither way.
    """
    labels = np.array([class_index.get(name, -1) for name in sample.names], np.int64)
    boxes = sample.boxes.copy()
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
    unknown = labels < 0
    small = ~unknown & ((boxes[:, 2] - boxes[:, 0] < 1) | (boxes[:, 3] - boxes[:, 1] < 1))
    kept = ~unknown & ~small
    crowd = kept & sample.crowd
    difficult = kept & ~crowd & sample.difficult & (not use_difficult)
    drops = {"unknown_class": int(unknown.sum()), "too_small": int(small.sum()),
             "crowd": int(crowd.sum()), "difficult": int(difficult.sum())}
    return Selection(boxes, labels, unknown, kept & ~crowd & ~difficult, kept,
                     sample.crowd | sample.difficult, drops)


def annotation_rows(selection, height, width):
    """float32 ``[M, 5]`` rows ``[ymin, xmin, ymax, xmax, label]`` of the targets, normalised to [0, 1]."""
    boxes = selection.boxes[selection.target]
    scale = np.array([height, width, height, width], np.float64)
    yxyx = boxes[:, [1, 0, 3, 2]] / scale
    return np.concatenate([yxyx, selection.labels[selection.target, None]], axis=1).astype(np.float32)


class GtJson:
    """COCO-format ground truth of an evaluation split, written for the formats that have none (VOC, TXT).

    Category ids are label indices; crowd and VOC difficult boxes are written with iscrowd=1, which
    pycocotools treats as regions to ignore (a detection there is neither a hit nor a false positive).
    """

    def __init__(self, classes):
        self.images, self.annotations = [], []
        self.categories = [{"id": index, "name": name, "supercategory": "none"}
                           for index, name in enumerate(classes) if index > 0]

    def add(self, sample, height, width, selection):
        """Record one written image and its kept boxes (``[x, y, w, h]`` in pixels)."""
        self.images.append({"id": sample.img_id, "file_name": sample.file_name, "height": height, "width": width})
        boxes = selection.boxes[selection.kept]
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
        area = xywh[:, 2] * xywh[:, 3]
        labels, ignore = selection.labels[selection.kept], selection.ignore[selection.kept]
        for bbox, size, label, flag in zip(xywh.tolist(), area.tolist(), labels.tolist(), ignore.tolist()):
            self.annotations.append({"id": len(self.annotations) + 1, "image_id": sample.img_id,
                                     "category_id": label, "bbox": bbox, "area": size, "iscrowd": int(flag)})

    def to_dict(self):
        """The json document (pycocotools reads it with COCO(path))."""
        return {"info": {"description": "SSD evaluation ground truth written by src/data/convert.py"},
                "images": self.images, "annotations": self.annotations, "categories": self.categories}


# ---------------------------------------------------------------------------------------- writing
@dataclass
class RowMaker:
    """Turns a sample and its loaded image into a MindRecord row, counting what it skips and drops."""
    class_index: dict
    use_difficult: bool
    summary: Summary
    gt: GtJson = None

    def __call__(self, sample, loaded):
        data, height, width, reason = loaded
        if reason:
            self.summary.skipped[reason].append(sample.file_name)
            return None
        if sample.size is not None and sample.size != (height, width):
            self.summary.size_mismatch.append(sample.file_name)
        selection = select_boxes(sample, height, width, self.class_index, self.use_difficult)
        rows = annotation_rows(selection, height, width)
        self.count(sample, selection, len(rows))
        if self.gt is not None:
            self.gt.add(sample, height, width, selection)
        return {"img_id": sample.img_id, "image": data, "annotation": rows, "height": height, "width": width}

    def count(self, sample, selection, written):
        """Add one written image to the summary."""
        self.summary.images += 1
        self.summary.boxes += written
        self.summary.dropped.update(selection.drops)
        self.summary.unknown.update(compress(sample.names, selection.unknown))


def batches(iterable, size):
    """Consecutive lists of ``size`` items (the last may be shorter)."""
    iterator = iter(iterable)
    while True:
        chunk = list(islice(iterator, size))
        if not chunk:
            return
        yield chunk


def write_shards(source, cfg, tmp_dir, prefix, make_row):
    """Write every readable image of the split into ``mindrecord_shards`` files in tmp_dir and commit.

    Images are read and decoded by a thread pool, a batch at a time, and written every BATCH_ROWS rows,
    so memory stays flat whatever the size of the dataset. Row i of the split goes to shard i mod S,
    each shard through its own single-file writer: MindSpore's multi-shard writer spreads rows over its
    files in an order that changes from run to run, and the seeded shuffle would then see other data.
    So the files are a function of the source alone, byte for byte.
    """
    names = shard_names(prefix, cfg.mindrecord_shards)
    writers = [FileWriter(os.path.join(tmp_dir, name), shard_num=1) for name in names]
    for writer in writers:
        writer.add_schema(SCHEMA, "ssd")
    written = 0
    bar = tqdm(total=len(source), desc=prefix, unit="img", file=sys.stderr, disable=not sys.stderr.isatty())
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool, bar:
        for batch in batches(source, BATCH_ROWS):
            loaded = pool.map(read_image, [sample.path for sample in batch])
            rows = [row for row in map(make_row, batch, loaded) if row is not None]
            for shard, writer in enumerate(writers):
                part = rows[(shard - written) % len(writers)::len(writers)]
                if part:
                    writer.write_raw_data(part)
            written += len(rows)
            bar.update(len(batch))
    if make_row.summary.images == 0:
        raise DatasetError("%s: none of the %d images of the split could be read: %s"
                           % (source_path(source), len(source), make_row.summary.skipped_text()))
    for writer in writers:
        writer.commit()
    return names


def source_path(source):
    """The annotation file a source reads (for messages)."""
    return source.fingerprint()["annotation"]["path"]


# -------------------------------------------------------------------------------- files and marker
def write_json(path, obj, tmp_dir):
    """Write json into tmp_dir under the final basename, then os.replace it to ``path`` (atomic)."""
    tmp_path = os.path.join(tmp_dir, os.path.basename(path))
    with open(tmp_path, "w", encoding="utf-8") as stream:
        json.dump(obj, stream, indent=1)
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(tmp_path, path)


def old_shards(directory, prefix):
    """Shard and index files of a prefix in a folder (``<prefix>``, ``<prefix>N``, with or without .db)."""
    pattern = re.compile(re.escape(prefix) + r"\d*(\.db)?")
    return sorted(name for name in os.listdir(directory) if pattern.fullmatch(name))


def pid_alive(pid):
    """Whether a process id is running (used to leave other live conversions' temporary folders alone)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_tmp_dirs(directory):
    """Remove ``.tmp-*-<pid>`` folders left by conversions that were killed."""
    for name in os.listdir(directory):
        match = TMP_DIR.fullmatch(name)
        path = os.path.join(directory, name)
        if match and os.path.isdir(path) and not pid_alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)


def publish(cfg, is_training, tmp_dir, names, marker):
    """Replace the old shards by the committed ones, then write the marker last."""
    directory = cfg.mindrecord_dir
    for name in old_shards(directory, split_prefix(is_training)):
        os.remove(os.path.join(directory, name))
    for name in names:
        for part in (name, name + ".db"):
            os.replace(os.path.join(tmp_dir, part), os.path.join(directory, part))
    write_json(marker_path(cfg, is_training), marker, tmp_dir)
    return resolve_marker(marker, directory)


def resolve_marker(marker, directory):
    """The marker with ``files`` (and a gt json written here) as absolute paths under ``directory``."""
    info = dict(marker)
    info["files"] = [os.path.abspath(os.path.join(directory, name)) for name in marker["shard_names"]]
    if marker.get("gt_json_name"):
        info["gt_json"] = os.path.abspath(os.path.join(directory, marker["gt_json_name"]))
    return info


def read_marker(cfg, is_training):
    """The parsed marker of a split with absolute paths, or None when it is absent or unreadable."""
    path = marker_path(cfg, is_training)
    try:
        with open(path, encoding="utf-8") as stream:
            marker = json.load(stream)
        return resolve_marker(marker, cfg.mindrecord_dir)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def missing_files(info):
    """Files a finished split needs (shards, their .db, the gt json) that are not there."""
    needed = info["files"] + [name + ".db" for name in info["files"]]
    needed += [info["gt_json"]] if info.get("gt_json") else []
    return [path for path in needed if not os.path.isfile(path)]


def fingerprint(cfg, source, is_training):
    """Everything the MindRecord of a split depends on; a difference means it must be rebuilt."""
    values = {"format_version": FORMAT_VERSION, "dataset": cfg.dataset,
              "split": "train" if is_training else "eval", "source": source.fingerprint(),
              "classes": list(cfg.classes), "shards": cfg.mindrecord_shards}
    if cfg.dataset == "voc":
        values["voc_use_difficult"] = bool(cfg.get("voc_use_difficult", False))
    return json.loads(json.dumps(values))


def flatten(values, prefix=""):
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (for naming what changed between two fingerprints)."""
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(flatten(value, prefix + key + "."))
        else:
            out[prefix + key] = value
    return out


def existing_state(cfg, is_training, current):
    """``(info, None)`` for a finished, up-to-date split; else ``(None, why it must be rebuilt or None)``."""
    prefix = split_prefix(is_training)
    if not os.path.exists(marker_path(cfg, is_training)):
        if os.path.isdir(cfg.mindrecord_dir) and old_shards(cfg.mindrecord_dir, prefix):
            return None, "partial: shard files without %s.done.json (an interrupted conversion)" % prefix
        return None, None
    info = read_marker(cfg, is_training)
    if info is None:
        return None, "partial: %s.done.json is unreadable" % prefix
    old, new = flatten(info.get("fingerprint") or {}), flatten(current)
    changed = sorted(key for key in set(old) | set(new) if old.get(key) != new.get(key))
    if changed:
        return None, "stale: changed %s" % ", ".join(changed)
    missing = missing_files(info)
    if missing:
        return None, "partial: %s is missing" % missing[0]
    damaged = damaged_file(info, cfg.mindrecord_dir)
    if damaged:
        return None, "damaged: %s" % damaged
    return info, None


def damaged_file(info, directory):
    """How a shard or index file differs in size from what the conversion wrote (a truncated copy, a
    disk error), or '' (also for markers written before sizes were recorded)."""
    for name, size in sorted((info.get("file_sizes") or {}).items()):
        found = os.path.getsize(os.path.join(directory, name))
        if found != size:
            return "%s is %d bytes, the conversion wrote %d" % (name, found, size)
    return ""


# ---------------------------------------------------------------------------------------- public
def build(cfg, is_training, source):
    """Convert one split: temporary folder, commit, move into place, marker last; print the summary."""
    prefix, directory = split_prefix(is_training), cfg.mindrecord_dir
    if len(source) == 0:
        raise DatasetError("%s: the split has no images" % source_path(source))
    os.makedirs(directory, exist_ok=True)
    remove_stale_tmp_dirs(directory)
    marker = marker_path(cfg, is_training)
    if os.path.exists(marker):
        os.remove(marker)
    tmp_dir = os.path.join(directory, ".tmp-%s-%d" % (prefix, os.getpid()))
    os.makedirs(tmp_dir)
    needs_gt = not is_training and source.gt_json is None
    make_row = RowMaker({name: index for index, name in enumerate(cfg.classes) if index > 0},
                        bool(cfg.get("voc_use_difficult", False)), Summary(),
                        GtJson(cfg.classes) if needs_gt else None)
    try:
        names = write_shards(source, cfg, tmp_dir, prefix, make_row)
        if needs_gt:
            write_json(os.path.join(directory, GT_JSON_NAME), make_row.gt.to_dict(), tmp_dir)
        marker_info = marker_content(cfg, is_training, source, names, make_row.summary)
        marker_info["file_sizes"] = {part: os.path.getsize(os.path.join(tmp_dir, part))
                                     for name in names for part in (name, name + ".db")}
        info = publish(cfg, is_training, tmp_dir, names, marker_info)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    print("\n".join(make_row.summary.lines(prefix, os.path.abspath(directory), cfg.mindrecord_shards)))
    return info


def marker_content(cfg, is_training, source, names, summary):
    """What ``<prefix>.done.json`` records; paths inside mindrecord_dir are kept as basenames."""
    needs_gt = not is_training and source.gt_json is None
    return {"format_version": FORMAT_VERSION, "prefix": split_prefix(is_training),
            "split": "train" if is_training else "eval", "dataset": cfg.dataset,
            "fingerprint": fingerprint(cfg, source, is_training), "shard_names": names,
            "files": [os.path.abspath(os.path.join(cfg.mindrecord_dir, name)) for name in names],
            "gt_json": (os.path.abspath(os.path.join(cfg.mindrecord_dir, GT_JSON_NAME)) if needs_gt
                        else source.gt_json),
            "gt_json_name": GT_JSON_NAME if needs_gt else None,
            "num_images": summary.images, "num_boxes": summary.boxes,
            "category_ids": source.category_ids(list(cfg.classes)),
            "counts": summary.to_dict(), "created": time.strftime("%Y-%m-%d %H:%M:%S")}


def convert(cfg, is_training):
    """Convert the training or evaluation split of ``cfg.dataset`` to MindRecord, always rebuilding.

    Returns the parsed marker: ``files`` (absolute shard paths), ``gt_json`` (COCO-format ground truth
    of the evaluation split, None for training), ``num_images``, ``num_boxes``, ``counts``,
    ``category_ids`` (label -> category id in gt_json).
    """
    check_config(cfg)
    return build(cfg, is_training, make_source(cfg, is_training))


def ensure_mindrecord(cfg, is_training):
    """The split's MindRecord: reused when finished and up to date, otherwise (re)built.

    Up to date means the marker exists, its fingerprint (source file, size and mtime, dataset kind,
    classes, shards, voc_use_difficult) matches and its files are all there. When the source itself is
    gone but a finished MindRecord exists (a copy on a training machine), that is used unchecked.
    """
    check_config(cfg)
    prefix = split_prefix(is_training)
    try:
        source = make_source(cfg, is_training)
    except DatasetError as err:
        info = read_marker(cfg, is_training)
        if info is None or missing_files(info):
            raise
        print("%s: source not available (%s); reusing the finished MindRecord in %s unchecked"
              % (prefix, err, os.path.abspath(cfg.mindrecord_dir)))
        return info
    info, problem = existing_state(cfg, is_training, fingerprint(cfg, source, is_training))
    if info is not None:
        print("%s: reusing up-to-date MindRecord in %s (%d images)"
              % (prefix, os.path.abspath(cfg.mindrecord_dir), info["num_images"]))
        return info
    if problem:
        print("%s: existing MindRecord is %s; rebuilding" % (prefix, problem))
    return build(cfg, is_training, source)
