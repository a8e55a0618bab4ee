"""Export the detector graph: the SSD network plus box decoding and sigmoid (``SsdDetector``), as MINDIR,
AIR or ONNX. NMS stays outside the graph, as in the model zoo.

The graph takes ``image`` float32 ``[B, 3, H, W]`` (normalised as :func:`src.data.augment.eval_transform`
makes it) and gives ``boxes`` float32 ``[B, N, 4]`` (ymin, xmin, ymax, xmax in [0, 1]) and ``scores``
float32 ``[B, N, num_classes]`` (sigmoid; column 0 is the background). The network is always built
in its plain formulation (``fast_conv=False``): the fast CPU one runs custom C++ kernels that no
exported format can hold. Both have the same parameters, so any checkpoint exports. Beside the file,
``<file_name>.json`` describes it (:func:`src.model_settings.export_description`): model settings, input and
outputs, post-processing thresholds; eval_onnx.py and postprocess.py read it.
"""
import os

import mindspore as ms
import numpy as np

from src.device import export_onnx
from src.errors import UserError
from src.inference.coco_eval import write_json_atomic
from src.inference.detector import detector_from_checkpoint
from src.inference.quantize import calibration_images, quantize_onnx
from src.model_settings import description_path, export_description

SUFFIXES = {"MINDIR": ".mindir", "AIR": ".air", "ONNX": ".onnx"}
INPUT_NAMES = ["image"]
OUTPUT_NAMES = ["boxes", "scores"]
DYNAMIC_BATCH = -1


def exportable_config(cfg):
    """``cfg`` with the plain network formulation, whose graph every format can hold."""
    return cfg.replace(fast_conv=False) if cfg.get("fast_conv") is not None else cfg


def exported_path(file_name, file_format):
    """The file an export writes: ``file_name`` with the format's suffix added when it lacks it."""
    suffix = SUFFIXES[file_format]
    return file_name if file_name.lower().endswith(suffix) else file_name + suffix


def check_format(cfg, file_format):
    """Raise a one-line UserError for a format this device cannot write."""
    if file_format not in SUFFIXES:
        raise UserError("file_format must be one of %s, got '%s'" % (", ".join(SUFFIXES), file_format))
    if file_format == "AIR" and cfg.device_target != "Ascend":
        raise UserError("AIR export needs an Ascend device (--device_target=Ascend on a machine with CANN); "
                        "device_target is %s: export MINDIR or ONNX instead" % cfg.device_target)


def build_detector(cfg, checkpoint_path):
    """The detector an export writes: ``SsdDetector`` over the plain network holding the checkpoint."""
    return detector_from_checkpoint(exportable_config(cfg), checkpoint_path)


def example_input(cfg, batch_size, file_format="ONNX"):
    """The input tensor an export traces: zeros of shape [batch_size, 3, H, W] (batch 1 for a dynamic
    batch, ``batch_size`` -1, which only ONNX takes)."""
    batch = int(batch_size)
    if batch == DYNAMIC_BATCH and file_format != "ONNX":
        raise UserError("--batch_size=-1 (a dynamic batch) is for ONNX only; %s needs a batch of at least 1"
                        % file_format)
    if batch < 1 and batch != DYNAMIC_BATCH:
        raise UserError("--batch_size must be at least 1 for export (or -1 for a dynamic ONNX batch), got %s"
                        % batch_size)
    return ms.Tensor(np.zeros((max(batch, 1), 3) + tuple(int(v) for v in cfg.img_shape), np.float32))


def export_detector(detector, cfg, file_name, file_format, batch_size=1):
    """Write ``detector`` in ``file_format`` for ``batch_size`` (-1: a dynamic batch axis, ONNX only) and its
    description beside it; returns the path written."""
    check_format(cfg, file_format)
    path = os.path.abspath(exported_path(file_name, file_format))
    inputs = example_input(cfg, batch_size, file_format)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.exists(path):
        os.remove(path)
    if file_format == "ONNX":
        axes = {INPUT_NAMES[0]: {0: "batch"}} if int(batch_size) == DYNAMIC_BATCH else None
        if not export_onnx(detector, inputs, path, INPUT_NAMES, OUTPUT_NAMES, axes) and axes:
            print("note: this MindSpore release cannot export a dynamic batch; %s has batch 1" % path)
            batch_size = 1
    else:
        ms.export(detector, inputs, file_name=path, file_format=file_format)
    if not os.path.isfile(path):
        raise UserError("MindSpore reported no error but wrote no %s file at %s" % (file_format, path))
    write_json_atomic(description_path(path), export_description(cfg, path, file_format, batch_size))
    return path


def export_checkpoint(cfg, checkpoint_path, file_name, file_format, batch_size=1):
    """Export a checkpoint's detector; the format is checked before anything is built."""
    check_format(cfg, file_format)
    return export_detector(build_detector(cfg, checkpoint_path), cfg, file_name, file_format, batch_size)


def quantize_export(cfg, onnx_path, batch_size=1):
    """``<file_name>_int8.onnx`` (and its description) beside the float32 ONNX file ``onnx_path``, calibrated on
    ``cfg.calibration_images`` training images; returns its path."""
    int8_path = onnx_path[:-len(".onnx")] + "_int8.onnx"
    written = quantize_onnx(onnx_path, int8_path, calibration_images(cfg, int(cfg.calibration_images)))
    description = export_description(cfg, written, "ONNX", batch_size)
    description["quantization"] = "int8: static, QDQ, uint8 activations, int8 per-channel weights (7-bit)"
    write_json_atomic(description_path(written), description)
    return written
