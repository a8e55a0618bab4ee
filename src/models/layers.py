"""Convolution building blocks shared by the SSD backbones, extra layers and heads.

Every block exists in two formulations that hold the same parameters (names, shapes, meaning), so a
checkpoint written by one loads into the other and into the MindSpore model zoo's SSD:

* plain: the MindSpore ``Conv2D`` primitive, as the model zoo builds it (right for Ascend and GPU);
* fast (CPU): MindSpore 2.10's CPU ``Conv2D`` runs every 3x3 convolution through oneDNN's reference
  kernel (about 3 s for one 96-channel depthwise layer at 150x150, batch 8). Here depthwise 3x3
  convolutions run in a small C++ kernel (forward and both gradients, compiled once per machine into
  a cache and called through ``ops.Custom``), and the dense 3x3 stem becomes an im2col made by that
  kernel followed by a 1x1 convolution, which oneDNN runs as a fast matrix product.

Padding is TensorFlow "same" (``pad_mode='same'``) everywhere, as in the model zoo: for stride 2 on
an even input the extra row and column are added at the bottom and right.
"""
import numpy as np
import mindspore as ms
from mindspore import nn, ops, Parameter, Tensor
from mindspore.common.initializer import HeNormal, initializer

from src.models.dwconv_kernel import depthwise_op

# BatchNorm settings of the model zoo's SSD-MobileNetV2 (eps 1e-3, moving-average momentum 0.97).
BN_EPS = 1e-3
BN_MOMENTUM = 0.97


def batch_norm(channels):
    """BatchNorm2d with the model zoo's settings (parameters gamma, beta, moving_mean, moving_variance)."""
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def conv_weight(shape):
    """He-normal (fan in) initial weights: keeps activation variance through ReLU6 layers (He et al. 2015)."""
    return Parameter(initializer(HeNormal(mode="fan_in", nonlinearity="relu"), shape, ms.float32),
                     name="weight")


def conv1x1(in_channels, out_channels, has_bias=False):
    """Pointwise convolution; both formulations use it as is (oneDNN runs it as a matrix product)."""
    return nn.Conv2d(in_channels, out_channels, 1, has_bias=has_bias,
                     weight_init=HeNormal(mode="fan_in", nonlinearity="relu"))


class DepthwiseConv3x3(nn.Cell):
    """3x3 depthwise convolution ("same" padding, stride 1 or 2) with weight [C, 1, 3, 3] and no bias."""

    def __init__(self, channels, stride=1, fast=False):
        super().__init__()
        self.weight = conv_weight((channels, 1, 3, 3))
        self.fast = fast
        if fast:
            self.conv = depthwise_op(stride)
        else:
            self.conv = ops.Conv2D(channels, 3, pad_mode="same", stride=stride, group=channels)

    def construct(self, x):
        return self.conv(x, self.weight)


class DenseConv3x3(nn.Cell):
    """Dense 3x3 convolution without bias ("same" padding), weight [out, in, 3, 3] (the MobileNetV2 stem).

    Fast formulation: a depthwise kernel with channel multiplier 9 and fixed one-hot taps gathers the
    nine shifted copies of each input channel (im2col, channel c*9 + ky*3 + kx), then a 1x1 convolution
    with the weight viewed as [out, in*9, 1, 1] mixes them.
    """

    def __init__(self, in_channels, out_channels, stride=1, fast=False):
        super().__init__()
        self.weight = conv_weight((out_channels, in_channels, 3, 3))
        self.fast = fast
        self.cols_shape = (out_channels, in_channels * 9, 1, 1)
        if fast:
            taps = np.tile(np.eye(9, dtype=np.float32), (in_channels, 1)).reshape(in_channels * 9, 1, 3, 3)
            self.taps = Tensor(taps)
            self.im2col = depthwise_op(stride)
            self.conv = ops.Conv2D(out_channels, 1)
        else:
            self.conv = ops.Conv2D(out_channels, 3, pad_mode="same", stride=stride)

    def construct(self, x):
        if self.fast:
            return self.conv(self.im2col(x, self.taps), ops.reshape(self.weight, self.cols_shape))
        return self.conv(x, self.weight)


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
            conv = conv1x1(in_channels, out_channels)
        else:
            conv = conv3x3(in_channels, out_channels, stride, groups, fast)
        self.features = nn.SequentialCell([conv, batch_norm(out_channels), nn.ReLU6()])

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
            layers.append(ConvBNReLU(in_channels, hidden, kernel_size=1))
        layers += [ConvBNReLU(hidden, hidden, 3, stride, groups=hidden, fast=fast),
                   conv1x1(hidden, out_channels), batch_norm(out_channels)]
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
