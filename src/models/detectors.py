"""SSD detector assemblies (Liu et al. 2016, "SSD: Single Shot MultiBox Detector"): a backbone, extra layers
or a feature pyramid (:mod:`src.models.necks`) and box predictors (:mod:`src.models.heads`), under the
model zoo's parameter names so its checkpoints load (ssd_vgg16 excepted, see SsdVgg16).

Each takes NCHW float32 images [B, 3, H, W] and returns (loc [B, N, 4], class logits [B, N, num_classes])
in float32, whatever the layers run in; with a channels-last layer factory (the fast CPU formulation) the
input is made NHWC once, at the start.
"""
import mindspore as ms
from mindspore import nn, ops

from src.models.backbones.mobilenet_v1 import MobileNetV1
from src.models.backbones.vgg16 import VGG16
from src.models.heads import MultiBox, WeightSharedMultiBox
from src.models.necks import append_maps, conv_extras, vgg_extras


def to_channels_last(x, channels_last):
    """The NCHW input as the layers take it: NHWC in the fast formulation."""
    return ops.transpose(x, (0, 2, 3, 1)) if channels_last else x


def as_float32(predictions):
    """(loc, logits) cast to float32 (the layers may run in float16)."""
    return ops.cast(predictions[0], ms.float32), ops.cast(predictions[1], ms.float32)


class SSD(nn.Cell):
    """``backbone`` (the first feature maps), ``multi_residual`` (extra layers, each making the next map
    from the last), ``multi_box`` (heads): ssd300 and ssd_ghostnet."""

    def __init__(self, backbone, extras, multi_box, layers):
        super().__init__()
        self.backbone = backbone
        self.multi_residual = extras
        self.multi_box = multi_box
        self.channels_last = layers.channels_last

    def construct(self, x):
        features = append_maps(self.backbone(to_channels_last(x, self.channels_last)), self.multi_residual)
        return as_float32(self.multi_box(features))


class MobileNetV1Extractor(nn.Cell):
    """``mobilenet_v1``: MobileNetV1 returning layers 14 (Conv7_pointwise, stride 16) and 26 (stride 32).

    Layer 14, not 22: the model zoo's ``MobileNetV1Feature`` selects layers 14 and 26, and its
    checkpoints were trained so. (The TensorFlow object-detection API's SSD-MobileNetV1 takes
    Conv11_pointwise, layer 22, which has the same shape: a checkpoint would load either way and give
    other boxes on the first map, so the choice follows the checkpoints users bring.)"""

    def __init__(self, layers):
        super().__init__()
        self.mobilenet_v1 = MobileNetV1(layers, (14, 26))

    def construct(self, x):
        return self.mobilenet_v1(x)


class SsdMobileNetV1(nn.Cell):
    """``feature_extractor`` (MobileNetV1), ``multi_residual`` (3x3 stride-2 conv + BN + ReLU6 extras),
    ``multi_box`` (SSDLite heads)."""

    def __init__(self, cfg, layers):
        super().__init__()
        self.channels_last = layers.channels_last
        self.feature_extractor = MobileNetV1Extractor(layers)
        self.multi_residual = conv_extras(cfg, layers)
        self.multi_box = MultiBox(cfg, layers)

    def construct(self, x):
        features = append_maps(self.feature_extractor(to_channels_last(x, self.channels_last)), self.multi_residual)
        return as_float32(self.multi_box(features))


class SsdFpn(nn.Cell):
    """``feature_extractor`` (backbone + FPN + bottom-up levels) and ``multi_box`` (weight-shared heads)."""

    def __init__(self, extractor, cfg, layers):
        super().__init__()
        self.channels_last = layers.channels_last
        self.feature_extractor = extractor
        self.multi_box = WeightSharedMultiBox(cfg, layers)

    def construct(self, x):
        return as_float32(self.multi_box(self.feature_extractor(to_channels_last(x, self.channels_last))))


VGG_ZOO_CHECKPOINT = ("checkpoint lacks conv4_3_norm.scale, as the model zoo's ssd_vgg16 checkpoints do: that network "
                      "has no L2 normalisation of conv4_3 and no ReLU after fc6, fc7 and the extra layers, while this "
                      "ssd_vgg16 follows the SSD paper, so such weights cannot be reused as they are (train ssd_vgg16 "
                      "here, e.g. from an ImageNet VGG16 with feature_extractor_base_param)")


class SsdVgg16(nn.Cell):
    """SSD300 with VGG16 as in the SSD paper (section 3.1 and figure 2), with the model zoo's names.

    ``backbone`` (VGG16 to pool5), ``b6_1`` (fc6), ``b7_1`` (fc7) and the extras ``b8_1``/``b8_2`` ..
    ``b11_1``/``b11_2`` (:func:`src.models.necks.vgg_extras`, direct children as in the model zoo), a ReLU
    after every one of them, and ``conv4_3_norm``: conv4_3 scaled to unit L2 norm per position times a
    learned per-channel ``scale`` (initialised to 20) before its heads.
    Deviation from the model zoo's ssd_vgg16: its network has neither those ReLUs nor the normalisation
    (so ``conv4_3_norm.scale`` is the one parameter its checkpoints lack, and they cannot be reused) and
    drops out after fc6 and fc7; the convolutions keep the model zoo's layout (no biases).
    """

    def __init__(self, cfg, layers):
        super().__init__()
        self.channels_last = layers.channels_last
        self.backbone = VGG16(layers)
        for name, conv in vgg_extras(layers).items():
            setattr(self, name, conv)
        self.relu = nn.ReLU()
        self.conv4_3_norm = layers.l2norm(512, 20.0)
        self.multi_box = MultiBox(cfg, layers)

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
