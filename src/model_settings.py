"""The settings that define a model and its outputs, stored inside every checkpoint the project writes.

A checkpoint alone is a bag of tensors: evaluated with another ``img_shape``, class order or anchor scales
that keep the tensor shapes, it silently gives wrong boxes. So each checkpoint written by training also
holds the model's settings (``MODEL_KEYS``: network, input size, classes, every anchor key, box coding),
the input normalisation and the project version, as one extra entry ``ssd_settings``: the UTF-8 JSON
text as a uint8 tensor. MindSpore's ``load_checkpoint`` reads it like any entry and
``load_param_into_net`` leaves it out as a name the network does not have (as it does the optimizer
state), so the model zoo's tools still read our files.

eval.py, infer.py, export.py and the Python API given only ``--checkpoint_file_path`` take these
settings (:func:`config_for_checkpoint`). A key the user set (on the command line or in ``--config_path``)
that disagrees with the checkpoint is one error naming the key and both values, unless
``--force_config=True``. Checkpoints without the entry (the model zoo's, or older ones of ours) keep the
configuration as given.
"""
import json
import os

import numpy as np

from src.config import ConfigError
from src.data.augment import MEAN_RGB, STD_RGB
from src.errors import UserError

SETTINGS_KEY = "ssd_settings"
PROJECT_VERSION = "0.6.0"
MODEL_KEYS = ("model_name", "img_shape", "num_classes", "classes", "feature_size", "steps", "min_scale",
              "max_scale", "aspect_ratios", "num_default", "num_ssd_boxes", "anchor_type", "scales_per_octave",
              "anchor_scale", "grid_aspect_ratios", "extras_in_channels", "extras_out_channels", "extras_strides",
              "extras_ratio", "num_addition_layers", "prior_scaling")
# Chosen by training's anchor fit (src/anchor_fit.py) when fit_anchors is on.
FIT_KEYS = ("min_scale", "max_scale", "aspect_ratios", "anchor_scale", "grid_aspect_ratios")
# Derived from img_shape: a forced img_shape keeps the configuration's own.
LAYOUT_KEYS = ("feature_size", "steps", "num_ssd_boxes")


def _plain(value):
    """``value`` as JSON gives it back (tuples become lists), so stored and configured values compare."""
    return json.loads(json.dumps(value))


def model_settings(cfg) -> dict:
    """The settings that define ``cfg``'s model and its outputs, plus normalisation and project version."""
    settings = {key: _plain(cfg.get(key)) for key in MODEL_KEYS if cfg.get(key) is not None}
    settings["normalisation"] = {"mean_rgb": MEAN_RGB.tolist(), "std_rgb": STD_RGB.tolist()}
    settings["project_version"] = PROJECT_VERSION
    return settings


def settings_entry(cfg) -> dict:
    """``{SETTINGS_KEY: uint8 tensor of the JSON}``, for ``mindspore.save_checkpoint(append_dict=...)``."""
    import mindspore as ms

    text = json.dumps(model_settings(cfg), sort_keys=True)
    return {SETTINGS_KEY: ms.Tensor(np.frombuffer(text.encode("utf-8"), np.uint8).copy())}


def decode_settings(value) -> dict:
    """The settings dict of a checkpoint's ``SETTINGS_KEY`` entry (a Parameter, Tensor or array of bytes)."""
    array = value.asnumpy() if hasattr(value, "asnumpy") else np.asarray(value)
    return json.loads(array.astype(np.uint8).tobytes().decode("utf-8"))


def read_settings(path: str):
    """The settings stored in the checkpoint ``path``, or None when it has none (a model zoo checkpoint).
    Only that entry is read (MindSpore reports a filter that matches nothing as "empty after filter")."""
    import mindspore as ms

    try:
        entries = ms.load_checkpoint(path, choice_func=lambda name: name == SETTINGS_KEY)
    except (ValueError, RuntimeError, OSError) as err:
        if "empty after filter" in str(err):
            return None
        raise UserError("cannot read checkpoint %s: %s" % (path, str(err).strip().splitlines()[0])) from None
    if SETTINGS_KEY not in entries:
        return None
    try:
        return decode_settings(entries[SETTINGS_KEY])
    except (UnicodeDecodeError, ValueError):
        raise UserError("checkpoint %s: its %s entry is not readable JSON" % (path, SETTINGS_KEY)) from None


def disagreements(cfg, stored: dict) -> list:
    """``(key, configured, stored)`` for each model key the user set that differs from the checkpoint's.
    Under ``fit_anchors`` the configured anchor keys are where the fit started, not a choice: the stored
    (fitted) ones are used without complaint."""
    given = set(cfg.given_keys()) if hasattr(cfg, "given_keys") else set()
    if cfg.get("fit_anchors", False):
        given -= set(FIT_KEYS)
    return [(key, _plain(cfg.get(key)), stored[key]) for key in MODEL_KEYS
            if key in stored and key in given and _plain(cfg.get(key)) != stored[key]]


def config_for_checkpoint(cfg, path: str):
    """``cfg`` with the model settings stored in checkpoint ``path`` (unchanged for a checkpoint without);
    see :func:`apply_settings`."""
    stored = read_settings(path)
    return cfg if stored is None else apply_settings(cfg, stored, path)


def apply_settings(cfg, stored: dict, source: str):
    """``cfg`` with the model keys of ``stored`` (the settings of a checkpoint or an export, read from
    ``source``).

    A key set by the user that disagrees is a UserError naming the key and both values; with
    ``force_config`` the user's values win (one line says which; a forced ``img_shape`` brings the
    configured feature-map layout with it) and the other stored keys still apply."""
    conflicts = disagreements(cfg, stored)
    if conflicts and not cfg.get("force_config", False):
        key, configured, saved = conflicts[0]
        raise UserError("%s was trained with %s=%s, but the configuration gives %s (%d key(s) disagree; leave "
                        "them out to use the stored ones, or --force_config=True to use yours)"
                        % (source, key, json.dumps(saved), json.dumps(configured), len(conflicts)))
    if conflicts:
        print("force_config: using the configured %s instead of the stored settings of %s"
              % (", ".join(key for key, _, _ in conflicts), source))
    forced = {key for key, _, _ in conflicts}
    if "img_shape" in forced:
        forced |= set(LAYOUT_KEYS)
    changes = {key: value for key, value in stored.items() if key in MODEL_KEYS and key not in forced
               and cfg.get(key) is not None}
    try:
        return cfg.with_settings(changes)
    except ConfigError as err:
        raise UserError("%s: its stored settings do not fit this configuration: %s" % (source, err)) from None


def export_description(cfg, exported_file: str, file_format: str, batch_size: int) -> dict:
    """What ``<file_name>.json`` beside an export says: the model settings, the input and output names and
    layouts, and the post-processing thresholds that evaluation used."""
    height, width = (int(v) for v in cfg.img_shape)
    batch = "batch" if int(batch_size) < 1 else int(batch_size)
    return {"file": os.path.basename(exported_file), "format": file_format, "batch_size": int(batch_size),
            "model": model_settings(cfg),
            "input": {"name": "image", "shape": [batch, 3, height, width],
                      "layout": "float32 NCHW, RGB, (pixel - mean_rgb) / std_rgb after resizing to img_shape"},
            "outputs": [{"name": "boxes", "shape": [batch, int(cfg.num_ssd_boxes), 4],
                         "layout": "float32 ymin, xmin, ymax, xmax, normalised to [0, 1] (clipped)"},
                        {"name": "scores", "shape": [batch, int(cfg.num_ssd_boxes), int(cfg.num_classes)],
                         "layout": "float32 sigmoid scores; column 0 is the background, column k is classes[k]"}],
            "postprocess": {key: cfg.get(key) for key in ("min_score", "nms_threshold", "max_boxes",
                                                          "score_threshold")}}


def description_path(exported_file: str) -> str:
    """``ssd.json`` for ``ssd.onnx`` / ``ssd.mindir`` / ``ssd.air``."""
    return os.path.splitext(exported_file)[0] + ".json"


def config_for_export(cfg, exported_file: str):
    """``cfg`` with the model settings of the description beside ``exported_file`` (unchanged when there is
    none, e.g. a file exported by the model zoo); see :func:`apply_settings`."""
    path = description_path(exported_file)
    if not os.path.isfile(path):
        return cfg
    try:
        with open(path, encoding="utf-8") as stream:
            stored = json.load(stream)["model"]
    except (ValueError, KeyError, TypeError):
        raise UserError("%s: not an export description (a JSON object with a \"model\" entry)" % path) from None
    return apply_settings(cfg, stored, path)
