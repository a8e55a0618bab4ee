"""Default boxes that fit the data: how well the default boxes cover a dataset's objects, and a search for
anchor settings that cover them better without changing any parameter shape.

SSD learns an object through the default boxes matched to it (Liu et al. 2016, section 2.2 "Matching
strategy"): every default box at IoU above ``match_threshold`` becomes a positive for it, which "simplifies
the learning problem, allowing the network to predict high scores for multiple overlapping default boxes".
An object whose best default box stays under the threshold keeps only that one forced match, a box of the
wrong size or place, and is learnt poorly; small objects (tree crowns of 15-60 px in a 320 px tile) are the
usual victims of the model zoo's COCO scales. The scales and aspect ratios themselves are the paper's
section 2.2 "Choosing scales and aspect ratios for default boxes", computed by :mod:`src.anchors`.

Coordinates: the network resizes each whole image to ``img_shape``, so a box normalised to [0, 1] of its
own image is what the default boxes see. Boxes here are float ``[N, 4]`` ``(x0, y0, x1, y1)`` normalised,
with their areas in original image pixels for the COCO size buckets.

The computations are numpy only (no MindSpore op). :func:`training_boxes` reads a split through the
converter's readers and box rules (src/data), so this module sits above src/data in the import order and
nothing in src/data imports it; importing src.data.convert loads MindSpore for its MindRecord writer.
"""
from collections import OrderedDict
from itertools import combinations

import numpy as np

from src.anchors import cell_centres, default_boxes_yxyx, grid_cell_sizes, ssd_cell_sizes
from src.box_coder import AnchorColumns
from src.data.check import MEDIUM_AREA, SMALL_AREA, annotation_file, image_size
from src.data.convert import select_boxes
from src.data.sources import make_source
from src.errors import UserError

BUCKETS = ("small", "medium", "large", "all")
# IoU entries (objects x default boxes) per chunk of anchor_coverage: 8 MB per float32 temporary, some
# 100 MB in all whatever the number of boxes.
CHUNK_ENTRIES = 2_000_000
# The fit searches on at most this many boxes, drawn with a fixed seed: seconds on two cores.
FIT_BOXES = 4000
FIT_SEED = 0
# Search grids. SSD: min_scale and max_scale, coarse then fine around the best; aspect ratios from
# RATIO_VALUES (a ratio r gives the two boxes r and 1/r). Grid (FPN): anchor_scale, then ratios (w/h).
COARSE_MIN_SCALES = np.round(np.arange(0.02, 0.52, 0.04), 3)
COARSE_MAX_SCALES = np.round(np.arange(0.1, 1.0001, 0.1), 3)
FINE_MIN_STEP, FINE_MAX_STEP, FINE_STEPS = 0.01, 0.025, 3
RATIO_VALUES = (1.25, 1.5, 2.0, 2.5, 3.0, 4.0)
COARSE_ANCHOR_SCALES = np.round(np.arange(1.0, 8.001, 0.25), 3)
FINE_ANCHOR_STEP = 0.05
GRID_RATIO_VALUES = (0.333, 0.5, 0.667, 1.0, 1.5, 2.0, 3.0)
CACHE_ENTRIES = 128


# ------------------------------------------------------------------------------------------- coverage
def best_overlaps(anchors_yxyx, objects_yxyx, threshold):
    """Best IoU [N] of each object with any default box, and the number of default boxes at IoU >=
    ``threshold`` [N]. The IoU is box_coder's (the numpy matcher's own float32 arithmetic), chunked over
    the objects so that memory stays bounded whatever the number of default boxes."""
    objects = np.ascontiguousarray(objects_yxyx, dtype=np.float32).reshape(-1, 4)
    best = np.zeros(len(objects), np.float32)
    matched = np.zeros(len(objects), np.int64)
    chunk = max(1, CHUNK_ENTRIES // max(1, len(anchors_yxyx)))
    columns = AnchorColumns(anchors_yxyx, tiles=min(chunk, max(1, len(objects))))
    for start in range(0, len(objects), chunk):
        overlaps = columns.iou(objects[start:start + chunk])
        best[start:start + chunk] = overlaps.max(axis=1)
        matched[start:start + chunk] = (overlaps >= threshold).sum(axis=1)
    return best, matched


def bucket_masks(areas):
    """COCO size buckets of boxes of ``areas`` square pixels (small < 32², medium < 96², large), and all."""
    areas = np.asarray(areas, np.float64)
    small, large = areas < SMALL_AREA, areas >= MEDIUM_AREA
    return {"small": small, "medium": ~small & ~large, "large": large, "all": np.ones(len(areas), bool)}


def coverage_summary(best, matched, areas, threshold):
    """Per bucket: objects, share covered (best IoU >= threshold), mean default boxes at IoU >= threshold
    per object, median best IoU. The last three are NaN for a bucket without objects."""
    out = {}
    for name, mask in bucket_masks(areas).items():
        count = int(mask.sum())
        out[name] = {"objects": count,
                     "covered": float(np.mean(best[mask] >= threshold)) if count else float("nan"),
                     "matched": float(np.mean(matched[mask])) if count else float("nan"),
                     "median_iou": float(np.median(best[mask])) if count else float("nan")}
    return out


def check_boxes(boxes, areas):
    """``boxes`` as float64 [N, 4] and ``areas`` as float64 [N]; ValueError when they do not pair up."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    areas = np.asarray(areas, np.float64).reshape(-1)
    if len(boxes) != len(areas):
        raise ValueError("anchor coverage: %d boxes but %d areas" % (len(boxes), len(areas)))
    return boxes, areas


def anchor_coverage(cfg, boxes, areas) -> dict:
    """How well the config's default boxes cover objects, per COCO size bucket.

    ``boxes`` [N, 4] normalised ``(x0, y0, x1, y1)``; ``areas`` [N] in original image pixels (buckets only).
    Returns ``{bucket: {"objects", "covered", "matched", "median_iou"}}`` for small, medium, large and all;
    an empty input gives buckets of 0 objects (and NaN statistics).
    """
    boxes, areas = check_boxes(boxes, areas)
    best, matched = best_overlaps(default_boxes_yxyx(cfg), boxes[:, [1, 0, 3, 2]], float(cfg.match_threshold))
    return coverage_summary(best, matched, areas, float(cfg.match_threshold))


# ------------------------------------------------------------------------------ fast scoring for the fit
def axis_overlap(low, high, centres, size):
    """Overlap lengths [K, n] of object intervals [low, high] ([K, 1]) with boxes of ``size`` at ``centres``."""
    return np.maximum(np.minimum(high, centres + size / 2) - np.maximum(low, centres - size / 2), 0.0)


def map_overlaps(objects, centres, cell, threshold):
    """Best IoU [K] and number of boxes at IoU >= ``threshold`` [K] of objects against one feature map.

    ``objects`` float64 [K, 4] ``(y0, x0, y1, x1)``; ``centres`` the map's cell centres (cy [n], cx [m]);
    ``cell`` its boxes' (h, w) [S, 2]. Exact (in float64; the matcher's float32 IoU can differ only at a tie
    with the threshold), but per axis instead of per default box, for speed: the intersection is
    the product of the overlaps along y and x, and IoU = I / (A + a - I) grows with I, so the best box of a
    shape has the largest overlap on each axis, and a box reaches the threshold when I >= t (A + a) / (1 + t).
    For a row of overlap Iy that needs an x overlap of at least v = that / Iy, which the boxes centred in
    [x0 - w/2 + v, x1 + w/2 - v] have (the overlap only shrinks as the centres move apart).
    """
    y0, x0, y1, x1 = (objects[:, i:i + 1] for i in range(4))
    area = ((y1 - y0) * (x1 - x0))[:, 0]
    cy, cx = (np.asarray(c, np.float64) for c in centres)
    best = np.zeros(len(objects))
    matched = np.zeros(len(objects), np.int64)
    for height, width in np.asarray(cell, np.float64):
        rows = axis_overlap(y0, y1, cy[None, :], height)
        inter = rows.max(axis=1) * axis_overlap(x0, x1, cx[None, :], width).max(axis=1)
        shape_best = inter / (area + height * width - inter)
        best = np.maximum(best, shape_best)
        hit = np.flatnonzero(shape_best >= threshold)  # only these have boxes of this shape to count
        needed = threshold * (area[hit] + height * width) / (1.0 + threshold)
        with np.errstate(divide="ignore", invalid="ignore"):
            least = needed[:, None] / rows[hit]
        reachable = least <= np.minimum(x1[hit] - x0[hit], width)
        columns = (np.searchsorted(cx, x1[hit] + width / 2 - least, side="right")
                   - np.searchsorted(cx, x0[hit] - width / 2 + least, side="left"))
        matched[hit] += np.where(reachable, columns, 0).sum(axis=1)
    return best, matched


class FitScorer:
    """Scores candidate default boxes on a fixed set of objects: (objects covered, boxes matched in all).

    Each feature map's result is cached by its cell sizes, so a candidate that changes one map's aspect
    ratios costs one map.
    """

    def __init__(self, cfg, objects_yxyx):
        self.objects = np.asarray(objects_yxyx, np.float64)
        self.threshold = float(cfg.match_threshold)
        self.centres = cell_centres(cfg)
        self.cache = OrderedDict()

    def map_result(self, index, cell):
        """(best IoU, matched) of the objects against map ``index`` with boxes of ``cell`` sizes."""
        key = (index, np.round(cell, 12).tobytes())
        if key in self.cache:
            self.cache.move_to_end(key)
        else:
            self.cache[key] = map_overlaps(self.objects, self.centres[index], cell, self.threshold)
            if len(self.cache) > CACHE_ENTRIES:
                self.cache.popitem(last=False)
        return self.cache[key]

    def score(self, cell_sizes):
        """(covered objects, matched boxes) of one set of per-map cell sizes: compared as a tuple, coverage
        first and the number of matches as the tie-break."""
        best = np.zeros(len(self.objects))
        matched = 0
        for index, cell in enumerate(cell_sizes):
            map_best, map_matched = self.map_result(index, cell)
            best = np.maximum(best, map_best)
            matched += int(map_matched.sum())
        return int((best >= self.threshold).sum()), matched


# ------------------------------------------------------------------------------------------------ search
class Search:
    """The best candidate so far; earlier candidates win ties, so the current settings stay unless beaten."""

    def __init__(self, cfg, scorer, sizes, values):
        self.cfg, self.scorer, self.sizes = cfg, scorer, sizes
        self.values = values
        self.score = self.evaluate(values)

    def evaluate(self, values):
        return self.scorer.score(self.sizes(self.cfg.replace(**values)))

    def consider(self, **changes):
        """Score the best values with ``changes``; keep them when they score higher."""
        values = dict(self.values, **changes)
        score = self.evaluate(values)
        if score > self.score:
            self.score, self.values = score, values


def ratio_candidates(current, pool):
    """Lists of aspect ratios as long as ``current`` (the current one first): the number of boxes per cell,
    hence every parameter shape, stays the same. An empty list stays empty."""
    current = [float(r) for r in current]
    if not current:
        return [[]]
    others = [list(c) for c in combinations(sorted(pool), len(current)) if sorted(c) != sorted(current)]
    return [current] + others


def fine_values(centre, step, low, high):
    """``centre`` +- FINE_STEPS steps of ``step``, rounded to 3 decimals, kept within [low, high]."""
    values = np.round(centre + step * np.arange(-FINE_STEPS, FINE_STEPS + 1), 3)
    return [float(v) for v in values if low <= v <= high]


def search_scales(search, coarse=True):
    """min_scale and max_scale: the coarse grid, then a finer one around the best (0 < min < max <= 1)."""
    for low in COARSE_MIN_SCALES if coarse else ():
        for high in COARSE_MAX_SCALES:
            if low < high:
                search.consider(min_scale=float(low), max_scale=float(high))
    centre_low, centre_high = search.values["min_scale"], search.values["max_scale"]
    for low in fine_values(centre_low, FINE_MIN_STEP, 0.005, 1.0):
        for high in fine_values(centre_high, FINE_MAX_STEP, 0.005, 1.0):
            if low < high:
                search.consider(min_scale=low, max_scale=high)


def fit_ssd(cfg, scorer):
    """SSD scheme: scales, then each map's aspect ratios (same count), then the fine scale grid again."""
    values = {"min_scale": float(cfg.min_scale), "max_scale": float(cfg.max_scale),
              "aspect_ratios": [[float(r) for r in ratios] for ratios in cfg.aspect_ratios]}
    search = Search(cfg, scorer, ssd_cell_sizes, values)
    search_scales(search)
    for index in range(len(values["aspect_ratios"])):
        for ratios in ratio_candidates(search.values["aspect_ratios"][index], RATIO_VALUES)[1:]:
            changed = [list(r) for r in search.values["aspect_ratios"]]
            changed[index] = ratios
            search.consider(aspect_ratios=changed)
    search_scales(search, coarse=False)
    return search.values


def fit_grid(cfg, scorer):
    """FPN grid scheme: anchor_scale, then grid_aspect_ratios (same count), then anchor_scale finer."""
    values = {"anchor_scale": float(cfg.anchor_scale),
              "grid_aspect_ratios": [float(r) for r in cfg.grid_aspect_ratios]}
    search = Search(cfg, scorer, grid_cell_sizes, values)
    for scale in COARSE_ANCHOR_SCALES:
        search.consider(anchor_scale=float(scale))
    for ratios in ratio_candidates(values["grid_aspect_ratios"], GRID_RATIO_VALUES)[1:]:
        search.consider(grid_aspect_ratios=ratios)
    for scale in fine_values(search.values["anchor_scale"], FINE_ANCHOR_STEP, 0.05, 64.0):
        search.consider(anchor_scale=scale)
    return search.values


def sample_boxes(boxes, areas, limit=FIT_BOXES, seed=FIT_SEED):
    """At most ``limit`` of the boxes, drawn without replacement with a fixed seed (kept in order)."""
    if len(boxes) <= limit:
        return boxes, areas
    keep = np.sort(np.random.default_rng(seed).choice(len(boxes), limit, replace=False))
    return boxes[keep], areas[keep]


def objective(coverage):
    """What the fit maximises, from a coverage dict: the share covered, then the median best IoU, then the
    matched boxes per object. The IoU comes before the count: once every object is covered, more matches
    per object would pull min_scale and max_scale together into boxes that fit no object well."""
    return coverage["all"]["covered"], coverage["all"]["median_iou"], coverage["all"]["matched"]


def fit_anchors(cfg, boxes, areas, limit=FIT_BOXES) -> dict:
    """Anchor settings that give more objects a default box at IoU >= match_threshold.

    Searches ``min_scale``, ``max_scale`` and per-map ``aspect_ratios`` (``anchor_type: ssd``), or
    ``anchor_scale`` and ``grid_aspect_ratios`` (``grid``), keeping the number of ratios of every list, so
    ``num_default``, the number of default boxes and every parameter shape stay the same. Maximises the share
    of objects covered, then their median best IoU, then the default boxes matched per object, on at most ``limit``
    boxes. Returns ``{"changes": {key: value}, "before": coverage, "after": coverage, "boxes": used,
    "total": given}``; ``changes`` holds every searched key (plain floats and lists, 3 decimals), the current
    values when nothing scores higher, and is used as ``cfg.replace(**changes)``.
    """
    boxes, areas = check_boxes(boxes, areas)
    if not len(boxes):
        raise UserError("no boxes to fit the default boxes to")
    total = len(boxes)
    boxes, areas = sample_boxes(boxes, areas, limit)
    scorer = FitScorer(cfg, boxes[:, [1, 0, 3, 2]])
    changes = fit_grid(cfg, scorer) if cfg.anchor_type == "grid" else fit_ssd(cfg, scorer)
    before = anchor_coverage(cfg, boxes, areas)
    after = anchor_coverage(cfg.replace(**changes), boxes, areas)
    if objective(after) < objective(before):
        # Only float32 rounding at the threshold can make the exact per-axis score disagree with the
        # matcher's IoU; never hand back settings that cover less than the current ones.
        changes = {key: cfg.get(key) for key in changes}
        after = before
    return {"changes": changes, "before": before, "after": after, "boxes": len(boxes), "total": total}


# --------------------------------------------------------------------------------------------- reading
def training_boxes(cfg, limit=None):
    """The training split's target boxes as (normalised ``(x0, y0, x1, y1)`` [N, 4], areas in pixels [N]).

    Read with the converter's own reader and box rules (:func:`src.data.convert.select_boxes`: unknown
    classes, boxes under 1 px, crowd regions and, unless ``voc_use_difficult``, VOC difficult boxes are not
    training targets). An image's size is the one its annotation states, else read from the image; images
    that cannot be read are skipped, as the converter skips them. ``limit`` caps the images read (evenly
    spaced over the split). UserError when the split has no target boxes.
    """
    source = make_source(cfg, True)
    samples = list(source)
    if limit is not None and len(samples) > limit:
        samples = [samples[i] for i in np.linspace(0, len(samples), int(limit), endpoint=False).astype(int)]
    class_index = {name: index for index, name in enumerate(cfg.classes) if index > 0}
    use_difficult = bool(cfg.get("voc_use_difficult", False))
    boxes, areas = [np.zeros((0, 4))], [np.zeros(0)]
    for sample in samples:
        size = sample.size or image_size(sample.path)[0]
        if size is None:
            continue
        height, width = (int(v) for v in size)
        selection = select_boxes(sample, height, width, class_index, use_difficult)
        pixels = selection.boxes[selection.target]
        boxes.append(pixels / np.array([width, height, width, height], np.float64))
        areas.append((pixels[:, 2] - pixels[:, 0]) * (pixels[:, 3] - pixels[:, 1]))
    boxes, areas = np.concatenate(boxes), np.concatenate(areas)
    if not len(boxes):
        raise UserError("%s: the training split has no boxes of the classes in --classes to fit default boxes to"
                        % annotation_file(source))
    return boxes, areas


# ------------------------------------------------------------------------------------------- reporting
def flag_text(value):
    """A config value as the command line writes it, without spaces: 0.07, [[],[1.5,2]]."""
    if isinstance(value, (list, tuple)):
        return "[%s]" % ",".join(flag_text(v) for v in value)
    if isinstance(value, float):
        return "%g" % value
    return str(value)


def flags_text(changes):
    """``--key=value`` flags of the fit's values, to paste onto a command line."""
    return " ".join("--%s=%s" % (key, flag_text(value)) for key, value in changes.items())


def percent(share):
    return "-" if share != share else "%.1f%%" % (100.0 * share)


def number(value):
    return "-" if value != value else "%.2f" % value


def anchor_title(cfg, count):
    """One line naming the default boxes and the threshold a coverage table is for."""
    return ("anchor coverage of %d training box%s: %s default boxes (%s, %dx%d input), IoU >= %g"
            % (count, "" if count == 1 else "es", len(default_boxes_yxyx(cfg)), cfg.model_name,
               cfg.img_shape[1], cfg.img_shape[0], cfg.match_threshold))


def coverage_lines(coverage, indent="  "):
    """A coverage dict as a small table: size bucket, objects, covered %, matched per object, median IoU."""
    lines = [indent + "%-7s %8s %8s %15s %16s" % ("size", "objects", "covered", "matched/object",
                                                  "median best IoU")]
    for name in BUCKETS:
        row = coverage[name]
        lines.append(indent + "%-7s %8d %8s %15s %16s" % (name, row["objects"], percent(row["covered"]),
                                                          number(row["matched"]), number(row["median_iou"])))
    return lines


def fit_lines(cfg, fit, indent="  "):
    """Before and after of a fit, one table row per size bucket, the changed values and the flags."""
    before, after = fit["before"], fit["after"]
    sample = ("" if fit["boxes"] == fit["total"]
              else " (a fixed random sample of %d of the %d)" % (fit["boxes"], fit["total"]))
    changed = ", ".join("%s %s -> %s" % (key, flag_text(cfg.get(key)), flag_text(value))
                        for key, value in fit["changes"].items() if value != cfg.get(key))
    lines = ["anchor fit on %d training boxes%s: %s" % (fit["boxes"], sample, changed or "no change covers more"),
             indent + "%-7s %8s %17s %17s %17s" % ("size", "objects", "covered", "matched/object",
                                                   "median best IoU")]
    for name in BUCKETS:
        old, new = before[name], after[name]
        lines.append(indent + "%-7s %8d %17s %17s %17s" % (
            name, new["objects"], "%s -> %s" % (percent(old["covered"]), percent(new["covered"])),
            "%s -> %s" % (number(old["matched"]), number(new["matched"])),
            "%s -> %s" % (number(old["median_iou"]), number(new["median_iou"]))))
    lines.append(indent + "flags: " + flags_text(fit["changes"]))
    return lines
