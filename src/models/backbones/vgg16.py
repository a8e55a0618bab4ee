"""VGG16 base network of SSD (Simonyan & Zisserman 2015, configuration D; SSD paper section 3.1), with
the MindSpore model zoo's names: blocks ``b1..b5`` as [conv, ReLU, conv, ReLU(, conv, ReLU)] (the
convolutions at indices 0, 2, 4, without bias as in the model zoo), 2x2 max pools after blocks 1-4
("same", so 75 -> 38 as the paper's ceil mode) and a 3x3 stride-1 pool after block 5 (the paper's
pool5). Returns conv4_3 (after its ReLU, stride 8) and pool5 (stride 16).
"""
from mindspore import nn

BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


def vgg_block(in_channels, widths, layers):
    """SequentialCell [conv3x3, ReLU] * len(widths)."""
    cells = []
    for width in widths:
        cells += [layers.conv(in_channels, width, 3), nn.ReLU()]
        in_channels = width
    return nn.SequentialCell(cells)


class VGG16(nn.Cell):
    """Returns (conv4_3 [512 channels, stride 8], pool5 [512 channels, stride 16])."""

    def __init__(self, layers):
        super().__init__()
        channels = 3
        blocks = []
        for widths in BLOCKS:
            blocks.append(vgg_block(channels, widths, layers))
            channels = widths[-1]
        self.b1, self.b2, self.b3, self.b4, self.b5 = blocks
        self.m1, self.m2, self.m3, self.m4 = (layers.max_pool(2, 2) for _ in range(4))
        self.m5 = layers.max_pool(3, 1)

    def construct(self, x):
        x = self.m3(self.b3(self.m2(self.b2(self.m1(self.b1(x))))))
        conv4_3 = self.b4(x)
        return conv4_3, self.m5(self.b5(self.m4(conv4_3)))
