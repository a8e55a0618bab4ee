"""Building blocks of the further SSD networks (MobileNetV1, VGG16, ResNet50, GhostNet, FPN, weight-shared
heads) in both formulations of :mod:`src.models.layers`, with the same parameters either way.

* :class:`Conv`: any convolution of these networks (1x1, dense or depthwise k x k, stride, dilation,
  "same" or explicit zero padding, optional bias). Plain: MindSpore's Conv2D on NCHW. Fast (NHWC): 1x1
  as one matrix product; dense 3x3 "same" through the compiled im2col kernel and a matrix product;
  depthwise 3x3 "same" through the compiled depthwise kernel; anything else (ResNet's 7x7 stem, GhostNet's
  5x5 depthwise, VGG's dilated fc6 and explicitly padded extras) from shifted slices of the padded input
  (im2col by slicing for dense, a weighted sum of the slices for depthwise).
* :func:`batch_norm`: BatchNorm with a model's own eps and momentum (the model zoo uses eps 1e-5 and
  momentum 0.9 for MobileNetV1 and its FPN, eps 1e-3 and momentum 0.997 for ResNet50, eps 1e-3 and
  momentum 0.97 elsewhere). The fast formulation's compiled kernel normalises with ``layers.BN_EPS``: in
  inference the moving variance is shifted so the result is exact for any eps; in training the batch
  statistics use ``layers.BN_EPS`` (a difference far below the batch variances of these layers).
* :func:`conv_bn_act`: [conv, BatchNorm, activation] as the model zoo lays them out (indices 0, 1, 2).
* :class:`MaxPool`, :class:`Upsample` (TensorFlow's legacy bilinear resize, as the model zoo's FPN uses),
  :class:`L2Norm` (SSD paper, section 3.1 "Base network": conv4_3 normalised, learned scale).
"""
import numpy as np

import mindspore as ms
from mindspore import nn, ops, Parameter, Tensor
from mindspore.common.initializer import initializer

from src.models.layers import BN_EPS, FastBatchNorm, conv_weight, depthwise_op, im2col_op

NEG_INF = -3.0e38


def out_side(size, kernel, stride, padding, dilation=1):
    """Output side of a window op: "same" rounds up; an int pads both sides."""
    if padding == "same":
        return (size + stride - 1) // stride
    return (size + 2 * padding - (kernel - 1) * dilation - 1) // stride + 1


def pads(size, kernel, stride, padding, dilation=1):
    """(before, after) zero padding of one axis; "same" puts the odd row or column at the end (TensorFlow)."""
    if padding != "same":
        return padding, padding
    span = (kernel - 1) * dilation + 1
    total = max((out_side(size, kernel, stride, padding) - 1) * stride + span - size, 0)
    return total // 2, total - total // 2


def phases(x, stride, rows, cols):
    """NHWC ``x`` (at least ``stride * rows`` x ``stride * cols``) as ``stride`` x ``stride`` subsampled
    grids: ``grids[py][px]`` is x[:, py::stride, px::stride, :], rows x cols. Built from reshapes and
    ``ops.slice``: MindSpore 2.10's CPU StridedSlice (Python slice syntax) is some 30 times slower, and
    its PyNative gradient with steps fails."""
    batch, channels = x.shape[0], x.shape[3]
    x = ops.slice(x, (0, 0, 0, 0), (batch, rows * stride, cols * stride, channels))
    by_row = ops.reshape(x, (batch, rows, stride * cols * stride * channels))
    width = cols * stride * channels
    grids = []
    for py in range(stride):
        row = ops.reshape(ops.slice(by_row, (0, 0, py * width), (batch, rows, width)),
                          (batch, rows, cols, stride * channels))
        grids.append([ops.slice(row, (0, 0, 0, px * channels), (batch, rows, cols, channels))
                      for px in range(stride)])
    return grids


def window_slices(x, kernel, stride, padding, dilation, fill=0.0):
    """The kernel x kernel shifted views of NHWC ``x`` a window op reads: list of [B, Ho, Wo, C], tap
    (ky, kx) in row-major order, read from ``x`` padded with ``fill``."""
    batch, height, width, channels = x.shape
    top, bottom = pads(height, kernel, stride, padding, dilation)
    left, right = pads(width, kernel, stride, padding, dilation)
    out_h = out_side(height, kernel, stride, padding, dilation)
    out_w = out_side(width, kernel, stride, padding, dilation)
    reach = (kernel - 1) * dilation // stride
    extra_h = max(stride * (reach + out_h) - (top + height + bottom), 0)
    extra_w = max(stride * (reach + out_w) - (left + width + right), 0)
    if top or bottom or left or right or extra_h or extra_w:
        x = ops.pad(x, (0, 0, left, right + extra_w, top, bottom + extra_h), value=fill)
    grids = phases(x, stride, reach + out_h, reach + out_w) if stride > 1 else [[x]]
    views = []
    for tap in range(kernel * kernel):
        y0, x0 = tap // kernel * dilation, tap % kernel * dilation
        grid = grids[y0 % stride][x0 % stride]
        views.append(ops.slice(grid, (0, y0 // stride, x0 // stride, 0), (batch, out_h, out_w, channels)))
    return views


class Conv(nn.Cell):
    """Convolution with weight [out, in / groups, k, k] and optional bias [out]; ``groups`` is 1 (dense) or
    ``in_channels`` (depthwise, out == in). ``padding`` is "same" (TensorFlow) or a number of zero rows
    and columns on each side. Input and output are NCHW, or NHWC with ``fast``."""

    def __init__(self, in_channels, out_channels, kernel_size=1, stride=1, groups=1, has_bias=False, fast=False,
                 padding="same", dilation=1, weight_init=None, bias_init="zeros"):
        super().__init__()
        if groups not in (1, in_channels) or (groups != 1 and out_channels != in_channels):
            raise ValueError("only dense or depthwise convolutions are supported, got groups=%d" % groups)
        self.weight = conv_weight((out_channels, in_channels // groups, kernel_size, kernel_size), weight_init)
        self.bias = Parameter(initializer(bias_init, (out_channels,), ms.float32), name="bias") if has_bias else None
        self.fast, self.kernel, self.stride, self.padding, self.dilation = fast, kernel_size, stride, padding, dilation
        self.depthwise = groups != 1
        self.matrix = (out_channels, in_channels // groups * kernel_size * kernel_size)
        self.path = self._fast_path() if fast else "plain"
        if self.path == "plain":
            mode = "same" if padding == "same" else "pad"
            self.conv = ops.Conv2D(out_channels, kernel_size, pad_mode=mode, pad=0 if padding == "same" else padding,
                                   stride=stride, dilation=dilation, group=groups)
        elif self.path == "im2col":
            self.im2col = im2col_op(stride)
        elif self.path == "depthwise3x3":
            self.conv = depthwise_op(stride)
        self.matmul = ops.MatMul(transpose_b=True)

    def _fast_path(self):
        same3 = self.kernel == 3 and self.padding == "same" and self.dilation == 1 and self.stride in (1, 2)
        if self.kernel == 1 and self.padding in ("same", 0):
            return "pointwise"
        if same3:
            return "depthwise3x3" if self.depthwise else "im2col"
        return "slices"

    def construct(self, x):
        if self.path == "plain":
            y = self.conv(x, self.weight)
            return y if self.bias is None else ops.bias_add(y, self.bias)
        if self.path == "pointwise":
            if self.stride > 1:
                x = window_slices(x, 1, self.stride, "same", 1)[0]
            y = self._dense(x)
        elif self.path == "im2col":
            y = self._dense(self.im2col(x))
        elif self.path == "depthwise3x3":
            y = self.conv(x, self.weight)
        elif self.depthwise:
            y = self._depthwise_slices(x)
        else:
            columns = ops.concat(window_slices(x, self.kernel, self.stride, self.padding, self.dilation), -1)
            y = self._dense(columns, tap_major=True)
        return y if self.bias is None else y + self.bias

    def _dense(self, columns, tap_major=False):
        """columns [B, H, W, K] times the weight as [out, K]: K ordered (c, ky, kx), or (ky, kx, c) if tap_major."""
        weight = ops.transpose(self.weight, (0, 2, 3, 1)) if tap_major else self.weight
        y = self.matmul(ops.reshape(columns, (-1, self.matrix[1])), ops.reshape(weight, self.matrix))
        return ops.reshape(y, columns.shape[:-1] + (self.matrix[0],))

    def _depthwise_slices(self, x):
        taps = ops.transpose(ops.reshape(self.weight, (self.matrix[0], -1)), (1, 0))
        views = window_slices(x, self.kernel, self.stride, self.padding, self.dilation)
        y = views[0] * taps[0]
        for k in range(1, len(views)):
            y = y + views[k] * taps[k]
        return y


def _rows(shape):
    rows = 1
    for side in shape[:-1]:
        rows = rows * side
    return rows


class ZooBatchNorm(FastBatchNorm):
    """The fast (NHWC, compiled) BatchNorm with a model's own eps (exact in inference) and momentum
    (``momentum`` as nn.BatchNorm2d takes it, the weight of the old average; the attribute, as in
    nn.BatchNorm2d and FastBatchNorm, holds the weight of a new batch)."""

    def __init__(self, channels, relu6, eps, momentum):
        super().__init__(channels, relu6)
        self.var_shift = float(eps - BN_EPS)
        self.momentum = 1.0 - float(momentum)

    def construct(self, x):
        if self.training:
            y, mean, var, _, _ = self.train_op(x, self.gamma, self.beta, self.moving_mean, self.moving_variance)
            rows = _rows(x.shape)
            unbiased = var * (rows / max(rows - 1, 1))
            keep = 1.0 - self.momentum
            ops.assign(self.moving_mean, keep * self.moving_mean + self.momentum * mean)
            ops.assign(self.moving_variance, keep * self.moving_variance + self.momentum * unbiased)
            return y
        return self.infer_op(x, self.gamma, self.beta, self.moving_mean, self.moving_variance + self.var_shift)


def batch_norm(channels, fast=False, eps=BN_EPS, momentum=0.97, relu6=False, gamma_init="ones"):
    """BatchNorm (parameters gamma, beta, moving_mean, moving_variance); fast with ``relu6`` fuses ReLU6."""
    if fast:
        norm = ZooBatchNorm(channels, relu6, eps, momentum)
    else:
        norm = nn.BatchNorm2d(channels, eps=eps, momentum=momentum)
    if gamma_init != "ones":
        norm.gamma.set_data(initializer(gamma_init, (channels,), ms.float32))
    return norm


def activation(name):
    """A cell for "relu", "relu6" or "hsigmoid" (relu6(x + 3) / 6)."""
    cells = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hsigmoid": HardSigmoid}
    return cells[name]()


class HardSigmoid(nn.Cell):
    """relu6(x + 3) / 6 (GhostNet's squeeze-and-excitation gate)."""

    def __init__(self):
        super().__init__()
        self.relu6 = nn.ReLU6()

    def construct(self, x):
        return self.relu6(x + 3.0) / 6.0


def conv_bn_act(in_channels, out_channels, kernel_size=3, stride=1, groups=1, fast=False, act="relu6",
                eps=BN_EPS, momentum=0.97, has_bias=False, conv=None):
    """[conv, BatchNorm, activation] (act None: no activation cell). ``conv`` reuses a given convolution
    (weight sharing). Fast with ReLU6: the BatchNorm kernel applies it and index 2 is an Identity."""
    conv = conv if conv is not None else Conv(in_channels, out_channels, kernel_size, stride, groups, has_bias, fast)
    fused = fast and act == "relu6"
    cells = [conv, batch_norm(out_channels, fast, eps, momentum, relu6=fused)]
    if act is not None:
        cells.append(nn.Identity() if fused else activation(act))
    return cells


class ConvBNAct(nn.Cell):
    """``conv_bn_act`` held as ``features.0/1/2`` (the model zoo's ConvBNReLU layout)."""

    def __init__(self, *args, **kwargs):
        super().__init__()
        self.features = nn.SequentialCell(conv_bn_act(*args, **kwargs))

    def construct(self, x):
        return self.features(x)


class MaxPool(nn.Cell):
    """Max pooling, "same" padding (padded cells never win), NCHW or NHWC (``fast``)."""

    def __init__(self, kernel_size, stride, fast=False):
        super().__init__()
        self.kernel, self.stride, self.fast = kernel_size, stride, fast
        self.pool = None if fast else nn.MaxPool2d(kernel_size=kernel_size, stride=stride, pad_mode="same")

    def construct(self, x):
        if not self.fast:
            return self.pool(x)
        views = window_slices(x, self.kernel, self.stride, "same", 1, NEG_INF)
        y = views[0]
        for k in range(1, len(views)):
            y = ops.maximum(y, views[k])
        return y


def legacy_bilinear_weights(in_size, out_size):
    """Source rows (i0, i1) and weights of the second for TensorFlow's legacy bilinear resize
    (align_corners and half_pixel_centers both False): output row r reads input r * in / out."""
    src = np.arange(out_size, dtype=np.float64) * (in_size / out_size)
    low = np.minimum(np.floor(src).astype(np.int32), in_size - 1)
    high = np.minimum(low + 1, in_size - 1)
    return low, high, (src - low).astype(np.float32)


class Upsample(nn.Cell):
    """Bilinear resize of square maps from ``in_size`` to ``out_size`` (MindSpore's ResizeBilinear with
    its defaults, i.e. TensorFlow's legacy mode), as gathers of precomputed rows; NCHW or NHWC."""

    def __init__(self, in_size, out_size, channels_last=False):
        super().__init__()
        low, high, frac = legacy_bilinear_weights(in_size, out_size)
        self.low, self.high = Tensor(low), Tensor(high)
        self.axes = (1, 2) if channels_last else (2, 3)
        self.fractions = []
        for axis in self.axes:
            shape = [1, 1, 1, 1]
            shape[axis] = out_size
            self.fractions.append(Tensor(frac.reshape(shape)))
        self.fractions = tuple(self.fractions)

    def construct(self, x):
        for axis, frac in zip(self.axes, self.fractions):
            first = ops.gather(x, self.low, axis)
            x = first + (ops.gather(x, self.high, axis) - first) * frac
        return x


class L2Norm(nn.Cell):
    """Scales every position's channel vector to unit L2 norm, then by a learned per-channel ``scale``
    (initialised to ``scale_init``; SSD paper section 3.1 and ParseNet, Liu et al. 2015). Written as a
    division by ``sqrt`` because MindSpore's ONNX export has no mapping for ``rsqrt``."""

    def __init__(self, channels, scale_init=20.0, channels_last=False, eps=1e-10):
        super().__init__()
        self.scale = Parameter(initializer(float(scale_init), (channels,), ms.float32), name="scale")
        self.axis = -1 if channels_last else 1
        self.shape = (channels,) if channels_last else (channels, 1, 1)
        self.eps = eps

    def construct(self, x):
        norm = ops.sqrt((x * x).sum(self.axis, keepdims=True) + self.eps)
        return x / norm * ops.reshape(self.scale, self.shape)

