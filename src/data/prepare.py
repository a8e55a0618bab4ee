"""From config to MindRecord files: make the built-in shapes set when it is the configured dataset
and missing, then convert (or reuse) the requested split."""
import os

from src.data.convert import ensure_mindrecord
from src.data.shapes import DEFAULT_SHAPES_ROOT, ensure_shapes
from src.errors import UserError


def uses_builtin_shapes(cfg):
    """True when the config points at the built-in shapes set (the default), which is made on demand."""
    return cfg.dataset == "coco" and os.path.abspath(cfg.coco_root) == os.path.abspath(DEFAULT_SHAPES_ROOT)


def prepare_split(cfg, is_training):
    """The finished MindRecord of one split: {'files': [...], 'gt_json': ..., 'num_images': ...}."""
    if uses_builtin_shapes(cfg):
        try:
            ensure_shapes(cfg.coco_root, cfg.shapes_num_train, cfg.shapes_num_val, seed=0)
        except ValueError as err:
            raise UserError(str(err)) from None
    return ensure_mindrecord(cfg, is_training)
