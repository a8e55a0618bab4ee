"""SSD detector assembly (Liu et al. 2016, "SSD: Single Shot MultiBox Detector").

``build_ssd(cfg)`` looks ``cfg.model_name`` up in a registry of builders, so further models (VGG16,
MobileNetV1, ResNet50-FPN, GhostNet) are added with ``@register_model("name")`` and no if-chains.
Every builder takes ``(cfg, fast)``, where ``fast`` selects the fast CPU formulation (channels-last
tensors, compiled depthwise and BatchNorm kernels, see :mod:`src.models.layers`); parameters are the
same either way, and a builder may ignore ``fast``.
"""
import mindspore as ms
from mindspore import nn, ops

from src.models.backbones import MobileNetV2Features
from src.models.heads import MultiBox
from src.models.layers import kernel_library
from src.models.necks import multi_residual

_REGISTRY = {}


def register_model(name):
    """Decorator: register ``builder(cfg, fast) -> nn.Cell`` under ``cfg.model_name == name``."""
    def add(builder):
        _REGISTRY[name] = builder
        return builder
    return add


def registered_models():
    return sorted(_REGISTRY)


def use_fast_conv(cfg):
    """The fast formulation: asked for (``fast_conv``, default True), on CPU, float32, and compilable."""
    wanted = cfg.get("fast_conv", True) and str(cfg.get("device_target", "CPU")).upper() == "CPU"
    return bool(wanted) and not cfg.get("use_float16", False) and kernel_library() is not None


class SSD(nn.Cell):
    """Backbone (two feature maps) + extra layers (``multi_residual``) + heads (``multi_box``).

    ``construct(x)``: x float32 [B, 3, H, W] -> (loc [B, N, 4], class logits [B, N, num_classes]).
    With ``channels_last`` (the fast CPU formulation) the layers work on NHWC tensors.
    """

    def __init__(self, backbone, extras, multi_box, channels_last=False):
        super().__init__()
        self.backbone = backbone
        self.multi_residual = extras
        self.multi_box = multi_box
        self.channels_last = channels_last

    def construct(self, x):
        if self.channels_last:
            x = ops.transpose(x, (0, 2, 3, 1))
        first, feature = self.backbone(x)
        features = (first, feature)
        for layer in self.multi_residual:
            feature = layer(feature)
            features += (feature,)
        loc, logits = self.multi_box(features)
        return ops.cast(loc, ms.float32), ops.cast(logits, ms.float32)


class SsdInferWrapper(nn.Cell):
    """Inference wrapper as the model zoo's eval.py builds it (the detector is attribute ``network``,
    hence the ``network.`` prefix of checkpoint names); turns class logits into sigmoid scores."""

    def __init__(self, network):
        super().__init__()
        self.network = network
        self.sigmoid = ops.Sigmoid()
        self.set_train(False)

    def construct(self, x):
        loc, logits = self.network(x)
        return loc, self.sigmoid(logits)


def halving_sizes(side, first_stride, count):
    """Sides of ``count`` maps starting at ``first_stride`` when each stride-2 "same" layer rounds up."""
    sizes, stride = [], 1
    while stride < first_stride:
        side, stride = -(-side // 2), stride * 2
    for _ in range(count):
        sizes.append(side)
        side = -(-side // 2)
    return sizes


def check_feature_sizes(cfg, first_stride, map_sides=None):
    """The anchors follow ``feature_size``: it must match what the network makes of ``img_shape``
    (``map_sides(side)`` for networks whose maps do not simply halve from ``first_stride`` on)."""
    count = len(cfg.feature_size)
    for side in cfg.img_shape:
        got = map_sides(side) if map_sides else halving_sizes(side, first_stride, count)
        if got != list(cfg.feature_size):
            raise ValueError("feature_size %s does not match img_shape %s: %s gives maps %s"
                             % (list(cfg.feature_size), list(cfg.img_shape), cfg.model_name, got))
    boxes = sum(s * s * d for s, d in zip(cfg.feature_size, cfg.num_default))
    if boxes != cfg.num_ssd_boxes:
        raise ValueError("num_ssd_boxes is %d but feature_size and num_default give %d" % (cfg.num_ssd_boxes, boxes))


@register_model("ssd300")
def ssd300_mobilenet_v2(cfg, fast):
    """SSD300 with a MobileNetV2 backbone and SSDLite heads (maps 19, 10, 5, 3, 2, 1 for 300x300)."""
    check_feature_sizes(cfg, 16)
    return SSD(MobileNetV2Features(fast=fast), multi_residual(cfg, fast), MultiBox(cfg, fast), channels_last=fast)


def to_float16(net):
    """Run the layers in float16 (Ascend, GPU); BatchNorm stays float32. The top cell is left alone
    (a float16 cell casts what it returns), so its outputs stay float32."""
    for child in net.cells():
        child.to_float(ms.float16)
    for _, cell in net.cells_and_names():
        if isinstance(cell, nn.BatchNorm2d):
            cell.to_float(ms.float32)
    return net


def build_ssd(cfg):
    """The SSD network named by ``cfg.model_name`` (in training mode; wrap it for inference)."""
    if cfg.model_name not in _REGISTRY:
        raise ValueError("unknown model_name '%s'; available: %s" % (cfg.model_name, ", ".join(registered_models())))
    net = _REGISTRY[cfg.model_name](cfg, use_fast_conv(cfg))
    if cfg.get("use_float16", False):
        to_float16(net)
    return net
