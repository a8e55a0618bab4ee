"""GhostNet 1.3x (Han et al. 2020, "GhostNet: More Features from Cheap Operations", table 1, widths x1.3
rounded to multiples of 4) as the SSD feature extractor of the MindSpore model zoo's ssd_ghostnet,
laid out as its checkpoints are:

* ``features_1``: the 3x3 stem (stride 2) and bottlenecks 0..10 (144 channels at stride 16);
* ``expand_layer_conv_11``: a 1x1 conv + BN + ReLU to 864 channels at stride 16, the first SSD map
  (the counterpart of SSD300-MobileNetV2's ``expand_layer_conv_13``);
* ``features_2``: bottlenecks 11..15 and a final 1x1 conv to 1248 channels (stride 32).

A Ghost module makes half its channels with a 1x1 conv (``primary_conv``) and the other half from those
with a 3x3 depthwise conv (``cheap_operation``); a Ghost bottleneck is Ghost module (ReLU), a k x k
depthwise conv when it strides (``dw``), squeeze-and-excitation when listed (``se``), Ghost module
(linear), plus a shortcut (depthwise k x k + 1x1, each with BN, when the shape changes). BatchNorm
settings are the model zoo's (eps 1e-3, momentum 0.97); activations are ReLU.
"""
import math

from mindspore import nn, ops

from src.models.layers import ConvBNAct, activation

# kernel, expansion channels, output channels, squeeze-and-excitation, stride (GhostNet 1.3x)
BOTTLENECKS = ((3, 24, 20, False, 1), (3, 64, 32, False, 2), (3, 96, 32, False, 1), (5, 96, 52, True, 2),
               (5, 160, 52, True, 1), (3, 312, 104, False, 2), (3, 264, 104, False, 1), (3, 240, 104, False, 1),
               (3, 240, 104, False, 1), (3, 624, 144, True, 1), (3, 864, 144, True, 1), (5, 864, 208, True, 2),
               (5, 1248, 208, False, 1), (5, 1248, 208, True, 1), (5, 1248, 208, False, 1), (5, 1248, 208, True, 1))
STEM, LAST, SPLIT, EXPAND = 20, 1248, 11, 6


def divisible_by_4(value):
    """Round up to a multiple of 4."""
    return int(math.ceil(value / 4.0) * 4)


def unit(layers, in_channels, out_channels, kernel=1, stride=1, groups=1, act="relu"):
    """Conv + BN (+ ReLU) as ``features.0/1(/2)``."""
    return ConvBNAct(layers.conv_bn_act(in_channels, out_channels, kernel, stride, groups, act))


class SqueezeExcite(nn.Cell):
    """Global average, 1x1 reduce (bias) + ReLU, 1x1 expand (bias) + hard sigmoid, times the input."""

    def __init__(self, channels, layers, ratio=4):
        super().__init__()
        mid = divisible_by_4(channels // ratio)
        self.conv_reduce = layers.conv(channels, mid, 1, has_bias=True)
        self.conv_expand = layers.conv(mid, channels, 1, has_bias=True)
        self.relu = nn.ReLU()
        self.gate = activation("hsigmoid")
        self.axes = (1, 2) if layers.channels_last else (2, 3)

    def construct(self, x):
        weight = x.mean(self.axes, keep_dims=True)
        return x * self.gate(self.conv_expand(self.relu(self.conv_reduce(weight))))


class GhostModule(nn.Cell):
    """``primary_conv`` (1x1) and ``cheap_operation`` (3x3 depthwise) outputs, concatenated."""

    def __init__(self, in_channels, out_channels, act, layers):
        super().__init__()
        init = int(math.ceil(out_channels / 2))
        self.primary_conv = unit(layers, in_channels, init, act=act)
        self.cheap_operation = unit(layers, init, init, 3, groups=init, act=act)
        self.axis = layers.channel_axis

    def construct(self, x):
        primary = self.primary_conv(x)
        return ops.concat((primary, self.cheap_operation(primary)), self.axis)


class GhostBottleneck(nn.Cell):
    """Ghost module, (strided depthwise), (SE), Ghost module, plus the shortcut."""

    def __init__(self, in_channels, mid, out_channels, kernel, stride, use_se, layers):
        super().__init__()
        self.ghost1 = GhostModule(in_channels, mid, "relu", layers)
        self.use_dw, self.use_se = stride > 1, use_se
        if self.use_dw:
            self.dw = unit(layers, mid, mid, kernel, stride, groups=mid, act=None)
        if use_se:
            self.se = SqueezeExcite(mid, layers)
        self.ghost2 = GhostModule(mid, out_channels, None, layers)
        self.down_sample = in_channels != out_channels or stride != 1
        if self.down_sample:
            self.shortcut = nn.SequentialCell([
                unit(layers, in_channels, in_channels, kernel, stride, groups=in_channels, act=None),
                unit(layers, in_channels, out_channels, act=None)])

    def construct(self, x):
        out = self.ghost1(x)
        if self.use_dw:
            out = self.dw(out)
        if self.use_se:
            out = self.se(out)
        out = self.ghost2(out)
        return out + (self.shortcut(x) if self.down_sample else x)


class GhostNetFeatures(nn.Cell):
    """Returns (stride-16 map with 864 channels, stride-32 map with 1248 channels)."""

    def __init__(self, layers):
        super().__init__()
        blocks = [unit(layers, 3, STEM, 3, 2)]
        channels = STEM
        for index, (kernel, mid, out, use_se, stride) in enumerate(BOTTLENECKS):
            if index == SPLIT:
                self.expand_layer_conv_11 = unit(layers, channels, channels * EXPAND)
            blocks.append(GhostBottleneck(channels, mid, out, kernel, stride, use_se, layers))
            channels = out
        blocks.append(unit(layers, channels, LAST))
        self.features_1 = nn.SequentialCell(blocks[:SPLIT + 1])
        self.features_2 = nn.SequentialCell(blocks[SPLIT + 1:])

    def construct(self, x):
        out = self.features_1(x)
        return self.expand_layer_conv_11(out), self.features_2(out)
