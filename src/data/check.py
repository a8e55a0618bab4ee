"""Check a dataset without converting it (the report behind ``python -m tools.check_dataset``).

Reads both splits with the converter's own readers (src/data/sources.py), decodes every image and
applies the converter's box rules (:func:`src.data.convert.select_boxes`), then reports per split: the
images, the boxes per class, the COCO box-size histogram (small: area < 32², medium: < 96², large),
the images without boxes, and every problem the conversion would drop or stop on, each with its file
and line (or record). The exit status is 1 when the conversion would stop, 0 otherwise (2 for a bad
setting). The same config keys as train.py select the dataset.
"""
import os
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import cv2
import numpy as np
from tqdm import tqdm

from src.data.convert import BATCH_ROWS, batches, check_config, select_boxes
from src.data.sources import DatasetError, make_source

SMALL_AREA = 32 ** 2
MEDIUM_AREA = 96 ** 2
SIZE_NAMES = ("small", "medium", "large")
NAMES_SHOWN = 5
UNKNOWN_SHOWN = 10
STOPS = "stops the conversion"


@dataclass
class SplitReport:
    """What one split holds and what the conversion would do with it."""
    title: str
    images: int = 0
    written: int = 0
    per_class: Counter = field(default_factory=Counter)
    sizes: Counter = field(default_factory=Counter)
    empty: list = field(default_factory=list)
    ignored: Counter = field(default_factory=Counter)
    unknown: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    stops: int = 0
    skipped: int = 0
    dropped: int = 0
    target_boxes: list = field(default_factory=list)
    target_areas: list = field(default_factory=list)

    def targets(self):
        """The split's training targets: normalised ``(x0, y0, x1, y1)`` [N, 4] and areas in pixels [N]
        (what :func:`src.anchor_fit.anchor_coverage` takes)."""
        return (np.concatenate([np.zeros((0, 4))] + self.target_boxes),
                np.concatenate([np.zeros(0)] + self.target_areas))

    def stop(self, message):
        """Record a problem the conversion stops on."""
        self.problems.append("%s (%s)" % (message, STOPS))
        self.stops += 1

    def lines(self, classes):
        """The report of the split as printable lines."""
        out = [self.title, "  images: %d listed, %d readable, %d without boxes%s"
               % (self.images, self.written, len(self.empty), names_text(self.empty))]
        total = sum(self.per_class.values())
        out.append("  boxes: %d%s" % (total, "" if not total else " (" + ", ".join(
            "%s %d" % (name, self.per_class[name]) for name in classes if self.per_class[name]) + ")"))
        if total:
            out.append("  box sizes (COCO): " + ", ".join(
                "%s %d (%.0f%%)" % (name, self.sizes[name], 100.0 * self.sizes[name] / total) for name in SIZE_NAMES))
        if self.ignored:
            out.append("  not training targets, as intended: " + ", ".join(
                "%d %s" % (count, reason) for reason, count in self.ignored.items()))
        for name, (count, places) in self.unknown.items():
            more = " ... %d more" % (count - len(places)) if count > len(places) else ""
            out.append("  unknown class '%s': %d box%s dropped: %s%s"
                       % (name, count, "" if count == 1 else "es", "; ".join(places), more))
        out += ["  problem: " + line for line in self.problems]
        out += ["  warning: " + line for line in self.warnings]
        return out


def names_text(names):
    """`` (a.jpg, b.jpg, ... 3 more)`` or nothing."""
    if not names:
        return ""
    more = ", ... %d more" % (len(names) - NAMES_SHOWN) if len(names) > NAMES_SHOWN else ""
    return " (%s%s)" % (", ".join(names[:NAMES_SHOWN]), more)


def image_size(path):
    """``((height, width), None)`` of an image as the converter decodes it, else ``(None, reason)``."""
    try:
        with open(path, "rb") as stream:
            data = stream.read()
    except FileNotFoundError:
        return None, "missing"
    except OSError:
        return None, "unreadable"
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    except cv2.error:
        image = None
    return (None, "unreadable") if image is None else (image.shape[:2], None)


def size_bin(area):
    """COCO's size name of a box of ``area`` square pixels."""
    return "small" if area < SMALL_AREA else ("medium" if area < MEDIUM_AREA else "large")


def box_text(sample, index):
    """``annotation id 7 [x0, y0, x1, y1] 'cat'``: one box of a sample, as the source names it."""
    label = sample.box_where[index] if sample.box_where else "box %d" % (index + 1)
    coords = ", ".join("%g" % round(v, 2) for v in sample.boxes[index])
    return "%s [%s] '%s'" % (label, coords, sample.names[index])


def add_sample(report, sample, size, reason, cfg, class_index):
    """Count one sample the way the converter would treat it."""
    if reason:
        report.problems.append("%s: image '%s' is %s (image skipped)" % (sample.where, sample.file_name, reason))
        report.skipped += 1
        return
    height, width = (int(v) for v in size)
    if sample.size is not None and tuple(sample.size) != (height, width):
        report.warnings.append("%s: '%s' is %dx%d but its annotation says %dx%d (the decoded size is used)"
                               % (sample.where, sample.file_name, width, height, sample.size[1], sample.size[0]))
    selection = select_boxes(sample, height, width, class_index, bool(cfg.get("voc_use_difficult", False)))
    report.written += 1
    add_drops(report, sample, selection, height, width)
    boxes = selection.boxes[selection.target]
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    report.target_boxes.append(boxes / np.array([width, height, width, height], np.float64))
    report.target_areas.append(areas)
    report.sizes.update(size_bin(area) for area in areas)
    report.per_class.update(cfg.classes[label] for label in selection.labels[selection.target])
    if not selection.target.any():
        report.empty.append(sample.file_name)


def add_drops(report, sample, selection, height, width):
    """Record the boxes of a sample that would not be training targets, and why."""
    for index in np.flatnonzero(selection.unknown):
        count, places = report.unknown.get(sample.names[index], (0, []))
        if len(places) < UNKNOWN_SHOWN:
            places.append("%s: %s" % (sample.where, box_text(sample, index)))
        report.unknown[sample.names[index]] = (count + 1, places)
    for index in np.flatnonzero(~selection.unknown & ~selection.kept):
        report.problems.append("%s: %s is under 1 px after clipping to the %dx%d image (box dropped)"
                               % (sample.where, box_text(sample, index), width, height))
    report.dropped += int((~selection.target).sum())
    for reason in ("crowd", "difficult"):
        if selection.drops[reason]:
            report.ignored[reason] += selection.drops[reason]


def orphan_annotations(source):
    """A warning for COCO annotations whose image id is not in ``images`` (the converter ignores them)."""
    if source.kind != "coco":
        return None
    known = {image.get("id") for image in source.images}
    orphans = sorted((k for k in source.anns if k not in known), key=str)
    if not orphans:
        return None
    count = sum(len(source.anns[k]) for k in orphans)
    return ("%s: %d annotation%s to image ids missing from 'images', e.g. %s (ignored)"
            % (source.anno_path, count, " refers" if count == 1 else "s refer", orphans[0]))


def check_split(cfg, is_training, progress=False, name=None):
    """Read one split without converting it; returns its :class:`SplitReport`."""
    name = name or ("training split" if is_training else "evaluation split")
    try:
        source = make_source(cfg, is_training)
    except DatasetError as err:
        report = SplitReport("%s:" % name)
        report.stop(str(err))
        return report
    source.errors = []
    report = SplitReport("%s: %s (%s)" % (name, annotation_file(source), cfg.dataset))
    try:
        samples = list(source)
    except DatasetError as err:
        report.stop(str(err))
        return report
    report.images = len(samples)
    for err in source.errors:
        report.stop(str(err))
    orphans = orphan_annotations(source)
    if orphans:
        report.warnings.append(orphans)
    read_images(report, samples, cfg, progress)
    if not samples and not source.errors:
        report.stop("%s: the split has no images" % annotation_file(source))
    elif samples and report.written == 0:
        report.stop("%s: none of the %d images of the split could be read" % (annotation_file(source), len(samples)))
    return report


def annotation_file(source):
    """The file a source reads its split from."""
    return getattr(source, "anno_path", None) or source.list_path


def read_images(report, samples, cfg, progress):
    """Decode every image (a thread pool, a batch at a time, as the converter does) and count it."""
    class_index = {name: index for index, name in enumerate(cfg.classes) if index > 0}
    bar = tqdm(total=len(samples), desc="checking", unit="img", file=sys.stderr, disable=not progress, leave=False)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool, bar:
        for batch in batches(samples, BATCH_ROWS):
            for sample, (size, reason) in zip(batch, pool.map(image_size, [s.path for s in batch])):
                add_sample(report, sample, size, reason, cfg, class_index)
            bar.update(len(batch))


def same_file(cfg):
    """True when the evaluation split of a TXT dataset is the training file itself."""
    return cfg.dataset == "other" and (not cfg.get("val_anno_path") or
                                       os.path.abspath(cfg.val_anno_path) == os.path.abspath(cfg.anno_path))


def check_dataset(cfg, progress=False):
    """Reports of both splits (one when a TXT dataset evaluates on its training file)."""
    config_problem = None
    try:
        check_config(cfg)
    except DatasetError as err:
        config_problem = str(err)
    if same_file(cfg):
        reports = [check_split(cfg, True, progress, "training and evaluation split")]
    else:
        reports = [check_split(cfg, True, progress), check_split(cfg, False, progress)]
    if config_problem:
        reports[0].stop(config_problem)
    return reports


def verdict(reports):
    """The closing line and the exit status."""
    stops = sum(r.stops for r in reports)
    if stops:
        return "check: the conversion would stop: %d problem%s marked '%s'" % (
            stops, "" if stops == 1 else "s", STOPS), 1
    return ("check: the conversion would succeed, skipping %d image%s and dropping %d box%s"
            % (sum(r.skipped for r in reports), "" if sum(r.skipped for r in reports) == 1 else "s",
               sum(r.dropped for r in reports), "" if sum(r.dropped for r in reports) == 1 else "es"), 0)
