"""The model zoo's further SSD networks, registered for ``build_ssd`` under their ``model_name``:

| model_name | network | maps (input) |
| --- | --- | --- |
| ssd_mobilenet_v1 | MobileNetV1 layers 22, 26 + four 3x3 conv extras + SSDLite heads | 19..1 (300) |
| ssd_vgg16 | VGG16 conv4_3 (L2-normalised) and fc7 + four extras + SSDLite heads (SSD paper) | 38..1 (300) |
| ssd_mobilenet_v1_fpn | MobileNetV1 + FPN + weight-shared heads | 80..5 (640) |
| ssd_resnet50_fpn | ResNet50 + FPN + weight-shared heads | 80..5 (640) |
| ssd_ghostnet | GhostNet 1.3x + four inverted-residual extras + SSDLite heads | 19..1 (300) |

Parameter names and shapes are those of the model zoo's checkpoints, except ssd_vgg16 (see SsdVgg16).
Each network returns (loc [B, N, 4], class logits [B, N, num_classes]) in float32; with ``fast`` the
layers run channels last (see :mod:`src.models.blocks`).
"""
import mindspore as ms
from mindspore import nn, ops

from src.models.backbones.ghostnet import GhostNetFeatures, ghostnet_extras
from src.models.backbones.mobilenet_v1 import MobileNetV1
from src.models.backbones.vgg16 import VGG16
from src.models.blocks import Conv, L2Norm
from src.models.fpn import MobileNetV1Fpn, ResNet50Fpn, WeightSharedMultiBox
from src.models.heads import MultiBox
from src.models.layers import ConvBNReLU
from src.models.ssd import SSD, check_feature_sizes, register_model


def to_channels_last(x, channels_last):
    """The NCHW input as the layers take it: NHWC in the fast formulation."""
    return ops.transpose(x, (0, 2, 3, 1)) if channels_last else x


def as_float32(predictions):
    """(loc, logits) cast to float32 (the layers may run in float16)."""
    return ops.cast(predictions[0], ms.float32), ops.cast(predictions[1], ms.float32)


class MobileNetV1Extractor(nn.Cell):
    """``mobilenet_v1``: MobileNetV1 returning layers 22 (stride 16) and 26 (stride 32)."""

    def __init__(self, fast=False):
        super().__init__()
        self.mobilenet_v1 = MobileNetV1((22, 26), fast)

    def construct(self, x):
        return self.mobilenet_v1(x)


class SsdMobileNetV1(nn.Cell):
    """``feature_extractor`` (MobileNetV1), ``multi_residual`` (3x3 stride-2 conv + BN + ReLU6 extras),
    ``multi_box`` (SSDLite heads)."""

    def __init__(self, cfg, fast=False):
        super().__init__()
        self.channels_last = fast
        self.feature_extractor = MobileNetV1Extractor(fast)
        self.multi_residual = nn.CellList([ConvBNReLU(cfg.extras_in_channels[i], cfg.extras_out_channels[i], 3,
                                                      cfg.extras_strides[i], fast=fast)
                                           for i in range(2, len(cfg.extras_in_channels))])
        self.multi_box = MultiBox(cfg, fast)

    def construct(self, x):
        features = self.feature_extractor(to_channels_last(x, self.channels_last))
        feature = features[-1]
        for layer in self.multi_residual:
            feature = layer(feature)
            features += (feature,)
        return as_float32(self.multi_box(features))


class SsdFpn(nn.Cell):
    """``feature_extractor`` (backbone + FPN + bottom-up levels) and ``multi_box`` (weight-shared heads)."""

    def __init__(self, extractor, cfg, fast=False):
        super().__init__()
        self.channels_last = fast
        self.feature_extractor = extractor
        self.multi_box = WeightSharedMultiBox(cfg, fast)

    def construct(self, x):
        return as_float32(self.multi_box(self.feature_extractor(to_channels_last(x, self.channels_last))))


VGG_ZOO_CHECKPOINT = ("checkpoint lacks conv4_3_norm.scale, as the model zoo's ssd_vgg16 checkpoints do: that network "
                      "has no L2 normalisation of conv4_3 and no ReLU after fc6, fc7 and the extra layers, while this "
                      "ssd_vgg16 follows the SSD paper, so such weights cannot be reused as they are (train ssd_vgg16 "
                      "here, e.g. from an ImageNet VGG16 with feature_extractor_base_param)")


class SsdVgg16(nn.Cell):
    """SSD300 with VGG16 as in the SSD paper (section 3.1 and figure 2), with the model zoo's names.

    ``backbone`` (VGG16 to pool5), ``b6_1`` (fc6: 3x3 conv, dilation 6), ``b7_1`` (fc7: 1x1 conv),
    extras ``b8_1``/``b8_2`` .. ``b11_1``/``b11_2`` (1x1 then 3x3: stride 2 with padding 1 for b8 and b9,
    unpadded for b10 and b11), a ReLU after every one of them, and ``conv4_3_norm``: conv4_3 scaled to
    unit L2 norm per position times a learned per-channel ``scale`` (initialised to 20) before its heads.
    Deviation from the model zoo's ssd_vgg16: its network has neither those ReLUs nor the normalisation
    (so ``conv4_3_norm.scale`` is the one parameter its checkpoints lack, and they cannot be reused) and
    drops out after fc6 and fc7; the convolutions keep the model zoo's layout (no biases).
    """

    def __init__(self, cfg, fast=False):
        super().__init__()
        self.channels_last = fast
        self.backbone = VGG16(fast)
        self.b6_1 = Conv(512, 1024, 3, fast=fast, padding=6, dilation=6)
        self.b7_1 = Conv(1024, 1024, 1, fast=fast)
        self.b8_1 = Conv(1024, 256, 1, fast=fast)
        self.b8_2 = Conv(256, 512, 3, 2, fast=fast, padding=1)
        self.b9_1 = Conv(512, 128, 1, fast=fast)
        self.b9_2 = Conv(128, 256, 3, 2, fast=fast, padding=1)
        self.b10_1 = Conv(256, 128, 1, fast=fast)
        self.b10_2 = Conv(128, 256, 3, fast=fast, padding=0)
        self.b11_1 = Conv(256, 128, 1, fast=fast)
        self.b11_2 = Conv(128, 256, 3, fast=fast, padding=0)
        self.relu = nn.ReLU()
        self.conv4_3_norm = L2Norm(512, 20.0, fast)
        self.multi_box = MultiBox(cfg, fast)

    def construct(self, x):
        conv4_3, x = self.backbone(to_channels_last(x, self.channels_last))
        fc7 = self.relu(self.b7_1(self.relu(self.b6_1(x))))
        b8 = self.relu(self.b8_2(self.relu(self.b8_1(fc7))))
        b9 = self.relu(self.b9_2(self.relu(self.b9_1(b8))))
        b10 = self.relu(self.b10_2(self.relu(self.b10_1(b9))))
        b11 = self.relu(self.b11_2(self.relu(self.b11_1(b10))))
        return as_float32(self.multi_box((self.conv4_3_norm(conv4_3), fc7, b8, b9, b10, b11)))

    @staticmethod
    def explain_missing(missing):
        """Why a checkpoint lacking conv4_3_norm.scale cannot be loaded ('' when that is not the case)."""
        return VGG_ZOO_CHECKPOINT if any(name.endswith("conv4_3_norm.scale") for name in missing) else ""


def vgg_map_sides(side):
    """Map sides of SsdVgg16 for an input side: three "same" 2x2 pools, pool4, b8 and b9 (stride 2,
    padding 1), b10 and b11 (3x3 unpadded)."""
    conv4_3 = -(-side // 8)
    fc7 = -(-conv4_3 // 2)
    b8 = (fc7 - 1) // 2 + 1
    b9 = (b8 - 1) // 2 + 1
    return [conv4_3, fc7, b8, b9, b9 - 2, b9 - 4]


@register_model("ssd_mobilenet_v1")
def ssd_mobilenet_v1(cfg, fast):
    """SSD300 with MobileNetV1 (maps 19, 10, 5, 3, 2, 1 for 300x300)."""
    check_feature_sizes(cfg, 16)
    return SsdMobileNetV1(cfg, fast)


@register_model("ssd_vgg16")
def ssd_vgg16(cfg, fast):
    """SSD300 with VGG16 as in the SSD paper (maps 38, 19, 10, 5, 3, 1 for 300x300)."""
    check_feature_sizes(cfg, 8, vgg_map_sides)
    return SsdVgg16(cfg, fast)


@register_model("ssd_mobilenet_v1_fpn")
def ssd_mobilenet_v1_fpn(cfg, fast):
    """SSD with MobileNetV1 + FPN and weight-shared heads (maps 80, 40, 20, 10, 5 for 640x640)."""
    check_feature_sizes(cfg, 8)
    return SsdFpn(MobileNetV1Fpn(cfg, fast), cfg, fast)


@register_model("ssd_resnet50_fpn")
def ssd_resnet50_fpn(cfg, fast):
    """SSD with ResNet50 + FPN and weight-shared heads (maps 80, 40, 20, 10, 5 for 640x640)."""
    check_feature_sizes(cfg, 8)
    return SsdFpn(ResNet50Fpn(cfg, fast), cfg, fast)


@register_model("ssd_ghostnet")
def ssd_ghostnet(cfg, fast):
    """SSD300 with GhostNet 1.3x (maps 19, 10, 5, 3, 2, 1 for 300x300)."""
    check_feature_sizes(cfg, 16)
    return SSD(GhostNetFeatures(fast), ghostnet_extras(cfg, fast), MultiBox(cfg, fast), channels_last=fast)
