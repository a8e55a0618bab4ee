"""The built-in synthetic detection set: filled circles, rectangles and triangles on textured backgrounds.

Nothing can be downloaded on our machines, so the default training run learns this set instead of COCO.
It is written in the COCO layout (``train2017/``, ``val2017/``, ``annotations/instances_*.json`` with
all 80 COCO categories under their real ids) and, for the same images, in the TXT layout
(``train.txt``/``val.txt``: ``train2017/000001.jpg x0,y0,x1,y1,cls ...``, cls = index in ``cfg.classes``).

Each object is drawn with one flat colour chosen far from what lies around it, so its edges are crisp;
objects may overlap (each keeps at least MIN_VISIBLE of its pixels) or be cut by the border (the box is
then clipped to the image and at least MIN_VISIBLE of the shape stays inside). A box is the pixel extent
of the whole shape inside the image, occluded parts included.

Generation is deterministic: image i of a split draws from its own ``np.random.default_rng([seed, split,
i])``, so the same seed gives byte-identical files.
"""
import functools
import json
import multiprocessing
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor

import cv2
import numpy as np

DEFAULT_SHAPES_ROOT = "./data/shapes"
FORMAT_VERSION = 1
META_FILE = "SHAPES.json"
JPEG_QUALITY = 90

COCO_NAMES = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat',
    'traffic light', 'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat', 'dog',
    'horse', 'sheep', 'cow', 'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella',
    'handbag', 'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball', 'kite',
    'baseball bat', 'baseball glove', 'skateboard', 'surfboard', 'tennis racket', 'bottle',
    'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple', 'sandwich', 'orange',
    'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch', 'potted plant',
    'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse', 'remote', 'keyboard', 'cell phone',
    'microwave', 'oven', 'toaster', 'sink', 'refrigerator', 'book', 'clock', 'vase', 'scissors',
    'teddy bear', 'hair drier', 'toothbrush')

# The real COCO category ids of COCO_NAMES, in the same order (1..90 with the usual gaps).
COCO_IDS = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28,
    31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55,
    56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84,
    85, 86, 87, 88, 89, 90)

# Shape kind -> the COCO class name it is labelled with.
SHAPE_CLASSES = {"circle": "sports ball", "rectangle": "tv", "triangle": "kite"}
SHAPE_KINDS = tuple(SHAPE_CLASSES)

SPLITS = (("train", "train2017"), ("val", "val2017"))
MIN_SIDE, MAX_SIDE = 200, 500
MIN_SIZE, MAX_SIZE = 0.08, 0.6        # object extent as a fraction of the shorter image side
MAX_OBJECTS = 6
MIN_VISIBLE = 0.55                     # share of a shape's pixels that must stay visible
MIN_COLOR_DIST = 110.0                 # RGB distance between an object and its surroundings
PLACEMENT_TRIES = 30
PARALLEL_MIN_IMAGES = 512             # smaller sets are drawn in this process (no worker start-up)
MAX_WORKERS = 4


def coco_categories():
    """The 80 COCO categories as the instances json lists them."""
    return [{"id": cid, "name": name, "supercategory": "none"} for cid, name in zip(COCO_IDS, COCO_NAMES)]


def background(rng, height, width):
    """A smooth random colour gradient with, half the time, faint stripes (float32 HWC, values in 16..239)."""
    grid = rng.integers(30, 226, size=(rng.integers(2, 4), rng.integers(2, 4), 3)).astype(np.float32)
    image = cv2.resize(grid, (width, height), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.5:
        angle, period = rng.uniform(0, np.pi), rng.uniform(6, 30)
        yy, xx = np.arange(height, dtype=np.float32)[:, None], np.arange(width, dtype=np.float32)[None]
        phase = (xx * np.cos(angle) + yy * np.sin(angle)) * np.float32(2 * np.pi / period)
        image += (rng.uniform(5, 14) * np.sin(phase))[..., None]
    return image


def shape_polygon(rng, kind, cx, cy, size):
    """Vertices (float [P, 2], x/y) and true area of a random rectangle or triangle of extent ``size``."""
    if kind == "rectangle":
        w, h = size, size * rng.uniform(0.45, 1.0)
        if rng.random() < 0.5:
            w, h = h, w
        angle = rng.uniform(-25, 25) if rng.random() < 0.5 else 0.0
        return cv2.boxPoints(((cx, cy), (w, h), angle)), w * h
    angles = rng.uniform(0, 2 * np.pi) + np.deg2rad([0, 120, 240] + rng.uniform(-15, 15, 3))
    pts = np.stack([cx + size / 2 * np.cos(angles), cy + size / 2 * np.sin(angles)], axis=1)
    x, y = pts[:, 0], pts[:, 1]
    return pts, 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))


def random_shape(rng, kind, height, width):
    """A random shape of ``kind``: (draw(image, value) filling it in place, true area of the whole shape).

    Drawing uses sub-pixel coordinates (shift 4) and no anti-aliasing, so the same call rasterises the
    mask, the colour and the owner map identically.
    """
    size = rng.uniform(MIN_SIZE, MAX_SIZE) * min(height, width)
    cx, cy = rng.uniform(0, width), rng.uniform(0, height)
    if kind == "circle":
        centre, radius = (round(cx * 16), round(cy * 16)), round(size * 8)
        return (lambda image, value: cv2.circle(image, centre, radius, value, -1, cv2.LINE_8, 4)), \
            np.pi * (size / 2) ** 2
    pts, area = shape_polygon(rng, kind, cx, cy, size)
    pts = [np.round(pts * 16).astype(np.int32)]
    return (lambda image, value: cv2.fillPoly(image, pts, value, cv2.LINE_8, 4)), area


def pick_color(rng, canvas, mask, box):
    """A colour far from the canvas pixels bordering ``mask`` (the best of a few random candidates)."""
    x0, y0, x1, y1 = box
    x0, y0, x1, y1 = max(x0 - 4, 0), max(y0 - 4, 0), x1 + 4, y1 + 4
    inside = mask[y0:y1, x0:x1]
    ring = cv2.dilate(inside.view(np.uint8), np.ones((7, 7), np.uint8)).view(bool) & ~inside
    around = canvas[y0:y1, x0:x1][ring]
    around = around[np.linspace(0, len(around) - 1, min(len(around), 256)).astype(int)].astype(np.float32)
    candidates = rng.integers(0, 256, size=(16, 3)).astype(np.float32)
    dist = np.sqrt(np.square(candidates[:, None] - around[None]).sum(axis=2))
    score = np.sort(dist, axis=1)[:, len(around) * 3 // 100] if len(around) else np.full(16, 255.0)
    good = np.flatnonzero(score >= MIN_COLOR_DIST)
    return tuple(int(c) for c in candidates[good[0] if len(good) else np.argmax(score)])


def place_object(rng, owner, full, visible):
    """Sample a shape that keeps itself and every earlier object at least MIN_VISIBLE visible.

    ``owner`` maps each pixel to 1 + the index of the object on top (0 = background); ``full`` and
    ``visible`` count each earlier object's pixels when drawn and now. Returns (kind, draw, mask, box,
    covered) with ``covered[j]`` the pixels of object j the new one hides, or None after PLACEMENT_TRIES.
    """
    height, width = owner.shape
    for _ in range(PLACEMENT_TRIES):
        kind = SHAPE_KINDS[rng.integers(len(SHAPE_KINDS))]
        draw, area = random_shape(rng, kind, height, width)
        mask = draw(np.zeros((height, width), np.uint8), 1).view(bool)
        pixels = np.count_nonzero(mask)
        if pixels < 64 or pixels < MIN_VISIBLE * area:
            continue
        box = mask_box(mask)
        x0, y0, x1, y1 = box
        below = owner[y0:y1, x0:x1][mask[y0:y1, x0:x1]]
        covered = np.bincount(below, minlength=len(full) + 1)[1:]
        if np.all(visible - covered >= MIN_VISIBLE * full):
            return kind, draw, mask, box, covered
    return None


def mask_box(mask):
    """Pixel extent [x0, y0, x1, y1] (x1, y1 exclusive) of a boolean mask."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return [int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1]


def make_image(rng):
    """One image: (BGR uint8 HWC, boxes [[x0, y0, x1, y1], ...] in pixels, COCO class names)."""
    height, width = (int(v) for v in rng.integers(MIN_SIDE, MAX_SIDE + 1, size=2))
    canvas = background(rng, height, width).astype(np.uint8)
    owner = np.zeros((height, width), np.uint8)
    full, visible, boxes, names = [], [], [], []
    for _ in range(int(rng.integers(1, MAX_OBJECTS + 1))):
        placed = place_object(rng, owner, np.array(full, np.int64), np.array(visible, np.int64))
        if placed is None:
            continue
        kind, draw, mask, box, covered = placed
        draw(canvas, pick_color(rng, canvas, mask, box))
        draw(owner, len(full) + 1)
        visible = [v - int(c) for v, c in zip(visible, covered)] + [int(np.count_nonzero(mask))]
        full.append(visible[-1])
        boxes.append(box)
        names.append(SHAPE_CLASSES[kind])
    return add_noise(rng, canvas), boxes, names


def add_noise(rng, image):
    """Add fine grey sensor-like noise (sigma 2..6) to a uint8 image."""
    height, width = image.shape[:2]
    noise = rng.standard_normal(((height + 1) // 2, (width + 1) // 2), dtype=np.float32) * rng.uniform(2, 6)
    noise = cv2.cvtColor(cv2.resize(noise, (width, height), interpolation=cv2.INTER_NEAREST), cv2.COLOR_GRAY2BGR)
    return cv2.add(image, noise, dtype=cv2.CV_8U)


def render_image(root, split_index, seed, index):
    """Draw image ``index`` of split SPLITS[split_index], write its JPEG; return (height, width, boxes, names)."""
    folder = SPLITS[split_index][1]
    image, boxes, names = make_image(np.random.default_rng([seed, split_index, index]))
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError("could not encode %s/%06d.jpg" % (folder, index))
    data.tofile(os.path.join(root, folder, "%06d.jpg" % index))
    return image.shape[0], image.shape[1], boxes, names


def render_images(root, split_index, count, seed):
    """render_image for images 1..count, in order; split over worker processes for large sets.

    Every image draws from its own random generator, so the files do not depend on the worker count.
    Workers are spawned (not forked): the parent may already run MindSpore's and OpenCV's threads.
    """
    workers = min(os.cpu_count() or 1, MAX_WORKERS)
    indices = range(1, count + 1)
    if workers < 2 or count < PARALLEL_MIN_IMAGES:
        return [render_image(root, split_index, seed, index) for index in indices]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        return list(pool.map(functools.partial(render_image, root, split_index, seed), indices, chunksize=64))


def write_split(root, split_index, count, seed):
    """Write the images of split SPLITS[split_index]; return (COCO instances dict, TXT lines)."""
    folder = SPLITS[split_index][1]
    os.makedirs(os.path.join(root, folder))
    ids = dict(zip(COCO_NAMES, COCO_IDS))
    images, annotations, lines = [], [], []
    for index, (height, width, boxes, names) in enumerate(render_images(root, split_index, count, seed), 1):
        file_name = "%06d.jpg" % index
        images.append({"id": index, "file_name": file_name, "height": height, "width": width})
        for (x0, y0, x1, y1), name in zip(boxes, names):
            annotations.append({"id": len(annotations) + 1, "image_id": index, "category_id": ids[name],
                                "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                                "area": float((x1 - x0) * (y1 - y0)), "iscrowd": 0})
        objects = " ".join("%d,%d,%d,%d,%d" % (*box, COCO_NAMES.index(name) + 1) for box, name in zip(boxes, names))
        lines.append(("%s/%s %s" % (folder, file_name, objects)).rstrip())
    instances = {"info": {"description": "synthetic shapes set (src/data/shapes.py)", "version": str(FORMAT_VERSION)},
                 "licenses": [], "images": images, "annotations": annotations, "categories": coco_categories()}
    return instances, lines


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as stream:
        json.dump(obj, stream)


def meta_matches(root, num_train, num_val, seed):
    """True when ``root`` holds a finished shapes set made with these settings."""
    meta = read_meta(root)
    return meta is not None and (meta.get("version"), meta.get("seed"), meta.get("num_train"),
                                 meta.get("num_val")) == (FORMAT_VERSION, seed, num_train, num_val)


def read_meta(root, name=META_FILE):
    """The ``name`` JSON file of ``root`` (a generated set's description, SHAPES.json by default) as a dict,
    or None when there is none (or it is unreadable)."""
    try:
        with open(os.path.join(root, name), encoding="utf-8") as stream:
            meta = json.load(stream)
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def is_foreign(root):
    """True when ``root`` exists, is not empty and is not a shapes set (so it must not be replaced)."""
    return os.path.exists(root) and (not os.path.isdir(root) or (os.listdir(root) and read_meta(root) is None))


def generate_shapes(out_dir, num_train=400, num_val=100, seed=0):
    """Generate the shapes set into ``out_dir`` atomically (build in ``out_dir.tmp-<pid>``, then rename).

    An existing shapes set at ``out_dir`` is replaced; any other existing content raises ValueError.
    Returns ``out_dir``.
    """
    out_dir = os.path.normpath(out_dir)
    if is_foreign(out_dir):
        raise ValueError("%s exists and is not a shapes set (no %s); choose another folder" % (out_dir, META_FILE))
    tmp = "%s.tmp-%d" % (out_dir, os.getpid())
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.join(tmp, "annotations"))
    for split_index, ((split, folder), count) in enumerate(zip(SPLITS, (num_train, num_val))):
        instances, lines = write_split(tmp, split_index, count, seed)
        write_json(os.path.join(tmp, "annotations", "instances_%s.json" % folder), instances)
        with open(os.path.join(tmp, "%s.txt" % split), "w", encoding="utf-8") as stream:
            stream.write("".join(line + "\n" for line in lines))
    write_json(os.path.join(tmp, META_FILE), {"generator": "src.data.shapes", "version": FORMAT_VERSION,
                                              "seed": seed, "num_train": num_train, "num_val": num_val,
                                              "classes": SHAPE_CLASSES})
    install(tmp, out_dir, num_train, num_val, seed)
    return out_dir


def install(tmp, out_dir, num_train, num_val, seed):
    """Move the finished ``tmp`` to ``out_dir``, replacing an older shapes set there.

    When another process installed the same set meanwhile, its copy is kept and ours dropped.
    """
    old = "%s.old-%d" % (out_dir, os.getpid())
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not meta_matches(out_dir, num_train, num_val, seed):
        os.replace(out_dir, old)
    try:
        os.replace(tmp, out_dir)
    except OSError:
        if not meta_matches(out_dir, num_train, num_val, seed):
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)


def ensure_shapes(root=DEFAULT_SHAPES_ROOT, num_train=400, num_val=100, seed=0):
    """Make sure ``root`` holds the shapes set with these settings, generating it when needed.

    Nothing happens when it is already there; a shapes set made with other settings is regenerated;
    a folder holding anything else raises ValueError (we never overwrite user data).
    """
    if meta_matches(root, num_train, num_val, seed):
        return root
    if is_foreign(root):
        raise ValueError("%s exists but is not a shapes set (no %s): point --coco_root at a COCO folder "
                         "or remove it" % (root, META_FILE))
    start = time.time()
    generate_shapes(root, num_train, num_val, seed)
    print("generated the shapes set in %s (%d train, %d val images, seed %d) in %.1f s"
          % (root, num_train, num_val, seed, time.time() - start), flush=True)
    return root
