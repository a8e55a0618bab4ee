"""What lies between a backbone and the heads: the SSD extra layers and the feature pyramids.

Extra layers (``multi_residual``; SSD paper section 2.1, "Multi-scale feature maps"): each makes the next,
coarser map from the previous one. Layers 0 and 1 of the ``extras_*`` config lists describe the two
backbone maps, so the extra layers are entries 2.. (as in the model zoo):

* :func:`inverted_residual_extras` (ssd300, ssd_ghostnet): inverted-residual-like blocks (MobileNetV2
  paper, section 6.2, SSDLite): 1x1 conv + BN + activation to ``in * ratio`` channels, 3x3 depthwise
  (stride from ``extras_strides``) + BN + activation, 1x1 conv + BN, then ReLU6; no shortcut (the shapes
  differ). The activation is ReLU6 for ssd300 and ReLU for ssd_ghostnet, as in the model zoo;
* :func:`conv_extras` (ssd_mobilenet_v1): a 3x3 stride-2 conv + BN + ReLU6 per map;
* :func:`vgg_extras` (ssd_vgg16): fc6, fc7 and b8..b11 as the SSD paper builds them (see SsdVgg16).

Feature pyramid (Lin et al. 2017, "Feature Pyramid Networks for Object Detection", section 3), laid out
as the model zoo's ssd_mobilenet_v1_fpn and ssd_resnet50_fpn so their checkpoints load:

* ``fpn.lateral_convs_list.<i>``: 1x1 convolutions with bias from backbone maps C3, C4, C5 to 256
  channels; top-down, each coarser map is resized (bilinear, TensorFlow's legacy mode as MindSpore's
  ResizeBilinear) to the finer one and added;
* ``fpn.fpn_convs_list.<i>``: a 3x3 conv + BN + ReLU6 on each sum (P3, P4, P5);
* ``bottom_up.blocks.<i>``: two 3x3 stride-2 conv + BN + ReLU6 from P5 (P6, P7).
"""
from mindspore import nn

from src.models.backbones.mobilenet_v1 import MobileNetV1
from src.models.backbones.resnet import ResNet50
from src.models.layers import ConvBNAct, InvertedResidual

# The model zoo builds the pyramid layers with MindSpore's BatchNorm defaults.
FPN_BN = {"eps": 1e-5, "momentum": 0.9}


def append_maps(features, extras):
    """``features`` (a tuple of maps) followed by the output of each layer of ``extras``, each layer
    applied to the map before it."""
    for layer in extras:
        features += (layer(features[-1]),)
    return features


def extra_specs(cfg):
    """(in channels, out channels, stride, ratio) of each extra layer (config entries 2..)."""
    return [(cfg.extras_in_channels[i], cfg.extras_out_channels[i], cfg.extras_strides[i], cfg.extras_ratio[i])
            for i in range(2, len(cfg.extras_in_channels))]


def inverted_residual_extras(cfg, layers, act="relu6"):
    """CellList of the SSDLite extra layers (``act`` inside, ReLU6 at the end)."""
    return nn.CellList([InvertedResidual(c_in, c_out, stride, ratio, layers, last_relu=True, act=act)
                        for c_in, c_out, stride, ratio in extra_specs(cfg)])


def conv_extras(cfg, layers):
    """CellList of 3x3 conv + BN + ReLU6 extra layers (``features.0/1/2``)."""
    return nn.CellList([ConvBNAct(layers.conv_bn_act(c_in, c_out, 3, stride))
                        for c_in, c_out, stride, _ in extra_specs(cfg)])


def vgg_extras(layers):
    """{name: convolution} of SSD-VGG16 after pool5 (SSD paper section 3.1 and figure 2), the model zoo's
    names, no biases: ``b6_1`` (fc6: 3x3, dilation 6), ``b7_1`` (fc7: 1x1), then 1x1 and 3x3 pairs
    ``b8``..``b11`` (stride 2 with padding 1 for b8 and b9, unpadded for b10 and b11)."""
    convs = {"b6_1": layers.conv(512, 1024, 3, padding=6, dilation=6), "b7_1": layers.conv(1024, 1024, 1)}
    for name, c_in, mid, out, stride, padding in (("b8", 1024, 256, 512, 2, 1), ("b9", 512, 128, 256, 2, 1),
                                                  ("b10", 256, 128, 256, 1, 0), ("b11", 256, 128, 256, 1, 0)):
        convs[name + "_1"] = layers.conv(c_in, mid, 1)
        convs[name + "_2"] = layers.conv(mid, out, 3, stride, padding=padding)
    return convs


class FpnTopDown(nn.Cell):
    """(C3, C4, C5) -> (P3, P4, P5), each ``channels`` wide; ``sizes`` are the ``feature_size`` entries of
    C3, C4, C5 (a side, or [h, w] for a non-square map: each upsampling resizes both axes to the finer map)."""

    def __init__(self, in_channels, channels, sizes, layers):
        super().__init__()
        self.lateral_convs_list = nn.CellList([layers.conv(c, channels, 1, has_bias=True) for c in in_channels])
        self.fpn_convs_list = nn.CellList([nn.SequentialCell(layers.conv_bn_act(channels, channels, 3, **FPN_BN))
                                           for _ in in_channels])
        self.upsample = nn.CellList([layers.upsample(sizes[i + 1], sizes[i]) for i in range(len(sizes) - 1)])

    def construct(self, inputs):
        count = len(self.lateral_convs_list)
        top_down = self.lateral_convs_list[count - 1](inputs[count - 1])
        merged = (top_down,)
        for step in range(count - 1):
            level = count - 2 - step
            top_down = self.upsample[level](top_down) + self.lateral_convs_list[level](inputs[level])
            merged = (top_down,) + merged
        outputs = ()
        for level in range(count):
            outputs += (self.fpn_convs_list[level](merged[level]),)
        return outputs


class BottomUp(nn.Cell):
    """Appends ``levels`` maps, each a 3x3 stride-2 conv + BN + ReLU6 of the previous last one."""

    def __init__(self, levels, channels, layers):
        super().__init__()
        self.blocks = nn.CellList([nn.SequentialCell(layers.conv_bn_act(channels, channels, 3, 2, **FPN_BN))
                                   for _ in range(levels)])

    def construct(self, features):
        return append_maps(features, self.blocks)


class MobileNetV1Fpn(nn.Cell):
    """MobileNetV1 layers 10, 22, 26 -> FPN -> two more levels: five maps at strides 8..128."""

    def __init__(self, cfg, layers):
        super().__init__()
        self.mobilenet_v1 = MobileNetV1(layers, (10, 22, 26))
        self.fpn = FpnTopDown((256, 512, 1024), cfg.extras_out_channels[0], cfg.feature_size[:3], layers)
        self.bottom_up = BottomUp(len(cfg.feature_size) - 3, cfg.extras_out_channels[0], layers)

    def construct(self, x):
        return self.bottom_up(self.fpn(self.mobilenet_v1(x)))


class ResNet50Fpn(nn.Cell):
    """ResNet50 C3, C4, C5 -> FPN -> two more levels: five maps at strides 8..128."""

    def __init__(self, cfg, layers):
        super().__init__()
        self.resnet = ResNet50(layers)
        self.fpn = FpnTopDown((512, 1024, 2048), cfg.extras_out_channels[0], cfg.feature_size[:3], layers)
        self.bottom_up = BottomUp(len(cfg.feature_size) - 3, cfg.extras_out_channels[0], layers)

    def construct(self, x):
        return self.bottom_up(self.fpn(self.resnet(x)))
