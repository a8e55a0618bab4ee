"""MobileNetV2 feature extractor for SSD (Sandler et al. 2018, "MobileNetV2: Inverted Residuals and
Linear Bottlenecks", table 2), laid out as the MindSpore model zoo's SSD300 so its checkpoints load:

* ``features_1``: the stem and bottlenecks 0..12 (output 96 channels, stride 16: 19x19 for 300x300);
* ``expand_layer_conv_13``: the 1x1 expansion of bottleneck 13 as its own layer (576 channels at
  stride 16), the first SSD feature map, as in the MobileNetV2 paper's SSDLite (section 6.2);
* ``features_2``: bottlenecks 13..16 and the final 1x1 convolution to 1280 channels (stride 32).
"""
from mindspore import nn

from src.models.layers import ConvBNAct, InvertedResidual

# expansion t, output channels c, repeats n, first stride s (the paper's table 2)
BOTTLENECKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
               (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
SPLIT_BLOCK = 13


def make_divisible(value, divisor=8):
    """Round a channel count to a multiple of ``divisor``, never more than 10% down (as MobileNet does)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class MobileNetV2Features(nn.Cell):
    """Returns (stride-16 map with ``expand_channels`` channels, stride-32 map with 1280 channels)."""

    def __init__(self, layers, width_mult=1.0):
        super().__init__()
        channels = make_divisible(32 * width_mult)
        blocks = [ConvBNAct(layers.conv_bn_act(3, channels, 3, 2))]
        for t, c, n, s in BOTTLENECKS:
            out = make_divisible(c * width_mult)
            for i in range(n):
                if len(blocks) - 1 == SPLIT_BLOCK:
                    self.expand_layer_conv_13 = ConvBNAct(layers.conv_bn_act(channels, int(round(channels * t)), 1))
                blocks.append(InvertedResidual(channels, out, s if i == 0 else 1, t, layers))
                channels = out
        self.last_channels = make_divisible(1280 * max(1.0, width_mult))
        blocks.append(ConvBNAct(layers.conv_bn_act(channels, self.last_channels, 1)))
        self.features_1 = nn.SequentialCell(blocks[:SPLIT_BLOCK + 1])
        self.features_2 = nn.SequentialCell(blocks[SPLIT_BLOCK + 1:])

    def construct(self, x):
        out = self.features_1(x)
        return self.expand_layer_conv_13(out), self.features_2(out)
