"""Every SSD network of the model zoo, registered for ``build_ssd`` under its ``model_name``:

| model_name | network | maps (input) |
| --- | --- | --- |
| ssd300 | MobileNetV2 + four inverted-residual extras + SSDLite heads | 19..1 (300) |
| ssd_mobilenet_v1 | MobileNetV1 layers 14, 26 + four 3x3 conv extras + SSDLite heads | 19..1 (300) |
| ssd_vgg16 | VGG16 conv4_3 (L2-normalised) and fc7 + four extras + SSDLite heads (SSD paper) | 38..1 (300) |
| ssd_mobilenet_v1_fpn | MobileNetV1 + FPN + weight-shared heads | 80..5 (640) |
| ssd_resnet50_fpn | ResNet50 + FPN + weight-shared heads | 80..5 (640) |
| ssd_ghostnet | GhostNet 1.3x + four inverted-residual extras + SSDLite heads | 19..1 (300) |

Parameter names and shapes are those of the model zoo's checkpoints, except ssd_vgg16 (see SsdVgg16).
The maps each network makes of an input (per axis, so [H, W] inputs give [h, w] maps) are the rules of
:mod:`src.feature_maps`, which every builder checks the config's ``feature_size`` against.
"""
from src.models.backbones.ghostnet import GhostNetFeatures
from src.models.backbones.mobilenet_v2 import MobileNetV2Features
from src.models.detectors import SSD, SsdFpn, SsdMobileNetV1, SsdVgg16
from src.models.heads import MultiBox
from src.models.necks import MobileNetV1Fpn, ResNet50Fpn, inverted_residual_extras
from src.models.registry import check_feature_sizes, register_model


@register_model("ssd300")
def ssd300_mobilenet_v2(cfg, layers):
    """SSD300 with a MobileNetV2 backbone and SSDLite heads (maps 19, 10, 5, 3, 2, 1 for 300x300)."""
    check_feature_sizes(cfg)
    return SSD(MobileNetV2Features(layers), inverted_residual_extras(cfg, layers), MultiBox(cfg, layers), layers)


@register_model("ssd_mobilenet_v1")
def ssd_mobilenet_v1(cfg, layers):
    """SSD300 with MobileNetV1 (maps 19, 10, 5, 3, 2, 1 for 300x300)."""
    check_feature_sizes(cfg)
    return SsdMobileNetV1(cfg, layers)


@register_model("ssd_vgg16")
def ssd_vgg16(cfg, layers):
    """SSD300 with VGG16 as in the SSD paper (maps 38, 19, 10, 5, 3, 1 for 300x300)."""
    check_feature_sizes(cfg)
    return SsdVgg16(cfg, layers)


@register_model("ssd_mobilenet_v1_fpn")
def ssd_mobilenet_v1_fpn(cfg, layers):
    """SSD with MobileNetV1 + FPN and weight-shared heads (maps 80, 40, 20, 10, 5 for 640x640)."""
    check_feature_sizes(cfg)
    return SsdFpn(MobileNetV1Fpn(cfg, layers), cfg, layers)


@register_model("ssd_resnet50_fpn")
def ssd_resnet50_fpn(cfg, layers):
    """SSD with ResNet50 + FPN and weight-shared heads (maps 80, 40, 20, 10, 5 for 640x640)."""
    check_feature_sizes(cfg)
    return SsdFpn(ResNet50Fpn(cfg, layers), cfg, layers)


@register_model("ssd_ghostnet")
def ssd_ghostnet(cfg, layers):
    """SSD300 with GhostNet 1.3x (maps 19, 10, 5, 3, 2, 1 for 300x300); its extras use ReLU inside."""
    check_feature_sizes(cfg)
    return SSD(GhostNetFeatures(layers), inverted_residual_extras(cfg, layers, act="relu"), MultiBox(cfg, layers),
               layers)
