"""Convolution building blocks shared by the SSD backbones, extra layers and heads.

Every block exists in two formulations that hold the same parameters (names, shapes, meaning), so a
checkpoint written by one loads into the other and into the MindSpore model zoo's SSD:

* plain (``fast=False``): NCHW tensors and MindSpore's Conv2D/BatchNorm primitives, as the model zoo
  builds them; right for Ascend and GPU.
* fast (``fast=True``, CPU): MindSpore 2.10's CPU Conv2D runs every 3x3 convolution through oneDNN's
  reference kernel (about 3 s for one 96-channel depthwise layer at 150x150, batch 8), and its
  BatchNorm + ReLU6 pair makes five passes over memory. The fast formulation keeps tensors channels
  last (NHWC) so that every 1x1 convolution is one large matrix product (oneDNN's fast path), and
  runs the 3x3 depthwise convolutions, the stem's im2col and training-mode BatchNorm (+ ReLU6) in a
  small C++ kernel library (forward and gradients, compiled once per machine, called through
  ``ops.Custom``).

Padding is TensorFlow "same" (``pad_mode='same'``) everywhere, as in the model zoo: for stride 2 on
an even input the extra row and column go at the bottom and right.
"""
import functools

import mindspore as ms
from mindspore import nn, ops, Parameter
from mindspore.common.initializer import HeNormal, initializer

# BatchNorm settings of the model zoo's SSD-MobileNetV2 (eps 1e-3, moving-average momentum 0.97).
BN_EPS = 1e-3
BN_MOMENTUM = 0.97


CONV_KERNEL_FLAGS = ("-O3", "-march=native", "-fopenmp-simd", "-pthread", "-shared", "-fPIC", "-std=c++14",
                     "-DSSD_BN_EPS=%r" % BN_EPS, "-DSSD_BN_MOMENTUM=%r" % BN_MOMENTUM)


@functools.lru_cache(maxsize=None)
def kernel_library():
    """Path of the compiled CPU kernels (src/native/conv_kernels.cc, built once per machine), or None
    (with one warning) when they cannot be built."""
    from src import native

    return native.build(native.source_path("conv_kernels.cc"), CONV_KERNEL_FLAGS)


def _kernel(name, out_shape, out_dtype, bprop=None):
    lib = kernel_library()
    if lib is None:
        raise RuntimeError("the fast CPU kernels are not available on this machine (no C++ compiler?)")
    return ops.Custom("%s:%s" % (lib, name), out_shape, out_dtype, "aot", bprop=bprop)


def _same(size, stride):
    return -(-size // stride)


def _first(*args):
    return args[0]


def _last(*args):
    return args[-1]


def depthwise_op(stride):
    """``op(x_nhwc, w) -> y_nhwc``: compiled depthwise 3x3 convolution with its own gradient."""
    def out_shape(x, w):
        return [x[0], _same(x[1], stride), _same(x[2], stride), x[3]]

    grad_x = _kernel("DwBackwardInput%d" % stride, _last, _first)
    grad_w = _kernel("DwBackwardWeight%d" % stride, _last, _first)

    def bprop(x, w, out, dout):
        return grad_x(dout, w, x), grad_w(x, dout, w)

    return _kernel("DwForward%d" % stride, out_shape, _first, bprop)


def im2col_op(stride):
    """``op(x_nhwc) -> cols [B, Ho, Wo, C*9]``: the 3x3 "same" windows, column c*9 + ky*3 + kx."""
    def out_shape(x):
        return [x[0], _same(x[1], stride), _same(x[2], stride), x[3] * 9]

    col2im = _kernel("Col2Im%d" % stride, _last, _first)

    def bprop(x, out, dout):
        return (col2im(dout, x),)

    return _kernel("Im2Col%d" % stride, out_shape, _first, bprop)


def batch_norm_op(relu6):
    """``op(x_nhwc, gamma, beta, moving_mean, moving_var) -> (y, batch_mean, batch_var, new_moving_mean,
    new_moving_var)``: training BatchNorm (+ ReLU6) and the moving-average update, compiled."""
    def shapes(x, gamma, *_):
        return x, gamma, gamma, gamma, gamma

    def dtypes(x, *_):
        return (x,) * 5

    grad = _kernel("BnBackward%d" % relu6, lambda dy, x, gamma, *_: (x, gamma, gamma),
                   lambda *types: types[:1] * 3)

    def bprop(x, gamma, beta, moving_mean, moving_var, out, dout):
        dx, dgamma, dbeta = grad(dout[0], x, gamma, beta, out[1], out[2])
        return dx, dgamma, dbeta, ops.zeros_like(moving_mean), ops.zeros_like(moving_var)

    return _kernel("BnForward%d" % relu6, shapes, dtypes, bprop)


def batch_norm_apply_op(relu6):
    """``op(x_nhwc, gamma, beta, mean, var) -> y``: BatchNorm with given statistics (+ ReLU6)."""
    grad = _kernel("BnApplyBackward%d" % relu6, lambda dy, x, gamma, *_: (x, gamma, gamma),
                   lambda *dtypes: dtypes[:1] * 3)

    def bprop(x, gamma, beta, mean, var, out, dout):
        dx, dgamma, dbeta = grad(dout, x, gamma, beta, mean, var)
        return dx, dgamma, dbeta, ops.zeros_like(mean), ops.zeros_like(var)

    return _kernel("BnApply%d" % relu6, _first, _first, bprop)


def conv_weight(shape, init=None):
    """Initial weights, by default He-normal (fan in), which keeps the activation variance through ReLU
    layers (He et al. 2015, "Delving Deep into Rectifiers")."""
    init = init if init is not None else HeNormal(mode="fan_in", nonlinearity="relu")
    return Parameter(initializer(init, shape, ms.float32), name="weight")


class Conv1x1(nn.Cell):
    """Pointwise convolution, weight [out, in, 1, 1] (+ bias [out]). Fast: one NHWC matrix product."""

    def __init__(self, in_channels, out_channels, has_bias=False, fast=False, weight_init=None, bias_init="zeros"):
        super().__init__()
        self.weight = conv_weight((out_channels, in_channels, 1, 1), weight_init)
        self.bias = Parameter(initializer(bias_init, (out_channels,), ms.float32), name="bias") if has_bias else None
        self.fast = fast
        self.matrix = (out_channels, in_channels)
        if fast:
            self.matmul = ops.MatMul(transpose_b=True)
        else:
            self.conv = ops.Conv2D(out_channels, 1)
            self.bias_add = ops.BiasAdd()

    def construct(self, x):
        if self.fast:
            rows = ops.reshape(x, (-1, self.matrix[1]))
            y = self.matmul(rows, ops.reshape(self.weight, self.matrix))
            if self.bias is not None:
                y = y + self.bias
            return ops.reshape(y, x.shape[:-1] + (self.matrix[0],))
        y = self.conv(x, self.weight)
        return y if self.bias is None else self.bias_add(y, self.bias)


class DepthwiseConv3x3(nn.Cell):
    """3x3 depthwise convolution ("same" padding, stride 1 or 2) with weight [C, 1, 3, 3] and no bias."""

    def __init__(self, channels, stride=1, fast=False):
        super().__init__()
        self.weight = conv_weight((channels, 1, 3, 3))
        if fast:
            self.conv = depthwise_op(stride)
        else:
            self.conv = ops.Conv2D(channels, 3, pad_mode="same", stride=stride, group=channels)

    def construct(self, x):
        return self.conv(x, self.weight)


class DenseConv3x3(nn.Cell):
    """Dense 3x3 convolution without bias ("same" padding), weight [out, in, 3, 3] (the MobileNetV2 stem).

    Fast: im2col (compiled) then one matrix product with the weight viewed as [out, in*9].
    """

    def __init__(self, in_channels, out_channels, stride=1, fast=False):
        super().__init__()
        self.weight = conv_weight((out_channels, in_channels, 3, 3))
        self.fast = fast
        self.matrix = (out_channels, in_channels * 9)
        if fast:
            self.im2col = im2col_op(stride)
            self.matmul = ops.MatMul(transpose_b=True)
        else:
            self.conv = ops.Conv2D(out_channels, 3, pad_mode="same", stride=stride)

    def construct(self, x):
        if not self.fast:
            return self.conv(x, self.weight)
        cols = self.im2col(x)
        y = self.matmul(ops.reshape(cols, (-1, self.matrix[1])), ops.reshape(self.weight, self.matrix))
        return ops.reshape(y, cols.shape[:-1] + (self.matrix[0],))


class FastBatchNorm(nn.Cell):
    """BatchNorm over the last (channel) axis, optionally followed by ReLU6, with nn.BatchNorm2d's
    parameters and semantics (batch statistics in training, moving averages updated with the unbiased
    variance; moving statistics in inference), each way one compiled kernel. ``momentum`` is the
    weight of a new batch in the moving averages, as in nn.BatchNorm2d's attribute."""

    def __init__(self, channels, relu6):
        super().__init__()
        self.gamma = Parameter(initializer("ones", (channels,), ms.float32), name="gamma")
        self.beta = Parameter(initializer("zeros", (channels,), ms.float32), name="beta")
        self.moving_mean = Parameter(initializer("zeros", (channels,), ms.float32), name="moving_mean",
                                     requires_grad=False)
        self.moving_variance = Parameter(initializer("ones", (channels,), ms.float32), name="moving_variance",
                                         requires_grad=False)
        self.momentum = 1.0 - BN_MOMENTUM
        self.train_op = batch_norm_op(int(relu6))
        self.infer_op = batch_norm_apply_op(int(relu6))

    def construct(self, x):
        if self.training:
            y, _, _, mean, var = self.train_op(x, self.gamma, self.beta, self.moving_mean, self.moving_variance)
            ops.assign(self.moving_mean, mean)
            ops.assign(self.moving_variance, var)
            return y
        return self.infer_op(x, self.gamma, self.beta, self.moving_mean, self.moving_variance)


def batch_norm(channels, fast=False):
    """BatchNorm with the model zoo's settings (parameters gamma, beta, moving_mean, moving_variance)."""
    if fast:
        return FastBatchNorm(channels, relu6=False)
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def batch_norm_relu6(channels, fast=False):
    """[BatchNorm, ReLU6] as two cells (the model zoo's layout); fast: the fused cell and an Identity."""
    if fast:
        return [FastBatchNorm(channels, relu6=True), nn.Identity()]
    return [batch_norm(channels), nn.ReLU6()]


def conv3x3(in_channels, out_channels, stride=1, groups=1, fast=False):
    """A 3x3 convolution without bias: depthwise when groups == in_channels == out_channels, else dense."""
    if groups == 1:
        return DenseConv3x3(in_channels, out_channels, stride, fast)
    if groups != in_channels or in_channels != out_channels:
        raise ValueError("only dense or depthwise 3x3 convolutions are supported, got groups=%d" % groups)
    return DepthwiseConv3x3(in_channels, stride, fast)


class ConvBNReLU(nn.Cell):
    """Convolution (1x1, dense 3x3 or depthwise 3x3), BatchNorm and ReLU6, held as ``features.0/1/2``."""

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, groups=1, fast=False):
        super().__init__()
        if kernel_size == 1:
            conv = Conv1x1(in_channels, out_channels, fast=fast)
        else:
            conv = conv3x3(in_channels, out_channels, stride, groups, fast)
        self.features = nn.SequentialCell([conv] + batch_norm_relu6(out_channels, fast))

    def construct(self, x):
        return self.features(x)


class InvertedResidual(nn.Cell):
    """MobileNetV2 bottleneck (Sandler et al. 2018, "MobileNetV2", fig. 4d): 1x1 expansion + ReLU6,
    3x3 depthwise + ReLU6, linear 1x1 projection + BN (``conv.0..3``); identity shortcut when the
    stride is 1 and the channels match. ``last_relu`` adds a final ReLU6 (the SSD extra layers)."""

    def __init__(self, in_channels, out_channels, stride, expand_ratio, last_relu=False, fast=False):
        super().__init__()
        hidden = int(round(in_channels * expand_ratio))
        layers = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU(in_channels, hidden, kernel_size=1, fast=fast))
        layers += [ConvBNReLU(hidden, hidden, 3, stride, groups=hidden, fast=fast),
                   Conv1x1(hidden, out_channels, fast=fast), batch_norm(out_channels, fast)]
        self.conv = nn.SequentialCell(layers)
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
