"""The registry of SSD networks: ``build_ssd(cfg)`` looks ``cfg.model_name`` up among the builders
registered with ``@register_model("name")`` (all in :mod:`src.models.zoo`), so further models are added
without if-chains.

A builder takes ``(cfg, layers)``: ``layers`` is the layer factory (:mod:`src.models.layers`) of the
formulation :func:`build_ssd` chooses once for the whole network, the fast CPU one where it applies
(:func:`use_fast_conv`), else the plain one. Parameters are the same either way.
"""
import mindspore as ms
from mindspore import nn

from src.feature_maps import UNPINNED_HINT, as_entry, count_boxes, feature_sizes, halving_sizes, map_hw
from src.models.layers import make_layers
from src.native.kernels import fast_kernels_available

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
    return bool(wanted) and not cfg.get("use_float16", False) and fast_kernels_available()


def network_feature_sizes(cfg, first_stride=None, map_sides=None):
    """``feature_size`` entries the network makes of ``img_shape`` (per axis): by default the rule of
    ``cfg.model_name`` in :mod:`src.feature_maps`; a network registered elsewhere may give its
    ``first_stride`` (maps halving from there) or ``map_sides(side)``."""
    count = len(cfg.feature_size)
    if first_stride is None and map_sides is None:
        return feature_sizes(cfg.model_name, cfg.img_shape, count)
    rows, cols = ([int(v) for v in map_sides(side)] if map_sides else halving_sizes(int(side), first_stride, count)
                  for side in cfg.img_shape)
    return [as_entry(h, w) for h, w in zip(rows, cols)]


def check_feature_sizes(cfg, first_stride=None, map_sides=None):
    """The anchors follow ``feature_size``: each map, per axis ([h, w] entries for non-square maps), must
    be what the network makes of ``img_shape`` (:func:`network_feature_sizes`), and ``num_ssd_boxes``
    the sum of h * w * ``num_default``."""
    if not cfg.feature_size or not cfg.steps or not cfg.num_ssd_boxes:
        raise ValueError("feature_size, steps and num_ssd_boxes must be set: load_config derives them when they are "
                         "empty, Config.replace does not (use src.feature_maps.derive_layout on its values)")
    try:
        got = network_feature_sizes(cfg, first_stride, map_sides)
    except ValueError as err:
        raise ValueError("feature_size %s does not match img_shape %s: %s"
                         % (list(cfg.feature_size), list(cfg.img_shape), err)) from None
    if [map_hw(entry) for entry in got] != [map_hw(entry) for entry in cfg.feature_size]:
        raise ValueError("feature_size %s does not match img_shape %s: %s gives maps %s (%s)"
                         % (list(cfg.feature_size), list(cfg.img_shape), cfg.model_name, got, UNPINNED_HINT))
    boxes = count_boxes(cfg.feature_size, cfg.num_default)
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
