"""The layers every SSD network here is built from, in two formulations with the same parameters (names,
shapes, meaning), so a checkpoint written by one loads into the other and into the MindSpore model zoo's
networks. A network takes a layer factory and builds every layer through it, so the formulation is
chosen once (:func:`make_layers`), as torchvision's networks take a ``norm_layer``:

* :class:`PlainLayers`: NCHW tensors and MindSpore's Conv2D, BatchNorm2d and MaxPool2d, as the model zoo
  builds them; right for Ascend and GPU, float16 and export.
* :class:`FastLayers` (CPU, float32): MindSpore 2.10's CPU Conv2D runs every 3x3 convolution through
  oneDNN's reference kernel, and its BatchNorm + ReLU6 pair makes five passes over memory. The fast
  formulation keeps tensors channels last (NHWC) so that a 1x1 convolution is one large matrix product
  (oneDNN's fast path), and runs the 3x3 and 5x5 depthwise convolutions, every dense window (3x3 at stride
  1 and 2, VGG's dilated fc6 and padded extras, ResNet's 7x7 stem), max pooling and training-mode
  BatchNorm (+ ReLU6) in compiled kernels (:mod:`src.native.kernels`); other depthwise windows would be
  computed from shifted slices of the padded input.

Padding is TensorFlow "same" (``pad_mode='same'``) unless a layer gives a number of zero rows and columns,
as in the model zoo: for stride 2 on an even input the extra row and column go at the bottom and right.
"""
import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import HeNormal, initializer

from src.feature_maps import map_hw
from src.native.kernels import (
    BN_EPS,
    BN_MOMENTUM,
    batch_norm_apply_op,
    batch_norm_op,
    batch_norm_settings,
    dense_conv_geometry,
    dense_conv_op,
    depthwise_op,
    max_pool_geometry,
    max_pool_op,
    out_side,
)

NEG_INF = -3.0e38


def conv_weight(shape, init=None):
    """Initial weights, by default He-normal (fan in), which keeps the activation variance through ReLU
    layers (He et al. 2015, "Delving Deep into Rectifiers")."""
    init = init if init is not None else HeNormal(mode="fan_in", nonlinearity="relu")
    return Parameter(initializer(init, shape, ms.float32), name="weight")


# ---- windows of NHWC tensors from slices (the fast formulation's general path) ---------------------

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
    ``ops.slice``: MindSpore 2.10's CPU StridedSlice (Python slice syntax) is much slower, and its
    PyNative gradient with steps fails."""
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


def pad_nhwc(x, top, bottom, left, right, fill=0.0):
    """NHWC ``x`` with ``top``/``bottom`` rows and ``left``/``right`` columns of ``fill`` added, as
    concatenations with constant blocks, not ``ops.pad``: the gradient of ``ops.pad`` is a PadV3 with
    negative paddings (a crop), and MindSpore 2.10's CPU PadV3 kernel is right only on the first launch
    of a crop: it shrinks its stored input shape at every launch, so later launches read the wrong
    elements and then read and write outside their buffers (wrong gradients, NaN, heap corruption;
    tests/native/test_mindspore_pad.py). The gradient of a concatenation is a slice of each part."""
    return pad_axis(pad_axis(x, 2, left, right, fill), 1, top, bottom, fill)


def pad_axis(x, axis, before, after, fill):
    """``x`` with ``before`` and ``after`` slices of ``fill`` concatenated along ``axis``."""
    if not (before or after):
        return x
    shape = x.shape
    parts = (ops.fill(x.dtype, shape[:axis] + (before,) + shape[axis + 1:], fill),) if before else ()
    parts += (x,)
    if after:
        parts += (ops.fill(x.dtype, shape[:axis] + (after,) + shape[axis + 1:], fill),)
    return ops.concat(parts, axis)


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
    x = pad_nhwc(x, top, bottom + extra_h, left, right + extra_w, fill)
    grids = phases(x, stride, reach + out_h, reach + out_w) if stride > 1 else [[x]]
    views = []
    for tap in range(kernel * kernel):
        y0, x0 = tap // kernel * dilation, tap % kernel * dilation
        grid = grids[y0 % stride][x0 % stride]
        views.append(ops.slice(grid, (0, y0 // stride, x0 // stride, 0), (batch, out_h, out_w, channels)))
    return views


# ---- convolution ------------------------------------------------------------------------------

def fast_path(kernel, stride, padding, dilation, depthwise):
    """How the fast formulation computes a convolution: "pointwise" (one matrix product), "im2col" (any
    dense window: the compiled dense convolution, windows copied tile by tile into a small buffer and
    multiplied by the weight, or Winograd for a 3x3 window at stride 1), "depthwise3x3" / "depthwise5x5"
    (compiled kernels) or "slices" (other depthwise windows: a weighted sum of shifted views of the padded
    input)."""
    if kernel == 1 and padding in ("same", 0):
        return "pointwise"
    if not depthwise:
        return "im2col"
    if kernel in (3, 5) and padding == "same" and dilation == 1 and stride in (1, 2):
        return "depthwise%dx%d" % (kernel, kernel)
    return "slices"


class Conv(nn.Cell):
    """Convolution with weight [out, in / groups, k, k] and optional bias [out]; ``groups`` is 1 (dense) or
    ``in_channels`` (depthwise, out == in). ``padding`` is "same" (TensorFlow) or a number of zero rows
    and columns on each side. Input and output are NCHW (MindSpore's Conv2D), or NHWC with ``fast``
    (the way given by ``path``, see :func:`fast_path`)."""

    def __init__(self, in_channels, out_channels, kernel_size=1, stride=1, groups=1, has_bias=False, fast=False,
                 padding="same", dilation=1, weight_init=None, bias_init="zeros"):
        super().__init__()
        if groups not in (1, in_channels) or (groups != 1 and out_channels != in_channels):
            raise ValueError("only dense or depthwise convolutions are supported, got groups=%d" % groups)
        self.weight = conv_weight((out_channels, in_channels // groups, kernel_size, kernel_size), weight_init)
        self.bias = Parameter(initializer(bias_init, (out_channels,), ms.float32), name="bias") if has_bias else None
        self.kernel, self.stride, self.padding, self.dilation = kernel_size, stride, padding, dilation
        self.depthwise = groups != 1
        self.matrix = (out_channels, in_channels // groups * kernel_size * kernel_size)
        self.path = fast_path(kernel_size, stride, padding, dilation, self.depthwise) if fast else "plain"
        if self.path == "plain":
            mode = "same" if padding == "same" else "pad"
            self.conv = ops.Conv2D(out_channels, kernel_size, pad_mode=mode, pad=0 if padding == "same" else padding,
                                   stride=stride, dilation=dilation, group=groups)
        elif self.path.startswith("depthwise"):
            self.conv = depthwise_op(stride, kernel_size)
        elif self.path == "im2col":
            self.conv = dense_conv_op(kernel_size, stride, padding, dilation)
            self.geometry = dense_conv_geometry(kernel_size, stride, padding, dilation)
        self.matmul = ops.MatMul(transpose_b=True)

    def construct(self, x):
        if self.path == "plain":
            y = self.conv(x, self.weight)
            return y if self.bias is None else ops.bias_add(y, self.bias)
        if self.path.startswith("depthwise"):
            return self._add_bias(self.conv(x, self.weight))
        if self.path == "im2col":
            return self._add_bias(self.conv(x, self.weight, self.geometry))
        if self.path == "pointwise":
            return self._dense(x if self.stride == 1 else window_slices(x, 1, self.stride, "same", 1)[0])
        return self._add_bias(self._depthwise_slices(x))

    def _add_bias(self, y):
        """y [..., out] + bias, added to y seen as a matrix [pixels, out]: the gradient of the bias is then a
        sum over the rows of one matrix, where that of a broadcast NHWC add is MindSpore's CPU ReduceSum
        over three axes, several times slower (about 0.1 s per FPN head layer at batch 8); BiasAdd's
        gradient, BiasAddGrad, is about twice as slow as that sum."""
        if self.bias is None:
            return y
        return ops.reshape(ops.reshape(y, (-1, self.matrix[0])) + self.bias, y.shape)

    def _dense(self, columns):
        """columns [B, H, W, in] times the 1x1 weight as [out, in] (+ bias)."""
        y = self.matmul(ops.reshape(columns, (-1, self.matrix[1])), ops.reshape(self.weight, self.matrix))
        y = self._add_bias(y)
        return ops.reshape(y, columns.shape[:-1] + (self.matrix[0],))

    def _depthwise_slices(self, x):
        taps = ops.transpose(ops.reshape(self.weight, (self.matrix[0], -1)), (1, 0))
        views = window_slices(x, self.kernel, self.stride, self.padding, self.dilation)
        y = views[0] * taps[0]
        for k in range(1, len(views)):
            y = y + views[k] * taps[k]
        return y


# ---- normalisation and activations ------------------------------------------------------------

class FastBatchNorm(nn.Cell):
    """BatchNorm over the last (channel) axis, optionally followed by ReLU6, with nn.BatchNorm2d's
    parameters and semantics (batch statistics in training, moving averages updated with the unbiased
    variance; moving statistics in inference), each way one compiled kernel. ``momentum`` is as
    nn.BatchNorm2d takes it (the weight of the old average); the attribute, as nn.BatchNorm2d's, holds
    the weight of a new batch.

    Each kernel takes this layer's eps and momentum (:func:`src.native.kernels.batch_norm_settings`), so
    training and inference match nn.BatchNorm2d with the same settings: the model zoo's SSD ones (BN_EPS,
    BN_MOMENTUM) by default, eps 1e-5 and momentum 0.9 for MobileNetV1 and the FPN, momentum 0.997 for
    ResNet50.
    """

    def __init__(self, channels, relu6=False, eps=BN_EPS, momentum=BN_MOMENTUM):
        super().__init__()
        self.gamma = Parameter(initializer("ones", (channels,), ms.float32), name="gamma")
        self.beta = Parameter(initializer("zeros", (channels,), ms.float32), name="beta")
        self.moving_mean = Parameter(initializer("zeros", (channels,), ms.float32), name="moving_mean",
                                     requires_grad=False)
        self.moving_variance = Parameter(initializer("ones", (channels,), ms.float32), name="moving_variance",
                                         requires_grad=False)
        self.momentum = 1.0 - float(momentum)
        self.settings = batch_norm_settings(float(eps), float(momentum))
        self.train_op = batch_norm_op(int(relu6))
        self.infer_op = batch_norm_apply_op(int(relu6))

    def construct(self, x):
        if not self.training:
            return self.infer_op(x, self.gamma, self.beta, self.moving_mean, self.moving_variance, self.settings)
        out = self.train_op(x, self.gamma, self.beta, self.moving_mean, self.moving_variance, self.settings)
        ops.assign(self.moving_mean, out[3])
        ops.assign(self.moving_variance, out[4])
        return out[0]


def with_gamma(norm, gamma_init):
    """``norm`` with its gamma set to ``gamma_init`` (e.g. "zeros": a residual block starting as the identity)."""
    if gamma_init != "ones":
        norm.gamma.set_data(initializer(gamma_init, norm.gamma.shape, ms.float32))
    return norm


class HardSigmoid(nn.Cell):
    """relu6(x + 3) / 6 (GhostNet's squeeze-and-excitation gate)."""

    def __init__(self):
        super().__init__()
        self.relu6 = nn.ReLU6()

    def construct(self, x):
        return self.relu6(x + 3.0) / 6.0


def activation(name):
    """A cell for "relu", "relu6" or "hsigmoid" (relu6(x + 3) / 6)."""
    cells = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hsigmoid": HardSigmoid}
    return cells[name]()


# ---- pooling, resizing, L2 normalisation ------------------------------------------------------

class MaxPool(nn.Cell):
    """Max pooling, "same" padding (padded cells never win), NCHW or NHWC (``fast``)."""

    def __init__(self, kernel_size, stride, fast=False):
        super().__init__()
        self.fast = fast
        if fast:
            self.pool = max_pool_op(kernel_size, stride)
            self.geometry = max_pool_geometry(kernel_size, stride)
        else:
            self.pool = nn.MaxPool2d(kernel_size=kernel_size, stride=stride, pad_mode="same")

    def construct(self, x):
        if not self.fast:
            return self.pool(x)
        return self.pool(x, self.geometry)


def legacy_bilinear_weights(in_size, out_size):
    """Source rows (i0, i1) and weights of the second for TensorFlow's legacy bilinear resize
    (align_corners and half_pixel_centers both False): output row r reads input r * in / out."""
    src = np.arange(out_size, dtype=np.float64) * (in_size / out_size)
    low = np.minimum(np.floor(src).astype(np.int32), in_size - 1)
    high = np.minimum(low + 1, in_size - 1)
    return low, high, (src - low).astype(np.float32)


class Upsample(nn.Cell):
    """Bilinear resize of maps from ``in_size`` to ``out_size`` (each a side, or [h, w] for non-square
    maps; MindSpore's ResizeBilinear with its defaults, i.e. TensorFlow's legacy mode, as the model zoo's
    FPN uses), as gathers of precomputed rows, then columns; NCHW or NHWC."""

    def __init__(self, in_size, out_size, channels_last=False):
        super().__init__()
        self.axes = (1, 2) if channels_last else (2, 3)
        lows, highs, fractions = [], [], []
        for axis, size_in, size_out in zip(self.axes, map_hw(in_size), map_hw(out_size)):
            low, high, frac = legacy_bilinear_weights(size_in, size_out)
            shape = [1, 1, 1, 1]
            shape[axis] = size_out
            lows.append(Tensor(low))
            highs.append(Tensor(high))
            fractions.append(Tensor(frac.reshape(shape)))
        self.lows, self.highs, self.fractions = tuple(lows), tuple(highs), tuple(fractions)

    def construct(self, x):
        for axis, low, high, frac in zip(self.axes, self.lows, self.highs, self.fractions):
            first = ops.gather(x, low, axis)
            x = first + (ops.gather(x, high, axis) - first) * frac
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
        y = x / norm
        if self.axis == -1:  # scaled as a matrix [positions, channels]: see Conv._add_bias
            return ops.reshape(ops.reshape(y, (-1, self.shape[0])) * self.scale, y.shape)
        return y * ops.reshape(self.scale, self.shape)


# ---- the layer factories ----------------------------------------------------------------------

class PlainLayers:
    """Builds layers in the plain formulation (NCHW; MindSpore's Conv2D, BatchNorm2d, MaxPool2d).

    ``conv_bn_act`` gives [conv, BatchNorm, activation] as the model zoo lays them out (indices 0, 1, 2;
    act None: no activation cell). BatchNorm defaults to the model zoo's SSD settings (BN_EPS,
    BN_MOMENTUM); networks pass their own where the model zoo's differ.
    """
    fast = False
    channels_last = False
    channel_axis = 1

    def conv(self, in_channels, out_channels, kernel_size=1, stride=1, groups=1, has_bias=False, **options):
        """A :class:`Conv`; ``options``: padding, dilation, weight_init, bias_init."""
        return Conv(in_channels, out_channels, kernel_size, stride, groups, has_bias, self.fast, **options)

    def batch_norm(self, channels, eps=BN_EPS, momentum=BN_MOMENTUM, gamma_init="ones"):
        """BatchNorm (parameters gamma, beta, moving_mean, moving_variance)."""
        return with_gamma(nn.BatchNorm2d(channels, eps=eps, momentum=momentum), gamma_init)

    def batch_norm_act(self, channels, act, eps=BN_EPS, momentum=BN_MOMENTUM):
        """[BatchNorm, activation] (act None: [BatchNorm])."""
        norm = [self.batch_norm(channels, eps, momentum)]
        return norm if act is None else norm + [activation(act)]

    def conv_bn_act(self, in_channels, out_channels, kernel_size=3, stride=1, groups=1, act="relu6", eps=BN_EPS,
                    momentum=BN_MOMENTUM, has_bias=False, conv=None):
        """[conv, BatchNorm, activation]; ``conv`` reuses a given convolution (weight sharing)."""
        if conv is None:
            conv = self.conv(in_channels, out_channels, kernel_size, stride, groups, has_bias)
        return [conv] + self.batch_norm_act(out_channels, act, eps, momentum)

    def max_pool(self, kernel_size, stride):
        return MaxPool(kernel_size, stride, self.fast)

    def upsample(self, in_size, out_size):
        return Upsample(in_size, out_size, self.channels_last)

    def l2norm(self, channels, scale_init=20.0):
        return L2Norm(channels, scale_init, self.channels_last)


class FastLayers(PlainLayers):
    """Builds layers in the fast CPU formulation (NHWC; compiled kernels, see the module docstring)."""
    fast = True
    channels_last = True
    channel_axis = -1

    def batch_norm(self, channels, eps=BN_EPS, momentum=BN_MOMENTUM, gamma_init="ones"):
        return with_gamma(FastBatchNorm(channels, False, eps, momentum), gamma_init)

    def batch_norm_act(self, channels, act, eps=BN_EPS, momentum=BN_MOMENTUM):
        """ReLU6 is applied by the BatchNorm kernel, and an Identity keeps the activation's index."""
        if act != "relu6":
            return super().batch_norm_act(channels, act, eps, momentum)
        return [FastBatchNorm(channels, True, eps, momentum), nn.Identity()]


def make_layers(fast):
    """The layer factory of a formulation: FastLayers when ``fast``, else PlainLayers."""
    return FastLayers() if fast else PlainLayers()


# ---- blocks -----------------------------------------------------------------------------------

class ConvBNAct(nn.Cell):
    """[conv, BatchNorm, activation] (``layers.conv_bn_act(...)``) held as ``features.0/1/2``, the model
    zoo's ConvBNReLU layout."""

    def __init__(self, cells):
        super().__init__()
        self.features = nn.SequentialCell(cells)

    def construct(self, x):
        return self.features(x)


class InvertedResidual(nn.Cell):
    """MobileNetV2 bottleneck (Sandler et al. 2018, "MobileNetV2", fig. 4d): 1x1 expansion + ``act``
    (ReLU6), 3x3 depthwise + ``act``, linear 1x1 projection + BN (``conv.0..3``); identity shortcut when
    the stride is 1 and the channels match. ``last_relu`` adds a final ReLU6 (the SSD extra layers)."""

    def __init__(self, in_channels, out_channels, stride, expand_ratio, layers, last_relu=False, act="relu6"):
        super().__init__()
        hidden = int(round(in_channels * expand_ratio))
        cells = []
        if expand_ratio != 1:
            cells.append(ConvBNAct(layers.conv_bn_act(in_channels, hidden, 1, act=act)))
        cells += [ConvBNAct(layers.conv_bn_act(hidden, hidden, 3, stride, groups=hidden, act=act)),
                  layers.conv(hidden, out_channels), layers.batch_norm(out_channels)]
        self.conv = nn.SequentialCell(cells)
        self.use_residual = stride == 1 and in_channels == out_channels
        self.last_relu = last_relu
        self.relu = nn.ReLU6()

    def construct(self, x):
        out = self.conv(x)
        if self.use_residual:
            out = out + x
        if self.last_relu:
            out = self.relu(out)
        return out
