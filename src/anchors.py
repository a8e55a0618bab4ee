"""Default boxes (anchors) computed from the config.

Two schemes, both as the MindSpore model zoo builds them so its checkpoints keep their meaning:

* ``ssd``: the SSD paper's scales (Liu et al. 2016, section 2.2 "Choosing scales and aspect ratios
  for default boxes"): scale s_k grows linearly from ``min_scale`` to ``max_scale`` over the feature
  maps; each cell gets one box per aspect ratio plus an extra square box of scale sqrt(s_k s_{k+1}).
  When the first map lists no extra ratios it gets the model zoo's three boxes (0.1 square and the
  two ratio-2 boxes of scale s_1).
* ``grid``: the FPN grid anchor generator (RetinaNet style): per level a base size of
  ``anchor_scale * step`` pixels, ``scales_per_octave`` scales and ``grid_aspect_ratios`` ratios.

Boxes are float32 ``[cy, cx, h, w]`` normalised to [0, 1], in the order the heads emit them:
feature map, then row, then column, then box. A map is ``feature_size[k]`` cells on a side, or h x w
cells when that entry is an [h, w] pair; its centres are ``steps[k]`` pixels apart, or [step_y, step_x]
(see :mod:`src.feature_maps`, which derives the layout from ``img_shape`` when a config leaves it empty).
"""
import functools

import numpy as np

from src.feature_maps import isotropic_step, map_hw, step_yx


def ssd_cell_sizes(cfg):
    """(h, w) of every box of one cell, per feature map, for the SSD scale scheme."""
    count = len(cfg.feature_size)
    scales = [cfg.min_scale + (cfg.max_scale - cfg.min_scale) * k / (count - 1) for k in range(count)]
    scales.append(1.0)
    sizes = []
    for k, ratios in enumerate(cfg.aspect_ratios):
        s_k, s_next = scales[k], scales[k + 1]
        if k == 0 and not ratios:
            w, h = s_k * np.sqrt(2.0), s_k / np.sqrt(2.0)
            cell = [(0.1, 0.1), (h, w), (w, h)]
        else:
            cell = [(s_k, s_k)]
            for ratio in ratios:
                w, h = s_k * np.sqrt(ratio), s_k / np.sqrt(ratio)
                cell += [(h, w), (w, h)]
            cell.append((np.sqrt(s_k * s_next),) * 2)
        sizes.append(np.array(cell, dtype=np.float64))
    return sizes


def grid_cell_sizes(cfg):
    """(h, w) of every box of one cell, per feature map, for the FPN grid anchor scheme. The base size is
    square in pixels, as TensorFlow's grid anchor generator makes it: for a [step_y, step_x] step, from their
    geometric mean."""
    octave = 2.0 ** (np.arange(cfg.scales_per_octave) / cfg.scales_per_octave)
    ratios = np.sqrt(np.asarray(cfg.grid_aspect_ratios, dtype=np.float64))
    scale_grid, ratio_grid = np.meshgrid(octave, ratios)
    sizes = []
    for step in cfg.steps:
        base = cfg.anchor_scale * isotropic_step(step)
        h = (scale_grid / ratio_grid * base).ravel() / cfg.img_shape[0]
        w = (scale_grid * ratio_grid * base).ravel() / cfg.img_shape[1]
        sizes.append(np.stack([h, w], axis=1))
    return sizes


def layout_boxes(feature_sizes, centres_per_map, cell_sizes):
    """Combine per-map cell centres and per-cell box sizes into one [N, 4] cy, cx, h, w array (map, row,
    column, box; a map has ``len(cy)`` rows and ``len(cx)`` columns)."""
    out = []
    for size, (cy, cx), cell in zip(feature_sizes, centres_per_map, cell_sizes):
        rows, cols = map_hw(size)
        yy, xx = np.meshgrid(cy, cx, indexing="ij")
        centres = np.stack([yy.ravel(), xx.ravel()], axis=1)
        boxes = np.concatenate([np.repeat(centres, len(cell), axis=0),
                                np.tile(cell, (rows * cols, 1))], axis=1)
        out.append(boxes)
    return np.concatenate(out, axis=0).astype(np.float32)


def cell_centres(cfg):
    """Normalised centres (cy, cx) of the cells of each feature map (h rows, w columns)."""
    centres = []
    for size, step in zip(cfg.feature_size, cfg.steps):
        (rows, cols), (step_y, step_x) = map_hw(size), step_yx(step)
        row, col = np.arange(rows, dtype=np.float64) + 0.5, np.arange(cols, dtype=np.float64) + 0.5
        centres.append((row * step_y / cfg.img_shape[0], col * step_x / cfg.img_shape[1]))
    return centres


def check_anchor_config(cfg):
    """Raise ValueError naming the key when the anchor settings disagree with each other."""
    maps = len(cfg.feature_size)
    for key in ("steps", "num_default"):
        if len(cfg.get(key)) != maps:
            raise ValueError("config: %s has %d entries but feature_size has %d" % (key, len(cfg.get(key)), maps))
    if cfg.anchor_type == "ssd" and len(cfg.aspect_ratios) != maps:
        raise ValueError("config: aspect_ratios has %d entries but feature_size has %d"
                         % (len(cfg.aspect_ratios), maps))


@functools.lru_cache(maxsize=16)
def _cached(key):
    cfg = _CfgView(dict(key))
    check_anchor_config(cfg)
    sizes = grid_cell_sizes(cfg) if cfg.anchor_type == "grid" else ssd_cell_sizes(cfg)
    for k, (cell, wanted) in enumerate(zip(sizes, cfg.num_default)):
        if len(cell) != wanted:
            raise ValueError("config: feature map %d gets %d default boxes per cell but num_default says %d"
                             % (k, len(cell), wanted))
    boxes = layout_boxes(cfg.feature_size, cell_centres(cfg), sizes)
    boxes.setflags(write=False)
    return boxes


class _CfgView:
    def __init__(self, values):
        self.__dict__.update(values)

    def get(self, key, default=None):
        return self.__dict__.get(key, default)


ANCHOR_KEYS = ("anchor_type", "img_shape", "feature_size", "steps", "num_default", "min_scale", "max_scale",
               "aspect_ratios", "anchor_scale", "scales_per_octave", "grid_aspect_ratios")


def _freeze(value):
    return tuple(_freeze(v) for v in value) if isinstance(value, (list, tuple)) else value


def default_boxes_yxhw(cfg) -> np.ndarray:
    """Default boxes [N, 4] as (cy, cx, h, w) in [0, 1]; cached per distinct anchor setting (read-only)."""
    key = tuple((k, _freeze(cfg.get(k))) for k in ANCHOR_KEYS)
    return _cached(key)


def yxhw_to_yxyx(boxes):
    """(cy, cx, h, w) -> (ymin, xmin, ymax, xmax)."""
    half = boxes[:, 2:4] / 2.0
    return np.concatenate([boxes[:, :2] - half, boxes[:, :2] + half], axis=1).astype(np.float32)


def default_boxes_yxyx(cfg) -> np.ndarray:
    """Default boxes [N, 4] as (ymin, xmin, ymax, xmax); not clipped, as in the model zoo."""
    return yxhw_to_yxyx(default_boxes_yxhw(cfg))
