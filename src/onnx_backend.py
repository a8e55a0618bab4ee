"""onnxruntime as an inference backend: an exported ONNX detector (see src/export.py) as a ``predict``
function, the same contract as :func:`src.inference.mindspore_predictor`.

On CPU, onnxruntime runs the exported SSD300-MobileNetV2 about 20 times faster than MindSpore 2.10 runs
the same graph (see the ``deploy`` figures of ``python -m benchmarks.run``). ``device_target=GPU`` uses
onnxruntime's CUDA provider (the ``onnxruntime-gpu`` package); every other target runs on the CPU.
"""
import os
import tempfile

import numpy as np

from src.errors import UserError

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

    def __init__(self, path, device_target="CPU"):
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


def onnx_file(file_name):
    """The ONNX file named by ``file_name`` (``.onnx`` added when the plain name does not exist)."""
    if os.path.isfile(file_name) or file_name.lower().endswith(".onnx"):
        return file_name
    return file_name + ".onnx"


def onnxruntime_predictor(cfg, checkpoint_path):
    """``predict`` for a checkpoint through onnxruntime: its detector is exported to a temporary ONNX file
    (batch 1, plain formulation), loaded into a session, and the file removed."""
    from src.export import export_checkpoint

    import_onnxruntime()
    with tempfile.TemporaryDirectory(prefix="ssd_onnx_") as folder:
        path = export_checkpoint(cfg, checkpoint_path, os.path.join(folder, "ssd"), "ONNX", 1)
        detector = OnnxDetector(path, cfg.device_target)
    return detector
