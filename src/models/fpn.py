"""Feature pyramid (Lin et al. 2017, "Feature Pyramid Networks for Object Detection", section 3) and the
weight-shared box predictor of RetinaNet-style SSD (Lin et al. 2017, "Focal Loss for Dense Object
Detection", section 4), as the MindSpore model zoo's ssd_mobilenet_v1_fpn and ssd_resnet50_fpn lay them
out so their checkpoints load:

* ``fpn.lateral_convs_list.<i>``: 1x1 convolutions with bias from backbone maps C3, C4, C5 to 256
  channels; top-down, each coarser map is resized (bilinear, TensorFlow's legacy mode as MindSpore's
  ResizeBilinear) to the finer one and added;
* ``fpn.fpn_convs_list.<i>``: a 3x3 conv + BN + ReLU6 on each sum (P3, P4, P5);
* ``bottom_up.blocks.<i>``: two 3x3 stride-2 conv + BN + ReLU6 from P5 (P6, P7);
* ``multi_box``: per feature map ``num_addition_layers`` 3x3 conv (with bias) + BN + ReLU6 layers for the
  boxes (``addition_layer_loc``) and for the classes (``addition_layer_cls``), then one 3x3 conv for
  each (``loc_layers.0``, ``cls_layers.0``). The convolutions are shared by all maps; each map keeps its
  own BatchNorm, so only map 0 lists the convolution parameters.
"""
from mindspore import nn

from src.models.backbones.mobilenet_v1 import MobileNetV1
from src.models.backbones.resnet import ResNet50
from src.models.blocks import Conv, ConvBNAct, Upsample, conv_bn_act
from src.models.heads import class_bias, flatten_predictions

# The model zoo builds the pyramid layers with MindSpore's BatchNorm defaults and the heads with SSD's.
FPN_BN = {"eps": 1e-5, "momentum": 0.9}
HEAD_BN = {"eps": 1e-3, "momentum": 0.97}


class FpnTopDown(nn.Cell):
    """(C3, C4, C5) -> (P3, P4, P5), each ``channels`` wide; ``sizes`` are the sides of C3, C4, C5."""

    def __init__(self, in_channels, channels, sizes, fast=False):
        super().__init__()
        self.lateral_convs_list = nn.CellList([Conv(c, channels, 1, has_bias=True, fast=fast) for c in in_channels])
        self.fpn_convs_list = nn.CellList([nn.SequentialCell(conv_bn_act(channels, channels, 3, fast=fast, **FPN_BN))
                                           for _ in in_channels])
        self.upsample = nn.CellList([Upsample(sizes[i + 1], sizes[i], fast) for i in range(len(sizes) - 1)])

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

    def __init__(self, levels, channels, fast=False):
        super().__init__()
        self.blocks = nn.CellList([nn.SequentialCell(conv_bn_act(channels, channels, 3, 2, fast=fast, **FPN_BN))
                                   for _ in range(levels)])

    def construct(self, features):
        for block in self.blocks:
            features += (block(features[-1]),)
        return features


class MobileNetV1Fpn(nn.Cell):
    """MobileNetV1 layers 10, 22, 26 -> FPN -> two more levels: five maps at strides 8..128."""

    def __init__(self, cfg, fast=False):
        super().__init__()
        self.mobilenet_v1 = MobileNetV1((10, 22, 26), fast)
        self.fpn = FpnTopDown((256, 512, 1024), cfg.extras_out_channels[0], cfg.feature_size[:3], fast)
        self.bottom_up = BottomUp(len(cfg.feature_size) - 3, cfg.extras_out_channels[0], fast)

    def construct(self, x):
        return self.bottom_up(self.fpn(self.mobilenet_v1(x)))


class ResNet50Fpn(nn.Cell):
    """ResNet50 C3, C4, C5 -> FPN -> two more levels: five maps at strides 8..128."""

    def __init__(self, cfg, fast=False):
        super().__init__()
        self.resnet = ResNet50(fast)
        self.fpn = FpnTopDown((512, 1024, 2048), cfg.extras_out_channels[0], cfg.feature_size[:3], fast)
        self.bottom_up = BottomUp(len(cfg.feature_size) - 3, cfg.extras_out_channels[0], fast)

    def construct(self, x):
        return self.bottom_up(self.fpn(self.resnet(x)))


def shared_tower(convs, levels, channels, fast):
    """CellList over maps of SequentialCells of ConvBNAct that reuse ``convs`` (one BN per map and layer)."""
    return nn.CellList([nn.SequentialCell([ConvBNAct(channels, channels, 3, fast=fast, conv=conv, **HEAD_BN)
                                           for conv in convs]) for _ in range(levels)])


class WeightSharedMultiBox(nn.Cell):
    """Returns (loc [B, N, 4], class logits [B, N, num_classes]) from the pyramid's maps; the class
    convolution's biases start as the SSDLite heads' do (:func:`src.models.heads.class_bias`)."""

    def __init__(self, cfg, fast=False):
        super().__init__()
        channels, boxes, levels = cfg.extras_out_channels[0], cfg.num_default[0], len(cfg.feature_size)
        self.num_classes, self.channels_last = cfg.num_classes, fast
        loc_convs = [Conv(channels, channels, 3, has_bias=True, fast=fast) for _ in range(cfg.num_addition_layers)]
        cls_convs = [Conv(channels, channels, 3, has_bias=True, fast=fast) for _ in range(cfg.num_addition_layers)]
        self.addition_layer_loc = shared_tower(loc_convs, levels, channels, fast)
        self.addition_layer_cls = shared_tower(cls_convs, levels, channels, fast)
        self.loc_layers = nn.SequentialCell([Conv(channels, 4 * boxes, 3, has_bias=True, fast=fast)])
        self.cls_layers = nn.SequentialCell([Conv(channels, cfg.num_classes * boxes, 3, has_bias=True, fast=fast,
                                                  bias_init=class_bias(cfg.num_classes, boxes))])

    def construct(self, features):
        batch = features[0].shape[0]
        locs, logits = (), ()
        for level in range(len(self.addition_layer_loc)):
            locs += (self.loc_layers(self.addition_layer_loc[level](features[level])),)
            logits += (self.cls_layers(self.addition_layer_cls[level](features[level])),)
        return (flatten_predictions(locs, batch, 4, self.channels_last),
                flatten_predictions(logits, batch, self.num_classes, self.channels_last))
