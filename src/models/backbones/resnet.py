"""ResNet50 (He et al. 2016, "Deep Residual Learning for Image Recognition", table 1, bottleneck blocks;
the stride on the 3x3 convolution, as most implementations and the MindSpore model zoo have it), laid
out as the model zoo's so its checkpoints load: ``conv1``, ``bn1``, ``layer1..4.<i>.conv1..3`` and
``bn1..3``, ``down_sample_layer.0/1`` for the projection shortcut. BatchNorm keeps the model zoo's
settings (eps 1e-3, momentum 0.997); the last BatchNorm of every block starts with gamma 0, so each
block starts as the identity (Goyal et al. 2017, "Accurate, Large Minibatch SGD", section 5.1).
Returns the outputs of layer2, layer3 and layer4 (strides 8, 16, 32; 512, 1024, 2048 channels).
"""
from mindspore import nn

BN = {"eps": 1e-3, "momentum": 0.997}
STAGES = ((3, 256, 1), (4, 512, 2), (6, 1024, 2), (3, 2048, 2))  # blocks, output channels, first stride
EXPANSION = 4


class Bottleneck(nn.Cell):
    """1x1 reduce, 3x3 (stride), 1x1 expand, each with BatchNorm; ReLU after the first two and after the
    sum with the shortcut (a 1x1 projection + BatchNorm when the shape changes)."""

    def __init__(self, in_channels, out_channels, stride, layers):
        super().__init__()
        mid = out_channels // EXPANSION
        self.conv1 = layers.conv(in_channels, mid, 1)
        self.bn1 = layers.batch_norm(mid, **BN)
        self.conv2 = layers.conv(mid, mid, 3, stride)
        self.bn2 = layers.batch_norm(mid, **BN)
        self.conv3 = layers.conv(mid, out_channels, 1)
        self.bn3 = layers.batch_norm(out_channels, gamma_init="zeros", **BN)
        self.relu = nn.ReLU()
        self.down_sample = stride != 1 or in_channels != out_channels
        self.down_sample_layer = None
        if self.down_sample:
            self.down_sample_layer = nn.SequentialCell([layers.conv(in_channels, out_channels, 1, stride),
                                                        layers.batch_norm(out_channels, **BN)])

    def construct(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = self.down_sample_layer(x) if self.down_sample else x
        return self.relu(out + shortcut)


class ResNet50(nn.Cell):
    """7x7 stem (stride 2) + 3x3 max pool (stride 2) + four stages of bottlenecks."""

    def __init__(self, layers):
        super().__init__()
        self.conv1 = layers.conv(3, 64, 7, 2)
        self.bn1 = layers.batch_norm(64, **BN)
        self.relu = nn.ReLU()
        self.maxpool = layers.max_pool(3, 2)
        channels = 64
        stages = []
        for blocks, out, stride in STAGES:
            stage = [Bottleneck(channels, out, stride, layers)]
            stage += [Bottleneck(out, out, 1, layers) for _ in range(blocks - 1)]
            stages.append(nn.SequentialCell(stage))
            channels = out
        self.layer1, self.layer2, self.layer3, self.layer4 = stages

    def construct(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c3 = self.layer2(self.layer1(x))
        c4 = self.layer3(c3)
        return c3, c4, self.layer4(c4)
