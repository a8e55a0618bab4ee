"""The Python API: a trained detector as one object that takes images and gives back their detections.

    from src.api import Detector
    detector = Detector.from_checkpoint("output/checkpoint/ssd-5_250.ckpt", score_threshold=0.5)
    result = detector("street.jpg")                 # or an HWC uint8 BGR array; a list gives a list
    for box, class_name, score in result: ...       # box: x0, y0, x1, y1 in the image's pixels
    cv2.imwrite("drawn.jpg", result.draw(cv2.imread("street.jpg")))

The configuration is the command line's: ``config_path`` and keyword overrides become the
``--config_path=...`` and ``--key=value`` arguments that :func:`src.config.load_config` reads, so a
keyword is checked exactly as its option would be. A checkpoint's stored model settings and an ONNX
file's description are applied as eval.py and eval_onnx.py apply them (:mod:`src.model_settings`).
Detection is :func:`src.inference.images.detect_image` (``score_threshold``, ``nms_threshold``,
``max_boxes``), as in infer.py, and drawing is :func:`src.inference.visualize.draw_boxes`.

A bad configuration key or value raises ValueError; a missing or unusable file raises
:class:`src.errors.UserError`; both carry one line that names what is wrong.
"""
import numbers
import os
from typing import NamedTuple

import numpy as np
import yaml

from src.config import ConfigError, load_config
from src.device import setup_device
from src.errors import UserError
from src.inference.images import detect_image, read_image
from src.inference.runtimes import OnnxDetector, checkpoint_predictor
from src.inference.visualize import draw_boxes
from src.model_settings import config_for_checkpoint, config_for_export


def as_lists(value):
    """``value`` with every tuple turned into a list, at any depth (YAML writes lists only)."""
    return [as_lists(item) for item in value] if isinstance(value, (list, tuple)) else value


def argument_text(key: str, value) -> str:
    """The ``--key=`` text that load_config turns back into ``value``: strings as they are, numbers and
    booleans as Python writes them, lists as a YAML flow list (PyYAML quotes what it would misread, such
    as ``yes`` or ``a,b``, and writes floats so that they read back as floats)."""
    if isinstance(value, (list, tuple)):
        try:
            return yaml.safe_dump(as_lists(value), default_flow_style=True, width=1 << 30).strip()
        except yaml.YAMLError:
            raise ValueError("%s: a list of str, int, float or bool is expected, got %r" % (key, value)) from None
    if isinstance(value, (str, numbers.Real)):
        return str(value)
    raise ValueError("%s: a str, int, float, bool or list is expected, got %s %r" % (key, type(value).__name__, value))


def config_arguments(config_path: str = "", overrides=None) -> list:
    """The command line (``--config_path=...``, ``--key=value``, ...) of a config file and keyword overrides."""
    head = ["--config_path=%s" % os.fspath(config_path)] if config_path else []
    return head + ["--%s=%s" % (key, argument_text(key, value)) for key, value in (overrides or {}).items()]


def build_config(config_path: str = "", overrides=None):
    """The Config of default_config.yaml, ``config_path`` and ``overrides``; a problem is a one-line ValueError."""
    try:
        return load_config(config_arguments(config_path, overrides))
    except ConfigError as err:
        raise ValueError(str(err)) from None


def image_array(image) -> np.ndarray:
    """The HWC uint8 BGR array of an image given as such an array or as a file path."""
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        if not os.path.isfile(path):
            raise UserError("image not found: %s" % path)
        array = read_image(path)
        if array is None:
            raise UserError("%s: not a readable image" % path)
        return array
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3 or 0 in array.shape:
        raise ValueError("an image is an HWC uint8 BGR array with 3 channels (as cv2.imread gives it) or a path, "
                         "got %s %s" % (array.dtype, list(array.shape)))
    return array


class Detection(NamedTuple):
    """One detected object: ``box`` (x0, y0, x1, y1) in the image's pixels, its class name and score."""
    box: tuple
    class_name: str
    score: float


class Detections:
    """The detections of one image, best score first.

    ``boxes`` float [K, 4] (x0, y0, x1, y1 in the image's pixels), ``labels`` int [K] (indices in
    ``classes``), ``class_names`` [K] and ``scores`` float [K]; iterating gives :class:`Detection` tuples.
    """

    def __init__(self, boxes, labels, scores, classes):
        self.boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        self.labels = np.asarray(labels, np.int64).reshape(-1)
        self.scores = np.asarray(scores, np.float64).reshape(-1)
        self.classes = list(classes)
        self.class_names = [self.classes[label] for label in self.labels]

    @classmethod
    def from_coco(cls, records, classes):
        """The detections of COCO dicts whose ``category_id`` is the label index (as detect_image gives them)."""
        boxes = [[x, y, x + w, y + h] for x, y, w, h in (record["bbox"] for record in records)]
        return cls(boxes, [record["category_id"] for record in records], [record["score"] for record in records],
                   classes)

    def to_coco(self, image_id: int = 1) -> list:
        """COCO result dicts ``{"image_id", "category_id" (the label index), "bbox": [x, y, w, h], "score"}``."""
        return [{"image_id": int(image_id), "category_id": int(label), "bbox": [x0, y0, x1 - x0, y1 - y0],
                 "score": score} for (x0, y0, x1, y1), label, score
                in zip(self.boxes.tolist(), self.labels.tolist(), self.scores.tolist())]

    def draw(self, image) -> np.ndarray:
        """A copy of ``image`` (HWC uint8 BGR) with each box, class name and score drawn."""
        return draw_boxes(image, self.to_coco(), dict(enumerate(self.classes)))[0]

    def __len__(self):
        return len(self.scores)

    def __iter__(self):
        for box, class_name, score in zip(self.boxes.tolist(), self.class_names, self.scores.tolist()):
            yield Detection(tuple(box), class_name, score)

    def __repr__(self):
        shown = ", ".join("%s %.2f" % (name, score) for name, score in zip(self.class_names[:5], self.scores))
        return "Detections(%d: %s%s)" % (len(self), shown, ", ..." if len(self) > 5 else "")


class Detector:
    """Detects objects in images: ``detector(image) -> Detections``, ``detector([images]) -> [Detections]``.

    ``predict`` maps a float32 batch [B, 3, H, W] to numpy (boxes, scores) (:mod:`src.inference.runtimes`);
    ``cfg`` gives the input size, the class names and the post-processing thresholds.
    """

    def __init__(self, predict, cfg):
        self.predict = predict
        self.cfg = cfg

    @classmethod
    def from_checkpoint(cls, path: str, config_path: str = "", **overrides) -> "Detector":
        """The detector of a MindSpore checkpoint, on the runtime ``infer_backend`` names (mindspore or
        onnxruntime); ``overrides`` are config keys, e.g. ``score_threshold=0.5``."""
        return cls.from_config(build_config(config_path, overrides), path)

    @classmethod
    def from_config(cls, cfg, checkpoint_path: str) -> "Detector":
        """The detector of a checkpoint under a loaded Config (infer.py's way in): the checkpoint's stored
        model settings merged into ``cfg``, the device set up, then the predictor of ``infer_backend``."""
        path = os.fspath(checkpoint_path)
        if not os.path.isfile(path):
            raise UserError("checkpoint not found: %s" % path)
        cfg = config_for_checkpoint(cfg, path)
        setup_device(cfg)
        return cls(checkpoint_predictor(cfg, path), cfg)

    @classmethod
    def from_onnx(cls, path: str, config_path: str = "", **overrides) -> "Detector":
        """The detector of an exported ONNX file, run by onnxruntime; the model settings of its description
        (``ssd.json`` beside ``ssd.onnx``) are applied, and the graph must fit the configuration."""
        path = os.fspath(path)
        cfg = config_for_export(build_config(config_path, overrides), path)
        runtime = OnnxDetector(path, cfg.device_target)
        runtime.check_config(cfg)
        return cls(runtime, cfg)

    @property
    def classes(self) -> list:
        """The class names, background first; a detection's label is its index here."""
        return list(self.cfg.classes)

    def detect(self, image) -> Detections:
        """The detections of one image (an HWC uint8 BGR array or a path)."""
        records = detect_image(self.predict, image_array(image), self.cfg, 1)
        return Detections.from_coco(records, self.cfg.classes)

    def __call__(self, images):
        """:meth:`detect` of one image, or a list of Detections for a list (or tuple) of images."""
        if isinstance(images, (list, tuple)):
            return [self.detect(image) for image in images]
        return self.detect(images)
