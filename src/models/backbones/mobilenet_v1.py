"""MobileNetV1 (Howard et al. 2017, "MobileNets: Efficient Convolutional Neural Networks for Mobile
Vision Applications", table 1), laid out as the MindSpore model zoo's so its checkpoints load:
``network.<i>`` holds layer i as [conv, BatchNorm, ReLU6] (``network.<i>.0.weight``, ``network.<i>.1.gamma``
...). Layer 0 is the 3x3 stem (stride 2); then pairs of 3x3 depthwise (odd i) and 1x1 pointwise (even i)
layers, 27 in all. Layer 10 has stride 8 (256 channels), layers 12 to 22 stride 16 (512 channels) and
layer 26 stride 32 (1024 channels); ssd_mobilenet_v1 takes layers 14 and 26, the FPN 10, 22 and 26, as
the model zoo does. BatchNorm keeps the model zoo's settings for this network (eps 1e-5, momentum 0.9).
"""
from mindspore import nn

# (output channels of the pointwise layer, stride of the depthwise layer before it)
PAIRS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1),
         (512, 1), (1024, 2), (1024, 1))
BN = {"eps": 1e-5, "momentum": 0.9}


class MobileNetV1(nn.Cell):
    """Returns the outputs of the layers listed in ``taps`` (a tuple, in order)."""

    def __init__(self, layers, taps):
        super().__init__()
        units = [layers.conv_bn_act(3, 32, 3, 2, **BN)]
        channels = 32
        for out, stride in PAIRS:
            units.append(layers.conv_bn_act(channels, channels, 3, stride, groups=channels, **BN))
            units.append(layers.conv_bn_act(channels, out, 1, **BN))
            channels = out
        self.network = nn.CellList([nn.SequentialCell(cells) for cells in units[:max(taps) + 1]])
        self.taps = tuple(taps)

    def construct(self, x):
        outputs = ()
        for layer in self.network:
            x = layer(x)
            outputs += (x,)
        selected = ()
        for index in self.taps:
            selected += (outputs[index],)
        return selected
