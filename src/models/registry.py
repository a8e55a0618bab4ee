"""The registry of SSD networks: ``build_ssd(cfg)`` looks ``cfg.model_name`` up among the builders
registered with ``@register_model("name")`` (all in :mod:`src.models.zoo`), so further models are added
without if-chains.

A builder takes ``(cfg, layers)``: ``layers`` is the layer factory (:mod:`src.models.layers`) of the
formulation :func:`build_ssd` chooses once for the whole network, the fast CPU one where it applies
(:func:`use_fast_conv`), else the plain one. Parameters are the same either way.
"""
import mindspore as ms
from mindspore import nn

from src.models.layers import make_layers
from src.native.kernels import kernel_library

_REGISTRY = {}


def register_model(name):
    """Decorator: register ``builder(cfg, layers) -> nn.Cell`` under ``cfg.model_name == name``."""
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
    net = _REGISTRY[cfg.model_name](cfg, make_layers(use_fast_conv(cfg)))
    if cfg.get("use_float16", False):
        to_float16(net)
    return net
