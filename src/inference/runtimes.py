"""Runtimes: each turns a detector into ``predict(images [B, 3, H, W] float32) -> (boxes, scores)`` on numpy
arrays, the one contract evaluation, inference and the benchmarks use.

* MindSpore: :func:`mindspore_predictor` over an ``SsdDetector`` cell, or :func:`load_mindir` for an
  exported MINDIR (what the Ascend 310 app runs, here with MindSpore);
* onnxruntime: :class:`OnnxDetector` over an exported ONNX file. On CPU it runs the exported graph
  much faster than MindSpore does (see the ``deploy`` figures in benchmarks/README.md), which is why
  ``--infer_backend=onnxruntime`` exists. ``device_target=GPU`` uses onnxruntime's CUDA provider (the
  ``onnxruntime-gpu`` package); every other target runs on the CPU. onnxruntime is imported only when
  used, so MindSpore alone is enough for everything else.
"""
import os
import tempfile
from typing import Callable

import mindspore as ms
import numpy as np
from mindspore import nn

from src.errors import UserError
from src.inference.detector import detector_from_checkpoint
from src.inference.export import export_checkpoint, exported_path

INSTALL_HINT = "pip install 'onnxruntime>=1.17,<2'"


def import_onnxruntime():
    """The onnxruntime module, or a one-line UserError saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise UserError("onnxruntime is not installed: %s (or onnxruntime-gpu for CUDA)" % INSTALL_HINT) from None
    return onnxruntime


def providers_for(device_target, available):
    """onnxruntime execution providers for a device target: CUDA for GPU (required), else the CPU."""
    if device_target == "GPU":
        if "CUDAExecutionProvider" not in available:
            raise UserError("device_target=GPU but this onnxruntime has no CUDAExecutionProvider "
                            "(install onnxruntime-gpu, or use --device_target=CPU)")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def open_session(path, device_target):
    """An onnxruntime InferenceSession of ``path``, or a one-line UserError naming the file."""
    ort = import_onnxruntime()
    if not os.path.isfile(path):
        raise UserError("ONNX file not found: %s" % path)
    providers = providers_for(device_target, ort.get_available_providers())
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(path, options, providers=providers)
    except Exception as err:  # onnxruntime's errors (InvalidProtobuf, Fail...) derive from Exception only
        first = next((line for line in str(err).splitlines() if line.strip()), "unknown error")
        raise UserError("%s: onnxruntime cannot load it: %s" % (path, first.strip())) from None


class OnnxDetector:
    """An exported detector run by onnxruntime: ``detector(images) -> (boxes, scores)`` on numpy arrays.

    The graph's batch size is fixed at export; batches of another size are run in chunks of that size
    (the last one padded), so any ``eval_batch_size`` works.
    """

    def __init__(self, path: str, device_target: str = "CPU"):
        self.session = open_session(path, device_target)
        self.path = path
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 2 or len(inputs[0].shape) != 4:
            raise UserError("%s: expected one [B, 3, H, W] input and two outputs (boxes, scores), got %d input(s) "
                            "and %d output(s); export it with export.py" % (path, len(inputs), len(outputs)))
        self.input_name = inputs[0].name
        shape = inputs[0].shape
        self.batch = shape[0] if isinstance(shape[0], int) else None
        self.image_shape = [v if isinstance(v, int) else None for v in shape[1:]]
        self.num_classes = outputs[1].shape[-1] if isinstance(outputs[1].shape[-1], int) else None

    def check_config(self, cfg):
        """Raise a one-line UserError when the graph does not fit ``img_shape`` or ``num_classes`` of ``cfg``."""
        expected = [3] + [int(v) for v in cfg.img_shape]
        if any(got is not None and got != want for got, want in zip(self.image_shape, expected)):
            raise UserError("%s takes images %s but img_shape is %s: pass the --img_shape (or --config_path) "
                            "it was exported with" % (self.path, self.image_shape[1:], list(cfg.img_shape)))
        if self.num_classes is not None and self.num_classes != cfg.num_classes:
            raise UserError("%s gives scores for %d classes but num_classes is %d: pass the --config_path it was "
                            "exported with" % (self.path, self.num_classes, cfg.num_classes))

    def __call__(self, images):
        """(boxes, scores) of a float32 batch [B, 3, H, W], run in chunks of the graph's batch size."""
        images = np.ascontiguousarray(images, dtype=np.float32)
        count = images.shape[0]
        step = self.batch or count
        boxes, scores = [], []
        for start in range(0, count, step):
            chunk = images[start:start + step]
            if chunk.shape[0] < step:
                pad = np.zeros((step - chunk.shape[0],) + chunk.shape[1:], np.float32)
                chunk = np.concatenate([chunk, pad])
            out_boxes, out_scores = self.session.run(None, {self.input_name: chunk})
            boxes.append(out_boxes)
            scores.append(out_scores)
        return np.concatenate(boxes)[:count], np.concatenate(scores)[:count]


def onnx_file(file_name: str) -> str:
    """The ONNX file named by ``file_name`` (``.onnx`` added when the plain name does not exist)."""
    if os.path.isfile(file_name) or file_name.lower().endswith(".onnx"):
        return file_name
    return file_name + ".onnx"


def onnxruntime_predictor(cfg, checkpoint_path: str) -> "OnnxDetector":
    """``predict`` for a checkpoint through onnxruntime: its detector is exported to a temporary ONNX file
    (batch 1, plain formulation), loaded into a session, and the file removed."""
    import_onnxruntime()
    with tempfile.TemporaryDirectory(prefix="ssd_onnx_") as folder:
        path = export_checkpoint(cfg, checkpoint_path, os.path.join(folder, "ssd"), "ONNX", 1)
        detector = OnnxDetector(path, cfg.device_target)
    return detector


def mindspore_predictor(detector) -> Callable:
    """``predict(images) -> (boxes, scores)`` on numpy arrays, running a MindSpore ``detector`` cell."""
    def predict(images):
        boxes, scores = detector(ms.Tensor(images))
        return boxes.asnumpy(), scores.asnumpy()
    return predict


def checkpoint_predictor(cfg, checkpoint_path: str) -> Callable:
    """``predict`` for a checkpoint on the runtime named by ``cfg.infer_backend``: ``mindspore`` (the
    network of ``cfg``) or ``onnxruntime`` (the checkpoint exported to ONNX first)."""
    backend = cfg.get("infer_backend") or "mindspore"
    if backend == "onnxruntime":
        return onnxruntime_predictor(cfg, checkpoint_path)
    if backend != "mindspore":
        raise UserError("infer_backend must be mindspore or onnxruntime, got '%s'" % backend)
    return mindspore_predictor(detector_from_checkpoint(cfg, checkpoint_path))


def mindir_file(file_name: str) -> str:
    """The MINDIR named by ``file_name`` (``.mindir`` added when the plain name does not exist)."""
    return file_name if os.path.isfile(file_name) else exported_path(file_name, "MINDIR")


def load_mindir(path: str):
    """``nn.GraphCell`` of a MINDIR file, or a one-line UserError."""
    if not os.path.isfile(path):
        raise UserError("MINDIR file not found: %s" % path)
    try:
        return nn.GraphCell(ms.load(path))
    except (RuntimeError, ValueError) as err:
        raise UserError("%s: MindSpore cannot load it: %s" % (path, str(err).strip().splitlines()[0])) from None
