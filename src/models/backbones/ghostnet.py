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

from src.models.blocks import Conv, ConvBNAct, activation, batch_norm

# kernel, expansion channels, output channels, squeeze-and-excitation, stride (GhostNet 1.3x)
BOTTLENECKS = ((3, 24, 20, False, 1), (3, 64, 32, False, 2), (3, 96, 32, False, 1), (5, 96, 52, True, 2),
               (5, 160, 52, True, 1), (3, 312, 104, False, 2), (3, 264, 104, False, 1), (3, 240, 104, False, 1),
               (3, 240, 104, False, 1), (3, 624, 144, True, 1), (3, 864, 144, True, 1), (5, 864, 208, True, 2),
               (5, 1248, 208, False, 1), (5, 1248, 208, True, 1), (5, 1248, 208, False, 1), (5, 1248, 208, True, 1))
STEM, LAST, SPLIT, EXPAND = 20, 1248, 11, 6


def divisible_by_4(value):
    """Round up to a multiple of 4."""
    return int(math.ceil(value / 4.0) * 4)


def unit(in_channels, out_channels, kernel=1, stride=1, groups=1, act="relu", fast=False):
    """Conv + BN (+ ReLU) as ``features.0/1(/2)``."""
    return ConvBNAct(in_channels, out_channels, kernel, stride, groups, fast, act)


class SqueezeExcite(nn.Cell):
    """Global average, 1x1 reduce (bias) + ReLU, 1x1 expand (bias) + hard sigmoid, times the input."""

    def __init__(self, channels, fast=False, ratio=4):
        super().__init__()
        mid = divisible_by_4(channels // ratio)
        self.conv_reduce = Conv(channels, mid, 1, has_bias=True, fast=fast)
        self.conv_expand = Conv(mid, channels, 1, has_bias=True, fast=fast)
        self.relu = nn.ReLU()
        self.gate = activation("hsigmoid")
        self.axes = (1, 2) if fast else (2, 3)

    def construct(self, x):
        weight = x.mean(self.axes, keep_dims=True)
        return x * self.gate(self.conv_expand(self.relu(self.conv_reduce(weight))))


class GhostModule(nn.Cell):
    """``primary_conv`` (1x1) and ``cheap_operation`` (3x3 depthwise) outputs, concatenated."""

    def __init__(self, in_channels, out_channels, act="relu", fast=False):
        super().__init__()
        init = int(math.ceil(out_channels / 2))
        self.primary_conv = unit(in_channels, init, act=act, fast=fast)
        self.cheap_operation = unit(init, init, 3, groups=init, act=act, fast=fast)
        self.axis = -1 if fast else 1

    def construct(self, x):
        primary = self.primary_conv(x)
        return ops.concat((primary, self.cheap_operation(primary)), self.axis)


class GhostBottleneck(nn.Cell):
    """Ghost module, (strided depthwise), (SE), Ghost module, plus the shortcut."""

    def __init__(self, in_channels, mid, out_channels, kernel, stride=1, use_se=False, fast=False):
        super().__init__()
        self.ghost1 = GhostModule(in_channels, mid, "relu", fast)
        self.use_dw, self.use_se = stride > 1, use_se
        if self.use_dw:
            self.dw = unit(mid, mid, kernel, stride, groups=mid, act=None, fast=fast)
        if use_se:
            self.se = SqueezeExcite(mid, fast)
        self.ghost2 = GhostModule(mid, out_channels, None, fast)
        self.down_sample = in_channels != out_channels or stride != 1
        if self.down_sample:
            self.shortcut = nn.SequentialCell([unit(in_channels, in_channels, kernel, stride, in_channels, None, fast),
                                               unit(in_channels, out_channels, act=None, fast=fast)])

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

    def __init__(self, fast=False):
        super().__init__()
        blocks = [unit(3, STEM, 3, 2, fast=fast)]
        channels = STEM
        for index, (kernel, mid, out, use_se, stride) in enumerate(BOTTLENECKS):
            if index == SPLIT:
                self.expand_layer_conv_11 = unit(channels, channels * EXPAND, fast=fast)
            blocks.append(GhostBottleneck(channels, mid, out, kernel, stride, use_se, fast))
            channels = out
        blocks.append(unit(channels, LAST, fast=fast))
        self.features_1 = nn.SequentialCell(blocks[:SPLIT + 1])
        self.features_2 = nn.SequentialCell(blocks[SPLIT + 1:])

    def construct(self, x):
        out = self.features_1(x)
        return self.expand_layer_conv_11(out), self.features_2(out)


class ExtraLayer(nn.Cell):
    """ssd_ghostnet's extra layer: the SSD300 inverted residual with ReLU inside (1x1 expansion to
    ``in * ratio``, 3x3 depthwise with the stride, linear 1x1 + BN; ``conv.0..3``) and ReLU6 at the end."""

    def __init__(self, in_channels, out_channels, stride, ratio, fast=False):
        super().__init__()
        hidden = int(round(in_channels * ratio))
        self.conv = nn.SequentialCell([unit(in_channels, hidden, fast=fast),
                                       unit(hidden, hidden, 3, stride, groups=hidden, fast=fast),
                                       Conv(hidden, out_channels, 1, fast=fast), batch_norm(out_channels, fast)])
        self.relu6 = nn.ReLU6()

    def construct(self, x):
        return self.relu6(self.conv(x))


def ghostnet_extras(cfg, fast=False):
    """CellList of the extra layers from cfg.extras_in_channels/out_channels/strides/ratio[2:]."""
    return nn.CellList([ExtraLayer(cfg.extras_in_channels[i], cfg.extras_out_channels[i], cfg.extras_strides[i],
                                   cfg.extras_ratio[i], fast) for i in range(2, len(cfg.extras_in_channels))])
