"""ImageNet classification checkpoints into an SSD network's backbone (``feature_extractor_base_param``),
and the scope ``freeze_layer: backbone`` freezes.

The backbone is the first cell of the network whose class is listed in ``BACKBONES``; each entry maps
the names of a MindSpore ImageNet checkpoint of that network (the model zoo's classification networks)
to the backbone's own names:

* MobileNetV2 (ssd300): ``features.<i>.*``, i = 0..18, optionally under ``backbone.``; block 14's
  expansion ``features.14.conv.0`` also fills the SSD's ``expand_layer_conv_13``;
* MobileNetV1 (ssd_mobilenet_v1, ssd_mobilenet_v1_fpn): ``network.<i>.<j>.*``, i = 0..26 (j = 0 conv,
  1 BatchNorm);
* ResNet50 (ssd_resnet50_fpn): ``conv1.weight``, ``bn1.*``, ``layer<k>.<i>.conv<n>.weight``, ``.bn<n>.*``,
  ``.down_sample_layer.<0,1>.*`` (mindcv's ``down_sample`` too);
* VGG16 (ssd_vgg16): ``layers.<j>.weight`` of the BatchNorm-free network (mindcv: ``features.<j>.weight``),
  j = 0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28;
* GhostNet 1.3x (ssd_ghostnet): ``conv_stem.weight``, ``bn1.*``, ``blocks.<i>.*`` with ``.conv.weight`` and
  ``.bn.*`` for every conv unit, i = 0..16.

Classifier entries (``fc``, ``head``, ``classifier``, ``end_point``, ``conv_head``, ``dense``) are skipped;
optimizer state is ignored; a leading ``network.`` or ``backbone.`` wrapper prefix is accepted. What was
loaded, skipped and not loaded (unknown name, no such parameter, shape mismatch) is reported, and
backbone parameters no entry filled (e.g. SSD-only layers) stay at their initial values.
"""
import re

import mindspore as ms
from mindspore import Tensor

from src.checkpoint import read_checkpoint
from src.errors import UserError
from src.models.backbones.ghostnet import SPLIT, GhostNetFeatures
from src.models.backbones.mobilenet_v1 import MobileNetV1
from src.models.backbones.mobilenet_v2 import SPLIT_BLOCK, MobileNetV2Features
from src.models.backbones.resnet import ResNet50
from src.models.backbones.vgg16 import BLOCKS, VGG16

CLASSIFIER = re.compile(r"(^|\.)(fc|head|classifier|end_point|conv_head|dense)(\.|$)")
OPTIMIZER = re.compile(r"^(moments|accum|adam_[mv]|learning_rate|global_step|momentum|beta[12]_power|"
                       r"current_iterator_step|last_overflow_iterator_step|scale_sense|epoch_num|step_num)")
WRAPPERS = ("network.", "backbone.", "model.")


def mobilenet_v2_names(name):
    """features.<i>.* -> features_1 (i <= 13) / features_2; block 14's expansion also fills expand_layer_conv_13."""
    match = re.match(r"^features\.(\d+)\.(.+)$", name)
    if not match:
        return []
    index, rest = int(match.group(1)), match.group(2)
    if index <= SPLIT_BLOCK:
        return ["features_1.%d.%s" % (index, rest)]
    names = ["features_2.%d.%s" % (index - SPLIT_BLOCK - 1, rest)]
    if index == SPLIT_BLOCK + 1 and rest.startswith("conv.0."):
        names.append("expand_layer_conv_13." + rest[len("conv.0."):])
    return names


def mobilenet_v1_names(name):
    """network.<i>.<j>.* is already the backbone's own name."""
    return [name] if re.match(r"^network\.\d+\.[01]\.\w+$", name) else []


def resnet_names(name):
    """The model zoo's ResNet50 names are the backbone's; mindcv's ``down_sample`` is ``down_sample_layer``."""
    name = re.sub(r"\.down_sample\.", ".down_sample_layer.", name)
    return [name] if re.match(r"^(conv1\.weight|bn1\.\w+|layer[1-4]\.\d+\.\w+(\.\d+)?\.\w+)$", name) else []


def _vgg_positions():
    """Index of every convolution in a BatchNorm-free VGG16 ``layers``/``features`` list -> b<k>.<2j>."""
    positions, index = {}, 0
    for block, widths in enumerate(BLOCKS, 1):
        for conv in range(len(widths)):
            positions[index] = "b%d.%d" % (block, 2 * conv)
            index += 2
        index += 1
    return positions


VGG_POSITIONS = _vgg_positions()


def vgg16_names(name):
    """layers.<j>.weight (model zoo) or features.<j>.weight (mindcv) -> b<k>.<i>.weight."""
    match = re.match(r"^(layers|features)\.(\d+)\.(weight|bias)$", name)
    if not match or int(match.group(2)) not in VGG_POSITIONS:
        return []
    return ["%s.%s" % (VGG_POSITIONS[int(match.group(2))], match.group(3))]


def ghostnet_names(name):
    """conv_stem/bn1 -> features_1.0; blocks.<i> -> bottleneck i + 1 of features_1/features_2, with every
    conv unit's ``conv``/``bn`` as ``features.0``/``features.1``."""
    name = re.sub(r"^conv_stem\.weight$", "blocks.-1.conv.weight", name)
    name = re.sub(r"^bn1\.", "blocks.-1.bn.", name)
    match = re.match(r"^blocks\.(-?\d+)\.(.+)$", name)
    if not match:
        return []
    index, rest = int(match.group(1)) + 1, match.group(2)
    rest = re.sub(r"(^|\.)conv\.weight$", r"\1features.0.weight", rest)
    rest = re.sub(r"(^|\.)bn\.(\w+)$", r"\1features.1.\2", rest)
    if index <= SPLIT:
        return ["features_1.%d.%s" % (index, rest)]
    return ["features_2.%d.%s" % (index - SPLIT - 1, rest)]


BACKBONES = {MobileNetV2Features: ("MobileNetV2", mobilenet_v2_names), MobileNetV1: ("MobileNetV1", mobilenet_v1_names),
             ResNet50: ("ResNet50", resnet_names), VGG16: ("VGG16", vgg16_names),
             GhostNetFeatures: ("GhostNet", ghostnet_names)}


def find_backbone(network):
    """(scope, cell) of the network's ImageNet backbone, or (None, None)."""
    for scope, cell in network.cells_and_names():
        if type(cell) in BACKBONES:
            return scope, cell
    return None, None


def freeze_scope(network, layer):
    """What ``freeze_layer`` names: ``backbone`` is the scope of the network's ImageNet backbone."""
    if layer != "backbone":
        return layer
    scope, _ = find_backbone(network)
    return scope or layer


class BackboneReport:
    """What :func:`load_backbone_checkpoint` did: loaded (backbone names), skipped (classifier entries),
    not_loaded ((checkpoint name, reason)), untouched (backbone parameters left as they were)."""

    def __init__(self, path, scope, kind):
        self.path, self.scope, self.kind = path, scope, kind
        self.loaded, self.skipped, self.not_loaded, self.untouched = [], [], [], []

    def summary(self):
        """One line, plus one for what was not loaded (first five) when anything was not."""
        text = ("feature_extractor_base_param: loaded %d parameters of the %s backbone (%s) from %s; skipped %d "
                "classifier entries; not loaded %d; %d backbone parameters left at their initial values%s"
                % (len(self.loaded), self.kind, self.scope, self.path, len(self.skipped), len(self.not_loaded),
                   len(self.untouched), " (first: %s)" % self.untouched[0] if self.untouched else ""))
        if self.not_loaded:
            text += "\n  not loaded: " + "; ".join("%s (%s)" % item for item in self.not_loaded[:5])
        return text


def _targets(mapper, name):
    """Backbone names for a checkpoint name, trying it as is, then without one wrapper prefix."""
    names = mapper(name)
    for prefix in WRAPPERS:
        if not names and name.startswith(prefix):
            names = mapper(name[len(prefix):])
    return names


def load_backbone_checkpoint(network, path):
    """Load an ImageNet checkpoint into the network's backbone; returns a BackboneReport. A checkpoint of
    which nothing matches is a UserError (most likely another backbone's)."""
    scope, backbone = find_backbone(network)
    if backbone is None:
        raise UserError("feature_extractor_base_param: this network has no backbone with known ImageNet names")
    kind, mapper = BACKBONES[type(backbone)]
    params = dict(backbone.parameters_and_names())
    report = BackboneReport(path, scope, kind)
    try:
        values = read_checkpoint(path)
    except (ValueError, FileNotFoundError) as err:
        raise UserError("feature_extractor_base_param: %s" % err) from None
    for name, value in values.items():
        if OPTIMIZER.match(name):
            continue
        targets = _targets(mapper, name)
        if not targets:
            (report.skipped if CLASSIFIER.search(name) else report.not_loaded).append(
                name if CLASSIFIER.search(name) else (name, "not a %s ImageNet name" % kind))
            continue
        for target in targets:
            _load_one(params, target, name, value, report)
    report.untouched = [name for name in params if name not in set(report.loaded)]
    if not report.loaded:
        first = "; ".join("%s (%s)" % item for item in report.not_loaded[:3]) or "no entries"
        raise UserError("feature_extractor_base_param: no entry of %s fits the %s backbone (%s); see README "
                        "'Models' for the names expected" % (path, kind, first))
    return report


def _load_one(params, target, name, value, report):
    param = params.get(target)
    if param is None:
        report.not_loaded.append((name, "the SSD backbone has no %s" % target))
    elif tuple(value.shape) != tuple(param.shape):
        report.not_loaded.append((name, "shape %s, backbone %s" % (list(value.shape), list(param.shape))))
    else:
        param.set_data(ms.ops.cast(value if isinstance(value, Tensor) else Tensor(value), param.dtype))
        report.loaded.append(target)


def load_backbone_weights(network, cfg):
    """``feature_extractor_base_param``, when set: load it and print what was loaded (None otherwise)."""
    path = cfg.get("feature_extractor_base_param", "")
    if not path:
        return None
    report = load_backbone_checkpoint(network, path)
    print(report.summary(), flush=True)
    return report
