"""Static post-training INT8 quantisation of an exported ONNX detector, for faster CPU inference.

:func:`quantize_onnx` turns the float32 file that ``export.py --file_format=ONNX`` writes into a QDQ
(QuantizeLinear/DequantizeLinear) INT8 file with the same input and outputs, which :class:`OnnxDetector`,
``eval_onnx.py`` and ``--infer_backend`` users run unchanged. :func:`calibration_images` gives the images
its activation ranges are measured on: the first images of the training split, pre-processed exactly as
evaluation pre-processes them.

Only the network is quantised; the box decoding and the sigmoid behind it (the "decoding tail") stay
float32: they are a few element-wise ops on [B, N, 4] and [B, N, num_classes], so quantising them gains
no speed, while 8-bit sums of box centres and ``exp`` of an 8-bit offset cost precision (on the trained
default run, quantising the tail too about doubled the mean box error against float; the figures are in
docs/deployment.md).

``onnxruntime.quantization`` needs the ``onnx`` package; without it :func:`quantize_onnx` stops with one
line saying how to install it.
"""
import itertools
import os
import sys
import tempfile

import numpy as np

from src.data.pipeline import create_ssd_dataset
from src.data.prepare import prepare_split
from src.errors import UserError

try:
    from onnxruntime.quantization import CalibrationDataReader
except ImportError:  # onnx or onnxruntime missing: quantize_onnx says so in one line before using the reader
    CalibrationDataReader = object

ONNX_INSTALL_HINT = "pip install 'onnx>=1.17,<2' 'numpy>=1.24,<2'"
QDQ_OPSET = 13
NETWORK_OP_TYPES = ("Conv", "ConvTranspose", "MatMul", "Gemm")
QUANTIZED_OP_TYPES = ["Conv", "Clip", "Relu", "Add", "MaxPool", "AveragePool", "GlobalAveragePool", "Resize",
                      "MatMul", "Gemm"]


def quantization_modules():
    """(onnx, onnxruntime.quantization), or a one-line UserError naming the package to install."""
    try:
        import onnx
        from onnxruntime import quantization
    except ImportError as err:
        raise UserError("INT8 quantisation needs onnx and onnxruntime (%s): %s" % (err, ONNX_INSTALL_HINT)) from None
    return onnx, quantization


def checked_count(count):
    """``count`` if it is a whole number of at least 1, else a one-line UserError."""
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise UserError("the calibration image count must be a whole number of at least 1, got %r" % (count,))
    return int(count)


def first_images(dataset, count):
    """The images of the first ``count`` rows of a batch-1 evaluation dataset, each float32 [1, 3, H, W]."""
    rows = dataset.create_tuple_iterator(output_numpy=True, num_epochs=1)
    for _, (_, image, _) in zip(range(count), rows):
        yield np.ascontiguousarray(image, dtype=np.float32)


def calibration_images(cfg, count):
    """Iterator of the first ``count`` training images as float32 [1, 3, H, W], pre-processed as evaluation
    pre-processes images (resize and normalise, no augmentation), so the measured activation ranges are
    those the quantised model sees at inference. A count above the split's size uses the whole split."""
    count = checked_count(count)
    info = prepare_split(cfg, True)
    total = int(info["num_images"])
    if count > total:
        print("calibration: %d images asked for but the training split has %d; using all %d" % (count, total, total))
        count = total
    return first_images(create_ssd_dataset(cfg, info["files"], False, 1), count)


def image_batch(batch, image_shape):
    """One calibration batch as a contiguous float32 [B, 3, H, W] array, or a one-line UserError."""
    array = np.ascontiguousarray(batch, dtype=np.float32)
    if array.ndim != 4 or list(array.shape[1:]) != list(image_shape):
        raise UserError("calibration batches must be float32 [B, %s], got an array of shape %s"
                        % (", ".join(str(v) for v in image_shape), list(array.shape)))
    return array


def regrouped(batches, batch_size, image_shape):
    """Images of ``batches`` (arrays of any batch size) regrouped into [batch_size, 3, H, W] arrays, the
    graph's fixed batch size; a last incomplete group is dropped."""
    pending = []
    for batch in batches:
        pending.extend(image_batch(batch, image_shape))
        while len(pending) >= batch_size:
            yield np.stack(pending[:batch_size])
            del pending[:batch_size]


class ImageBatchReader(CalibrationDataReader):
    """onnxruntime's calibration input: one ``{input_name: float32 [B, 3, H, W]}`` feed per call, then None.
    ``used`` counts the feeds handed out."""

    def __init__(self, groups, input_name):
        self.groups = iter(groups)
        self.input_name = input_name
        self.used = 0

    def get_next(self):
        """The next input feed, or None when the batches are used up."""
        group = next(self.groups, None)
        if group is None:
            return None
        self.used += 1
        return {self.input_name: group}


def calibration_reader(batches, input_name, batch_size, image_shape):
    """An :class:`ImageBatchReader` over ``batches`` regrouped to the graph's batch size, or a one-line
    UserError when they hold fewer images than one graph batch (checked before any work starts)."""
    groups = regrouped(batches, batch_size, image_shape)
    first = next(groups, None)
    if first is None:
        raise UserError("no calibration images: quantisation needs at least %d image(s) of shape %s"
                        % (batch_size, list(image_shape)))
    return ImageBatchReader(itertools.chain([first], groups), input_name)


def load_float_model(onnx, path):
    """The ONNX model at ``path``, or a one-line UserError."""
    if not os.path.isfile(path):
        raise UserError("ONNX file not found: %s" % path)
    try:
        return onnx.load(path)
    except Exception as err:  # protobuf's DecodeError and onnx's own errors share no narrower base
        raise UserError("%s: not an ONNX model (%s)" % (path, str(err).strip().splitlines()[0])) from None


def graph_input(model):
    """(name, batch size, [3, H, W]) of the model's single image input (batch 1 for a dynamic batch axis), or
    a one-line UserError."""
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim] if len(inputs) == 1 else []
    if len(dims) != 4 or min(dims[1:]) < 1:
        raise UserError("expected one [B, 3, H, W] input of fixed image size, as export.py writes; got %s"
                        % [i.name for i in inputs])
    return inputs[0].name, dims[0] or 1, dims[1:]


def with_qdq_opset(onnx, model):
    """``model`` at the default-domain opset per-channel QDQ needs (13: the ``axis`` of DequantizeLinear).
    MindSpore exports opset 11; its operators here mean the same at 13."""
    version = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if version >= QDQ_OPSET:
        return model
    from onnx import version_converter
    return version_converter.convert_version(model, QDQ_OPSET)


def pre_processed(quantization, model_path, folder):
    """``model_path`` after onnxruntime's quantisation pre-processing (shape inference, Conv+BatchNorm
    folding and other graph clean-ups), written into ``folder``; the input path itself when that fails,
    since the pre-processing only helps: quantisation works without it."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    output = os.path.join(folder, "pre_processed.onnx")
    try:
        quant_pre_process(model_path, output)
    except Exception as err:  # any failure of an optional step: quantise the model as it is
        print("quantize: pre-processing skipped (%s)" % str(err).strip().splitlines()[0], file=sys.stderr)
        return model_path
    return output


def decoding_tail(model):
    """Names of the nodes between the network's last layers and the graph outputs: every node reached
    walking back from the outputs before a Conv (or MatMul/Gemm), i.e. the head reshapes and concats,
    the box decoding (Slice, Mul, Exp, Add, Sub, Concat, Min, Max) and the sigmoid."""
    producers = {output: node for node in model.graph.node for output in node.output}
    tail, pending = [], [output.name for output in model.graph.output]
    while pending:
        node = producers.get(pending.pop())
        if node is None or node.name in tail or node.op_type in NETWORK_OP_TYPES:
            continue
        tail.append(node.name)
        pending.extend(node.input)
    return tail


def temporary_path(path):
    """The name ``path`` is written under before the rename: hidden, beside it (same file system, so the
    rename is atomic) and unique to this process."""
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, ".%s.%d.partial" % (name, os.getpid()))


def write_quantized(quantization, model_path, output_path, reader, per_channel, nodes_to_exclude):
    """Run ``quantize_static`` from ``model_path`` to ``output_path`` with the project's choices (see
    :func:`quantize_onnx`)."""
    quantization.quantize_static(
        model_path, output_path, reader, quant_format=quantization.QuantFormat.QDQ,
        op_types_to_quantize=QUANTIZED_OP_TYPES, per_channel=per_channel, reduce_range=True,
        activation_type=quantization.QuantType.QUInt8, weight_type=quantization.QuantType.QInt8,
        nodes_to_exclude=nodes_to_exclude, calibrate_method=quantization.CalibrationMethod.MinMax)


def quantize_onnx(float_path, int8_path, calibration_batches, per_channel=True):
    """Write a static INT8 (QDQ) version of the float32 detector ``float_path`` at ``int8_path``; returns the
    absolute path written.

    ``calibration_batches`` is any iterable of float32 [B, 3, H, W] arrays pre-processed as for evaluation
    (:func:`calibration_images` gives them); activation ranges are their min and max. Choices, measured on
    this project's SSD300-MobileNetV2 with onnxruntime on an x86 (AVX2) CPU:

    * QDQ format, uint8 activations and int8 weights (U8S8) with 7-bit weights (``reduce_range``), weights
      per output channel. On an AVX2 CPU without VNNI onnxruntime runs U8S8 faster than float and S8S8
      slower; 7-bit weights cost no speed and bring the outputs closer to float, as they avoid the
      saturation of AVX2's u8 x s8 multiply-add. Per-channel weights keep the depthwise convolutions,
      whose channels differ widely in range, accurate.
    * Only the network's operator types (Conv, and Clip/Relu/Add/pooling/Resize/MatMul between them) are
      quantised, and the decoding tail (:func:`decoding_tail`) is excluded by name, so ``boxes`` and
      ``scores`` are computed in float32 from the head convolutions' (dequantised) outputs. The head
      convolutions themselves stay int8: keeping them float cost speed for no measurable mAP.
    * Without the pre-processing (below) the outputs were several times further from float: it folds
      BatchNorm into the convolutions, which are then quantised once instead of twice.
    * The model is first raised to opset 13 (per-channel Q/DQ needs it; MindSpore writes 11) and
      pre-processed by onnxruntime's ``quant_pre_process`` (skipped with a one-line note if it fails).

    The file appears only when complete: it is written under a temporary name beside it and renamed.
    """
    onnx, quantization = quantization_modules()
    model = load_float_model(onnx, float_path)
    input_name, batch_size, image_shape = graph_input(model)
    reader = calibration_reader(calibration_batches, input_name, batch_size, image_shape)
    output = temporary_path(int8_path)
    try:
        with tempfile.TemporaryDirectory(prefix="ssd_int8_") as folder:
            opset_path = os.path.join(folder, "opset%d.onnx" % QDQ_OPSET)
            onnx.save(with_qdq_opset(onnx, model), opset_path)
            prepared = pre_processed(quantization, opset_path, folder)
            write_quantized(quantization, prepared, output, reader, per_channel, decoding_tail(onnx.load(prepared)))
        os.replace(output, int8_path)
    finally:
        if os.path.exists(output):
            os.remove(output)
    return os.path.abspath(int8_path)
